"""Scrubbing secrets out of text an upstream sent back: error messages, codes and params that become a
GatewayError, and from there the client's error body, the log, the usage record and the breaker's last error.

A hostile or careless upstream may echo the key it was sent (whole, cut short by a length limit, as "first and
last characters", or upper/lower-cased), so a token is redacted when it shares any ``FRAGMENT`` consecutive
characters with a known secret, ignoring case, not only when it equals one; tokens shaped like a provider key
are redacted whatever their source. Redaction replaces the whole token with ``REDACTED`` and keeps no
characters of it. Texts are also cut to ``MAX_TEXT`` characters: an error message is not a payload.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[redacted]"
FRAGMENT = 6  # this many consecutive characters of a secret are treated as the secret
MIN_SECRET = 8  # shorter "secrets" (test values like "k") are not keys; redacting them would shred the text
MAX_TEXT = 2000  # characters of an upstream's error text kept (after scrubbing, so no cut leaves a fragment)

# Runs of the characters keys are made of (base64/base62 plus the usual separators).
_TOKEN = re.compile(r"[A-Za-z0-9_\-+/=.~]{" + str(FRAGMENT) + ",}")
# Tokens that look like a provider key whoever's it is: OpenAI/Anthropic/DeepSeek (sk-, sk-ant-, sk-proj-),
# xAI, Google, Groq, Hugging Face, GitHub, Slack, AWS access key ids, and bearer tokens in echoed headers.
_KEY_SHAPED = re.compile(
    r"\b(?:sk|xai|gsk|hf|ghp|gho|ghs|xox[abpr])[-_][A-Za-z0-9_\-]{12,}"
    r"|\bAIza[0-9A-Za-z_\-]{20,}"
    r"|\bAKIA[0-9A-Z]{16}"
    r"|(?i:bearer)\s+(?=[A-Za-z_\-+/=.~]*\d)[A-Za-z0-9_\-+/=.~]{8,}"  # a token has a digit; "Bearer authentication" no
)


class Scrubber:
    """Redacts a fixed set of secrets (and anything key-shaped) from text. Built once per upstream; ``scrub``
    only runs on error paths, so it favours thoroughness over speed."""

    __slots__ = ("_fragments", "_secrets")

    def __init__(self, secrets: Iterable[str | None]) -> None:
        found = {s for s in secrets if s and len(s) >= MIN_SECRET}
        self._secrets = sorted(found, key=len, reverse=True)
        self._fragments = frozenset(s.lower()[i : i + FRAGMENT] for s in found for i in range(len(s) - FRAGMENT + 1))

    def scrub(self, text: str) -> str:
        # Scanning is linear but not free: a multi-megabyte error body is looked at only as far as is kept.
        text = text[: MAX_TEXT * 4]
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        text = _KEY_SHAPED.sub(REDACTED, text)
        if self._fragments:
            text = _TOKEN.sub(self._token, text)
        return text[:MAX_TEXT]

    def scrub_bytes(self, data: bytes) -> bytes:
        """The raw body before a provider parses (and perhaps truncates) it, so no cut-off key survives."""
        for secret in self._secrets:
            raw = secret.encode("utf-8", "replace")
            if raw in data:
                data = data.replace(raw, REDACTED.encode())
        return data

    def _token(self, match: re.Match[str]) -> str:
        token = match.group().lower()
        fragments = self._fragments
        n = FRAGMENT
        for i in range(len(token) - n + 1):
            if token[i : i + n] in fragments:
                return REDACTED
        return match.group()


def secrets_of(api_key: str | None, headers: dict[str, str]) -> list[str]:
    """The secrets an upstream's requests carry: its key, and configured header values that look like
    credentials (by name), with a ``Bearer``/``Basic`` scheme word taken off."""
    found: list[str] = [api_key] if api_key else []
    for name, value in headers.items():
        lowered = name.lower()
        if any(word in lowered for word in ("key", "auth", "token", "secret", "cookie")):
            scheme, sep, rest = value.strip().partition(" ")
            found.append(rest.strip() if sep and scheme.lower() in ("bearer", "basic", "token") else value.strip())
    return found
