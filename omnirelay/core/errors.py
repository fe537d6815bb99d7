"""One error type for the whole gateway. Inbound protocols render it in their caller's format.

``kind`` is the protocol-neutral category; each protocol maps it to its own ``type`` string and the
status comes with it. Messages must never contain secrets: upstream bodies are summarised, not echoed with
request headers.
"""

from __future__ import annotations

from typing import Literal

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


def invalid(message: str, param: str | None = None) -> GatewayError:
    return GatewayError("invalid_request", message, param=param)


def upstream_status_error(status: int, message: str, retry_after: float | None = None) -> GatewayError:
    """Map an upstream HTTP failure to the status the caller should see.

    Client mistakes (400, 404, 413, 422) are the caller's and keep their meaning; 401/403 mean the gateway's
    own upstream credentials are wrong, which is not the caller's fault, so they become 502; 429 stays 429 with
    its Retry-After; 5xx become 502 (503/529 overload become 503).
    """
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
