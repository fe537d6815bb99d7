"""A scripted reply, provider-neutral. Each mock renders it in its own provider's exact wire format.

Tests push replies with ``MockUpstreams.push(family, ScriptedReply(...))``; a mock with nothing queued answers
``echo: <last user text>``. Every request a mock receives is recorded (path, headers, JSON body) so tests can
assert what omnirelay actually sent upstream.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class ScriptedToolCall(msgspec.Struct, kw_only=True):
    name: str
    arguments: str  # JSON text
    id: str = "call_mock_1"


class ScriptedUsage(msgspec.Struct, kw_only=True):
    # Provider-neutral totals; each mock maps them to its own fields:
    # input = every prompt token, cached and cache-written ones included (OpenAI's prompt_tokens);
    # output = every generated token, reasoning included.
    input: int = 12
    output: int = 7
    cached: int = 0
    cache_write: int = 0
    reasoning: int = 0


class ScriptedReply(msgspec.Struct, kw_only=True):
    text: str = "Hello from the mock."
    reasoning: str | None = None
    reasoning_signature: str = "sig-mock"
    tool_calls: list[ScriptedToolCall] = []
    finish: Literal["stop", "length", "tool_calls", "stop_sequence"] = "stop"
    stop_sequence: str | None = None
    usage: ScriptedUsage = msgspec.field(default_factory=ScriptedUsage)
    # A hostile upstream: this object is sent as the reply's usage, verbatim, in place of the one built from
    # ``usage`` (the provider's own field names, with values no honest upstream reports).
    raw_usage: dict[str, Any] | None = None
    model: str | None = None  # reported model name; default: the requested one
    chunks: int = 3  # streaming: how many pieces the text (and reasoning, and each tool's arguments) is cut in
    # Failure modes.
    error_status: int | None = None  # answer this HTTP status with the provider's documented error body
    error_message: str = "mock failure"
    retry_after: float | None = None
    malformed: bool = False  # a 200 whose body is not valid JSON / SSE data is not JSON
    truncate_after_chunks: int | None = None  # streaming: drop the connection after this many events
    delay_s: float = 0.0  # wait before answering
    echo: bool = False  # answer the default ``echo: <last user text>`` in place of ``text`` (e.g. slowly)
    chunk_interval_s: float = 0.0  # streaming: wait between frames (a client can see the text arrive piece by piece)
    # streaming: after the content, the provider's documented in-stream failure (OpenAI Responses: the
    # ``response.failed`` event) in place of the normal end
    midstream_failure: bool = False


def split(text: str, pieces: int) -> list[str]:
    """Cut ``text`` into at most ``pieces`` non-empty parts (deterministically)."""
    if not text:
        return []
    pieces = max(1, min(pieces, len(text)))
    size = -(-len(text) // pieces)
    return [text[i : i + size] for i in range(0, len(text), size)]
