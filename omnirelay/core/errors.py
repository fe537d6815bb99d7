"""One error type for the whole gateway. Inbound protocols render it in their caller's format.

``kind`` is the protocol-neutral category; each protocol maps it to its own ``type`` string and the
status comes with it. Messages must never contain secrets: upstream bodies are summarised, not echoed with
request headers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Literal

# The longest Retry-After passed on (to the client, and to the breaker's rest): an upstream asking for hours
# (or sending 999999) must not make the gateway tell its callers to stay away for days.
MAX_RETRY_AFTER_S = 60.0

ErrorKind = Literal[
    "invalid_request",  # 400
    "authentication",  # 401
    "permission",  # 403
    "not_found",  # 404
    "too_large",  # 413
    "rate_limit",  # 429, too many requests or tokens
    "quota",  # 429, no credit left
    "upstream",  # 502, the upstream failed or answered nonsense
    "overloaded",  # 503, the upstream or the gateway has no capacity
    "timeout",  # 504
    "internal",  # 500
]

STATUS_BY_KIND: dict[ErrorKind, int] = {
    "invalid_request": 400,
    "authentication": 401,
    "permission": 403,
    "not_found": 404,
    "too_large": 413,
    "rate_limit": 429,
    "quota": 429,
    "upstream": 502,
    "overloaded": 503,
    "timeout": 504,
    "internal": 500,
}


class GatewayError(Exception):
    """A failure with everything a protocol needs to render it.

    ``retryable`` says whether another channel may succeed where this one failed (routing uses it);
    ``retry_after`` is seconds, passed on as the ``Retry-After`` header.
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.param = param
        self.code = code
        self.status = status if status is not None else STATUS_BY_KIND[kind]
        self.retry_after = retry_after
        self.retryable = (
            retryable if retryable is not None else kind in ("rate_limit", "upstream", "overloaded", "timeout")
        )
        self.headers = headers or {}

    def __repr__(self) -> str:
        return f"GatewayError({self.kind!r}, {self.message!r}, status={self.status})"

    def redact(self, scrub: Callable[[str], str]) -> GatewayError:
        """Pass every upstream-supplied text of this error through ``scrub`` (in place; returns self), and
        bound its Retry-After."""
        self.message = scrub(self.message)
        self.args = (self.message,)
        if self.code:
            self.code = scrub(self.code)
        if self.param:
            self.param = scrub(self.param)
        self.retry_after = clamp_retry_after(self.retry_after)
        return self


def clamp_retry_after(seconds: float | None) -> float | None:
    """A usable Retry-After: None for garbage (NaN, infinite, negative), at most MAX_RETRY_AFTER_S."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER_S)


def retry_after_header(headers: Mapping[str, str]) -> float | None:
    """Seconds from an upstream's ``retry-after-ms`` (OpenAI) or ``Retry-After`` (delta-seconds or an HTTP
    date), capped by clamp_retry_after; None when absent or unparseable."""
    raw_ms = raw = None
    for name, value in headers.items():
        lowered = name.lower()
        if lowered == "retry-after-ms":
            raw_ms = value
        elif lowered == "retry-after":
            raw = value
    if raw_ms:
        seconds = _number(raw_ms)
        if seconds is not None:
            return clamp_retry_after(seconds / 1000.0)
    if not raw:
        return None
    seconds = _number(raw)
    if seconds is None:
        try:
            seconds = parsedate_to_datetime(raw.strip()).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        seconds = max(0.0, seconds)
    return clamp_retry_after(seconds)


def _number(text: str) -> float | None:
    text = text.strip()
    if not text or len(text) > 32:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def invalid(message: str, param: str | None = None) -> GatewayError:
    return GatewayError("invalid_request", message, param=param)


def upstream_status_error(status: int, message: str, retry_after: float | None = None) -> GatewayError:
    """Map an upstream HTTP failure to the status the caller should see.

    Client mistakes (400, 404, 413, 422) are the caller's and keep their meaning; 401/403 mean the gateway's
    own upstream credentials are wrong, which is not the caller's fault, so they become 502; 429 stays 429 with
    its Retry-After; 5xx become 502 (503/529 overload become 503).
    """
    retry_after = clamp_retry_after(retry_after)
    if status in (400, 422):
        return GatewayError("invalid_request", message, retryable=False)
    if status == 404:
        return GatewayError("not_found", message, retryable=False)
    if status == 413:
        return GatewayError("too_large", message, retryable=False)
    if status == 429:
        return GatewayError("rate_limit", message, retry_after=retry_after, code="upstream_rate_limited")
    if status in (401, 403):
        return GatewayError(
            "upstream", f"upstream rejected the gateway's credentials ({status}): {message}", retryable=True
        )
    if status in (503, 529):
        return GatewayError("overloaded", message, retry_after=retry_after)
    if status == 408 or status == 504:
        return GatewayError("timeout", message)
    return GatewayError("upstream", f"upstream error {status}: {message}")
