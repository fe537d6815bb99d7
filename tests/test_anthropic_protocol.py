"""The inbound Anthropic Messages protocol: validation, errors in Anthropic's shape, streaming failures, and
passthrough of fields omnirelay does not model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.gateway import Gateway, mock_config
from tests.mocks.script import ScriptedReply, ScriptedToolCall, ScriptedUsage
from tests.mocks.server import MockUpstreams

MODEL = "claude-sonnet-4-20250514"
HEADERS = {"x-api-key": "sk-test", "anthropic-version": "2023-06-01", "content-type": "application/json"}


@pytest.fixture(scope="module")
def strict_gateway(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway that makes one upstream call per request and never rests or trips a channel, so an upstream
    failure reaches the caller as it is (and does not disturb the session gateway's channels)."""
    cfg = mock_config(mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini"))
    cfg["routing"] = {"retry": {"max_attempts": 1}, "breaker": {"enabled": False, "max_rest": 0}}
    gw = Gateway(cfg, tmp_path_factory.mktemp("strict-gateway")).start()
    yield gw
    gw.stop()


@pytest.fixture()
def strict_claude(strict_gateway: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=strict_gateway.url, api_key="sk-test", max_retries=0, timeout=30)


def post(gateway: Gateway, body: Any, raw: bytes | None = None) -> httpx.Response:
    content = raw if raw is not None else json.dumps(body).encode()
    return httpx.post(gateway.url + "/v1/messages", content=content, headers=HEADERS, timeout=30)


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in text.split("\n\n"):
        if not frame.strip():
            continue
        lines = frame.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), frame
        events.append((lines[0][7:], json.loads(lines[1][6:])))
    return events


def assert_anthropic_error(resp: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body


# --- inbound validation ------------------------------------------------------------------------------------


def test_missing_max_tokens_is_400_naming_the_field(mocks: MockUpstreams, gateway: Gateway) -> None:
    resp = post(gateway, {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
    body = assert_anthropic_error(resp, 400, "invalid_request_error")
    assert "max_tokens" in body["error"]["message"]
    assert mocks.requests("anthropic") == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": MODEL, "max_tokens": "many", "messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
        ({"model": MODEL, "max_tokens": 10, "messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        (
            {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages[0].content[0].text",
        ),
        (
            {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "hologram"}]}]},
            "messages[0].content[0].type",
        ),
        ({"model": MODEL, "max_tokens": 10, "messages": []}, "messages"),
        (
            {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "x"}], "temperature": 3},
            "temperature",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"name": "f"}],
            },
            "tools[0].input_schema",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 10,
                "messages": [
                    {"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"}]}
                ],
            },
            "messages[0].content[0]",
        ),
    ],
)
def test_validation_errors_name_the_field(gateway: Gateway, body: dict[str, Any], field: str) -> None:
    resp = post(gateway, body)
    err = assert_anthropic_error(resp, 400, "invalid_request_error")
    assert err["error"]["message"].startswith(field + ":"), err


def test_body_that_is_not_json(gateway: Gateway) -> None:
    assert_anthropic_error(post(gateway, None, raw=b"{not json"), 400, "invalid_request_error")


def test_unknown_model_is_404_not_found(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        claude.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    body: Any = info.value.body
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    assert "no-such-model" in body["error"]["message"]


# --- upstream failures -------------------------------------------------------------------------------------


def test_upstream_429_passes_through_with_retry_after(
    mocks: MockUpstreams, strict_gateway: Gateway, strict_claude: anthropic.Anthropic
) -> None:
    mocks.push("anthropic", ScriptedReply(error_status=429, error_message="Number of requests exceeded", retry_after=7))
    with pytest.raises(anthropic.RateLimitError) as info:
        strict_claude.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "7"
    body: Any = info.value.body
    assert body["error"] == {"type": "rate_limit_error", "message": "Number of requests exceeded"}


def test_upstream_529_is_overloaded(mocks: MockUpstreams, strict_claude: anthropic.Anthropic) -> None:
    mocks.push("anthropic", ScriptedReply(error_status=529))
    with pytest.raises(anthropic.APIStatusError) as info:
        strict_claude.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 503
    body: Any = info.value.body
    assert body["error"]["type"] == "overloaded_error"


def test_upstream_auth_failure_is_not_the_callers(mocks: MockUpstreams, strict_gateway: Gateway) -> None:
    mocks.push("anthropic", ScriptedReply(error_status=401, error_message="invalid x-api-key"))
    resp = post(strict_gateway, {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
    body = assert_anthropic_error(resp, 502, "api_error")
    assert "sk-ant-mock-secret" not in resp.text and "invalid x-api-key" in body["error"]["message"]


def test_malformed_upstream_is_502_api_error(mocks: MockUpstreams, strict_gateway: Gateway) -> None:
    mocks.push("anthropic", ScriptedReply(malformed=True))
    resp = post(strict_gateway, {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
    assert_anthropic_error(resp, 502, "api_error")


def test_stream_cut_midway_ends_with_error_event(
    mocks: MockUpstreams, strict_gateway: Gateway, strict_claude: anthropic.Anthropic
) -> None:
    mocks.push("anthropic", ScriptedReply(text="a long answer cut short", chunks=6, truncate_after_chunks=5))
    with pytest.raises(anthropic.APIStatusError) as info:  # noqa: SIM117
        with strict_claude.messages.stream(
            model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        ) as s:
            for _ in s:
                pass
    body: Any = info.value.body
    assert body["type"] == "error" and body["error"]["type"] == "api_error"

    mocks.push("anthropic", ScriptedReply(text="a long answer cut short", chunks=6, truncate_after_chunks=5))
    resp = post(
        strict_gateway,
        {"model": MODEL, "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert resp.status_code == 200
    events = sse_events(resp.text)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and "content_block_delta" in names
    assert names[-1] == "error" and "message_stop" not in names
    assert events[-1][1] == {"type": "error", "error": events[-1][1]["error"]}
    assert events[-1][1]["error"]["type"] == "api_error"


def test_malformed_stream_event_ends_with_error_event(mocks: MockUpstreams, strict_gateway: Gateway) -> None:
    mocks.push("anthropic", ScriptedReply(malformed=True))
    resp = post(
        strict_gateway,
        {"model": MODEL, "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    )
    if resp.status_code == 200:
        events = sse_events(resp.text)
        assert events[-1][0] == "error" and events[-1][1]["error"]["type"] == "api_error"
        assert "message_stop" not in [name for name, _ in events]
    else:  # the relay may hold the response until the first content event; then it is a plain error
        assert_anthropic_error(resp, 502, "api_error")


# --- wire details ------------------------------------------------------------------------------------------


def test_stream_framing_and_deferred_message_delta(mocks: MockUpstreams, gateway: Gateway) -> None:
    mocks.push(
        "anthropic",
        ScriptedReply(
            text="Hi!",
            reasoning="hmm",
            tool_calls=[ScriptedToolCall(id="toolu_x", name="f", arguments='{"a": 1}')],
            usage=ScriptedUsage(input=50, cached=10, cache_write=5, output=8),
        ),
    )
    resp = post(
        gateway, {"model": MODEL, "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    )
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.text.startswith("event: message_start\ndata: {")
    events = sse_events(resp.text)
    for name, data in events:
        assert data["type"] == name
    names = [n for n, _ in events]
    assert names[-2:] == ["message_delta", "message_stop"]
    starts = [d["content_block"]["type"] for n, d in events if n == "content_block_start"]
    assert starts == ["thinking", "text", "tool_use"]
    assert names.count("content_block_stop") == 3
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    usage = delta["usage"]
    assert usage["input_tokens"] == 35 and usage["output_tokens"] == 8
    assert usage["cache_read_input_tokens"] == 10 and usage["cache_creation_input_tokens"] == 5
    assert usage["cost"] > 0
    start = events[0][1]["message"]
    assert start["role"] == "assistant" and start["content"] == [] and start["stop_reason"] is None


def test_non_streaming_usage_carries_cost(mocks: MockUpstreams, gateway: Gateway) -> None:
    resp = post(gateway, {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 200
    body = resp.json()
    assert body["type"] == "message" and body["id"].startswith("msg_")
    assert body["usage"]["cost"] > 0
    assert body["stop_sequence"] is None


def test_unknown_fields_pass_through_to_anthropic(mocks: MockUpstreams, gateway: Gateway) -> None:
    server_tool = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
    resp = post(
        gateway,
        {
            "model": MODEL,
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}],
            "service_tier": "auto",
            "tools": [server_tool],
            "thinking": {"type": "disabled"},
            "omnirelay": {"note": "not for upstream"},
        },
    )
    assert resp.status_code == 200, resp.text
    body = mocks.last_request("anthropic").body
    assert body["service_tier"] == "auto"
    assert body["tools"] == [server_tool]
    assert body["thinking"] == {"type": "disabled"}
    assert "omnirelay" not in body


def test_anthropic_caller_to_openai_upstream_gets_final_usage(
    mocks: MockUpstreams, claude: anthropic.Anthropic
) -> None:
    mocks.push("openai", ScriptedReply(text="from gpt", usage=ScriptedUsage(input=30, cached=10, output=4)))
    with claude.messages.stream(
        model="gpt-4.1", max_tokens=50, system="sys", messages=[{"role": "user", "content": "hi"}]
    ) as s:
        final = s.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == "from gpt"
    assert final.usage.input_tokens == 20 and final.usage.cache_read_input_tokens == 10
    assert final.usage.output_tokens == 4
    sent = mocks.last_request("openai").body
    assert sent["messages"][0]["role"] in ("system", "developer")
