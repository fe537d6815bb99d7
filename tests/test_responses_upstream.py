"""An OpenAI upstream called through the Responses API (``provider: openai_responses``): chat-completions callers
get its reasoning summaries as ``reasoning_content``, Anthropic callers as thinking blocks (their signature is the
upstream's ``encrypted_content`` and goes back with the next turn), tool calls round trip, usage (cached and
reasoning tokens) and cost are exact, and a ``/v1/responses`` caller's unmodelled fields reach the upstream as
sent. Streaming each way, and an upstream failure mid-stream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.gateway import Gateway, mock_config
from tests.mocks.script import ScriptedReply, ScriptedToolCall, ScriptedUsage
from tests.mocks.server import MockUpstreams

MODEL = "o3"  # served by the Responses upstream below; 2.00 in / 0.50 cached / 8.00 out per million
SUMMARY = "The user wants a sum; 2 + 2 is 4."
USAGE = ScriptedUsage(input=1000, output=300, cached=400, reasoning=120)
COST = (600 * 2.0 + 400 * 0.5 + 300 * 8.0) / 1e6
WEATHER_CALL = ScriptedToolCall(id="call_w1", name="get_weather", arguments='{"city": "Paris"}')
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def gw(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    cfg = mock_config(mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini"))
    cfg["upstreams"][0]["models"] = ["gpt-*", "o4*"]
    cfg["upstreams"].insert(
        0,
        {
            "name": "mock-openai-responses",
            "provider": "openai_responses",
            "base_url": mocks.url("openai"),
            "api_key": "sk-mock-responses-secret",
            "models": ["o3", "codex-*"],
        },
    )
    cfg["routing"] = {"retry": {"max_attempts": 1}, "breaker": {"enabled": False, "max_rest": 0}}
    gateway = Gateway(cfg, tmp_path_factory.mktemp("responses-upstream")).start()
    yield gateway
    gateway.stop()


@pytest.fixture()
def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0, timeout=30)


@pytest.fixture()
def claude_client(gw: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key="sk-test", max_retries=0, timeout=30)


def extra(obj: Any, name: str) -> Any:
    return (obj.model_extra or {}).get(name)


def upstream_body(mocks: MockUpstreams) -> dict[str, Any]:
    req = mocks.last_request("openai")
    assert req.path == "/v1/responses", req.path
    assert req.headers["Authorization"] == "Bearer sk-mock-responses-secret"
    body: dict[str, Any] = req.body
    return body


# -- chat completions caller ------------------------------------------------------------------------------------


def test_chat_caller_gets_the_reasoning_summary_exact_usage_and_cost(
    client: openai.OpenAI, mocks: MockUpstreams
) -> None:
    mocks.push("openai", ScriptedReply(text="4.", reasoning=SUMMARY, usage=USAGE))
    resp = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "2 + 2?"}],
        reasoning_effort="high",
        max_completion_tokens=500,
        response_format={"type": "json_object"},
    )
    body = upstream_body(mocks)
    assert body["input"] == [
        {"role": "developer", "content": [{"type": "input_text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "input_text", "text": "2 + 2?"}]},
    ]
    assert body["reasoning"] == {"effort": "high", "summary": "auto"}
    assert body["include"] == ["reasoning.encrypted_content"]
    assert body["store"] is False and body["max_output_tokens"] == 500
    assert body["text"] == {"format": {"type": "json_object"}}
    assert "messages" not in body and "max_completion_tokens" not in body
    msg = resp.choices[0].message
    assert msg.content == "4." and resp.choices[0].finish_reason == "stop"
    assert extra(msg, "reasoning_content") == SUMMARY
    usage = resp.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1000, 300, 1300)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 400
    assert usage.completion_tokens_details is not None and usage.completion_tokens_details.reasoning_tokens == 120
    assert extra(usage, "cost") == pytest.approx(COST)


def test_chat_caller_tool_calls_round_trip(client: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="", tool_calls=[WEATHER_CALL]))
    first = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    body = upstream_body(mocks)
    assert body["tools"] == [{"type": "function", **WEATHER["function"]}]
    assert body["tool_choice"] == {"type": "function", "name": "get_weather"}
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls: Any = choice.message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("call_w1", "get_weather", '{"city": "Paris"}')
    ]
    mocks.push("openai", ScriptedReply(text="Sunny, 21 C."))
    second = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in calls]},
            {"role": "tool", "tool_call_id": "call_w1", "content": "sunny, 21"},
        ],
        tools=[WEATHER],
    )
    assert second.choices[0].message.content == "Sunny, 21 C."
    assert upstream_body(mocks)["input"][1:] == [
        {"type": "function_call", "call_id": "call_w1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "call_w1", "output": "sunny, 21"},
    ]


def test_incomplete_response_is_finish_length(client: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="Once upon", finish="length"))
    resp = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "A story"}])
    assert resp.choices[0].finish_reason == "length" and resp.choices[0].message.content == "Once upon"


def test_chat_caller_streaming(client: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="Let me check.", reasoning=SUMMARY, tool_calls=[WEATHER_CALL], usage=USAGE))
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER],
        stream=True,
        stream_options={"include_usage": True},
    )
    reasoning, text, args, finishes, usages = [], [], [], [], []
    names = []
    for chunk in stream:
        if chunk.usage is not None:
            usages.append(chunk.usage)
        for ch in chunk.choices:
            reasoning.append(extra(ch.delta, "reasoning_content") or "")
            text.append(ch.delta.content or "")
            for tc in ch.delta.tool_calls or ():
                if tc.id:
                    names.append((tc.id, tc.function.name if tc.function else None))
                args.append(tc.function.arguments or "" if tc.function else "")
            if ch.finish_reason:
                finishes.append(ch.finish_reason)
    assert upstream_body(mocks)["stream"] is True
    assert "".join(reasoning) == SUMMARY and "".join(text) == "Let me check."
    assert names == [("call_w1", "get_weather")] and "".join(args) == '{"city": "Paris"}'
    assert finishes == ["tool_calls"]
    assert len(usages) == 1 and (usages[0].prompt_tokens, usages[0].completion_tokens) == (1000, 300)
    details = usages[0].completion_tokens_details
    assert details is not None and details.reasoning_tokens == 120
    assert extra(usages[0], "cost") == pytest.approx(COST)


def test_upstream_failure_mid_stream_reaches_the_chat_caller(client: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="Partial answer", midstream_failure=True, error_message="overloaded"))
    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True)
    text: list[str] = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            text.extend(ch.delta.content or "" for ch in chunk.choices)
    assert "".join(text) == "Partial answer"


def test_upstream_failure_before_any_content_is_a_clean_502(client: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="", midstream_failure=True, error_message="overloaded"))
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True)
    assert info.value.status_code == 502 and "overloaded" in str(info.value)


def test_upstream_error_status_is_openai_shaped(client: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(error_status=400, error_message="Unsupported parameter: 'top_p'."))
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], top_p=0.5)
    assert "Unsupported parameter: 'top_p'." in str(info.value)
    assert "sk-mock-responses-secret" not in str(info.value.body)


# -- Anthropic caller -------------------------------------------------------------------------------------------


def test_anthropic_caller_gets_thinking_blocks_and_sends_them_back(
    claude_client: anthropic.Anthropic, mocks: MockUpstreams
) -> None:
    mocks.push(
        "openai", ScriptedReply(text="", reasoning=SUMMARY, reasoning_signature="enc-abc", tool_calls=[WEATHER_CALL])
    )
    tool: Any = {"name": "get_weather", "description": "Weather", "input_schema": WEATHER["function"]["parameters"]}
    first = claude_client.messages.create(
        model=MODEL,
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 2048},
        tools=[tool],
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    thinking = first.content[0]
    assert thinking.type == "thinking" and thinking.thinking == SUMMARY and thinking.signature == "enc-abc"
    assert upstream_body(mocks)["reasoning"]["summary"] == "auto"
    mocks.push("openai", ScriptedReply(text="Sunny."))
    use = first.content[1]
    assert use.type == "tool_use"
    history: Any = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
    ]
    claude_client.messages.create(
        model=MODEL,
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 2048},
        tools=[tool],
        messages=history,
    )
    items = upstream_body(mocks)["input"]
    assert items[1] == {
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": SUMMARY}],
        "encrypted_content": "enc-abc",
    }
    assert items[2]["type"] == "function_call" and items[2]["call_id"] == use.id
    assert items[3] == {"type": "function_call_output", "call_id": use.id, "output": "sunny"}


def test_anthropic_caller_streaming_thinking(claude_client: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="Four.", reasoning=SUMMARY, reasoning_signature="enc-xyz", usage=USAGE))
    with claude_client.messages.stream(
        model=MODEL,
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": "2 + 2?"}],
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    thinking = final.content[0]
    assert thinking.type == "thinking" and thinking.thinking == SUMMARY and thinking.signature == "enc-xyz"
    text = final.content[1]
    assert text.type == "text" and text.text == "Four."
    # Anthropic's input_tokens exclude cache reads.
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens, final.usage.output_tokens) == (600, 400, 300)


# -- Responses caller -------------------------------------------------------------------------------------------


def test_responses_caller_unmodelled_fields_pass_through(client: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="Hi!", reasoning=SUMMARY, usage=USAGE))
    resp = client.responses.create(
        model=MODEL,
        input="hello",
        instructions="Be nice.",
        reasoning={"effort": "low", "summary": "concise"},
        text={"verbosity": "low"},
        include=["message.output_text.logprobs"],
        metadata={"ticket": "T-1"},
        store=False,
        extra_body={"prompt_cache_key": "conv-7", "service_tier": "flex", "future_knob": {"a": [1, 2]}},
    )
    body = upstream_body(mocks)
    assert body["prompt_cache_key"] == "conv-7" and body["service_tier"] == "flex"
    assert body["future_knob"] == {"a": [1, 2]}
    assert body["store"] is False and body["reasoning"] == {"effort": "low", "summary": "concise"}
    assert body["text"] == {"verbosity": "low"} and body["metadata"] == {"ticket": "T-1"}
    assert body["include"] == ["reasoning.encrypted_content", "message.output_text.logprobs"]
    assert body["input"] == [
        {"role": "system", "content": [{"type": "input_text", "text": "Be nice."}]},
        {"role": "user", "content": [{"type": "input_text", "text": "hello"}]},
    ]
    assert resp.output_text == "Hi!"
    reasoning = [item for item in resp.output if item.type == "reasoning"]
    assert len(reasoning) == 1 and [s.text for s in reasoning[0].summary] == [SUMMARY]
    assert resp.usage is not None and resp.usage.input_tokens_details.cached_tokens == 400
    assert resp.usage.output_tokens_details.reasoning_tokens == 120


def test_chat_caller_unmodelled_fields_do_not_reach_a_responses_upstream(
    client: openai.OpenAI, mocks: MockUpstreams
) -> None:
    mocks.push("openai", ScriptedReply(text="ok"))
    client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_body={"web_search_options": {}}
    )
    assert "web_search_options" not in upstream_body(mocks)


def _sse(text: str) -> list[dict[str, Any]]:
    events = []
    for frame in text.split("\n\n"):
        data = [line for line in frame.split("\n") if line.startswith("data: ")]
        if data:
            events.append(json.loads(data[0].removeprefix("data: ")))
    return events


def test_responses_caller_streaming(gw: Gateway, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="Four.", reasoning=SUMMARY, usage=USAGE))
    body = {"model": MODEL, "input": "2 + 2?", "stream": True, "reasoning": {"summary": "auto"}, "truncation": "auto"}
    r = httpx.post(gw.url + "/v1/responses", json=body, headers={"authorization": "Bearer sk-test"}, timeout=30)
    assert r.status_code == 200
    assert upstream_body(mocks)["truncation"] == "auto"
    events = _sse(r.text)
    summary = "".join(e["delta"] for e in events if e["type"] == "response.reasoning_summary_text.delta")
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert summary == SUMMARY and text == "Four."
    assert events[-1]["type"] == "response.completed"
    usage = events[-1]["response"]["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (1000, 300)
    assert usage["input_tokens_details"]["cached_tokens"] == 400
    assert usage["output_tokens_details"]["reasoning_tokens"] == 120


def test_upstream_failure_mid_stream_ends_the_responses_stream_failed(gw: Gateway, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="Partial", midstream_failure=True, error_message="overloaded"))
    body = {"model": MODEL, "input": "hi", "stream": True}
    r = httpx.post(gw.url + "/v1/responses", json=body, headers={"authorization": "Bearer sk-test"}, timeout=30)
    events = _sse(r.text)
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "Partial"
    assert events[-1]["type"] == "response.failed"
    assert "overloaded" in events[-1]["response"]["error"]["message"]
    assert not any(e["type"] == "response.completed" for e in events)
