"""The Anthropic Messages upstream, driven through the gateway by the Anthropic SDK and the OpenAI SDK.

Each test checks both what the caller got back and what omnirelay actually sent to the (mock) Anthropic API.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest

from tests.mocks.script import ScriptedReply, ScriptedToolCall, ScriptedUsage
from tests.mocks.server import MockUpstreams

MODEL = "claude-sonnet-4-20250514"
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
OAI_WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": WEATHER_TOOL["input_schema"],
    },
}


def upstream(mocks: MockUpstreams) -> dict[str, Any]:
    body: dict[str, Any] = mocks.last_request("anthropic").body
    return body


# --- basics ------------------------------------------------------------------------------------------------


def test_anthropic_sdk_system_prompt_and_upstream_headers(mocks: MockUpstreams, claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(
        model=MODEL,
        max_tokens=300,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hi there"}],
        stop_sequences=["END"],
        extra_body={"temperature": 0.3, "top_k": 5},  # not in this SDK's signature; still API fields
        metadata={"user_id": "user-42"},
    )
    assert msg.content[0].type == "text" and msg.content[0].text == "echo: Hi there"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == 12 and msg.usage.output_tokens == 7
    rec = mocks.last_request("anthropic")
    assert rec.path == "/v1/messages"
    assert rec.headers["x-api-key"] == "sk-ant-mock-secret"
    assert rec.headers["anthropic-version"] == "2023-06-01"
    body = rec.body
    assert body["system"] == [{"type": "text", "text": "Be brief."}]
    assert body["messages"] == [{"role": "user", "content": "Hi there"}]
    assert body["max_tokens"] == 300 and body["temperature"] == 0.3 and body["top_k"] == 5
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "user-42"}
    assert "stream" not in body


def test_openai_sdk_multi_turn_hoists_system(mocks: MockUpstreams, oai: openai.OpenAI) -> None:
    resp = oai.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "One"},
            {"role": "assistant", "content": "Two"},
            {"role": "user", "content": "Three"},
        ],
        max_tokens=50,
        user="u-1",
    )
    assert resp.choices[0].message.content == "echo: Three"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.prompt_tokens == 12 and resp.usage.completion_tokens == 7
    body = upstream(mocks)
    assert body["system"] == [{"type": "text", "text": "You are terse."}]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [{"type": "text", "text": "Two"}]
    assert body["max_tokens"] == 50
    assert body["metadata"] == {"user_id": "u-1"}


def test_default_max_tokens_when_caller_gives_none(mocks: MockUpstreams, oai: openai.OpenAI) -> None:
    oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert upstream(mocks)["max_tokens"] == 8192


def test_anthropic_sdk_streaming_text(mocks: MockUpstreams, claude: anthropic.Anthropic) -> None:
    mocks.push("anthropic", ScriptedReply(text="Hello streaming world", chunks=4))
    with claude.messages.stream(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "go"}]) as stream:
        types = [event.type for event in stream]
        final = stream.get_final_message()
    assert types[0] == "message_start" and types[-1] == "message_stop"
    assert types[-2] == "message_delta"
    assert final.content[0].type == "text" and final.content[0].text == "Hello streaming world"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 7 and final.usage.input_tokens == 12
    assert upstream(mocks)["stream"] is True


def test_openai_sdk_streaming_text_and_usage(mocks: MockUpstreams, oai: openai.OpenAI) -> None:
    mocks.push("anthropic", ScriptedReply(text="abcdefghij", chunks=5, usage=ScriptedUsage(input=40, output=9)))
    stream = oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "go"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
    assert text == "abcdefghij"
    assert finish == "stop"
    assert usage is not None and usage.prompt_tokens == 40 and usage.completion_tokens == 9


# --- tools -------------------------------------------------------------------------------------------------


def test_anthropic_sdk_tool_use_with_tool_choice(mocks: MockUpstreams, claude: anthropic.Anthropic) -> None:
    mocks.push(
        "anthropic",
        ScriptedReply(
            text="", tool_calls=[ScriptedToolCall(id="toolu_1", name="get_weather", arguments='{"city": "Paris"}')]
        ),
    )
    msg = claude.messages.create(
        model=MODEL,
        max_tokens=200,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    assert msg.stop_reason == "tool_use"
    block = msg.content[-1]
    assert block.type == "tool_use" and block.name == "get_weather" and block.input == {"city": "Paris"}
    assert block.id == "toolu_1"
    body = upstream(mocks)
    assert body["tools"] == [WEATHER_TOOL]
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}


def test_openai_sdk_parallel_tool_calls_and_choice_mapping(mocks: MockUpstreams, oai: openai.OpenAI) -> None:
    calls = [
        ScriptedToolCall(id="toolu_a", name="get_weather", arguments='{"city": "Paris"}'),
        ScriptedToolCall(id="toolu_b", name="get_weather", arguments='{"city": "Rome"}'),
    ]
    mocks.push("anthropic", ScriptedReply(text="", tool_calls=calls))
    resp = oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Paris and Rome?"}],
        tools=[OAI_WEATHER_TOOL],
        tool_choice="required",
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    got = [(c.id, c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls]  # type: ignore[union-attr]
    assert got == [("toolu_a", "get_weather", {"city": "Paris"}), ("toolu_b", "get_weather", {"city": "Rome"})]
    body = upstream(mocks)
    assert body["tool_choice"] == {"type": "any"}
    assert body["tools"][0]["input_schema"] == WEATHER_TOOL["input_schema"]

    oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Paris?"}],
        tools=[OAI_WEATHER_TOOL],
        tool_choice="none",
    )
    assert upstream(mocks)["tool_choice"] == {"type": "none"}
    oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Paris?"}],
        tools=[OAI_WEATHER_TOOL],
        parallel_tool_calls=False,
    )
    assert upstream(mocks)["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_openai_sdk_tool_result_round_trip(mocks: MockUpstreams, oai: openai.OpenAI) -> None:
    mocks.push("anthropic", ScriptedReply(text="Paris 20C, Rome 25C"))
    resp = oai.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "toolu_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "toolu_b",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_a", "content": "20C"},
            {"role": "tool", "tool_call_id": "toolu_b", "content": "25C"},
        ],
        tools=[OAI_WEATHER_TOOL],
    )
    assert resp.choices[0].message.content == "Paris 20C, Rome 25C"
    msgs = upstream(mocks)["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[1]["content"] == [
        {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {"city": "Rome"}},
    ]
    assert msgs[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_a", "content": "20C"},
        {"type": "tool_result", "tool_use_id": "toolu_b", "content": "25C"},
    ]


def test_anthropic_sdk_tool_result_round_trip(mocks: MockUpstreams, claude: anthropic.Anthropic) -> None:
    mocks.push("anthropic", ScriptedReply(text="Sorry, the lookup failed."))
    msg = claude.messages.create(
        model=MODEL,
        max_tokens=200,
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Paris"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_9", "content": "service down", "is_error": True},
                    {"type": "text", "text": "Try again later?"},
                ],
            },
        ],
    )
    assert msg.content[0].type == "text" and msg.content[0].text == "Sorry, the lookup failed."
    msgs = upstream(mocks)["messages"]
    assert msgs[1]["content"][1] == {
        "type": "tool_use",
        "id": "toolu_9",
        "name": "get_weather",
        "input": {"city": "Paris"},
    }
    assert msgs[2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_9", "content": "service down", "is_error": True},
            {"type": "text", "text": "Try again later?"},
        ],
    }


def test_streamed_tool_input_json_delta(mocks: MockUpstreams, claude: anthropic.Anthropic, oai: openai.OpenAI) -> None:
    call = ScriptedToolCall(id="toolu_s", name="get_weather", arguments='{"city": "San Francisco"}')
    mocks.push("anthropic", ScriptedReply(text="", tool_calls=[call], chunks=4))
    with claude.messages.stream(
        model=MODEL,
        max_tokens=200,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "SF?"}],
    ) as stream:
        json_deltas = [
            e.delta.partial_json
            for e in stream
            if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
        ]
        final = stream.get_final_message()
    assert len(json_deltas) >= 2 and "".join(json_deltas) == call.arguments
    assert final.stop_reason == "tool_use"
    tool = final.content[-1]
    assert tool.type == "tool_use" and tool.input == {"city": "San Francisco"} and tool.id == "toolu_s"

    mocks.push("anthropic", ScriptedReply(text="", tool_calls=[call], chunks=4))
    args, finish, ids = "", None, []
    for chunk in oai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "SF?"}], tools=[OAI_WEATHER_TOOL], stream=True
    ):
        if not chunk.choices:
            continue
        for tc in chunk.choices[0].delta.tool_calls or []:
            if tc.id:
                ids.append(tc.id)
            if tc.function is not None and tc.function.arguments:
                args += tc.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    assert ids == ["toolu_s"]
    assert json.loads(args) == {"city": "San Francisco"}
    assert finish == "tool_calls"


# --- images ------------------------------------------------------------------------------------------------


def test_openai_sdk_images_base64_and_url(mocks: MockUpstreams, oai: openai.OpenAI) -> None:
    oai.chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            }
        ],
    )
    content = upstream(mocks)["messages"][0]["content"]
    assert content == [
        {"type": "text", "text": "Compare"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_anthropic_sdk_images_base64_and_url(mocks: MockUpstreams, claude: anthropic.Anthropic) -> None:
    blocks: Any = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/dog.png"}},
        {"type": "text", "text": "What are these?"},
    ]
    msg = claude.messages.create(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": blocks}])
    assert msg.content[0].type == "text" and msg.content[0].text == "echo: What are these?"
    assert upstream(mocks)["messages"][0]["content"] == blocks


# --- reasoning ---------------------------------------------------------------------------------------------


def test_anthropic_sdk_thinking_passthrough(mocks: MockUpstreams, claude: anthropic.Anthropic) -> None:
    mocks.push(
        "anthropic",
        ScriptedReply(text="42", reasoning="Let me think step by step.", reasoning_signature="sig-abc"),
    )
    msg = claude.messages.create(
        model=MODEL,
        max_tokens=5000,
        thinking={"type": "enabled", "budget_tokens": 3000},
        messages=[{"role": "user", "content": "Meaning of life?"}],
    )
    assert [b.type for b in msg.content] == ["thinking", "text"]
    thinking = msg.content[0]
    assert thinking.type == "thinking"
    assert thinking.thinking == "Let me think step by step." and thinking.signature == "sig-abc"
    body = upstream(mocks)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 3000}
    assert body["max_tokens"] == 5000

    # The signed thinking block goes back upstream verbatim in the next turn.
    history: Any = [
        {"role": "user", "content": "Meaning of life?"},
        {"role": "assistant", "content": [thinking.model_dump(), {"type": "text", "text": "42"}]},
        {"role": "user", "content": "Why?"},
    ]
    claude.messages.create(
        model=MODEL, max_tokens=5000, thinking={"type": "enabled", "budget_tokens": 3000}, messages=history
    )
    assert upstream(mocks)["messages"][1]["content"][0] == {
        "type": "thinking",
        "thinking": "Let me think step by step.",
        "signature": "sig-abc",
    }


def test_openai_reasoning_effort_maps_to_budget(mocks: MockUpstreams, oai: openai.OpenAI) -> None:
    mocks.push("anthropic", ScriptedReply(text="Paris", reasoning="France's capital is Paris."))
    resp = oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Capital of France?"}],
        reasoning_effort="high",
        temperature=0.2,
        max_tokens=1000,
    )
    msg = resp.choices[0].message
    assert msg.content == "Paris"
    assert getattr(msg, "reasoning_content", None) == "France's capital is Paris."
    body = upstream(mocks)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 24576}
    assert body["max_tokens"] > 24576  # Anthropic requires max_tokens > budget_tokens
    assert "temperature" not in body  # Anthropic rejects temperature changes with thinking on


def test_thinking_streams_as_thinking_blocks_and_reasoning_content(
    mocks: MockUpstreams, claude: anthropic.Anthropic, oai: openai.OpenAI
) -> None:
    reply = ScriptedReply(text="The answer", reasoning="first, second, third", reasoning_signature="sig-s", chunks=3)
    mocks.push("anthropic", reply)
    with claude.messages.stream(
        model=MODEL,
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 2000},
        messages=[{"role": "user", "content": "q"}],
    ) as stream:
        delta_types = [e.delta.type for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    assert delta_types.index("signature_delta") < delta_types.index("text_delta")
    assert final.content[0].type == "thinking"
    assert final.content[0].thinking == "first, second, third" and final.content[0].signature == "sig-s"
    assert final.content[1].type == "text" and final.content[1].text == "The answer"

    mocks.push("anthropic", reply)
    reasoning, text = "", ""
    for chunk in oai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "q"}], reasoning_effort="low", stream=True
    ):
        if chunk.choices:
            reasoning += getattr(chunk.choices[0].delta, "reasoning_content", None) or ""
            text += chunk.choices[0].delta.content or ""
    assert reasoning == "first, second, third" and text == "The answer"
    assert upstream(mocks)["thinking"] == {"type": "enabled", "budget_tokens": 2048}


# --- usage and stop reasons --------------------------------------------------------------------------------


def test_cache_usage_both_ways(mocks: MockUpstreams, claude: anthropic.Anthropic, oai: openai.OpenAI) -> None:
    usage = ScriptedUsage(input=1000, cached=600, cache_write=300, output=20)
    mocks.push("anthropic", ScriptedReply(text="ok", usage=usage))
    msg = claude.messages.create(
        model=MODEL,
        max_tokens=100,
        system=[{"type": "text", "text": "Long policy text", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "q"}],
    )
    assert msg.usage.input_tokens == 100
    assert msg.usage.cache_read_input_tokens == 600 and msg.usage.cache_creation_input_tokens == 300
    assert msg.usage.output_tokens == 20
    assert upstream(mocks)["system"] == [
        {"type": "text", "text": "Long policy text", "cache_control": {"type": "ephemeral"}}
    ]

    mocks.push("anthropic", ScriptedReply(text="ok", usage=usage))
    resp = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "q"}])
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == 1000 and resp.usage.completion_tokens == 20
    assert resp.usage.prompt_tokens_details is not None and resp.usage.prompt_tokens_details.cached_tokens == 600

    mocks.push("anthropic", ScriptedReply(text="ok", usage=usage))
    with claude.messages.stream(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "q"}]) as s:
        final = s.get_final_message()
    assert final.usage.input_tokens == 100
    assert final.usage.cache_read_input_tokens == 600 and final.usage.cache_creation_input_tokens == 300


@pytest.mark.parametrize(
    ("finish", "anthropic_reason", "openai_reason"),
    [("length", "max_tokens", "length"), ("stop_sequence", "stop_sequence", "stop"), ("stop", "end_turn", "stop")],
)
def test_stop_reasons(
    mocks: MockUpstreams,
    claude: anthropic.Anthropic,
    oai: openai.OpenAI,
    finish: Any,
    anthropic_reason: str,
    openai_reason: str,
) -> None:
    mocks.push("anthropic", ScriptedReply(text="partial", finish=finish, stop_sequence="###"))
    msg = claude.messages.create(
        model=MODEL, max_tokens=10, stop_sequences=["###"], messages=[{"role": "user", "content": "q"}]
    )
    assert msg.stop_reason == anthropic_reason
    assert msg.stop_sequence == ("###" if finish == "stop_sequence" else None)

    mocks.push("anthropic", ScriptedReply(text="partial", finish=finish, stop_sequence="###"))
    with claude.messages.stream(
        model=MODEL, max_tokens=10, stop_sequences=["###"], messages=[{"role": "user", "content": "q"}]
    ) as s:
        final = s.get_final_message()
    assert final.stop_reason == anthropic_reason
    assert final.stop_sequence == ("###" if finish == "stop_sequence" else None)

    mocks.push("anthropic", ScriptedReply(text="partial", finish=finish, stop_sequence="###"))
    resp = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "q"}], stop=["###"])
    assert resp.choices[0].finish_reason == openai_reason
    assert upstream(mocks)["stop_sequences"] == ["###"]


# --- structured output -------------------------------------------------------------------------------------


def test_response_format_json_schema_via_openai_sdk(mocks: MockUpstreams, oai: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    answer = '{"city": "Paris", "population": 2100000}'
    mocks.push(
        "anthropic", ScriptedReply(text="", tool_calls=[ScriptedToolCall(name="json_response", arguments=answer)])
    )
    resp = oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Biggest French city?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}},
    )
    choice = resp.choices[0]
    assert json.loads(choice.message.content or "") == {"city": "Paris", "population": 2100000}
    assert choice.finish_reason == "stop" and not choice.message.tool_calls
    body = upstream(mocks)
    assert body["tools"] == [
        {"name": "json_response", "description": body["tools"][0]["description"], "input_schema": schema}
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "json_response"}

    mocks.push(
        "anthropic",
        ScriptedReply(text="", tool_calls=[ScriptedToolCall(name="json_response", arguments=answer)], chunks=4),
    )
    text = ""
    for chunk in oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Biggest French city?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}},
        stream=True,
    ):
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            assert not chunk.choices[0].delta.tool_calls
    assert json.loads(text) == {"city": "Paris", "population": 2100000}


# --- model spellings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["anthropic.claude-3-7-sonnet-20250219-v1:0", "claude-3-7-sonnet@20250219"])
def test_cloud_model_spellings_reach_upstream_as_anthropic_ids(
    mocks: MockUpstreams, claude: anthropic.Anthropic, oai: openai.OpenAI, spelling: str
) -> None:
    msg = claude.messages.create(model=spelling, max_tokens=20, messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].type == "text" and msg.content[0].text == "echo: hi"
    assert upstream(mocks)["model"] == "claude-3-7-sonnet-20250219"
    resp = oai.chat.completions.create(model=spelling, messages=[{"role": "user", "content": "hey"}])
    assert resp.choices[0].message.content == "echo: hey"
    assert upstream(mocks)["model"] == "claude-3-7-sonnet-20250219"


# --- the stream parser on its own --------------------------------------------------------------------------


def _parser() -> Any:
    from omnirelay.config import UpstreamConfig
    from omnirelay.core.types import ChatRequest
    from omnirelay.providers.anthropic import PROVIDER

    provider = PROVIDER(UpstreamConfig(name="a", provider="anthropic", api_key="k"))
    return provider.stream_parser(ChatRequest(model=MODEL, messages=[]))


def test_stream_parser_is_independent_of_chunk_borders() -> None:
    from omnirelay.core.events import ChoiceEnd, ReasoningDelta, TextDelta, ToolCallArgs, UsageReport
    from tests.mocks.anthropic_server import _stream_events

    reply = ScriptedReply(
        text="hello there",
        reasoning="thoughts",
        tool_calls=[ScriptedToolCall(name="f", arguments='{"x": [1, 2]}')],
        usage=ScriptedUsage(input=20, cached=5, cache_write=3, output=9, reasoning=4),
    )
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": MODEL}
    data = b"".join(_stream_events(reply, message, {})).replace(b"\n", b"\r\n")
    whole, bytewise = _parser(), _parser()
    events_whole = whole.feed(data) + whole.close()
    events_bytewise = [e for i in range(len(data)) for e in bytewise.feed(data[i : i + 1])] + bytewise.close()

    def summary(events: list[Any]) -> tuple[str, str, str, str, Any, Any]:
        text = "".join(e.text for e in events if isinstance(e, TextDelta))
        thinking = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
        signature = "".join(e.signature or "" for e in events if isinstance(e, ReasoningDelta))
        args = "".join(e.arguments for e in events if isinstance(e, ToolCallArgs))
        end = [e.finish_reason for e in events if isinstance(e, ChoiceEnd)]
        usage = [e.usage for e in events if isinstance(e, UsageReport)][-1]
        return text, thinking, signature, args, end, usage

    assert summary(events_whole) == summary(events_bytewise)
    text, thinking, signature, args, end, usage = summary(events_whole)
    assert (text, thinking, signature, args, end) == (
        "hello there",
        "thoughts",
        "sig-mock",
        '{"x": [1, 2]}',
        ["tool_calls"],
    )
    assert (usage.input_tokens, usage.cached_tokens, usage.cache_write_tokens) == (20, 5, 3)
    assert (usage.output_tokens, usage.reasoning_tokens) == (9, 4)


def test_stream_parser_error_events_and_truncation() -> None:
    from omnirelay.core.errors import GatewayError
    from omnirelay.core.events import StreamFailure, TextDelta

    start = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
        b'"role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,'
        b'"usage":{"input_tokens":5,"output_tokens":1}}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"text","text":""}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"Hi"}}\n\n'
    )
    overloaded = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    # Mid-stream: what was produced is kept, then the failure ends the stream.
    parser = _parser()
    events = parser.feed(start + overloaded)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hi"]
    assert isinstance(events[-1], StreamFailure) and events[-1].error.kind == "overloaded"
    assert parser.close() == []
    # Before anything was produced: raised, so the relay may still try another channel.
    with pytest.raises(GatewayError) as info:
        _parser().feed(b'event: ping\ndata: {"type": "ping"}\n\n' + overloaded)
    assert info.value.kind == "overloaded"
    # Cut off before message_stop: truncated.
    parser = _parser()
    parser.feed(start)
    with pytest.raises(GatewayError) as info:
        parser.close()
    assert info.value.kind == "upstream"
