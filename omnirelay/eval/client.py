"""One timed chat completion through the official openai SDK, with what the metrics need from the raw JSON
(``reasoning_content`` and ``annotations`` are omnirelay/OpenAI extensions the typed SDK may not expose)."""

from __future__ import annotations

import time
from typing import Any

import openai
from msgspec import Struct


class Reply(Struct, kw_only=True):
    text: str
    reasoning: str = ""
    annotations: list[dict[str, Any]] = []
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    finish_reason: str | None = None
    error: str | None = None  # the call failed; the item scores as wrong

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def make_client(base_url: str, api_key: str, timeout: float) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)


def chat(
    client: openai.OpenAI,
    model: str,
    content: str,
    max_tokens: int | None,
    temperature: float | None = None,
    options: dict[str, Any] | None = None,
) -> Reply:
    """One user turn to ``model``; a failed call (API error, timeout) comes back as a Reply with ``error``."""
    kwargs: dict[str, Any] = {}
    if max_tokens is not None:
        kwargs["max_tokens"] = max_tokens
    if temperature is not None:
        kwargs["temperature"] = temperature
    if options:
        kwargs["extra_body"] = {"omnirelay": options}
    started = time.perf_counter()
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": content}], **kwargs
        )
        data: dict[str, Any] = raw.http_response.json()
    except openai.OpenAIError as exc:
        return Reply(text="", seconds=time.perf_counter() - started, error=f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - started
    choices = data.get("choices") or [{}]
    message = choices[0].get("message") or {}
    usage = data.get("usage") or {}
    return Reply(
        text=message.get("content") or "",
        reasoning=message.get("reasoning_content") or "",
        annotations=list(message.get("annotations") or []),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        seconds=seconds,
        finish_reason=choices[0].get("finish_reason"),
    )
