"""The three benchmark scenarios: what is sent, where, and how a complete answer is recognised."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from bench.mock_upstream import MODEL
from bench.targets import CLIENT_KEY

SYSTEM = "You are a concise assistant."
PROMPT = "Say hello in one short sentence."

OPENAI_HEADERS = {"Authorization": f"Bearer {CLIENT_KEY}"}
ANTHROPIC_HEADERS = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}

OPENAI_BODY: dict[str, object] = {
    "model": MODEL,
    "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}],
    "max_tokens": 64,
    "temperature": 0.2,
}
OPENAI_STREAM_BODY: dict[str, object] = {**OPENAI_BODY, "stream": True, "stream_options": {"include_usage": True}}
ANTHROPIC_STREAM_BODY: dict[str, object] = {
    "model": MODEL,
    "max_tokens": 64,
    "system": SYSTEM,
    "messages": [{"role": "user", "content": PROMPT}],
    "temperature": 0.2,
    "stream": True,
}


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    headers: dict[str, str]
    terminator: str  # bytes the tail of a complete stream contains


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    stream: bool
    inbound: Request  # what a gateway receives
    direct: Request  # the same work asked of the mock directly: the baseline for "added latency"
    open_loop: bool  # whether the fixed-rate runs are part of this scenario

    def request_for(self, target_name: str, translates: bool) -> Request:
        if target_name == "direct" or not translates:
            return self.direct
        return self.inbound


def _openai(body: dict[str, object], terminator: str = "") -> Request:
    return Request("/v1/chat/completions", msgspec.json.encode(body), OPENAI_HEADERS, terminator)


def scenarios() -> list[Scenario]:
    nonstream = _openai(OPENAI_BODY)
    stream = _openai(OPENAI_STREAM_BODY, "[DONE]")
    anthropic = Request("/v1/messages", msgspec.json.encode(ANTHROPIC_STREAM_BODY), ANTHROPIC_HEADERS, "message_stop")
    return [
        Scenario("openai", "OpenAI-in -> OpenAI-up, non-streaming", False, nonstream, nonstream, open_loop=True),
        Scenario("stream", "OpenAI-in -> OpenAI-up, streaming ({chunks} chunks)", True, stream, stream, open_loop=True),
        Scenario(
            "anthropic",
            "Anthropic-in (/v1/messages) -> OpenAI-up, streaming ({chunks} chunks): translation both ways",
            True,
            anthropic,
            stream,
            open_loop=False,
        ),
    ]
