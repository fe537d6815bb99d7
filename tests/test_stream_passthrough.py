"""Same-format streaming through the running gateway (OpenAI SDK wire in, OpenAI mock upstream): after the first
content the upstream's frames reach the client byte for byte (their unmodelled fields with them), while the
frames the gateway renders itself, the role/first-content frames, the finish, the usage with its cost and
``[DONE]``, are still there and agree with them."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import openai

from tests.gateway import Gateway
from tests.mocks.script import ScriptedReply
from tests.mocks.server import MockUpstreams

GPT = "gpt-4.1"


def _frames(gateway: Gateway, body: dict[str, Any]) -> list[dict[str, Any]]:
    with httpx.stream(
        "POST",
        gateway.url + "/v1/chat/completions",
        json=body,
        headers={"authorization": "Bearer sk-test"},
        timeout=30,
    ) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    return [msgspec.json.decode(line[6:]) for line in lines[:-1]]


def test_forwarded_and_rendered_frames_make_one_stream(gateway: Gateway, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="abcdefghijklmnopqrst", chunks=10))
    body = {
        "model": GPT,
        "messages": [{"role": "user", "content": "x"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    frames = _frames(gateway, body)
    text = "".join((c["choices"][0]["delta"].get("content") or "") for c in frames if c["choices"])
    assert text == "abcdefghijklmnopqrst"
    # Forwarded frames keep what the upstream sent and omnirelay does not model; rendered ones do not have it.
    forwarded = [c for c in frames if c.get("system_fingerprint") == "fp_mock"]
    assert len(forwarded) >= 5, frames
    assert all(c["choices"][0]["delta"].get("content") for c in forwarded)
    assert {c["id"] for c in frames} == {frames[0]["id"]} and frames[0]["id"].startswith("chatcmpl-")
    assert {c["model"] for c in frames} == {frames[0]["model"]}
    assert frames[0]["choices"][0]["delta"]["role"] == "assistant"
    finish = [c for c in frames if c["choices"] and c["choices"][0].get("finish_reason")]
    assert [c["choices"][0]["finish_reason"] for c in finish] == ["stop"]
    usage = frames[-1]
    assert usage["choices"] == [] and usage["usage"]["cost"] > 0
    assert usage["usage"]["total_tokens"] == usage["usage"]["prompt_tokens"] + usage["usage"]["completion_tokens"]


def test_sdk_reads_a_passed_through_stream_without_usage_frame(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    # The gateway asks the upstream for usage anyway (it accounts from it): the client, who did not, gets none.
    mocks.push("openai", ScriptedReply(text="one two three four", chunks=4))
    chunks = list(oai.chat.completions.create(model=GPT, messages=[{"role": "user", "content": "x"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three four"
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
