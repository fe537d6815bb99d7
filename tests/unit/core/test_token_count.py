"""Local token counts: the encoding each model family uses, and the count against the tokenizer directly."""

from __future__ import annotations

import importlib

import pytest

from omnirelay.core.token_count import (
    MESSAGE_FRAMING,
    REPLY_PRIMING,
    count_request_tokens,
    encoding_of,
)
from omnirelay.core.types import ChatRequest, Message, TextPart, Tool, ToolCall


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("gpt-5-mini", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("openai/gpt-oss-120b", "o200k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("deepseek-chat", None),
        ("gemini-2.5-pro", None),
        ("claude-sonnet-4-5", None),
    ],
)
def test_encoding_of(model: str, encoding: str | None) -> None:
    assert encoding_of(model) == encoding


def _request() -> ChatRequest:
    return ChatRequest(
        model="gpt-4.1",
        messages=[
            Message(role="system", content=[TextPart(text="Be brief."), TextPart(text="Use tools.")]),
            Message(role="user", content=[TextPart(text="naïve café: 東京の天気は")]),
            Message(role="assistant", tool_calls=[ToolCall(id="c1", name="weather", arguments='{"city":"Tokyo"}')]),
        ],
        tools=[Tool(name="weather", description="The weather.", parameters={"type": "object"})],
    )


def test_openai_count_is_the_tokenizer_count_plus_the_framing() -> None:
    enc = importlib.import_module("bpe_openai").get_encoding("o200k_base")
    texts = ["Be brief.", "Use tools.", "naïve café: 東京の天気は", "weather", '{"city":"Tokyo"}']
    tools = '{"name":"weather","description":"The weather.","parameters":{"type":"object"}}'
    expected = sum(len(enc.encode_ordinary(t)) for t in [*texts, tools]) + 3 * MESSAGE_FRAMING + REPLY_PRIMING
    counted = count_request_tokens(_request(), "gpt-4.1")
    assert (counted.input_tokens, counted.exact, counted.method) == (expected, True, "o200k_base")


def test_other_models_get_the_stand_in_count_marked_inexact() -> None:
    counted = count_request_tokens(_request(), "deepseek-chat")
    assert counted.exact is False and counted.method == "o200k_base"
    assert counted.input_tokens == count_request_tokens(_request(), "gpt-4o").input_tokens
