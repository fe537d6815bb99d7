"""Retry policy: which failures may be retried, how long to back off, and a per-process retry budget.

The budget keeps retries from multiplying load on an upstream that is already failing: every request deposits
``ratio`` of a retry, every retry withdraws a whole one, and ``min_per_second`` retries are always allowed so a
quiet gateway still retries.
"""

from __future__ import annotations

import random
import time
from enum import Enum

from omnirelay.config import RetryBudgetConfig, RetryConfig
from omnirelay.core.errors import GatewayError


class Verdict(Enum):
    RETRY = "retry"  # any channel, this one included after a backoff
    OTHER_CHANNEL = "other_channel"  # this channel cannot serve the request, another one may
    FATAL = "fatal"  # the request itself is at fault: no other channel will do better


def verdict(err: GatewayError) -> Verdict:
    if err.retryable:
        return Verdict.RETRY
    if err.kind == "quota":  # that upstream account is out of credit; another account is not
        return Verdict.OTHER_CHANNEL
    return Verdict.FATAL


class Outcome(Enum):
    """What a failed attempt says about the channel (the breaker counts only CHANNEL_FAILED)."""

    CHANNEL_FAILED = "channel_failed"  # the upstream caused it: 5xx, connection error, timeout, malformed or cut
    AT_CAPACITY = "at_capacity"  # a 429 from the upstream: rest the channel for its Retry-After, no failure
    REQUEST_REFUSED = "request_refused"  # the upstream answered and refused this request: 400, 404, 413, 422


# Failures that say something about the channel's health. 401/403 from an upstream arrive as "upstream" (the
# gateway's credentials for it are wrong: the channel's fault); "quota" is that upstream account out of credit.
CHANNEL_FAILURE_KINDS = frozenset({"upstream", "timeout", "overloaded", "quota"})


def outcome_of(err: GatewayError) -> Outcome:
    if err.kind in CHANNEL_FAILURE_KINDS:
        return Outcome.CHANNEL_FAILED
    if err.kind == "rate_limit":
        return Outcome.AT_CAPACITY
    return Outcome.REQUEST_REFUSED


def backoff_delay(retry_number: int, cfg: RetryConfig, rand: float | None = None) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**n)) for the n-th retry (from 0)."""
    ceiling: float = min(cfg.backoff_cap, cfg.backoff_base * 2.0 ** min(retry_number, 30))
    return (random.random() if rand is None else rand) * ceiling


class RetryBudget:
    __slots__ = ("_floor_left", "_floor_second", "_max_tokens", "_min_per_second", "_ratio", "_tokens")

    def __init__(self, cfg: RetryBudgetConfig) -> None:
        self._ratio = cfg.ratio
        self._min_per_second = cfg.min_per_second
        # Unused deposits expire by capping the bucket: at most ten seconds' worth of the floor, or 100 retries.
        self._max_tokens = max(100.0, cfg.min_per_second * 10.0)
        self._tokens = 0.0
        self._floor_second = 0
        self._floor_left = cfg.min_per_second

    def deposit(self) -> None:
        tokens = self._tokens + self._ratio
        self._tokens = tokens if tokens < self._max_tokens else self._max_tokens

    def withdraw(self) -> bool:
        """Take one retry; False when the budget is spent."""
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        second = int(time.monotonic())
        if second != self._floor_second:
            self._floor_second = second
            self._floor_left = self._min_per_second
        if self._floor_left >= 1.0:
            self._floor_left -= 1.0
            return True
        return False

    @property
    def tokens(self) -> float:
        return self._tokens
