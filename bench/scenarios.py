"""The four benchmark scenarios: what is sent, where, and how a complete answer is recognised."""

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
# What Codex and the Agents SDK send (instructions + input, a streamed Responses reply), with store off: the
# scenario measures the translation, not the response store.
RESPONSES_STREAM_BODY: dict[str, object] = {
    "model": MODEL,
    "instructions": SYSTEM,
    "input": [{"role": "user", "content": [{"type": "input_text", "text": PROMPT}]}],
    "max_output_tokens": 64,
    "temperature": 0.2,
    "stream": True,
    "store": False,
}


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    headers: dict[str, str]
    terminator: str  # what the last event of a complete stream contains


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    stream: bool
    inbound: Request  # what a gateway receives
    direct: Request  # the same work asked of the mock directly: the baseline for "added latency"
    open_loop: bool  # whether the fixed-rate runs are part of this scenario
    # Targets that cannot do this scenario's translation: they are sent ``direct`` (their column is reference only).
    passthrough: tuple[str, ...] = ()

    def request_for(self, target_name: str) -> Request:
        if target_name == "direct" or target_name in self.passthrough:
            return self.direct
        return self.inbound


# The relays that only pass bytes on (bench/pyrelay.py, nginx proxy_pass).
NO_TRANSLATION = ("pyrelay", "nginx")


def _openai(body: dict[str, object], terminator: str = "") -> Request:
    return Request("/v1/chat/completions", msgspec.json.encode(body), OPENAI_HEADERS, terminator)


def scenarios() -> list[Scenario]:
    nonstream = _openai(OPENAI_BODY)
    stream = _openai(OPENAI_STREAM_BODY, "[DONE]")
    anthropic = Request("/v1/messages", msgspec.json.encode(ANTHROPIC_STREAM_BODY), ANTHROPIC_HEADERS, "message_stop")
    responses = Request(
        "/v1/responses", msgspec.json.encode(RESPONSES_STREAM_BODY), OPENAI_HEADERS, "event: response.completed"
    )
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
            passthrough=NO_TRANSLATION,
        ),
        Scenario(
            "responses",
            "Responses-in (/v1/responses) -> OpenAI-up, streaming ({chunks} chunks): translation both ways",
            True,
            responses,
            stream,
            open_loop=False,
            # LiteLLM's openai provider sends /v1/responses on to the upstream's own /v1/responses, which a
            # chat-completions upstream does not have: no Responses -> chat translation to compare with.
            passthrough=(*NO_TRANSLATION, "litellm"),
        ),
    ]
