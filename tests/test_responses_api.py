"""``POST /v1/responses`` on every routed model through the official openai SDK (``responses.create``,
``responses.stream`` and its final response) and over raw HTTP for the exact event stream: input forms, tools
round trips, reasoning summaries from each upstream family, structured output, cut and failed answers, and keys,
limits, costs and usage records as on chat completions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pydantic
import pytest

from tests.gateway import Gateway, mock_config
from tests.mocks.script import ScriptedReply, ScriptedToolCall, ScriptedUsage
from tests.mocks.server import MockUpstreams
from tests.state_helpers import Admin, backend, start_gateway, state_config

GPT = "gpt-4.1"  # 2.00 in / 8.00 out per million
CLAUDE = "claude-sonnet-4-20250514"
GEMINI = "gemini-2.5-pro"
FAMILY_MODELS = [("openai", GPT), ("anthropic", CLAUDE), ("gemini", GEMINI)]
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def strict_gateway(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One upstream call per request and no breaker: an upstream failure reaches the caller as it is."""
    cfg = mock_config(mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini"))
    cfg["routing"] = {"retry": {"max_attempts": 1}, "breaker": {"enabled": False, "max_rest": 0}}
    gw = Gateway(cfg, tmp_path_factory.mktemp("strict-responses-gateway")).start()
    yield gw
    gw.stop()


def post(gateway: Gateway, body: dict[str, Any], secret: str = "sk-test") -> httpx.Response:
    return httpx.post(
        gateway.url + "/v1/responses", json=body, headers={"authorization": f"Bearer {secret}"}, timeout=30
    )


def sse_events(r: httpx.Response) -> list[dict[str, Any]]:
    """The stream's events; each frame's ``event:`` name must equal its data's ``type``."""
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    assert "[DONE]" not in r.text
    events: list[dict[str, Any]] = []
    for frame in r.text.split("\n\n"):
        if not frame.strip():
            continue
        lines = frame.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), frame
        data = json.loads(lines[1].removeprefix("data: "))
        assert data["type"] == lines[0].removeprefix("event: ")
        events.append(data)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def text_events(deltas: int) -> list[str]:
    return [
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]


def reasoning_events(deltas: int) -> list[str]:
    return [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        *["response.reasoning_summary_text.delta"] * deltas,
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
    ]


START = ["response.created", "response.in_progress"]


# -- non-streaming ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("family", "model"), FAMILY_MODELS)
def test_string_input_with_instructions_on_each_family(
    oai: openai.OpenAI, mocks: MockUpstreams, family: str, model: str
) -> None:
    mocks.push(family, ScriptedReply(text="Paris.", usage=ScriptedUsage(input=30, output=4, cached=10)))
    raw = oai.responses.with_raw_response.create(
        model=model, input="Capital of France?", instructions="Answer in one word.", max_output_tokens=50
    )
    resp = raw.parse()
    assert resp.object == "response" and resp.id.startswith("resp_") and resp.status == "completed"
    assert resp.output_text == "Paris."
    assert len(resp.output) == 1 and resp.output[0].type == "message" and resp.output[0].id.startswith("msg_")
    assert resp.instructions == "Answer in one word." and resp.max_output_tokens == 50
    usage = resp.usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (30, 4, 34)
    if family != "gemini":  # the Gemini mock reports no cached tokens
        assert usage.input_tokens_details.cached_tokens == 10
    cost = float(raw.headers["x-omnirelay-cost"])
    assert (resp.model_extra or {})["cost"] == pytest.approx(cost)
    body = mocks.last_request(family).body
    text = json.dumps(body)
    assert "Answer in one word." in text and "Capital of France?" in text
    if family == "openai":
        assert body["messages"][0] == {"role": "system", "content": "Answer in one word."}
        assert body["max_completion_tokens"] == 50 or body.get("max_tokens") == 50
    elif family == "anthropic":
        assert body["max_tokens"] == 50
    else:
        assert body["generationConfig"]["maxOutputTokens"] == 50


def test_items_input_with_roles_images_and_history(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    items: Any = [
        {"role": "developer", "content": "Be terse."},
        {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello."}]},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is this?"},
                {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "low"},
            ],
        },
    ]
    resp = oai.responses.create(model=GPT, input=items)
    assert resp.output_text == "echo: What is this?"
    messages = mocks.last_request("openai").body["messages"]
    assert [m["role"] for m in messages] == ["developer", "user", "assistant", "user"]
    assert messages[2]["content"] == "Hello."
    assert messages[3]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "https://example.com/cat.png", "detail": "low"},
    }


def test_text_file_input_is_inlined(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    data = "data:text/plain;base64,aGVsbG8gZmlsZQ=="  # "hello file"
    oai.responses.create(
        model=CLAUDE,
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_file", "filename": "notes.txt", "file_data": data},
                    {"type": "input_text", "text": "Summarise."},
                ],
            }
        ],
    )
    assert "File notes.txt:\\nhello file" in json.dumps(mocks.last_request("anthropic").body)


@pytest.mark.parametrize(("family", "model"), FAMILY_MODELS)
def test_function_tool_round_trip(oai: openai.OpenAI, mocks: MockUpstreams, family: str, model: str) -> None:
    call = ScriptedToolCall(name="get_weather", arguments='{"city": "Paris"}', id="call_w1")
    mocks.push(family, ScriptedReply(text="", tool_calls=[call], finish="tool_calls"))
    first = oai.responses.create(model=model, input="Weather in Paris?", tools=[WEATHER], tool_choice="auto")
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and json.loads(calls[0].arguments) == {"city": "Paris"}
    assert calls[0].id is not None and calls[0].id.startswith("fc_") and calls[0].status == "completed"
    assert first.status == "completed" and first.tools[0].type == "function"
    mocks.push(family, ScriptedReply(text="It is sunny in Paris."))
    history: Any = [
        {"role": "user", "content": "Weather in Paris?"},
        *[o.model_dump(exclude_none=True) for o in first.output],
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": '{"sky": "sunny"}'},
    ]
    second = oai.responses.create(model=model, input=history, tools=[WEATHER])
    assert second.output_text == "It is sunny in Paris."
    body = mocks.last_request(family).body
    if family == "openai":
        assert body["messages"][1]["tool_calls"][0]["function"]["name"] == "get_weather"
        assert body["messages"][2] == {"role": "tool", "tool_call_id": calls[0].call_id, "content": '{"sky": "sunny"}'}
        assert body["tools"][0]["function"]["name"] == "get_weather"
    elif family == "anthropic":
        assert body["messages"][1]["content"][0]["type"] == "tool_use"
        assert body["messages"][2]["content"][0]["type"] == "tool_result"
        assert body["messages"][2]["content"][0]["tool_use_id"] == calls[0].call_id
    else:
        parts = body["contents"][2]["parts"]
        assert parts[0]["functionResponse"]["name"] == "get_weather"


def test_json_schema_text_format(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
        "additionalProperties": False,
    }
    mocks.push("openai", ScriptedReply(text='{"n": 42}'))
    resp = oai.responses.create(
        model=GPT,
        input="Give n.",
        text={"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}},
    )
    assert json.loads(resp.output_text) == {"n": 42}
    assert resp.text is not None and resp.text.format is not None and resp.text.format.type == "json_schema"
    rf = mocks.last_request("openai").body["response_format"]
    assert rf == {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    oai.responses.create(model=GPT, input="JSON please", text={"format": {"type": "json_object"}})
    assert mocks.last_request("openai").body["response_format"] == {"type": "json_object"}
    mocks.push("anthropic", ScriptedReply(text='{"n": 7}'))
    parsed = oai.responses.parse(model=CLAUDE, input="Give n.", text_format=Answer)
    assert parsed.output_parsed == Answer(n=7)


class Answer(pydantic.BaseModel):
    n: int


@pytest.mark.parametrize(("family", "model"), FAMILY_MODELS)
def test_max_output_tokens_cut_is_incomplete(oai: openai.OpenAI, mocks: MockUpstreams, family: str, model: str) -> None:
    mocks.push(family, ScriptedReply(text="The answer is", finish="length"))
    resp = oai.responses.create(model=model, input="long story", max_output_tokens=3)
    assert resp.status == "incomplete"
    assert resp.incomplete_details is not None and resp.incomplete_details.reason == "max_output_tokens"
    message = resp.output[0]
    assert message.type == "message" and message.status == "incomplete"
    assert resp.output_text == "The answer is"


@pytest.mark.parametrize(
    ("family", "model", "reasoning"),
    [("openai", "o3", "step by step"), ("anthropic", CLAUDE, "thinking hard"), ("gemini", GEMINI, "a thought")],
)
def test_reasoning_summary_from_each_family(
    oai: openai.OpenAI, mocks: MockUpstreams, family: str, model: str, reasoning: str
) -> None:
    mocks.push(family, ScriptedReply(text="42", reasoning=reasoning, usage=ScriptedUsage(output=20, reasoning=12)))
    resp = oai.responses.create(model=model, input="6*7?", reasoning={"effort": "high", "summary": "auto"})
    assert [o.type for o in resp.output] == ["reasoning", "message"]
    item = resp.output[0]
    assert item.type == "reasoning" and item.id.startswith("rs_")
    assert [s.text for s in item.summary] == [reasoning]
    assert resp.output_text == "42"
    assert resp.reasoning is not None and resp.reasoning.effort == "high" and resp.reasoning.summary == "auto"
    assert resp.usage is not None and resp.usage.output_tokens_details.reasoning_tokens == 12
    body = mocks.last_request(family).body
    if family == "openai":
        assert body["reasoning_effort"] == "high"
    elif family == "anthropic":
        assert body["thinking"]["type"] == "enabled" and body["thinking"]["budget_tokens"] > 0
        assert item.encrypted_content == "sig-mock"  # the thinking signature, for the next turn
    else:
        assert body["generationConfig"]["thinkingConfig"]["includeThoughts"] is True


def test_reasoning_item_goes_back_to_anthropic_with_its_signature(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    oai.responses.create(
        model=CLAUDE,
        input=[
            {"role": "user", "content": "q"},
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "t"}],
                "encrypted_content": "sig-abc",
            },
            {"type": "function_call", "call_id": "toolu_1", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
            {"type": "function_call_output", "call_id": "toolu_1", "output": "rain"},
        ],
        tools=[WEATHER],
        reasoning={"effort": "low"},
    )
    assistant = mocks.last_request("anthropic").body["messages"][1]
    assert assistant["content"][0] == {"type": "thinking", "thinking": "t", "signature": "sig-abc"}
    assert assistant["content"][1]["type"] == "tool_use" and assistant["content"][1]["id"] == "toolu_1"


def test_compound_think_model(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="Six sevens are 42."), ScriptedReply(text="42"))
    resp = oai.responses.create(model="think:gpt-4.1", input="6*7?")
    assert resp.model == "think:gpt-4.1" and resp.output_text == "42"
    assert [o.type for o in resp.output] == ["reasoning", "message"]
    assert resp.output[0].type == "reasoning" and resp.output[0].summary[0].text == "Six sevens are 42."
    assert resp.usage is not None and resp.usage.input_tokens == 24  # two calls of 12


# -- streaming ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("family", "model"), FAMILY_MODELS)
def test_stream_event_sequence_exactly(gateway: Gateway, mocks: MockUpstreams, family: str, model: str) -> None:
    mocks.push(family, ScriptedReply(text="Hello there, world", chunks=3))
    events = sse_events(post(gateway, {"model": model, "input": "hi", "stream": True}))
    deltas = sum(1 for e in events if e["type"] == "response.output_text.delta")
    assert deltas >= 1
    assert types(events) == [*START, *text_events(deltas), "response.completed"]
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "Hello there, world"
    created, completed = events[0]["response"], events[-1]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["id"].startswith("resp_")
    assert completed["id"] == created["id"] and completed["status"] == "completed"
    item_id = events[2]["item"]["id"]
    assert all(e["item_id"] == item_id and e["output_index"] == 0 for e in events[3:-2])
    assert completed["output"][0]["id"] == item_id
    assert completed["output"][0]["content"][0]["text"] == "Hello there, world"
    assert completed["usage"]["input_tokens"] == 12 and completed["usage"]["output_tokens"] == 7
    assert completed["cost"] is not None and completed["usage"]["cost"] == completed["cost"]


def test_sdk_stream_and_final_response(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("anthropic", ScriptedReply(text="Bonjour!", reasoning="French greeting", chunks=2))
    with oai.responses.stream(
        model=CLAUDE, input="Say hi in French", reasoning={"effort": "low", "summary": "auto"}
    ) as s:
        seen = [event.type for event in s]
        final = s.get_final_response()
    assert seen == [*START, *reasoning_events(2), *text_events(2), "response.completed"]
    assert final.status == "completed" and final.output_text == "Bonjour!"
    assert final.output[0].type == "reasoning" and final.output[0].summary[0].text == "French greeting"
    assert final.usage is not None and final.usage.total_tokens == 19


def test_stream_function_call_arguments(gateway: Gateway, mocks: MockUpstreams) -> None:
    call = ScriptedToolCall(name="get_weather", arguments='{"city": "Rome"}', id="call_r")
    mocks.push("openai", ScriptedReply(text="", tool_calls=[call], finish="tool_calls", chunks=3))
    events = sse_events(post(gateway, {"model": GPT, "input": "Rome?", "tools": [WEATHER], "stream": True}))
    deltas = [e for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert len(deltas) >= 2  # streamed in pieces, not only in .done
    assert types(events) == [
        *START,
        "response.output_item.added",
        *["response.function_call_arguments.delta"] * len(deltas),
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added, done = events[2]["item"], events[-2]["item"]
    assert added["type"] == "function_call" and added["arguments"] == "" and added["status"] == "in_progress"
    assert (done["call_id"], done["name"], done["status"]) == ("call_r", "get_weather", "completed")
    assert done["arguments"] == '{"city": "Rome"}' == "".join(d["delta"] for d in deltas)
    assert events[-3]["arguments"] == '{"city": "Rome"}'
    assert events[-1]["response"]["output"] == [done]


def test_sdk_stream_tool_call_final_response(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    call = ScriptedToolCall(name="get_weather", arguments='{"city": "Oslo"}', id="toolu_9")
    mocks.push("anthropic", ScriptedReply(text="Let me check.", tool_calls=[call], finish="tool_calls"))
    with oai.responses.stream(model=CLAUDE, input="Oslo?", tools=[WEATHER]) as s:
        final = s.get_final_response()
    assert [o.type for o in final.output] == ["message", "function_call"]
    fc = final.output[1]
    assert fc.type == "function_call" and fc.call_id == "toolu_9" and json.loads(fc.arguments) == {"city": "Oslo"}


def test_stream_cut_by_max_output_tokens_is_incomplete(gateway: Gateway, mocks: MockUpstreams) -> None:
    mocks.push("gemini", ScriptedReply(text="Once upon a", finish="length"))
    events = sse_events(post(gateway, {"model": GEMINI, "input": "story", "stream": True, "max_output_tokens": 3}))
    assert events[-1]["type"] == "response.incomplete"
    final = events[-1]["response"]
    assert final["status"] == "incomplete" and final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][0]["status"] == "incomplete"


def test_upstream_failure_mid_stream_ends_with_response_failed(strict_gateway: Gateway, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="a long answer that breaks", chunks=5, truncate_after_chunks=3))
    events = sse_events(post(strict_gateway, {"model": GPT, "input": "hi", "stream": True}))
    assert types(events)[:4] == [*START, "response.output_item.added", "response.content_part.added"]
    assert events[-1]["type"] == "response.failed"
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error" and failed["error"]["message"]
    assert failed["id"] == events[0]["response"]["id"]


def test_upstream_500_before_the_stream_is_a_502(strict_gateway: Gateway, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(error_status=500))
    r = post(strict_gateway, {"model": GPT, "input": "hi", "stream": True})
    assert r.status_code == 502 and r.json()["error"]["type"] == "upstream_error"


def test_retry_on_another_attempt_as_on_chat(gateway: Gateway, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(error_status=500), ScriptedReply(text="second try"))
    r = post(gateway, {"model": GPT, "input": "hi"})
    assert r.status_code == 200 and r.json()["output"][0]["content"][0]["text"] == "second try"
    assert r.headers["x-omnirelay-attempts"] == "2"


# -- errors, unknown fields, previous responses --------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"input": "x"}, "model", "model"),
        ({"model": GPT, "input": []}, "input", "empty"),
        ({"model": GPT, "input": "x", "tools": [{"type": "file_search"}]}, "tools[0].type", "file_search"),
        ({"model": GPT, "input": [{"type": "item_reference", "id": "x"}]}, "input[0].type", "item_reference"),
        ({"model": GPT, "input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input[0].content[0]", ""),
    ],
)
def test_bad_requests_are_openai_400s(gateway: Gateway, body: dict[str, Any], param: str, words: str) -> None:
    r = post(gateway, body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"].startswith(param)
    assert words in err["message"]


def test_unknown_fields_are_ignored_not_forwarded_to_chat(gateway: Gateway, mocks: MockUpstreams) -> None:
    r = post(
        gateway,
        {
            "model": GPT,
            "input": "hi",
            "client_metadata": {"x": 1},
            "prompt_cache_key": "k1",
            "service_tier": "auto",
            "truncation": "auto",
            "include": ["reasoning.encrypted_content"],
            "metadata": {"a": "b"},
            "store": False,
            "parallel_tool_calls": False,
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["metadata"] == {"a": "b"} and r.json()["store"] is False
    sent = mocks.last_request("openai").body
    assert not {"client_metadata", "prompt_cache_key", "service_tier", "truncation", "include"} & set(sent)


def test_web_search_tool_is_the_gateways_search(gateway: Gateway, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="no search needed"))
    r = post(gateway, {"model": GPT, "input": "hi", "tools": [{"type": "web_search"}]})
    assert r.status_code == 200, r.text
    tools = mocks.last_request("openai").body["tools"]
    assert tools[0]["function"]["name"] == "web_search" and tools[0]["function"]["parameters"]["required"] == ["query"]


def test_namespace_tool_call_round_trip(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    tools: Any = [{"type": "namespace", "name": "shell", "description": "Shell", "tools": [WEATHER]}]
    call = ScriptedToolCall(name="shell__get_weather", arguments='{"city": "Nice"}', id="call_ns")
    mocks.push("openai", ScriptedReply(text="", tool_calls=[call], finish="tool_calls"))
    with oai.responses.stream(model=GPT, input="Nice?", tools=tools) as s:
        final = s.get_final_response()
    fc = final.output[0]
    assert fc.type == "function_call" and (fc.namespace, fc.name) == ("shell", "get_weather")
    assert mocks.last_request("openai").body["tools"][0]["function"]["name"] == "shell__get_weather"


def test_unknown_previous_response_is_404(gateway: Gateway, mocks: MockUpstreams) -> None:
    r = post(gateway, {"model": GPT, "input": "and then?", "previous_response_id": "resp_missing"})
    assert r.status_code == 404
    assert r.json()["error"] == {
        "message": "Previous response with id 'resp_missing' not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }
    assert mocks.requests("openai") == []


# -- keys, limits, usage records --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("responses-keys")
    with backend("sqlite", workdir) as b:
        gw = start_gateway(state_config((mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini"))), workdir, b)
        try:
            yield gw
        finally:
            gw.stop()


def test_virtual_key_limits_costs_and_usage_records(keyed: Gateway, mocks: MockUpstreams) -> None:
    admin = Admin(keyed.url)
    kid, secret = admin.create_key(rpm=2, tpm=100_000, credit=1.0)
    client = openai.OpenAI(base_url=keyed.url + "/v1", api_key=secret, max_retries=0, timeout=30)
    raw = client.responses.with_raw_response.create(model=GPT, input="hi")
    assert raw.headers["x-ratelimit-limit-requests"] == "2" and raw.headers["x-ratelimit-remaining-requests"] == "1"
    with client.responses.stream(model=GPT, input="hi again") as s:
        streamed = s.get_final_response()
    with pytest.raises(openai.RateLimitError) as info:
        client.responses.create(model=GPT, input="one too many")
    assert (
        info.value.code == "rate_limit_exceeded" and info.value.response.json()["error"]["type"] == "rate_limit_error"
    )
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=keyed.url + "/v1", api_key="sk-wrong", max_retries=0).responses.create(
            model=GPT, input="x"
        )
    per_call = (12 * 2.0 + 7 * 8.0) / 1e6
    records = admin.wait_usage(2, key=kid)
    assert len(records) == 2
    assert {r["protocol"] for r in records} == {"openai_responses"} and {r["stream"] for r in records} == {True, False}
    assert all(r["cost"] == pytest.approx(per_call, abs=1e-12) and r["input_tokens"] == 12 for r in records)
    assert raw.parse().usage is not None and float(raw.headers["x-omnirelay-cost"]) == pytest.approx(per_call)
    assert (streamed.model_extra or {})["cost"] == pytest.approx(per_call)
    assert admin.key(kid)["spent"] == pytest.approx(per_call * 2, abs=1e-12)
