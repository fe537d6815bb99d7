"""OpenAI-compatible upstreams (OpenAI preset ``gpt-*``/``o3*``, DeepSeek preset ``deepseek-*``) driven through the
gateway by the official OpenAI and Anthropic SDKs. Each test checks what the client got back and what the mock
upstream actually received."""

from __future__ import annotations

import base64
import json
from typing import Any

import anthropic
import openai
from openai.types.chat import ChatCompletionMessageParam

from tests.mocks.script import ScriptedReply, ScriptedToolCall, ScriptedUsage
from tests.mocks.server import MockUpstreams

GPT = "gpt-4.1"
DEEPSEEK = "deepseek-reasoner"
PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()

WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME_TOOL: Any = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}},
}


def upstream(mocks: MockUpstreams) -> Any:
    return mocks.last_request("openai").body


def extra(obj: Any, name: str) -> Any:
    """A field the SDK does not model (reasoning_content, usage.cost): pydantic keeps it as an extra."""
    return (obj.model_extra or {}).get(name)


# -- OpenAI SDK -> OpenAI upstream -------------------------------------------------------------------------


def test_multi_turn_with_system_prompt_non_streaming(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="Paris, still.", usage=ScriptedUsage(input=40, output=4, cached=32)))
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "Answer in one short sentence."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And today?"},
    ]
    resp = oai.chat.completions.create(model=GPT, messages=messages)
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content == "Paris, still."
    assert resp.choices[0].finish_reason == "stop"
    # OpenAI semantics on both sides: prompt_tokens includes the cached ones.
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (40, 4, 44)
    assert resp.usage.prompt_tokens_details is not None
    assert resp.usage.prompt_tokens_details.cached_tokens == 32
    assert isinstance(extra(resp.usage, "cost"), float)

    req = mocks.last_request("openai")
    assert req.path == "/v1/chat/completions"
    assert req.headers["Authorization"] == "Bearer sk-mock-openai-secret"
    assert req.body["model"] == GPT
    assert req.body["messages"] == messages
    assert "stream" not in req.body


def test_echo_default_and_developer_role(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    resp = oai.chat.completions.create(
        model=GPT,
        messages=[{"role": "developer", "content": "Be terse."}, {"role": "user", "content": "ping"}],
    )
    assert resp.choices[0].message.content == "echo: ping"
    assert upstream(mocks)["messages"][0] == {"role": "developer", "content": "Be terse."}


def test_streaming_text_with_usage_chunk(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="one two three four", chunks=4, usage=ScriptedUsage(input=9, output=4)))
    stream = oai.chat.completions.create(
        model=GPT,
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (9, 4)
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1
    body = upstream(mocks)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_streaming_without_include_usage_has_no_usage_chunk(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="abc def"))
    chunks = list(oai.chat.completions.create(model=GPT, messages=[{"role": "user", "content": "x"}], stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "abc def"
    # The gateway still asks the upstream for usage, for its own accounting.
    assert upstream(mocks)["stream_options"] == {"include_usage": True}


def test_tool_choice_and_parallel_tool_calls(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push(
        "openai",
        ScriptedReply(
            text="",
            tool_calls=[
                ScriptedToolCall(id="call_a", name="get_weather", arguments='{"city": "Paris"}'),
                ScriptedToolCall(id="call_b", name="get_weather", arguments='{"city": "Rome"}'),
            ],
            finish="tool_calls",
        ),
    )
    resp = oai.chat.completions.create(
        model=GPT,
        messages=[{"role": "user", "content": "Weather in Paris and Rome?"}],
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice="required",
        parallel_tool_calls=True,
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("call_a", "get_weather", {"city": "Paris"}),
        ("call_b", "get_weather", {"city": "Rome"}),
    ]
    body = upstream(mocks)
    assert body["tools"] == [WEATHER_TOOL, TIME_TOOL]
    assert body["tool_choice"] == "required"
    assert body["parallel_tool_calls"] is True


def test_named_tool_choice_and_tool_results_round_trip(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="It is sunny in Paris."))
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "clear"}'},
    ]
    resp = oai.chat.completions.create(
        model=GPT,
        messages=messages,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
    )
    assert resp.choices[0].message.content == "It is sunny in Paris."
    body = upstream(mocks)
    assert body["messages"] == messages
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["parallel_tool_calls"] is False


def test_streamed_tool_call_arguments(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    args = '{"city": "Reykjavik", "units": "metric"}'
    mocks.push(
        "openai",
        ScriptedReply(
            text="",
            tool_calls=[
                ScriptedToolCall(id="call_w", name="get_weather", arguments=args),
                ScriptedToolCall(id="call_t", name="get_time", arguments='{"tz": "UTC"}'),
            ],
            chunks=5,
        ),
    )
    stream = oai.chat.completions.create(
        model=GPT,
        messages=[{"role": "user", "content": "weather and time"}],
        tools=[WEATHER_TOOL, TIME_TOOL],
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    fragments = 0
    finish = None
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for tc in choice.delta.tool_calls or []:
            slot = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            if tc.id:
                assert tc.function is not None and tc.function.name  # id and name come together, first
                slot["id"] = tc.id
            if tc.function and tc.function.name:
                slot["name"] = tc.function.name
            if tc.function and tc.function.arguments:
                fragments += 1
                slot["arguments"] += tc.function.arguments
    assert finish == "tool_calls"
    assert calls[0] == {"id": "call_w", "name": "get_weather", "arguments": args}
    assert calls[1] == {"id": "call_t", "name": "get_time", "arguments": '{"tz": "UTC"}'}
    assert fragments > 2  # arguments really arrived in pieces


def test_images_as_url_and_base64(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    content: list[Any] = [
        {"type": "text", "text": "Compare these."},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
    ]
    resp = oai.chat.completions.create(model=GPT, messages=[{"role": "user", "content": content}])
    assert resp.choices[0].message.content == "echo: Compare these."
    assert upstream(mocks)["messages"][0] == {"role": "user", "content": content}


def test_response_format_json_object_and_json_schema(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text='{"ok": true}'), ScriptedReply(text='{"name": "Ada", "age": 36}'))
    resp = oai.chat.completions.create(
        model=GPT, messages=[{"role": "user", "content": "json please"}], response_format={"type": "json_object"}
    )
    assert json.loads(resp.choices[0].message.content or "") == {"ok": True}
    assert upstream(mocks)["response_format"] == {"type": "json_object"}

    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    fmt: Any = {
        "type": "json_schema",
        "json_schema": {"name": "person", "description": "A person", "schema": schema, "strict": True},
    }
    resp = oai.chat.completions.create(model=GPT, messages=[{"role": "user", "content": "who"}], response_format=fmt)
    assert json.loads(resp.choices[0].message.content or "") == {"name": "Ada", "age": 36}
    assert upstream(mocks)["response_format"] == fmt


def test_sampling_parameters_and_n(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="same answer"))
    resp = oai.chat.completions.create(
        model=GPT,
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=64,
        temperature=0.3,
        top_p=0.9,
        stop=["\n\n", "END"],
        n=2,
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        user="user-42",
        logprobs=True,
        top_logprobs=2,
        metadata={"team": "qa"},
    )
    assert [c.index for c in resp.choices] == [0, 1]
    assert all(c.message.content == "same answer" for c in resp.choices)
    body = upstream(mocks)
    # OpenAI preset: the current field name for the token cap.
    assert body["max_completion_tokens"] == 64 and "max_tokens" not in body
    assert (body["temperature"], body["top_p"], body["stop"], body["n"], body["seed"]) == (
        0.3,
        0.9,
        ["\n\n", "END"],
        2,
        7,
    )
    assert (body["presence_penalty"], body["frequency_penalty"], body["user"]) == (0.5, -0.5, "user-42")
    # Unmodelled OpenAI fields pass through to an OpenAI-family upstream.
    assert (body["logprobs"], body["top_logprobs"], body["metadata"]) == (True, 2, {"team": "qa"})


def test_stop_string_and_max_completion_tokens_wins(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    oai.chat.completions.create(
        model=DEEPSEEK,
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=10,
        max_completion_tokens=20,
        stop="STOP",
    )
    body = upstream(mocks)
    # DeepSeek preset: max_tokens is the field it knows; max_completion_tokens won over max_tokens.
    assert body["max_tokens"] == 20 and "max_completion_tokens" not in body
    assert body["stop"] == ["STOP"]
    req = mocks.last_request("openai")
    assert req.headers["Authorization"] == "Bearer sk-mock-deepseek-secret"


def test_finish_reason_length(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="cut sho", finish="length"), ScriptedReply(text="cut sho", finish="length"))
    resp = oai.chat.completions.create(model=GPT, messages=[{"role": "user", "content": "long"}], max_tokens=2)
    assert resp.choices[0].finish_reason == "length"
    chunks = list(
        oai.chat.completions.create(
            model=GPT, messages=[{"role": "user", "content": "long"}], max_tokens=2, stream=True
        )
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]


def test_reasoning_effort_passthrough_for_reasoning_models(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="done", usage=ScriptedUsage(input=10, output=50, reasoning=40)))
    resp = oai.chat.completions.create(
        model="o3",
        messages=[{"role": "user", "content": "think"}],
        reasoning_effort="high",
        max_completion_tokens=500,
        temperature=0.2,
    )
    body = upstream(mocks)
    assert body["reasoning_effort"] == "high"
    assert body["max_completion_tokens"] == 500
    assert "temperature" not in body  # o-series models reject sampling controls
    assert resp.usage is not None and resp.usage.completion_tokens_details is not None
    assert resp.usage.completion_tokens_details.reasoning_tokens == 40
    assert resp.usage.completion_tokens == 50

    # gpt-4.1 is not a reasoning model: the effort is not forwarded (OpenAI would reject it).
    oai.chat.completions.create(model=GPT, messages=[{"role": "user", "content": "x"}], reasoning_effort="low")
    assert "reasoning_effort" not in upstream(mocks)


def test_deepseek_reasoning_content_non_streaming(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push(
        "openai",
        ScriptedReply(
            text="The answer is 4.",
            reasoning="2 plus 2 is 4.",
            usage=ScriptedUsage(input=30, output=20, cached=10, reasoning=12),
        ),
    )
    resp = oai.chat.completions.create(model=DEEPSEEK, messages=[{"role": "user", "content": "2+2?"}])
    msg = resp.choices[0].message
    assert msg.content == "The answer is 4."
    assert extra(msg, "reasoning_content") == "2 plus 2 is 4."
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == 30
    assert resp.usage.prompt_tokens_details is not None and resp.usage.prompt_tokens_details.cached_tokens == 10
    assert resp.usage.completion_tokens_details is not None
    assert resp.usage.completion_tokens_details.reasoning_tokens == 12


def test_deepseek_reasoning_content_streaming(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="Four.", reasoning="Adding two and two.", chunks=3))
    chunks = list(
        oai.chat.completions.create(model=DEEPSEEK, messages=[{"role": "user", "content": "2+2?"}], stream=True)
    )
    reasoning = "".join(extra(c.choices[0].delta, "reasoning_content") or "" for c in chunks if c.choices)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert reasoning == "Adding two and two."
    assert text == "Four."
    # Reasoning arrives before the answer.
    first_text = next(i for i, c in enumerate(chunks) if c.choices and c.choices[0].delta.content)
    last_reasoning = max(
        i for i, c in enumerate(chunks) if c.choices and extra(c.choices[0].delta, "reasoning_content")
    )
    assert last_reasoning < first_text


def test_deepseek_reasoning_content_is_stripped_from_history(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    history: list[Any] = [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4", "reasoning_content": "two and two"},
        {"role": "user", "content": "times 3?"},
    ]
    resp = oai.chat.completions.create(model=DEEPSEEK, messages=history)
    assert resp.choices[0].message.content == "echo: times 3?"
    sent = upstream(mocks)["messages"]
    assert sent[1] == {"role": "assistant", "content": "4"}  # DeepSeek rejects reasoning_content in input


# -- Anthropic SDK -> OpenAI upstream ----------------------------------------------------------------------


def test_anthropic_client_to_gpt_non_streaming(claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="Bonjour!", usage=ScriptedUsage(input=50, output=3, cached=20)))
    msg = claude.messages.create(
        model=GPT,
        max_tokens=100,
        system="Reply in French.",
        messages=[
            {"role": "user", "content": "Say hello"},
            {"role": "assistant", "content": "Salut"},
            {"role": "user", "content": "Again, politely"},
        ],
        stop_sequences=["###"],
    )
    assert msg.type == "message" and msg.role == "assistant"
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "Bonjour!"  # type: ignore[union-attr]
    assert msg.stop_reason == "end_turn"
    # Anthropic semantics: input_tokens excludes cache reads.
    assert msg.usage.input_tokens == 30
    assert msg.usage.cache_read_input_tokens == 20
    assert msg.usage.output_tokens == 3
    body = upstream(mocks)
    assert body["messages"] == [
        {"role": "system", "content": "Reply in French."},
        {"role": "user", "content": "Say hello"},
        {"role": "assistant", "content": "Salut"},
        {"role": "user", "content": "Again, politely"},
    ]
    assert body["max_completion_tokens"] == 100
    assert body["stop"] == ["###"]


def test_anthropic_client_to_gpt_streaming(claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="streamed words here", chunks=3, usage=ScriptedUsage(input=8, output=3)))
    with claude.messages.stream(model=GPT, max_tokens=50, messages=[{"role": "user", "content": "go"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "streamed words here"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3
    assert final.usage.input_tokens == 8
    assert upstream(mocks)["stream_options"] == {"include_usage": True}


def test_anthropic_client_tools_round_trip(claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    mocks.push(
        "openai",
        ScriptedReply(
            text="Let me check.",
            tool_calls=[ScriptedToolCall(id="call_x1", name="get_weather", arguments='{"city": "Oslo"}')],
            finish="tool_calls",
        ),
    )
    tools: list[Any] = [
        {
            "name": "get_weather",
            "description": "Current weather for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }
    ]
    msg = claude.messages.create(
        model=GPT,
        max_tokens=200,
        tools=tools,
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
    )
    assert msg.stop_reason == "tool_use"
    assert [b.type for b in msg.content] == ["text", "tool_use"]
    use = msg.content[1]
    assert use.type == "tool_use"
    assert (use.id, use.name, use.input) == ("call_x1", "get_weather", {"city": "Oslo"})
    body = upstream(mocks)
    assert body["tools"] == [WEATHER_TOOL]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}

    mocks.push("openai", ScriptedReply(text="Cold and clear."))
    msg2 = claude.messages.create(
        model=GPT,
        max_tokens=200,
        tools=tools,
        messages=[
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": msg.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "call_x1", "content": "-3C, clear"}],
            },
        ],
    )
    assert msg2.content[0].text == "Cold and clear."  # type: ignore[union-attr]
    sent = upstream(mocks)["messages"]
    assert sent[1]["role"] == "assistant"
    [call] = sent[1]["tool_calls"]
    assert (call["id"], call["type"], call["function"]["name"]) == ("call_x1", "function", "get_weather")
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}
    assert sent[2] == {"role": "tool", "tool_call_id": "call_x1", "content": "-3C, clear"}


def test_anthropic_client_streamed_tool_use(claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    mocks.push(
        "openai",
        ScriptedReply(
            text="",
            tool_calls=[ScriptedToolCall(id="call_s", name="get_weather", arguments='{"city": "Lima"}')],
            chunks=4,
        ),
    )
    tools: list[Any] = [
        {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
    ]
    with claude.messages.stream(
        model=GPT, max_tokens=100, tools=tools, messages=[{"role": "user", "content": "Lima?"}]
    ) as stream:
        deltas = [
            e.delta.partial_json
            for e in stream
            if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
        ]
        final = stream.get_final_message()
    assert len(deltas) >= 2
    assert json.loads("".join(deltas)) == {"city": "Lima"}
    assert final.stop_reason == "tool_use"
    tool_use = [b for b in final.content if b.type == "tool_use"]
    assert tool_use and tool_use[0].input == {"city": "Lima"} and tool_use[0].id == "call_s"


def test_anthropic_client_base64_image(claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    claude.messages.create(
        model=GPT,
        max_tokens=20,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/dog.png"}},
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
    )
    parts = upstream(mocks)["messages"][0]["content"]
    assert parts[0] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}}
    assert parts[1] == {"type": "image_url", "image_url": {"url": "https://example.com/dog.png"}}
    assert parts[2] == {"type": "text", "text": "What is this?"}


def test_anthropic_client_deepseek_thinking_blocks(claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    mocks.push(
        "openai",
        ScriptedReply(text="It is 4.", reasoning="Two and two make four.", usage=ScriptedUsage(reasoning=6)),
    )
    msg = claude.messages.create(model=DEEPSEEK, max_tokens=300, messages=[{"role": "user", "content": "2+2?"}])
    assert [b.type for b in msg.content] == ["thinking", "text"]
    assert msg.content[0].thinking == "Two and two make four."  # type: ignore[union-attr]
    assert msg.content[1].text == "It is 4."  # type: ignore[union-attr]
    assert upstream(mocks)["max_tokens"] == 300


def test_anthropic_client_deepseek_thinking_streaming(claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="Four.", reasoning="Summing the numbers.", chunks=3))
    thinking = ""
    text = ""
    with claude.messages.stream(
        model=DEEPSEEK, max_tokens=300, messages=[{"role": "user", "content": "2+2?"}]
    ) as stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "thinking_delta":
                thinking += event.delta.thinking
            elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                text += event.delta.text
        final = stream.get_final_message()
    assert thinking == "Summing the numbers."
    assert text == "Four."
    assert [b.type for b in final.content] == ["thinking", "text"]


def test_anthropic_thinking_budget_becomes_reasoning_effort(claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    claude.messages.create(
        model="o3",
        max_tokens=16000,
        thinking={"type": "enabled", "budget_tokens": 8192},
        messages=[{"role": "user", "content": "hard problem"}],
    )
    body = upstream(mocks)
    assert body["reasoning_effort"] == "medium"
    assert body["max_completion_tokens"] == 16000


def test_anthropic_client_max_tokens_stop_reason(claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="truncat", finish="length"))
    msg = claude.messages.create(model=GPT, max_tokens=2, messages=[{"role": "user", "content": "essay"}])
    assert msg.stop_reason == "max_tokens"
    assert msg.content[0].text == "truncat"  # type: ignore[union-attr]
