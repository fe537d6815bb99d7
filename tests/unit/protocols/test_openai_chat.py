"""The OpenAI Chat Completions inbound protocol's pure translation: a representative request body -> the
canonical request; bad bodies -> a 400 naming the field; the reply and the stream rendered, then read back with
the OpenAI upstream parser (which speaks the same wire format), giving back what was rendered."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from omnirelay.config import UpstreamConfig
from omnirelay.core.errors import GatewayError
from omnirelay.core.events import (
    ChoiceEnd,
    ReasoningDelta,
    StreamEvent,
    StreamStart,
    TextDelta,
    ToolCallArgs,
    ToolCallStart,
    UsageReport,
)
from omnirelay.core.types import (
    ChatRequest,
    ChatResponse,
    Choice,
    ImagePart,
    Message,
    Reasoning,
    ReasoningPart,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    Usage,
)
from omnirelay.protocols.openai_chat import PROTOCOL
from omnirelay.providers.openai import OpenAIProvider

BODY: dict[str, Any] = {
    "model": "gpt-4.1",
    "stream": True,
    "stream_options": {"include_usage": True},
    "messages": [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Z"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "d", "parameters": {"type": "object"}, "strict": True},
        }
    ],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}},
    "reasoning_effort": "low",
    "max_completion_tokens": 100,
    "stop": "END",
    "temperature": 0.5,
    "seed": 3,
    "user": "u1",
    "logprobs": True,
    "omnirelay": {"fallbacks": ["gpt-4.1-mini"]},
}


def _parse(body: dict[str, Any]) -> ChatRequest:
    return PROTOCOL.parse_request(msgspec.json.encode(body), {})


def test_a_representative_request_maps_to_the_canonical_fields() -> None:
    req = _parse(BODY)
    assert req.messages == [
        Message(role="system", content=[TextPart(text="Be brief.")]),
        Message(
            role="user",
            content=[
                TextPart(text="Weather?"),
                ImagePart(data="iVBORw0KGgo=", media_type="image/png", detail="low"),
            ],
        ),
        Message(role="assistant", tool_calls=[ToolCall(id="call_1", name="get_weather", arguments='{"city":"Z"}')]),
        Message(role="tool", content=[TextPart(text="sunny")], tool_call_id="call_1"),
    ]
    assert req.tools == [Tool(name="get_weather", description="d", parameters={"type": "object"}, strict=True)]
    assert req.tool_choice == ToolChoice(mode="tool", name="get_weather")
    assert req.response_format == ResponseFormat(type="json_schema", name="w", schema={"type": "object"})
    assert req.reasoning == Reasoning(effort="low")
    assert (req.model, req.stream, req.include_usage, req.max_tokens, req.stop) == ("gpt-4.1", True, True, 100, ["END"])
    assert (req.temperature, req.seed, req.user) == (0.5, 3, "u1")
    # Unmodelled fields pass through to OpenAI-family upstreams only; omnirelay's own options are apart.
    assert (req.extra, req.inbound_protocol) == ({"logprobs": True}, "openai")
    assert req.options == {"fallbacks": ["gpt-4.1-mini"]}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
    ],
)
def test_a_bad_field_is_a_400_naming_it(body: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as exc:
        _parse(body)
    assert (exc.value.kind, exc.value.status, exc.value.param) == ("invalid_request", 400, param)


def test_a_body_that_is_not_json_is_a_400() -> None:
    with pytest.raises(GatewayError) as exc:
        PROTOCOL.parse_request(b"{not json", {})
    assert exc.value.status == 400


def _upstream_parser() -> OpenAIProvider:
    return OpenAIProvider(UpstreamConfig(name="o", provider="openai"))


def test_the_rendered_reply_reads_back_as_the_same_response() -> None:
    message = Message(
        role="assistant",
        content=[TextPart(text="Grüß dich")],
        tool_calls=[ToolCall(id="call_1", name="f", arguments='{"a":1}')],
        reasoning=[ReasoningPart(text="thought")],
    )
    usage = Usage(input_tokens=3, output_tokens=4, cached_tokens=1, reasoning_tokens=2)
    resp = ChatResponse(
        id="chatcmpl-1",
        model="gpt-4.1",
        created=5,
        choices=[Choice(index=0, message=message, finish_reason="tool_calls")],
        usage=usage,
        cost=0.25,
    )
    req = _parse(BODY)
    body = PROTOCOL.render_response(resp, req)
    assert msgspec.json.decode(body)["usage"]["cost"] == 0.25  # the gateway's cost, where the format has room
    back = _upstream_parser().parse_response(body, req)
    assert (back.id, back.model, back.created, back.usage) == ("chatcmpl-1", "gpt-4.1", 5, usage)
    assert back.choices == resp.choices


EVENTS: list[StreamEvent] = [
    StreamStart(id="chatcmpl-1", model="gpt-4.1", created=5),
    ReasoningDelta(text="hm"),
    TextDelta(text="Grüß 👋"),
    ToolCallStart(index=0, id="call_9", name="f"),
    ToolCallArgs(index=0, arguments='{"a"'),
    ToolCallArgs(index=0, arguments=":1}"),
    ChoiceEnd(finish_reason="tool_calls"),
    UsageReport(usage=Usage(input_tokens=3, output_tokens=4)),
]


def test_the_rendered_stream_reads_back_as_the_same_events() -> None:
    req = _parse(BODY)
    encoder = PROTOCOL.stream_encoder(req)
    body = b"".join(encoder.encode(e) for e in EVENTS) + encoder.finish(0.5)
    assert body.endswith(b"data: [DONE]\n\n")
    parser = _upstream_parser().stream_parser(req)
    assert parser.feed(body) + parser.close() == EVENTS


def test_a_stream_error_is_one_error_frame_then_done() -> None:
    encoder = PROTOCOL.stream_encoder(_parse(BODY))
    encoder.encode(EVENTS[0])
    frames = encoder.error(GatewayError("upstream", "upstream failed")).split(b"\n\n")
    assert frames[-2:] == [b"data: [DONE]", b""]
    error = msgspec.json.decode(frames[0].removeprefix(b"data: "))["error"]
    assert "upstream failed" in error["message"]
