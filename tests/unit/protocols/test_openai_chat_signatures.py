"""The OpenAI inbound side of per-call signatures and of how a stream opens: ``extra_content.google.
thought_signature`` on tool calls (rendered, streamed, read back) and ``content: null`` when the turn opens with
a tool call."""

from __future__ import annotations

from typing import Any

import msgspec

from omnirelay.core.events import ChoiceEnd, ReasoningDelta, StreamStart, TextDelta, ToolCallArgs, ToolCallStart
from omnirelay.core.types import ChatRequest, ChatResponse, Choice, Message, ToolCall, Usage
from omnirelay.protocols.openai_chat import PROTOCOL

GOOGLE = {"google": {"thought_signature": "c2ln"}}


def _req(**body: Any) -> ChatRequest:
    base = {"model": "gemini-3-flash", "messages": [{"role": "user", "content": "x"}]}
    return PROTOCOL.parse_request(msgspec.json.encode({**base, **body}), {})


def _frames(data: bytes) -> list[dict[str, Any]]:
    lines = [line[6:] for line in data.split(b"\n") if line.startswith(b"data: ") and line != b"data: [DONE]"]
    return [msgspec.json.decode(line) for line in lines]


def test_a_turn_opening_with_a_tool_call_has_null_content_and_the_signature() -> None:
    encoder = PROTOCOL.stream_encoder(_req(stream=True))
    out = encoder.encode(StreamStart(id="gen-1", model="gemini-3-flash", created=1))
    out += encoder.encode(ToolCallStart(index=0, id="fc-1", name="Read", signature="c2ln"))
    out += encoder.encode(ToolCallArgs(index=0, arguments="{}"))
    out += encoder.encode(ChoiceEnd(finish_reason="tool_calls"))
    deltas = [f["choices"][0]["delta"] for f in _frames(out)]
    assert deltas[0]["role"] == "assistant" and deltas[0]["content"] is None
    assert deltas[0]["tool_calls"][0]["extra_content"] == GOOGLE
    assert "extra_content" not in deltas[1]["tool_calls"][0]
    # Reasoning first: null content too; a text turn still opens as OpenAI's do, with empty content.
    thinking_encoder = PROTOCOL.stream_encoder(_req(stream=True))
    opening = _frames(thinking_encoder.encode(ReasoningDelta(text="hm")))[0]["choices"][0]["delta"]
    assert opening == {"role": "assistant", "content": None, "reasoning_content": "hm"}
    text_encoder = PROTOCOL.stream_encoder(_req(stream=True))
    out = text_encoder.encode(StreamStart(id="gen-1", model="m", created=1)) + text_encoder.encode(TextDelta(text="hi"))
    deltas = [f["choices"][0]["delta"] for f in _frames(out)]
    assert deltas[0] == {"role": "assistant", "content": ""} and deltas[1] == {"content": "hi"}


def test_signature_rendered_on_the_tool_call_and_read_back() -> None:
    call = ToolCall(id="fc-1", name="Read", arguments="{}", signature="c2ln")
    plain = ToolCall(id="fc-2", name="Read", arguments="{}")
    msg = Message(role="assistant", tool_calls=[call, plain])
    resp = ChatResponse(
        id="x", model="m", created=1, choices=[Choice(index=0, message=msg, finish_reason="tool_calls")], usage=Usage()
    )
    rendered = msgspec.json.decode(PROTOCOL.render_response(resp, _req()))
    wire_call, wire_plain = rendered["choices"][0]["message"]["tool_calls"]
    assert wire_call["extra_content"] == GOOGLE and "extra_content" not in wire_plain
    history = _req(
        messages=[
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": None, "tool_calls": [wire_call, wire_plain]},
            {"role": "tool", "tool_call_id": "fc-1", "content": "ok"},
            {"role": "tool", "tool_call_id": "fc-2", "content": "ok"},
        ]
    )
    assert history.messages[1].tool_calls == [call, plain]
