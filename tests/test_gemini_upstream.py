"""End to end: the OpenAI and Anthropic SDKs against omnirelay, relaying to the Gemini mock (gemini-2.5-pro).

Each test asserts both what the caller sees and what omnirelay actually sent upstream
(``mocks.last_request("gemini")``), in Gemini's own wire format.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.gateway import Gateway, mock_config
from tests.mocks.script import ScriptedReply, ScriptedToolCall, ScriptedUsage
from tests.mocks.server import MockUpstreams

MODEL = "gemini-2.5-pro"
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
WEATHER_TOOL_OAI: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
WEATHER_TOOL_ANT: Any = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CITY_SCHEMA: Any = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def strict_gateway(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One upstream call per request and no circuit breaker or rest: an upstream failure reaches the caller as
    it is, and does not take the session gateway's Gemini channel out of rotation for the other tests."""
    cfg = mock_config(mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini"))
    cfg["routing"] = {"retry": {"max_attempts": 1}, "breaker": {"enabled": False, "max_rest": 0}}
    gw = Gateway(cfg, tmp_path_factory.mktemp("strict-gemini-gateway")).start()
    yield gw
    gw.stop()


@pytest.fixture()
def strict_oai(strict_gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=strict_gateway.url + "/v1", api_key="sk-test", max_retries=0, timeout=30)


@pytest.fixture()
def strict_claude(strict_gateway: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=strict_gateway.url, api_key="sk-test", max_retries=0, timeout=30)


def upstream(mocks: MockUpstreams) -> dict[str, Any]:
    body: dict[str, Any] = mocks.last_request("gemini").body
    return body


def blocks(msg: anthropic.types.Message) -> list[Any]:
    """An Anthropic reply's content as request blocks, for the next turn of a tool loop."""
    return [b.model_dump(exclude_none=True) for b in msg.content]


def parts_of(body: dict[str, Any], turn: int) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = body["contents"][turn]["parts"]
    return parts


# --- OpenAI SDK --------------------------------------------------------------------------------------------


def test_openai_chat_system_and_multi_turn(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("gemini", ScriptedReply(text="Paris it is.", usage=ScriptedUsage(input=31, output=4)))
    resp = oai.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Answer in one sentence."},
            {"role": "user", "content": "Name a city."},
            {"role": "assistant", "content": "London."},
            {"role": "user", "content": "Another one?"},
        ],
        temperature=0.3,
        top_p=0.9,
        max_tokens=50,
        stop=["END"],
        seed=7,
    )
    assert resp.choices[0].message.content == "Paris it is."
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (31, 4, 35)

    rec = mocks.last_request("gemini")
    assert rec.path == f"/v1beta/models/{MODEL}:generateContent"
    assert rec.headers.get("x-goog-api-key") == "gm-mock-secret"
    assert "key" not in rec.query  # never the key in the URL
    body = rec.body
    assert body["systemInstruction"] == {"parts": [{"text": "Answer in one sentence."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert parts_of(body, 1) == [{"text": "London."}]
    assert parts_of(body, 2) == [{"text": "Another one?"}]
    gen = body["generationConfig"]
    assert gen["temperature"] == 0.3
    assert gen["topP"] == 0.9
    assert gen["maxOutputTokens"] == 50
    assert gen["stopSequences"] == ["END"]
    assert gen["seed"] == 7
    assert "thinkingConfig" not in gen


def test_openai_stream_text(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("gemini", ScriptedReply(text="one two three four", chunks=4, usage=ScriptedUsage(input=9, output=5)))
    stream = oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert text == "one two three four"
    assert finish == "stop"
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (9, 5)
    rec = mocks.last_request("gemini")
    assert rec.path == f"/v1beta/models/{MODEL}:streamGenerateContent"
    assert rec.query == {"alt": "sse"}


def test_openai_tool_call_round_trip(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push(
        "gemini",
        ScriptedReply(text="", tool_calls=[ScriptedToolCall(name="get_weather", arguments='{"city": "Oslo"}')]),
    )
    first = oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER_TOOL_OAI],
        tool_choice="auto",
    )
    msg = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    assert msg.tool_calls is not None and len(msg.tool_calls) == 1
    call = msg.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo"}
    body = upstream(mocks)
    decl = body["tools"][0]["functionDeclarations"][0]
    assert decl["name"] == "get_weather"
    assert decl["description"] == "Weather for a city"
    assert decl["parametersJsonSchema"]["properties"] == {"city": {"type": "string"}}
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}

    mocks.push("gemini", ScriptedReply(text="It is sunny in Oslo."))
    second = oai.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "Weather in Oslo?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": call.function.arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
        ],
        tools=[WEATHER_TOOL_OAI],
    )
    assert second.choices[0].message.content == "It is sunny in Oslo."
    body = upstream(mocks)
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    model_part = parts_of(body, 1)[0]
    assert model_part["functionCall"]["name"] == "get_weather"
    assert model_part["functionCall"]["args"] == {"city": "Oslo"}
    response = parts_of(body, 2)[0]["functionResponse"]
    assert response["name"] == "get_weather"  # looked up from the assistant call with that id
    assert response["response"] == {"result": "sunny, 21C"}  # plain text wrapped into an object


def test_openai_tool_result_json_object_and_forced_tool(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    oai.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_a", "content": '{"temp": 21, "sky": "clear"}'},
        ],
        tools=[WEATHER_TOOL_OAI],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    body = upstream(mocks)
    assert parts_of(body, 2)[0]["functionResponse"]["response"] == {"temp": 21, "sky": "clear"}
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}

    oai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], tools=[WEATHER_TOOL_OAI], tool_choice="required"
    )
    assert upstream(mocks)["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    oai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], tools=[WEATHER_TOOL_OAI], tool_choice="none"
    )
    assert upstream(mocks)["toolConfig"] == {"functionCallingConfig": {"mode": "NONE"}}


def test_openai_parallel_tool_calls_stream(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    calls = [
        ScriptedToolCall(name="get_weather", arguments='{"city": "Oslo"}', id="g1"),
        ScriptedToolCall(name="get_weather", arguments='{"city": "Rome"}', id="g2"),
    ]
    mocks.push("gemini", ScriptedReply(text="", tool_calls=calls))
    stream = oai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Oslo and Rome?"}], tools=[WEATHER_TOOL_OAI], stream=True
    )
    found: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or []:
                slot = found.setdefault(tc.index, {"id": "", "name": "", "args": ""})
                if tc.id:
                    slot["id"] = tc.id
                if tc.function and tc.function.name:
                    slot["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    slot["args"] += tc.function.arguments
    assert finish == "tool_calls"
    assert sorted(found) == [0, 1]
    assert [found[i]["id"] for i in (0, 1)] == ["g1", "g2"]  # Gemini's own ids are kept
    assert [json.loads(found[i]["args"])["city"] for i in (0, 1)] == ["Oslo", "Rome"]

    # Sending both results back: Gemini's ids go back on functionCall and functionResponse.
    oai.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "Oslo and Rome?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": found[i]["id"],
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": found[i]["args"]},
                    }
                    for i in (0, 1)
                ],
            },
            {"role": "tool", "tool_call_id": "g1", "content": "rain"},
            {"role": "tool", "tool_call_id": "g2", "content": "sun"},
        ],
        tools=[WEATHER_TOOL_OAI],
    )
    body = upstream(mocks)
    assert [p["functionCall"]["id"] for p in parts_of(body, 1)] == ["g1", "g2"]
    responses = [p["functionResponse"] for p in parts_of(body, 2)]
    assert [(r["id"], r["name"], r["response"]) for r in responses] == [
        ("g1", "get_weather", {"result": "rain"}),
        ("g2", "get_weather", {"result": "sun"}),
    ]


def test_openai_image_base64(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    oai.chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                ],
            }
        ],
    )
    parts = parts_of(upstream(mocks), 0)
    assert parts[0] == {"text": "What is this?"}
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": PNG_B64}}


def test_openai_json_object_and_json_schema(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("gemini", ScriptedReply(text='{"ok": true}'))
    resp = oai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "json please"}], response_format={"type": "json_object"}
    )
    assert json.loads(resp.choices[0].message.content or "") == {"ok": True}
    gen = upstream(mocks)["generationConfig"]
    assert gen["responseMimeType"] == "application/json"
    assert "responseJsonSchema" not in gen

    mocks.push("gemini", ScriptedReply(text='{"city": "Oslo", "population": 700000}'))
    resp = oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "a city"}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": CITY_SCHEMA, "strict": True}},
    )
    assert json.loads(resp.choices[0].message.content or "")["city"] == "Oslo"
    gen = upstream(mocks)["generationConfig"]
    assert gen["responseMimeType"] == "application/json"
    assert gen["responseJsonSchema"] == CITY_SCHEMA


def test_openai_reasoning_effort_and_usage(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push(
        "gemini",
        ScriptedReply(
            text="42",
            reasoning="Let me think about this.",
            usage=ScriptedUsage(input=100, output=30, cached=40, reasoning=20),
        ),
    )
    resp = oai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "meaning of life?"}], reasoning_effort="low"
    )
    msg = resp.choices[0].message
    assert msg.content == "42"
    assert getattr(msg, "reasoning_content", None) == "Let me think about this."
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == 100  # promptTokenCount already includes the cached tokens
    assert resp.usage.completion_tokens == 30  # candidates (10) + thoughts (20)
    assert resp.usage.prompt_tokens_details is not None
    assert resp.usage.prompt_tokens_details.cached_tokens == 40
    assert resp.usage.completion_tokens_details is not None
    assert resp.usage.completion_tokens_details.reasoning_tokens == 20
    assert upstream(mocks)["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 2048, "includeThoughts": True}


def test_openai_reasoning_stream(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("gemini", ScriptedReply(text="Answer.", reasoning="step one, step two", chunks=3))
    stream = oai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "think"}], reasoning_effort="high", stream=True
    )
    reasoning, text = "", ""
    for chunk in stream:
        for choice in chunk.choices:
            reasoning += getattr(choice.delta, "reasoning_content", None) or ""
            text += choice.delta.content or ""
    assert reasoning == "step one, step two"
    assert text == "Answer."
    assert upstream(mocks)["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 24576, "includeThoughts": True}


def test_openai_max_tokens_finish_length(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("gemini", ScriptedReply(text="This is cut", finish="length"))
    resp = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "long"}], max_tokens=3)
    assert resp.choices[0].finish_reason == "length"
    mocks.push("gemini", ScriptedReply(text="This is cut", finish="length"))
    stream = oai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "long"}], max_tokens=3, stream=True
    )
    finishes = [c.finish_reason for chunk in stream for c in chunk.choices if c.finish_reason]
    assert finishes == ["length"]


def test_openai_n_candidates(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("gemini", ScriptedReply(text="same"))
    resp = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], n=2)
    assert [c.index for c in resp.choices] == [0, 1]
    assert [c.message.content for c in resp.choices] == ["same", "same"]
    assert upstream(mocks)["generationConfig"]["candidateCount"] == 2


def test_openai_rate_limit_passes_retry_after(strict_oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("gemini", ScriptedReply(error_status=429, retry_after=17, error_message="Resource has been exhausted"))
    with pytest.raises(openai.RateLimitError) as info:
        strict_oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 429
    assert info.value.response.headers.get("retry-after") == "17"
    assert "gm-mock-secret" not in info.value.response.text


@pytest.mark.parametrize("stream", [False, True])
def test_openai_upstream_500_becomes_502(strict_oai: openai.OpenAI, mocks: MockUpstreams, stream: bool) -> None:
    mocks.push("gemini", ScriptedReply(error_status=500, error_message="An internal error has occurred."))
    with pytest.raises(openai.APIStatusError) as info:
        result = strict_oai.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], stream=stream
        )
        if stream:
            list(result)
    assert info.value.status_code == 502


def test_openai_malformed_becomes_502(strict_oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("gemini", ScriptedReply(malformed=True))
    with pytest.raises(openai.APIStatusError) as info:
        strict_oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502


def test_openai_truncated_stream_raises(strict_oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("gemini", ScriptedReply(text="this will be cut short", chunks=4, truncate_after_chunks=2))
    received = ""
    with pytest.raises(openai.APIError):
        for chunk in strict_oai.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
        ):
            for choice in chunk.choices:
                received += choice.delta.content or ""
    assert "this will be cut short".startswith(received)


def test_openai_malformed_stream_raises(strict_oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("gemini", ScriptedReply(malformed=True))
    with pytest.raises(openai.APIError):
        list(strict_oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True))


# --- Anthropic SDK -----------------------------------------------------------------------------------------


def test_anthropic_chat_system_and_multi_turn(claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    mocks.push("gemini", ScriptedReply(text="Rome.", usage=ScriptedUsage(input=50, output=6, cached=20)))
    msg = claude.messages.create(
        model=MODEL,
        max_tokens=64,
        system="You are terse.",
        messages=[
            {"role": "user", "content": "A city?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "Another?"},
        ],
        extra_body={"top_k": 20},
    )
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "Rome."  # type: ignore[union-attr]
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == 30  # Anthropic counts cached reads separately
    assert msg.usage.cache_read_input_tokens == 20
    assert msg.usage.output_tokens == 6
    body = upstream(mocks)
    assert body["systemInstruction"] == {"parts": [{"text": "You are terse."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["generationConfig"]["maxOutputTokens"] == 64
    assert body["generationConfig"]["topK"] == 20


def test_anthropic_stream_text(claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    mocks.push("gemini", ScriptedReply(text="streamed words here", chunks=3, usage=ScriptedUsage(input=8, output=3)))
    with claude.messages.stream(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "go"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "streamed words here"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3
    assert mocks.last_request("gemini").query == {"alt": "sse"}


def test_anthropic_tool_round_trip(claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    mocks.push(
        "gemini",
        ScriptedReply(
            text="Checking.", tool_calls=[ScriptedToolCall(name="get_weather", arguments='{"city": "Lima"}')]
        ),
    )
    first = claude.messages.create(
        model=MODEL,
        max_tokens=128,
        tools=[WEATHER_TOOL_ANT],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "Weather in Lima?"}],
    )
    assert first.stop_reason == "tool_use"
    tool_use = next(b for b in first.content if b.type == "tool_use")
    assert tool_use.name == "get_weather"
    assert tool_use.input == {"city": "Lima"}
    body = upstream(mocks)
    assert body["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["required"] == ["city"]
    assert body["toolConfig"]["functionCallingConfig"] == {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}

    mocks.push("gemini", ScriptedReply(text="Foggy in Lima."))
    second = claude.messages.create(
        model=MODEL,
        max_tokens=128,
        tools=[WEATHER_TOOL_ANT],
        messages=[
            {"role": "user", "content": "Weather in Lima?"},
            {"role": "assistant", "content": blocks(first)},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": tool_use.id, "content": '{"sky": "fog"}'},
                    {"type": "text", "text": "Thanks"},
                ],
            },
        ],
    )
    assert second.content[0].text == "Foggy in Lima."  # type: ignore[union-attr]
    body = upstream(mocks)
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    model_parts = parts_of(body, 1)
    assert model_parts[0] == {"text": "Checking."}
    assert model_parts[1]["functionCall"]["args"] == {"city": "Lima"}
    user_parts = parts_of(body, 2)
    assert user_parts[0]["functionResponse"]["name"] == "get_weather"
    assert user_parts[0]["functionResponse"]["response"] == {"sky": "fog"}
    assert user_parts[1] == {"text": "Thanks"}


def test_anthropic_tool_error_result(claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    claude.messages.create(
        model=MODEL,
        max_tokens=64,
        tools=[WEATHER_TOOL_ANT],
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "city missing", "is_error": True}
                ],
            },
        ],
    )
    fr = parts_of(upstream(mocks), 2)[0]["functionResponse"]
    assert fr["name"] == "get_weather"
    assert fr["response"] == {"error": "city missing"}
    assert "id" not in fr  # an Anthropic id means nothing to Gemini


def test_anthropic_parallel_tool_calls_stream(claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    calls = [
        ScriptedToolCall(name="get_weather", arguments='{"city": "Oslo"}', id="a1"),
        ScriptedToolCall(name="get_weather", arguments='{"city": "Cairo"}', id="a2"),
    ]
    mocks.push("gemini", ScriptedReply(text="", tool_calls=calls))
    with claude.messages.stream(
        model=MODEL, max_tokens=128, tools=[WEATHER_TOOL_ANT], messages=[{"role": "user", "content": "Oslo, Cairo?"}]
    ) as stream:
        final = stream.get_final_message()
    uses = [b for b in final.content if b.type == "tool_use"]
    assert [(u.id, u.input) for u in uses] == [("a1", {"city": "Oslo"}), ("a2", {"city": "Cairo"})]
    assert final.stop_reason == "tool_use"


def test_anthropic_image_base64(claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    claude.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
                    {"type": "text", "text": "Describe."},
                ],
            }
        ],
    )
    parts = parts_of(upstream(mocks), 0)
    assert parts == [{"inlineData": {"mimeType": "image/png", "data": PNG_B64}}, {"text": "Describe."}]


def test_anthropic_thinking_budget_and_blocks(claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    mocks.push(
        "gemini",
        ScriptedReply(
            text="",
            reasoning="I should call the tool.",
            reasoning_signature="c2lnLWdlbWluaQ==",
            tool_calls=[ScriptedToolCall(name="get_weather", arguments='{"city": "Oslo"}', id="t1")],
            usage=ScriptedUsage(input=40, output=25, reasoning=15),
        ),
    )
    first = claude.messages.create(
        model=MODEL,
        max_tokens=8000,
        thinking={"type": "enabled", "budget_tokens": 4000},
        tools=[WEATHER_TOOL_ANT],
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
    )
    assert upstream(mocks)["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 4000, "includeThoughts": True}
    kinds = [b.type for b in first.content]
    assert kinds[0] == "thinking" and "tool_use" in kinds
    thinking = first.content[0]
    assert thinking.type == "thinking"
    assert thinking.thinking == "I should call the tool."
    assert thinking.signature == "c2lnLWdlbWluaQ=="
    assert first.usage.output_tokens == 25

    # The tool loop sends the thinking block back: its signature returns to Gemini on the function call.
    claude.messages.create(
        model=MODEL,
        max_tokens=8000,
        thinking={"type": "enabled", "budget_tokens": 4000},
        tools=[WEATHER_TOOL_ANT],
        messages=[
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": blocks(first)},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "snow"}]},
        ],
    )
    call_part = next(p for p in parts_of(upstream(mocks), 1) if "functionCall" in p)
    assert call_part["thoughtSignature"] == "c2lnLWdlbWluaQ=="
    assert call_part["functionCall"]["id"] == "t1"


def test_anthropic_thinking_stream(claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    mocks.push("gemini", ScriptedReply(text="Done.", reasoning="first, then", chunks=2))
    with claude.messages.stream(
        model=MODEL,
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": "think"}],
    ) as stream:
        final = stream.get_final_message()
    by_type = {b.type: b for b in final.content}
    assert by_type["thinking"].thinking == "first, then"  # type: ignore[union-attr]
    assert by_type["text"].text == "Done."  # type: ignore[union-attr]
    assert [b.type for b in final.content].index("thinking") < [b.type for b in final.content].index("text")


def test_anthropic_max_tokens_stop_reason(claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    mocks.push("gemini", ScriptedReply(text="cut", finish="length"))
    msg = claude.messages.create(model=MODEL, max_tokens=2, messages=[{"role": "user", "content": "long"}])
    assert msg.stop_reason == "max_tokens"
    mocks.push("gemini", ScriptedReply(text="cut", finish="length"))
    with claude.messages.stream(model=MODEL, max_tokens=2, messages=[{"role": "user", "content": "long"}]) as s:
        assert s.get_final_message().stop_reason == "max_tokens"


def test_anthropic_errors(strict_claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    mocks.push("gemini", ScriptedReply(error_status=429, retry_after=5))
    with pytest.raises(anthropic.RateLimitError) as rate:
        strict_claude.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert rate.value.response.headers.get("retry-after") == "5"

    mocks.push("gemini", ScriptedReply(error_status=500))
    with pytest.raises(anthropic.APIStatusError) as server:
        strict_claude.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert server.value.status_code == 502

    mocks.push("gemini", ScriptedReply(error_status=400, error_message="Invalid value at 'contents'"))
    with pytest.raises(anthropic.BadRequestError):
        strict_claude.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}])


def test_anthropic_truncated_stream_raises(strict_claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    mocks.push("gemini", ScriptedReply(text="never finishes properly", chunks=4, truncate_after_chunks=1))
    with (
        pytest.raises(anthropic.APIError),
        strict_claude.messages.stream(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "x"}]
        ) as stream,
    ):
        for _ in stream:
            pass
