"""The Responses API inbound protocol's pure parts: request bodies -> the canonical request (items folded into
messages, tools, formats, passthrough fields), bad bodies -> a 400 naming the field, the stream encoder's exact
event sequence, and the stored-response hooks against an in-memory store."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import pytest

from omnirelay.core.errors import GatewayError
from omnirelay.core.events import (
    ChoiceEnd,
    CitationDelta,
    ReasoningDelta,
    StreamStart,
    TextDelta,
    ToolCallArgs,
    ToolCallStart,
    UsageReport,
)
from omnirelay.core.records import ResponseStore, StoredResponse
from omnirelay.core.types import ChatResponse, Choice, Citation, Message, ReasoningPart, TextPart, ToolCall, Usage
from omnirelay.protocols.openai_responses import PROTOCOL
from omnirelay.protocols.openai_responses_store import ResponsesHooks

M = "gpt-4.1"


def parse(body: dict[str, Any]) -> Any:
    return PROTOCOL.parse_request(msgspec.json.encode(body), {})


def frames(data: bytes) -> list[dict[str, Any]]:
    out = []
    for frame in data.decode().split("\n\n"):
        if frame:
            event, payload = frame.split("\n")
            decoded = json.loads(payload.removeprefix("data: "))
            assert event == "event: " + decoded["type"]
            out.append(decoded)
    return out


# -- requests -----------------------------------------------------------------------------------------------


def test_string_input_instructions_and_settings() -> None:
    req = parse(
        {
            "model": M,
            "input": "hi",
            "instructions": "be brief",
            "max_output_tokens": 64,
            "temperature": 0.3,
            "top_p": 0.9,
            "reasoning": {"effort": "xhigh", "summary": "auto"},
            "parallel_tool_calls": False,
            "user": "u1",
            "stream": True,
        }
    )
    assert [(m.role, m.text()) for m in req.messages] == [("system", "be brief"), ("user", "hi")]
    assert (req.max_tokens, req.temperature, req.top_p, req.user, req.stream) == (64, 0.3, 0.9, "u1", True)
    assert req.reasoning is not None and req.reasoning.effort == "high"
    assert req.parallel_tool_calls is False and req.inbound_protocol == "openai_responses"


def test_items_fold_into_messages() -> None:
    req = parse(
        {
            "model": M,
            "input": [
                {"role": "user", "content": "weather?"},
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "look it up"}]},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
                {"type": "function_call", "call_id": "c1", "name": "get", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "get", "arguments": '{"x":1}'},
                {"type": "function_call_output", "call_id": "c1", "output": "sun"},
                {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "rain"}]},
                {"role": "user", "content": "thanks"},
            ],
        }
    )
    roles = [m.role for m in req.messages]
    assert roles == ["user", "assistant", "tool", "tool", "user"]
    assistant = req.messages[1]
    assert assistant.reasoning == [ReasoningPart(text="look it up")] and assistant.text() == "Checking."
    assert assistant.tool_calls == [
        ToolCall(id="c1", name="get", arguments="{}"),
        ToolCall(id="c2", name="get", arguments='{"x":1}'),
    ]
    assert (req.messages[2].tool_call_id, req.messages[2].name, req.messages[2].text()) == ("c1", "get", "sun")
    assert req.messages[3].text() == "rain"


def test_tools_choice_format_and_passthrough() -> None:
    schema = {"type": "object", "properties": {}}
    req = parse(
        {
            "model": M,
            "input": "x",
            "tools": [{"type": "function", "name": "f", "parameters": schema, "strict": True}, {"type": "web_search"}],
            "tool_choice": {"type": "function", "name": "f"},
            "text": {"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}},
            "prompt_cache_key": "pk",
            "client_metadata": {"a": 1},
            "store": False,
        }
    )
    assert [(t.name, t.parameters, t.strict) for t in req.tools] == [("f", schema, True), ("web_search", {}, None)]
    assert req.tool_choice is not None and (req.tool_choice.mode, req.tool_choice.name) == ("tool", "f")
    rf = req.response_format
    assert rf is not None and (rf.type, rf.name, rf.schema, rf.strict) == ("json_schema", "out", schema, True)
    # text is translated and also kept as the caller wrote it, for an OpenAI Responses upstream.
    assert req.extra == {
        "prompt_cache_key": "pk",
        "client_metadata": {"a": 1},
        "text": {"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}},
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "", "input": "x"}, "model"),
        ({"model": M}, "input"),
        ({"model": M, "input": "x", "tools": [{"type": "code_interpreter"}]}, "tools[0].type"),
        ({"model": M, "input": "x", "tool_choice": "sometimes"}, "tool_choice"),
        ({"model": M, "input": [{"role": "wizard", "content": "x"}]}, "input[0].role"),
        ({"model": M, "input": [{"type": "function_call", "name": "f"}]}, "input[0].call_id"),
        (
            {"model": M, "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0].image_url",
        ),
        (
            {
                "model": M,
                "input": [
                    {
                        "role": "user",
                        "content": [{"type": "input_file", "file_data": "data:application/pdf;base64,AA=="}],
                    }
                ],
            },
            "input[0].content[0].file_data",
        ),
        ({"model": M, "input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}}, "text.format.schema"),
    ],
)
def test_bad_requests_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as info:
        parse(body)
    assert info.value.status == 400 and info.value.param is not None and info.value.param.startswith(param)


# -- responses ----------------------------------------------------------------------------------------------


def test_render_response_items_status_usage_and_cost() -> None:
    req = parse({"model": M, "input": "x", "metadata": {"k": "v"}})
    msg = Message(
        role="assistant",
        content=[TextPart(text="see [1]")],
        reasoning=[ReasoningPart(text="thought", signature="sig")],
        tool_calls=[ToolCall(id="c9", name="f", arguments="{}")],
        citations=[Citation(url="https://a.example", title="A", start_index=4, end_index=7)],
    )
    usage = Usage(input_tokens=10, output_tokens=5, cached_tokens=4, reasoning_tokens=2)
    resp = ChatResponse(
        id="x",
        model=M,
        created=1,
        choices=[Choice(index=0, message=msg, finish_reason="length")],
        usage=usage,
        cost=0.5,
    )
    body = json.loads(PROTOCOL.render_response(resp, req))
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert [o["type"] for o in body["output"]] == ["reasoning", "message", "function_call"]
    assert body["output"][0]["summary"] == [{"type": "summary_text", "text": "thought"}]
    assert body["output"][0]["encrypted_content"] == "sig"
    assert body["output"][1]["content"][0]["annotations"] == [
        {"type": "url_citation", "start_index": 4, "end_index": 7, "url": "https://a.example", "title": "A"}
    ]
    assert body["output"][2]["call_id"] == "c9"
    assert body["usage"] == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 15,
        "cost": 0.5,
    }
    assert body["cost"] == 0.5 and body["metadata"] == {"k": "v"} and body["id"].startswith("resp_")


def test_error_body_is_openai_shaped() -> None:
    body = json.loads(PROTOCOL.render_error(GatewayError("invalid_request", "bad", param="input")))
    assert body == {"error": {"message": "bad", "type": "invalid_request_error", "param": "input", "code": None}}


# -- the stream ---------------------------------------------------------------------------------------------


def test_stream_sequence_reasoning_text_calls_and_citations() -> None:
    req = parse({"model": M, "input": "x", "stream": True})
    enc = PROTOCOL.stream_encoder(req)
    out = enc.encode(StreamStart(id="u1", model=M))
    for event in (
        ReasoningDelta(text="hmm"),
        ReasoningDelta(signature="s1"),
        TextDelta(text="Hi "),
        TextDelta(text="there"),
        CitationDelta(citation=Citation(url="https://b.example", start_index=0, end_index=2)),
        ToolCallStart(index=0, id="c1", name="f"),
        ToolCallStart(index=1, id="c2", name="g"),
        ToolCallArgs(index=0, arguments='{"a"'),
        ToolCallArgs(index=1, arguments="{}"),
        ToolCallArgs(index=0, arguments=":1}"),
        ChoiceEnd(finish_reason="tool_calls"),
        UsageReport(usage=Usage(input_tokens=3, output_tokens=4)),
    ):
        out += enc.encode(event)
    out += enc.finish(0.25)
    events = frames(out)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = events[-1]["response"]
    assert [o["type"] for o in final["output"]] == ["reasoning", "message", "function_call", "function_call"]
    assert final["output"][0]["encrypted_content"] == "s1"
    assert final["output"][1]["content"][0]["annotations"][0]["url"] == "https://b.example"
    assert [o["arguments"] for o in final["output"][2:]] == ['{"a":1}', "{}"]
    assert [e["output_index"] for e in events[17:20]] == [2, 3, 2]
    assert final["usage"]["total_tokens"] == 7 and final["cost"] == 0.25
    assert enc.result() is not None and json.loads(enc.result() or b"") == final


def test_stream_error_before_any_event_still_starts_the_response() -> None:
    enc = PROTOCOL.stream_encoder(parse({"model": M, "input": "x", "stream": True}))
    events = frames(enc.error(GatewayError("upstream", "the upstream closed the stream")))
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "response.failed"]
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"] == {
        "code": "server_error",
        "message": "the upstream closed the stream",
    }
    assert enc.result() is None


# -- stored responses ---------------------------------------------------------------------------------------


class MemoryStore(ResponseStore):
    """The ResponseStore interface in memory (the state backends are tested in tests/test_state_responses.py)."""

    retention_s = 600.0

    def __init__(self) -> None:
        self.rows: dict[str, StoredResponse] = {}

    async def put(self, r: StoredResponse) -> None:
        self.rows[r.id] = r

    async def get(self, response_id: str, key_id: str | None) -> StoredResponse | None:
        row = self.rows.get(response_id)
        return row if row is not None and row.key_id == key_id else None

    async def delete(self, response_id: str, key_id: str | None) -> bool:
        return self.rows.pop(response_id, None) is not None


class Gate:
    def __init__(self) -> None:
        self.responses = MemoryStore()


def run_turn(hooks: ResponsesHooks, gate: object, key: str | None, body: dict[str, Any], answer: str) -> Any:
    req = parse(body)

    async def turn() -> tuple[Any, bytes]:
        pending = await hooks.prepare(req, key, gate)
        resp = ChatResponse(
            id="u",
            model=M,
            created=1,
            choices=[
                Choice(
                    index=0, message=Message(role="assistant", content=[TextPart(text=answer)]), finish_reason="stop"
                )
            ],
            usage=Usage(),
        )
        out = PROTOCOL.render_response(resp, req)
        if pending is not None:
            await hooks.finished(pending, out)
        return req, out

    return asyncio.run(turn())


def test_store_and_continue_a_conversation_per_key() -> None:
    hooks, gate = ResponsesHooks(), Gate()
    _, first = run_turn(hooks, gate, "k1", {"model": M, "input": "my name is Ada", "instructions": "one"}, "Hi Ada")
    first_id = json.loads(first)["id"]
    row = gate.responses.rows[first_id]
    assert row.key_id == "k1" and row.response == first and row.expires_at - row.created_at == pytest.approx(600.0)
    items = json.loads(row.input_items)
    assert items[0]["role"] == "user" and items[0]["id"].startswith("msg_")
    assert [i["type"] for i in json.loads(row.conversation)] == ["message", "message"]
    body = {"model": M, "input": "what is my name?", "instructions": "two", "previous_response_id": first_id}
    req, second = run_turn(hooks, gate, "k1", body, "Ada")
    assert [(m.role, m.text()) for m in req.messages] == [
        ("system", "two"),  # this turn's instructions only
        ("user", "my name is Ada"),
        ("assistant", "Hi Ada"),
        ("user", "what is my name?"),
    ]
    assert json.loads(second)["previous_response_id"] == first_id
    assert len(json.loads(gate.responses.rows[json.loads(second)["id"]].conversation)) == 4
    with pytest.raises(GatewayError) as info:
        run_turn(hooks, gate, "k2", body, "?")  # another key's response is not found
    assert info.value.status == 404 and info.value.param == "previous_response_id"


def test_store_false_and_no_store_keep_nothing() -> None:
    hooks, gate = ResponsesHooks(), Gate()
    run_turn(hooks, gate, None, {"model": M, "input": "x", "store": False}, "y")
    assert gate.responses.rows == {}
    run_turn(hooks, object(), None, {"model": M, "input": "x"}, "y")  # a gate without a store: nothing to do
    with pytest.raises(GatewayError) as info:
        run_turn(hooks, object(), None, {"model": M, "input": "x", "previous_response_id": "resp_1"}, "y")
    assert info.value.status == 404 and info.value.message == "Previous response with id 'resp_1' not found."


def test_namespace_tools_are_flattened_and_split_back() -> None:
    ns = {
        "type": "namespace",
        "name": "crm",
        "description": "CRM",
        "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}],
    }
    req = parse(
        {
            "model": M,
            "tools": [ns],
            "input": [
                {"type": "function_call", "call_id": "c0", "name": "lookup", "namespace": "crm", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c0", "output": "none"},
            ],
        }
    )
    assert [t.name for t in req.tools] == ["crm__lookup"]
    assert req.messages[0].tool_calls[0].name == "crm__lookup" and req.messages[1].name == "crm__lookup"
    msg = Message(role="assistant", tool_calls=[ToolCall(id="c1", name="crm__lookup", arguments="{}")])
    resp = ChatResponse(
        id="x", model=M, created=1, choices=[Choice(index=0, message=msg, finish_reason="tool_calls")], usage=Usage()
    )
    call = json.loads(PROTOCOL.render_response(resp, req))["output"][0]
    assert (call["name"], call["namespace"]) == ("lookup", "crm")
    enc = PROTOCOL.stream_encoder(req)
    out = enc.encode(ToolCallStart(index=0, id="c1", name="crm__lookup")) + enc.finish()
    assert frames(out)[2]["item"]["namespace"] == "crm" and frames(out)[-1]["response"]["output"][0]["name"] == "lookup"
    with pytest.raises(GatewayError) as info:
        parse({"model": M, "input": "x", "tools": [{**ns, "tools": [{"type": "custom", "name": "c"}]}]})
    assert info.value.param == "tools[0].tools[0].type"
