"""The OpenAI inbound protocol's edges (validation, error shapes, upstream failures, broken streams) over HTTP,
plus the OpenAI provider's pure translation pieces that no mock can reach (presets, header parsing, parser)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import httpx
import msgspec
import openai
import pytest

from omnirelay.config import UpstreamConfig
from omnirelay.core.errors import GatewayError
from omnirelay.core.events import ChoiceEnd, StreamStart, TextDelta, ToolCallArgs, ToolCallStart, UsageReport
from omnirelay.core.types import ChatRequest, ImagePart, Message, Reasoning, TextPart, ToolCall
from omnirelay.protocols.openai_chat import PROTOCOL
from omnirelay.providers.openai import PROVIDER, OpenAIProvider
from omnirelay.upstream.executor import scrubber_for
from tests.gateway import Gateway, mock_config
from tests.mocks.script import ScriptedReply
from tests.mocks.server import MockUpstreams

GPT = "gpt-4.1"


@pytest.fixture(scope="module")
def strict_gateway(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One upstream call per request and no circuit breaker, so an upstream failure reaches the caller as it
    is (and does not rest or trip the session gateway's channels)."""
    cfg = mock_config(mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini"))
    cfg["routing"] = {"retry": {"max_attempts": 1}, "breaker": {"enabled": False, "max_rest": 0}}
    gw = Gateway(cfg, tmp_path_factory.mktemp("strict-openai-gateway")).start()
    yield gw
    gw.stop()


@pytest.fixture()
def strict_oai(strict_gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=strict_gateway.url + "/v1", api_key="sk-test", max_retries=0, timeout=30)


def post(gateway: Gateway, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else msgspec.json.encode(body)
    return httpx.post(
        gateway.url + "/v1/chat/completions",
        content=content,
        headers={"content-type": "application/json", "authorization": "Bearer sk-test"},
        timeout=30,
    )


def assert_openai_error(r: httpx.Response, status: int, etype: str, param: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err: dict[str, Any] = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == etype
    if param is not None:
        assert err["param"] == param
    assert isinstance(err["message"], str) and err["message"]
    return err


# -- inbound validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": GPT}, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": GPT, "messages": []}, "messages"),
        (
            {
                "model": GPT,
                "messages": [
                    {"role": "system", "content": "s"},
                    {"role": "user", "content": "u"},
                    {"role": "user", "content": 42},
                ],
            },
            "messages[2].content",
        ),
        ({"model": GPT, "messages": [{"content": "no role"}]}, "messages[0].role"),
        ({"model": GPT, "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": GPT, "messages": [{"role": "user", "content": "x"}], "temperature": 3}, "temperature"),
        ({"model": GPT, "messages": [{"role": "user", "content": "x"}], "n": 0}, "n"),
        ({"model": GPT, "messages": [{"role": "user", "content": "x"}], "tool_choice": "always"}, "tool_choice"),
        (
            {"model": GPT, "messages": [{"role": "user", "content": [{"type": "video", "video": "x"}]}]},
            "messages[0].content[0].type",
        ),
        (
            {"model": GPT, "messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "r"}]},
            "messages[1].tool_call_id",
        ),
        (
            {
                "model": GPT,
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]}
                ],
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {"model": GPT, "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "yaml"}},
            "response_format.type",
        ),
    ],
)
def test_validation_errors_name_the_param(
    gateway: Gateway, mocks: MockUpstreams, body: dict[str, Any], param: str
) -> None:
    assert_openai_error(post(gateway, body), 400, "invalid_request_error", param)
    assert mocks.requests("openai") == []  # nothing reached the upstream


def test_invalid_json_body(gateway: Gateway) -> None:
    assert_openai_error(post(gateway, b'{"model": "gpt-4.1", "messages": ['), 400, "invalid_request_error")


def test_sdk_raises_bad_request_with_param(oai: openai.OpenAI) -> None:
    bad_messages: Any = [{"role": "user", "content": "x"}, {"role": "user", "content": 5}]
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(
            model=GPT,
            messages=bad_messages,
        )
    assert info.value.param == "messages[1].content"
    assert info.value.type == "invalid_request_error"


def test_unknown_model_is_404_in_openai_shape(oai: openai.OpenAI, gateway: Gateway) -> None:
    err = assert_openai_error(
        post(gateway, {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}),
        404,
        "not_found_error",
    )
    assert err["code"] == "model_not_found"
    assert "no-such-model" in err["message"]
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])


# -- upstream failures -------------------------------------------------------------------------------------


def test_upstream_429_passes_through_with_retry_after(strict_oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push(
        "openai", ScriptedReply(error_status=429, error_message="Rate limit reached for requests", retry_after=7)
    )
    with pytest.raises(openai.RateLimitError) as info:
        strict_oai.chat.completions.create(model=GPT, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "7"
    assert "Rate limit reached" in info.value.message
    assert isinstance(info.value.body, dict) and info.value.body["type"] == "rate_limit_error"


def test_upstream_insufficient_quota_is_429_quota(strict_gateway: Gateway, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(error_status=429, error_message="You exceeded your current quota"))
    err = assert_openai_error(
        post(strict_gateway, {"model": GPT, "messages": [{"role": "user", "content": "x"}]}), 429, "insufficient_quota"
    )
    assert err["code"] == "insufficient_quota"


def test_upstream_500_becomes_502(strict_oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(error_status=500, error_message="The server had an error"))
    with pytest.raises(openai.APIStatusError) as info:
        strict_oai.chat.completions.create(model=GPT, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502
    assert isinstance(info.value.body, dict) and info.value.body["type"] == "upstream_error"


def test_upstream_400_keeps_its_meaning(strict_gateway: Gateway, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(error_status=400, error_message="Invalid value for 'top_logprobs'"))
    r = post(strict_gateway, {"model": GPT, "messages": [{"role": "user", "content": "x"}]})
    err = assert_openai_error(r, 400, "invalid_request_error")
    assert "top_logprobs" in err["message"]


def test_upstream_401_is_502_and_hides_the_key(strict_gateway: Gateway, mocks: MockUpstreams) -> None:
    mocks.push(
        "openai", ScriptedReply(error_status=401, error_message="Incorrect API key provided: sk-mock-openai-secret")
    )
    r = post(strict_gateway, {"model": GPT, "messages": [{"role": "user", "content": "x"}]})
    assert_openai_error(r, 502, "upstream_error")
    assert "sk-mock-openai-secret" not in r.text


def test_malformed_upstream_json_is_502(strict_oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(malformed=True))
    with pytest.raises(openai.APIStatusError) as info:
        strict_oai.chat.completions.create(model=GPT, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502


def test_malformed_upstream_stream_is_an_error(strict_oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(malformed=True))
    with pytest.raises(openai.APIError) as info:
        list(strict_oai.chat.completions.create(model=GPT, messages=[{"role": "user", "content": "x"}], stream=True))
    assert "malformed" in info.value.message or getattr(info.value, "status_code", None) == 502


def test_stream_cut_midway_ends_with_an_error_the_sdk_raises(strict_oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="a long answer that never finishes", chunks=6, truncate_after_chunks=3))
    received: list[str] = []
    started = time.monotonic()
    with pytest.raises(openai.APIError) as info:
        stream = strict_oai.chat.completions.create(model=GPT, messages=[{"role": "user", "content": "x"}], stream=True)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert time.monotonic() - started < 15  # an error, not a hang
    assert received  # the first pieces did arrive before the cut
    assert "a long answer that never finishes".startswith("".join(received))
    assert isinstance(info.value.body, dict) and info.value.body["type"] == "upstream_error"


def test_stream_cut_midway_wire_frames(strict_gateway: Gateway, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="abcdefghij", chunks=5, truncate_after_chunks=2))
    body = {"model": GPT, "messages": [{"role": "user", "content": "x"}], "stream": True}
    with httpx.stream(
        "POST", strict_gateway.url + "/v1/chat/completions", json=body, headers={"authorization": "Bearer sk-test"}
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        frames = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert frames[-1] == "data: [DONE]"
    error = msgspec.json.decode(frames[-2][6:])
    assert set(error["error"]) == {"message", "type", "param", "code"}


def test_usage_cost_in_non_streaming_response(gateway: Gateway, mocks: MockUpstreams) -> None:
    r = post(gateway, {"model": GPT, "messages": [{"role": "user", "content": "x"}]})
    usage = r.json()["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["cost"] > 0  # gpt-4.1 has a list price


def test_unknown_fields_go_upstream_only_to_openai_family(gateway: Gateway, mocks: MockUpstreams) -> None:
    r = post(
        gateway,
        {
            "model": GPT,
            "messages": [{"role": "user", "content": "x"}],
            "logit_bias": {"50256": -100},
            "prediction": {"type": "content", "content": "x"},
            "omnirelay": {"trace": True},
        },
    )
    assert r.status_code == 200
    body = mocks.last_request("openai").body
    assert body["logit_bias"] == {"50256": -100}
    assert body["prediction"] == {"type": "content", "content": "x"}
    assert "omnirelay" not in body


# -- protocol and provider units ---------------------------------------------------------------------------


def test_parse_request_maps_fields_and_extras() -> None:
    req = PROTOCOL.parse_request(
        msgspec.json.encode(
            {
                "model": "m",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "look"},
                            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD", "detail": "low"}},
                        ],
                    }
                ],
                "max_tokens": 5,
                "max_completion_tokens": 9,
                "reasoning_effort": "low",
                "stream": True,
                "stream_options": {"include_usage": True},
                "store": True,
                "custom_thing": [1],
            }
        ),
        {},
    )
    assert req.max_tokens == 9
    assert req.reasoning == Reasoning(effort="low")
    assert req.stream and req.include_usage
    assert req.extra == {"store": True, "custom_thing": [1]}
    assert req.inbound_protocol == "openai"
    assert req.messages[0].content == [
        TextPart(text="look"),
        ImagePart(data="QUJD", media_type="image/jpeg", detail="low"),
    ]


def provider(preset: str, **options: Any) -> OpenAIProvider:
    up = UpstreamConfig(
        name="u", provider="openai", preset=preset, base_url="http://x/v1", api_key="sk-0123456789", options=options
    )
    p = PROVIDER(up)
    assert isinstance(p, OpenAIProvider)
    return p


def test_presets_are_data() -> None:
    history = [
        Message(role="developer", content=[TextPart(text="rules")]),
        Message(role="user", content=[TextPart(text="q")], name="ann"),
        Message(role="assistant", tool_calls=[ToolCall(id="toolu_01ABCdef", name="f", arguments="{}")]),
        Message(role="tool", tool_call_id="toolu_01ABCdef", content=[TextPart(text="r")]),
    ]
    req = ChatRequest(model="m", messages=history, seed=3, user="u1", max_tokens=10, stream=True)
    mistral = provider("mistral").build_body(req, "mistral-medium-latest")
    call_id = mistral["messages"][2]["tool_calls"][0]["id"]
    assert len(call_id) == 9 and call_id.isalnum()
    assert mistral["messages"][3]["tool_call_id"] == call_id
    assert mistral["messages"][0]["role"] == "system"
    assert "name" not in mistral["messages"][1]
    assert mistral["random_seed"] == 3 and "seed" not in mistral and "user" not in mistral
    assert mistral["max_tokens"] == 10 and "stream_options" not in mistral

    effort = ChatRequest(model="m", messages=history[:2], reasoning=Reasoning(effort="medium"), stop=["x"])
    assert provider("xai").build_body(effort, "grok-3-mini")["reasoning_effort"] == "low"
    grok4 = provider("xai").build_body(effort, "grok-4-0629")
    assert "reasoning_effort" not in grok4 and "stop" not in grok4
    assert provider("openai").build_body(effort, "o4-mini")["reasoning_effort"] == "medium"
    # Options override preset fields.
    assert (
        provider("custom", max_tokens_field="max_completion_tokens").build_body(req, "m")["max_completion_tokens"] == 10
    )
    with pytest.raises(ValueError, match="base_url"):
        PROVIDER(UpstreamConfig(name="c", provider="openai", preset="custom"))


def test_parse_error_retry_after_variants() -> None:
    p = provider("openai")
    body = b'{"error": {"message": "slow down", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}'
    err = p.parse_error(429, {"Retry-After-Ms": "1500", "Retry-After": "9"}, body)
    assert (err.kind, err.status, err.retry_after) == ("rate_limit", 429, 1.5)
    err = p.parse_error(429, {"retry-after": formatdate(time.time() + 30, usegmt=True)}, body)
    assert err.retry_after is not None and 25 <= err.retry_after <= 31
    err = p.parse_error(503, {}, b"<html>Service Unavailable</html>")
    assert err.kind == "overloaded" and "<html>" not in err.message
    err = p.parse_error(502, {}, b"bad gateway from proxy")
    assert err.status == 502 and "bad gateway from proxy" in err.message
    err = p.parse_error(400, {}, b'{"error": {"message": "bad key sk-0123456789", "param": "messages", "code": "x"}}')
    assert err.status == 400 and err.param == "messages"
    # The executor scrubs what the provider parsed, for every provider (tests/test_upstream_hostile.py).
    assert "sk-0123456789" not in err.redact(scrubber_for(p.upstream).scrub).message


def sse(obj: Any) -> bytes:
    return b"data: " + msgspec.json.encode(obj) + b"\n\n"


def delta(d: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"index": 0, "delta": d, **fields}


def test_stream_parser_flags_truncation_and_garbage() -> None:
    p = provider("vllm")
    req = ChatRequest(model="m", messages=[], stream=True)
    head = sse({"id": "c1", "model": "m", "created": 1, "choices": [delta({"role": "assistant", "content": "hi"})]})
    parser = p.stream_parser(req)
    events = parser.feed(head[:20]) + parser.feed(head[20:])
    assert [type(e) for e in events] == [StreamStart, TextDelta]
    with pytest.raises(GatewayError) as info:
        parser.close()  # no finish_reason, no [DONE]
    assert info.value.kind == "upstream"

    parser = p.stream_parser(req)
    with pytest.raises(GatewayError) as info:
        parser.feed(b"data: {oops\n\n")
    assert info.value.kind == "upstream"

    # vLLM spelling of reasoning, a tool call split over chunks, a stop string, usage, no blank line at the end.
    parser = p.stream_parser(req)
    first_args = {"index": 0, "id": "c", "function": {"name": "f", "arguments": '{"a'}}
    more_args = {"index": 0, "function": {"arguments": '":1}'}}
    body = (
        head
        + sse({"choices": [delta({"reasoning": "hmm"})]})
        + sse({"choices": [delta({"tool_calls": [first_args]})]})
        + sse({"choices": [delta({"tool_calls": [more_args]})]})
        + sse({"choices": [delta({}, finish_reason="stop", stop_reason="END")]})
        + sse({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})
        + b"data: [DONE]"
    )
    events = parser.feed(body) + parser.close()
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert [(s.id, s.name) for s in starts] == [("c", "f")]
    assert "".join(e.arguments for e in events if isinstance(e, ToolCallArgs)) == '{"a":1}'
    end = next(e for e in events if isinstance(e, ChoiceEnd))
    assert end.finish_reason == "tool_calls"  # a tool call ended with "stop" is still a tool call
    usage = next(e for e in events if isinstance(e, UsageReport)).usage
    assert (usage.input_tokens, usage.output_tokens) == (3, 4)


def test_parse_response_dialects() -> None:
    req = ChatRequest(model="m", messages=[])
    # vLLM/Ollama spell reasoning "reasoning"; xAI counts reasoning outside completion_tokens.
    body = {
        "id": "x1",
        "created": 5,
        "model": "grok-3-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok", "reasoning": "because"}}],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 2,
            "total_tokens": 42,
            "completion_tokens_details": {"reasoning_tokens": 30},
        },
    }
    resp = provider("xai").parse_response(msgspec.json.encode(body), req)
    assert resp.choices[0].message.reasoning[0].text == "because"
    assert resp.choices[0].finish_reason == "stop"
    assert (resp.usage.output_tokens, resp.usage.reasoning_tokens) == (32, 30)
    with pytest.raises(GatewayError) as info:
        provider("openai").parse_response(b'{"error": {"message": "overloaded"}}', req)
    assert info.value.kind == "upstream" and "overloaded" in info.value.message
    # An error frame in the middle of a stream.
    parser = provider("openai").stream_parser(ChatRequest(model="m", messages=[], stream=True))
    with pytest.raises(GatewayError) as info:
        parser.feed(sse({"error": {"message": "model crashed", "type": "server_error"}}))
    assert "model crashed" in info.value.message
