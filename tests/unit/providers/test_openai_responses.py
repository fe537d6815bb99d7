"""The OpenAI Responses provider: its stream parser fed the SSE bytes of the Responses API (the events of
tests/mocks/openai_responses_mock.py, after the API reference) cut at every byte offset, the response object,
the request it builds, and its error mapping."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from omnirelay.config import UpstreamConfig
from omnirelay.core.errors import GatewayError
from omnirelay.core.events import (
    ChoiceEnd,
    ReasoningDelta,
    StreamFailure,
    StreamStart,
    TextDelta,
    ToolCallArgs,
    ToolCallStart,
    UsageReport,
)
from omnirelay.core.types import ChatRequest, Message, Reasoning, ReasoningPart, TextPart, ToolCall, Usage
from omnirelay.providers.openai_responses import OpenAIResponsesProvider, ResponsesStreamParser
from tests.mocks.openai_responses_mock import ResponseRender
from tests.mocks.script import ScriptedReply, ScriptedToolCall, ScriptedUsage
from tests.unit.providers.streams import assert_split_invariant, parse

ASKS_SUMMARY: dict[str, Any] = {
    "model": "o3",
    "reasoning": {"summary": "auto"},
    "include": ["reasoning.encrypted_content"],
}
CALL = ScriptedToolCall(id="call_9", name="get_weather", arguments='{"city": "Zürich"}')
USAGE = ScriptedUsage(input=50, output=20, cached=10, reasoning=5)


def provider(**options: Any) -> OpenAIResponsesProvider:
    up = UpstreamConfig(name="r", provider="openai_responses", base_url="http://up/v1", api_key="sk-x", options=options)
    return OpenAIResponsesProvider(up)


def stream_of(reply: ScriptedReply, body: dict[str, Any] = ASKS_SUMMARY) -> bytes:
    return b"".join(ResponseRender(reply, body).frames())


def test_reasoning_text_and_tool_call_split_at_every_offset() -> None:
    reply = ScriptedReply(
        text="Voilà: ☀", reasoning="Think…", reasoning_signature="enc-1", tool_calls=[CALL], usage=USAGE
    )
    events = assert_split_invariant(lambda: ResponsesStreamParser("o3"), stream_of(reply))
    assert isinstance(events[0], StreamStart) and events[0].id.startswith("resp_") and events[0].model == "o3"
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == "Think…"
    assert [e.signature for e in events if isinstance(e, ReasoningDelta) and e.signature] == ["enc-1"]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Voilà: ☀"
    assert [(e.index, e.id, e.name) for e in events if isinstance(e, ToolCallStart)] == [(0, "call_9", "get_weather")]
    assert "".join(e.arguments for e in events if isinstance(e, ToolCallArgs)) == '{"city": "Zürich"}'
    assert events[-2:] == [
        ChoiceEnd(finish_reason="tool_calls"),
        UsageReport(usage=Usage(input_tokens=50, output_tokens=20, cached_tokens=10, reasoning_tokens=5)),
    ]


def test_incomplete_stream_ends_with_length() -> None:
    events = assert_split_invariant(
        lambda: ResponsesStreamParser("o3"), stream_of(ScriptedReply(text="Once", finish="length"))
    )
    assert ChoiceEnd(finish_reason="length") in events


def failure_split_invariant(body: bytes) -> list[object]:
    """assert_split_invariant for a stream that fails: a StreamFailure compares by its error's kind and message
    (exceptions compare by identity)."""

    def comparable(pieces: list[bytes]) -> list[object]:
        return [
            ("failure", e.error.kind, e.error.message) if isinstance(e, StreamFailure) else e
            for e in parse(ResponsesStreamParser("o3"), pieces)
        ]

    whole = comparable([body])
    for offset in range(len(body) + 1):
        assert comparable([body[:offset], body[offset:]]) == whole, f"cut at byte {offset}"
    return whole


def test_response_failed_is_a_stream_failure_after_the_content() -> None:
    body = stream_of(ScriptedReply(text="Partial", midstream_failure=True, error_message="overloaded"))
    events = failure_split_invariant(body)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Partial"
    assert events[-1] == ("failure", "upstream", "upstream response failed: overloaded (server_error)")


def test_error_event_is_a_stream_failure() -> None:
    frame = b'event: error\ndata: {"type":"error","code":"ERR_X","message":"boom","param":null,"sequence_number":3}\n\n'
    body = stream_of(ScriptedReply(text="ab")).split(b"event: response.completed")[0] + frame
    events = failure_split_invariant(body)
    assert events[-1] == ("failure", "upstream", "upstream error mid-stream: boom (ERR_X)")


def test_stream_cut_before_completed_is_an_upstream_error() -> None:
    body = stream_of(ScriptedReply(text="abc")).split(b"event: response.completed")[0]
    parser = ResponsesStreamParser("o3")
    parser.feed(body)
    with pytest.raises(GatewayError) as info:
        parser.close()
    assert info.value.kind == "upstream" and "response.completed" in info.value.message


def test_arguments_given_only_in_the_done_item_are_kept() -> None:
    def ev(kind: str, **fields: Any) -> bytes:
        return b"data: " + msgspec.json.encode({"type": kind, "sequence_number": 0, **fields}) + b"\n\n"

    item = {"id": "fc_1", "type": "function_call", "call_id": "c1", "name": "f", "arguments": ""}
    body = b"".join(
        [
            ev("response.created", response={"id": "resp_1", "model": "o3", "status": "in_progress", "output": []}),
            ev("response.output_item.added", output_index=0, item=item),
            ev("response.output_item.done", output_index=0, item={**item, "arguments": '{"a":1}'}),
            ev("response.completed", response={"id": "resp_1", "status": "completed", "output": []}),
        ]
    )
    events = parse(ResponsesStreamParser("o3"), [body])
    assert [e for e in events if isinstance(e, ToolCallArgs)] == [ToolCallArgs(index=0, arguments='{"a":1}')]


def test_arguments_for_an_unopened_call_are_refused() -> None:
    frame = b'data: {"type":"response.function_call_arguments.delta","item_id":"fc_x","output_index":0,"delta":"{"}\n\n'
    with pytest.raises(GatewayError):
        ResponsesStreamParser("o3").feed(frame)


def test_response_object_parsed_with_reasoning_signature_usage_and_calls() -> None:
    reply = ScriptedReply(text="", reasoning="Plan.", reasoning_signature="enc-2", tool_calls=[CALL], usage=USAGE)
    body = msgspec.json.encode(ResponseRender(reply, ASKS_SUMMARY).object())
    resp = provider().parse_response(body, ChatRequest(model="o3", messages=[]))
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.reasoning == [ReasoningPart(text="Plan.", signature="enc-2")]
    assert choice.message.tool_calls == [ToolCall(id="call_9", name="get_weather", arguments='{"city": "Zürich"}')]
    assert resp.usage == Usage(input_tokens=50, output_tokens=20, cached_tokens=10, reasoning_tokens=5)


def test_failed_response_object_is_an_upstream_error() -> None:
    render = ResponseRender(ScriptedReply(error_message="quota gone"), {"model": "o3"})
    body = msgspec.json.encode(render.response("failed", [], None))
    with pytest.raises(GatewayError) as info:
        provider().parse_response(body, ChatRequest(model="o3", messages=[]))
    assert "quota gone" in info.value.message


def test_request_items_reasoning_and_store() -> None:
    req = ChatRequest(
        model="o3",
        messages=[
            Message(role="user", content=[TextPart(text="hi")]),
            Message(
                role="assistant",
                reasoning=[ReasoningPart(text="s", signature="enc"), ReasoningPart(text="no signature")],
                tool_calls=[ToolCall(id="c1", name="f", arguments="{}")],
            ),
            Message(role="tool", tool_call_id="c1", content=[TextPart(text="bad")], is_error=True),
        ],
        reasoning=Reasoning(effort="medium"),
        max_tokens=99,
    )
    body = msgspec.json.decode(provider().build_request(req, "o3").body)
    assert body["input"][1:] == [
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "s"}], "encrypted_content": "enc"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "Error: bad"},
    ]
    assert body["reasoning"] == {"effort": "medium", "summary": "auto"}
    assert body["store"] is False and body["max_output_tokens"] == 99
    assert body["include"] == ["reasoning.encrypted_content"]


def test_non_reasoning_model_gets_no_summary_request_and_options_apply() -> None:
    req = ChatRequest(model="gpt-4.1", messages=[Message(role="user", content=[TextPart(text="hi")])])
    for model in ("gpt-4.1", "gpt-5-chat-latest"):
        body = msgspec.json.decode(provider().build_request(req, model).body)
        assert "reasoning" not in body and "include" not in body
    body = msgspec.json.decode(provider(reasoning_summary="detailed").build_request(req, "o4-mini").body)
    assert body["reasoning"] == {"summary": "detailed"}
    with pytest.raises(ValueError):
        provider(reasoning_summary="loud")


def test_same_family_extra_passes_through_and_include_merges() -> None:
    req = ChatRequest(
        model="o3",
        messages=[Message(role="user", content=[TextPart(text="hi")])],
        extra={"service_tier": "flex", "include": ["message.output_text.logprobs"], "store": True},
        inbound_protocol="openai_responses",
    )
    body = msgspec.json.decode(provider().build_request(req, "o3").body)
    assert body["service_tier"] == "flex" and body["store"] is False
    assert body["include"] == ["reasoning.encrypted_content", "message.output_text.logprobs"]
    other = msgspec.structs.replace(req, inbound_protocol="openai")
    assert "service_tier" not in msgspec.json.decode(provider().build_request(other, "o3").body)


def test_error_bodies() -> None:
    err = provider().parse_error(
        400, {}, b'{"error":{"message":"Bad top_p","type":"invalid_request_error","param":"top_p","code":null}}'
    )
    assert err.kind == "invalid_request" and err.message == "Bad top_p" and err.param == "top_p"
    quota = provider().parse_error(429, {"retry-after": "3"}, b'{"error":{"message":"no","code":"insufficient_quota"}}')
    assert quota.kind == "quota" and quota.retryable
    html = provider().parse_error(502, {}, b"<html>bad gateway</html>")
    assert "non-JSON" in html.message
