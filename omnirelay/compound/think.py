"""``think:<model>``: visible reasoning from any model.

A model with reasoning of its own (``CompoundSettings.native_reasoning``) is simply asked for it (the request's
effort or budget, medium when unset) and its stream passes through. Any other model gets two calls: a reasoning
pass whose text is streamed back as reasoning, then the answer, written with that reasoning in view, streamed as
content (with the caller's tools, so tool calls still work).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

from omnirelay.compound.caller import Tally, sub_request, with_system
from omnirelay.compound.engine import CompoundEngine
from omnirelay.compound.options import Effective, has_native_reasoning
from omnirelay.core.events import ChoiceEnd, ReasoningDelta, StreamEvent, TextDelta, UsageReport
from omnirelay.core.reasoning import budget_of
from omnirelay.core.types import ChatRequest, Reasoning, ToolChoice

REASONING_PROMPT = (
    "Before anyone answers the user, think the problem through step by step: restate what is asked, consider "
    "the relevant facts and possible approaches, work through the details, and check the result. Write only "
    "this reasoning; do not write the final reply to the user."
)
ANSWER_PROMPT = (
    "You already reasoned about the user's last message; your private reasoning follows between the markers. "
    "Use it to write the final reply to the user directly, without repeating the reasoning.\n"
    "<reasoning>\n{reasoning}\n</reasoning>"
)
DEFAULT_REASONING_TOKENS = 2048


class ThinkEngine(CompoundEngine):
    mode: ClassVar[str] = "think"

    async def run(self, req: ChatRequest, base: str, opts: Effective, tally: Tally) -> AsyncIterator[StreamEvent]:
        if has_native_reasoning(base, self.settings):
            asked = req.reasoning if req.reasoning is not None and req.reasoning.enabled else None
            sub = sub_request(req, base, stream=True, reasoning=asked or Reasoning(effort=opts.effort or "medium"))
            ended = False
            async for event in self.caller.stream(sub):
                if isinstance(event, UsageReport):
                    tally.add(event.usage, event.cost)
                else:
                    ended = ended or isinstance(event, ChoiceEnd)
                    yield event
            if not ended:
                yield ChoiceEnd(finish_reason="stop")
            return
        # Pass 1: the reasoning, streamed as reasoning.
        budget = budget_of(req.reasoning) or DEFAULT_REASONING_TOKENS
        if req.max_tokens is not None:
            budget = min(budget, max(256, req.max_tokens))
        first = sub_request(
            req,
            base,
            stream=True,
            messages=with_system(req.messages, REASONING_PROMPT),
            max_tokens=budget,
            reasoning=None,
            response_format=None,
            tool_choice=ToolChoice(mode="none") if req.tools else None,
        )
        trace: list[str] = []
        async for event in self.caller.stream(first):
            if isinstance(event, TextDelta | ReasoningDelta) and event.text:
                trace.append(event.text)
                yield ReasoningDelta(text=event.text)
            elif isinstance(event, UsageReport):
                tally.add(event.usage, event.cost)
                yield tally.report()
        # Pass 2: the answer, with the caller's tools and format.
        second = sub_request(
            req,
            base,
            stream=True,
            messages=with_system(req.messages, ANSWER_PROMPT.format(reasoning="".join(trace).strip())),
            reasoning=None,
        )
        ended = False
        async for event in self.caller.stream(second):
            if isinstance(event, UsageReport):
                tally.add(event.usage, event.cost)
            elif isinstance(event, ReasoningDelta):
                continue  # the visible reasoning is pass 1's
            else:
                ended = ended or isinstance(event, ChoiceEnd)
                yield event
        if not ended:
            yield ChoiceEnd(finish_reason="stop")
