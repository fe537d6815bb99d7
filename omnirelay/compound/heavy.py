"""``heavy:<model>``: several agents answer in parallel at varied temperatures; a plurality vote settles answers
that have an extractable final answer, otherwise (or on a tie) one critique-then-synthesis call combines them.

Progress streams as reasoning from the start ("agent 3/4 done: ..."), the final answer as content. Caps on
tokens, cost and wall time stop the run early: the best answer so far comes back with finish reason ``length``
and a note saying which cap was hit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import ClassVar

from omnirelay.compound.caller import Tally, sub_request, with_system, with_user_note
from omnirelay.compound.engine import CompoundEngine, chunks, out_of_budget, require_text
from omnirelay.compound.options import Effective
from omnirelay.compound.vote import extract, plurality
from omnirelay.core.errors import GatewayError
from omnirelay.core.events import ChoiceEnd, ReasoningDelta, StreamEvent, TextDelta, UsageReport
from omnirelay.core.types import ChatRequest, ChatResponse

AGENT_PROMPT = (
    "You are agent {k} of {n} working independently on the user's request. {angle} Reason carefully and check "
    "your work. If the request has a definite short answer (a number, an option letter, a word or short "
    "phrase), end with a last line of the form `Final answer: <answer>`."
)
ANGLES = (
    "Take the most direct approach.",
    "Consider an alternative hypothesis or method before settling.",
    "Be skeptical: look for the trap or the mistake a hasty solver would make.",
    "Work from first principles and verify each step.",
    "Solve it a second way and compare the results.",
    "Consider edge cases and unusual interpretations.",
    "Estimate first, then compute exactly.",
    "Argue against your first idea before committing.",
)
SYNTHESIS_PROMPT = (
    "\n\n---\nIndependent agents wrote these candidate responses to the request above:\n\n{candidates}\n\n"
    "First critique the candidates briefly: errors, gaps, and where they disagree and why. Then write a line "
    "containing only {marker} and after it the single best complete response to the request, written directly "
    "to the user (do not mention the candidates)."
)
MARKER = "=== FINAL ==="
PREVIEW = 80


def temperatures(n: int) -> list[float]:
    """Spread from focused to exploratory (0.3 .. 1.0); one agent runs at 0.7."""
    if n == 1:
        return [0.7]
    return [round(0.3 + 0.7 * i / (n - 1), 3) for i in range(n)]


def _preview(text: str, answer: str | None) -> str:
    if answer is not None:
        return f"answer {answer}"
    flat = " ".join(text.split())
    return (flat[:PREVIEW] + "...") if len(flat) > PREVIEW else flat


class HeavyEngine(CompoundEngine):
    mode: ClassVar[str] = "heavy"

    async def run(self, req: ChatRequest, base: str, opts: Effective, tally: Tally) -> AsyncIterator[StreamEvent]:
        n = opts.agents
        deadline = time.monotonic() + opts.max_time
        yield ReasoningDelta(text=f"Running {n} agents on {base} in parallel.\n")
        per_agent_tokens = req.max_tokens
        if opts.max_tokens is not None:
            share = max(64, opts.max_tokens // (n + 1))
            per_agent_tokens = min(per_agent_tokens or share, share)
        temps = temperatures(n)
        agent_of: dict[asyncio.Task[ChatResponse], int] = {}
        sub_of: dict[asyncio.Task[ChatResponse], ChatRequest] = {}
        for k in range(n):
            sub = sub_request(
                req,
                base,
                messages=with_system(req.messages, AGENT_PROMPT.format(k=k + 1, n=n, angle=ANGLES[k % len(ANGLES)])),
                temperature=temps[k],
                max_tokens=per_agent_tokens,
                tools=[],
                tool_choice=None,
                parallel_tool_calls=None,
            )
            task = asyncio.create_task(self.caller.complete(sub))
            agent_of[task] = k
            sub_of[task] = sub
        done_texts: list[tuple[int, str, str | None]] = []  # (agent, text, extracted answer), completion order
        cap: str | None = None
        failures: list[GatewayError] = []
        pending = set(agent_of)
        try:
            while pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    cap = f"the time cap ({opts.max_time:g}s)"
                    break
                finished, pending = await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    k = agent_of[task]
                    exc = task.exception()
                    if exc is not None:
                        if not isinstance(exc, GatewayError):
                            raise exc
                        failures.append(exc)
                        yield ReasoningDelta(text=f"agent {k + 1}/{n} failed: {exc.message}\n")
                        continue
                    resp = task.result()
                    tally.add_response(resp)
                    text = require_text(resp, f"agent {k + 1}")
                    answer = extract(text)
                    done_texts.append((k, text, answer))
                    yield ReasoningDelta(text=f"agent {k + 1}/{n} done: {_preview(text, answer)}\n")
                    yield tally.report()
                cap = cap or out_of_budget(opts, tally)
                if cap is not None:
                    break
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                for task in pending:
                    if task.cancelled():  # sent and cut short: the upstream bills the prompt it read
                        charge = self.caller.abandoned(sub_of[task])
                        tally.add(charge.usage, charge.cost)
        if not done_texts:
            if failures and cap is None:
                raise failures[0]
            yield ReasoningDelta(text=f"Stopped at {cap}: no agent finished.\n")
            yield ChoiceEnd(finish_reason="length")
            return
        winner, decisive = plurality([a for _k, _t, a in done_texts])
        if cap is not None:
            text = _best(done_texts, winner)
            yield ReasoningDelta(
                text=f"Stopped at {cap} after {len(done_texts)}/{n} agents; returning the best answer so far "
                "(truncated).\n"
            )
            for piece in chunks(text):
                yield TextDelta(text=piece)
            yield ChoiceEnd(finish_reason="length")
            return
        if decisive and winner is not None:
            votes = sum(1 for _k, _t, a in done_texts if a == winner)
            yield ReasoningDelta(text=f"Vote: {winner} ({votes}/{len(done_texts)} agents).\n")
            for piece in chunks(_best(done_texts, winner)):
                yield TextDelta(text=piece)
            yield ChoiceEnd(finish_reason="stop")
            return
        if len(done_texts) == 1:
            for piece in chunks(done_texts[0][1]):
                yield TextDelta(text=piece)
            yield ChoiceEnd(finish_reason="stop")
            return
        yield ReasoningDelta(text="No decisive vote; critiquing and synthesising the candidates.\n")
        async for event in self._synthesise(req, base, done_texts, tally):
            yield event

    async def _synthesise(
        self, req: ChatRequest, base: str, done: list[tuple[int, str, str | None]], tally: Tally
    ) -> AsyncIterator[StreamEvent]:
        candidates = "\n\n".join(f"### Candidate {i + 1}\n{text.strip()}" for i, (_k, text, _a) in enumerate(done))
        sub = sub_request(
            req,
            base,
            stream=True,
            messages=with_user_note(req.messages, SYNTHESIS_PROMPT.format(candidates=candidates, marker=MARKER)),
            tools=[],
            tool_choice=None,
            parallel_tool_calls=None,
            temperature=0.2,
        )
        splitter = MarkerSplitter(MARKER)
        finish: ChoiceEnd | None = None
        async for event in self.caller.stream(sub):
            if isinstance(event, TextDelta):
                for is_answer, piece in splitter.feed(event.text):
                    yield TextDelta(text=piece) if is_answer else ReasoningDelta(text=piece)
            elif isinstance(event, UsageReport):
                tally.add(event.usage, event.cost)
                yield tally.report()
            elif isinstance(event, ChoiceEnd):
                finish = event
        for is_answer, piece in splitter.close():
            yield TextDelta(text=piece) if is_answer else ReasoningDelta(text=piece)
        if not splitter.seen:
            # The model skipped the marker: its whole reply (sent as reasoning above) is the answer.
            for piece in chunks(splitter.before.strip()):
                yield TextDelta(text=piece)
        yield ChoiceEnd(finish_reason=finish.finish_reason if finish is not None else "stop")


def _best(done: list[tuple[int, str, str | None]], winner: str | None) -> str:
    """The text of the first agent that gave the winning answer; else the first finished agent's."""
    for _k, text, answer in done:
        if winner is not None and answer == winner:
            return text
    return done[0][1]


class MarkerSplitter:
    """Splits streamed text at the first ``marker``: text before it is critique (reasoning), after it the
    answer. Holds back only as many characters as could be the start of the marker."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.buffer = ""
        self.seen = False
        self.before = ""
        self.started = False  # answer text begun (leading whitespace after the marker is dropped)

    def feed(self, text: str) -> list[tuple[bool, str]]:
        if self.seen:
            return self._answer(text)
        self.buffer += text
        at = self.buffer.find(self.marker)
        if at >= 0:
            head, tail = self.buffer[:at], self.buffer[at + len(self.marker) :]
            self.buffer = ""
            self.seen = True
            self.before += head
            out = [(False, head)] if head else []
            return out + self._answer(tail)
        keep = 0
        for size in range(min(len(self.marker) - 1, len(self.buffer)), 0, -1):
            if self.marker.startswith(self.buffer[-size:]):
                keep = size
                break
        emit, self.buffer = self.buffer[: len(self.buffer) - keep], self.buffer[len(self.buffer) - keep :]
        self.before += emit
        return [(False, emit)] if emit else []

    def _answer(self, text: str) -> list[tuple[bool, str]]:
        if not self.started:
            text = text.lstrip()
            if not text:
                return []
            self.started = True
        return [(True, text)]

    def close(self) -> list[tuple[bool, str]]:
        rest, self.buffer = self.buffer, ""
        if rest and not self.seen:
            self.before += rest
            return [(False, rest)]
        return []
