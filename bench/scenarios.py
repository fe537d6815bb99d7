"""The four benchmark scenarios: what is sent, where, how a complete answer is recognised, and which targets
cannot serve which (and why)."""

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
    # Targets that cannot serve this scenario at all, and why: not run (their column shows "-").
    cannot: tuple[tuple[str, str], ...] = ()

    def serves(self, target_name: str) -> bool:
        return all(name != target_name for name, _why in self.cannot)

    def request_for(self, target_name: str) -> Request:
        if target_name == "direct" or target_name in self.passthrough:
            return self.direct
        return self.inbound


# The relays that only pass bytes on (bench/pyrelay.py, nginx proxy_pass).
NO_TRANSLATION = ("pyrelay", "nginx")
# claude-code-router has only the Anthropic Messages route.
CCR_ONLY_MESSAGES = ("ccr", "claude-code-router serves only Anthropic Messages (/v1/messages) in")
PORTKEY_NO_MESSAGES = (
    "portkey",
    "Portkey's /v1/messages serves only Anthropic-family providers (anthropic, bedrock, vertex-ai); "
    'for an OpenAI provider it answers "messages is not supported by openai"',
)
PORTKEY_NO_RESPONSES = (
    "portkey",
    "Portkey sends /v1/responses on to the OpenAI provider's own /v1/responses (and refuses it for other "
    'providers: "createModelResponse is not supported by ..."): no Responses -> chat translation',
)


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
        Scenario(
            "openai",
            "OpenAI-in -> OpenAI-up, non-streaming",
            False,
            nonstream,
            nonstream,
            open_loop=True,
            cannot=(CCR_ONLY_MESSAGES,),
        ),
        Scenario(
            "stream",
            "OpenAI-in -> OpenAI-up, streaming ({chunks} chunks)",
            True,
            stream,
            stream,
            open_loop=True,
            cannot=(CCR_ONLY_MESSAGES,),
        ),
        Scenario(
            "anthropic",
            "Anthropic-in (/v1/messages) -> OpenAI-up, streaming ({chunks} chunks): translation both ways",
            True,
            anthropic,
            stream,
            open_loop=False,
            passthrough=NO_TRANSLATION,
            cannot=(PORTKEY_NO_MESSAGES,),
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
            cannot=(PORTKEY_NO_RESPONSES, CCR_ONLY_MESSAGES),
        ),
    ]
