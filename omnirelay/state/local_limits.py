"""Rate limits and credit reservations: the interface, and the in-process implementation.

Windows are sliding over the last 60 seconds in one-second buckets: a bucket leaves the window 60 s after
its second began, so ``reset`` is when the oldest bucket leaves. TPM is checked with an estimate at admit
(input estimate + max_tokens) and corrected to the true count at settle. A request bigger than the whole
TPM budget is still let through when the window is empty, otherwise it could never run.

Credit: a request is admitted only if ``credit - spent - reserved`` is above zero and covers its reservation
(the most it can cost, see ``state.gate``), which it holds until it settles. So the balance stays at or above
zero as long as no request costs more than it reserved.

``LocalLimiter`` holds all of this in the process: exact for a single process, per-process with several
workers or replicas (use Redis there: ``redis_limits.RedisLimiter``).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import deque
from typing import Literal

import msgspec

WINDOW_S = 60

Verdict = Literal["ok", "rpm", "tpm", "credit"]


class Decision(msgspec.Struct, kw_only=True):
    verdict: Verdict
    rpm_remaining: int = 0
    rpm_reset_s: float = 0.0
    tpm_remaining: int = 0
    tpm_reset_s: float = 0.0


class Limits(msgspec.Struct, kw_only=True):
    """What admit needs to know about one key and one request."""

    key_id: str
    request_id: str
    rpm: int | None
    tpm: int | None
    est_tokens: int
    credit_units: int | None
    spent_units: int  # the caller's best knowledge of what is already charged (seed for shared counters)
    reserve_units: int
    reserve_ttl_s: float  # a reservation left by a crashed replica expires after this
    # Credit that open batches hold (from the database, which every replica reads alike): counted as spent by
    # this check only, never stored in a counter (it ends when the batch does).
    held_units: int = 0


class Limiter(ABC):
    async def start(self) -> None:
        """Connect."""

    async def close(self) -> None:
        """Disconnect."""

    @abstractmethod
    async def admit(self, lim: Limits) -> Decision:
        """Check every limit; on "ok", count the request and hold the reservation."""

    @abstractmethod
    async def settle(
        self, key_id: str, request_id: str, *, cost_units: int, token_delta: int, tpm: bool, credit: bool
    ) -> None:
        """Release the reservation, charge ``cost_units``, correct the TPM window by ``token_delta``."""


def _cannot_cover(left: int, reserve: int) -> bool:
    return left <= 0 or left < reserve


class Window:
    """Counts in one-second buckets over the last WINDOW_S seconds."""

    __slots__ = ("buckets", "total")

    def __init__(self) -> None:
        self.buckets: deque[list[int]] = deque()  # [second, count], oldest first
        self.total = 0

    def used(self, sec: int) -> int:
        buckets = self.buckets
        while buckets and buckets[0][0] <= sec - WINDOW_S:
            self.total -= buckets.popleft()[1]
        return max(0, self.total)

    def add(self, sec: int, amount: int) -> None:
        if self.buckets and self.buckets[-1][0] == sec:
            self.buckets[-1][1] += amount
        else:
            self.buckets.append([sec, amount])
        self.total += amount

    def reset_s(self, now: float) -> float:
        """Seconds until the oldest bucket leaves the window (0 when empty)."""
        return max(0.0, self.buckets[0][0] + WINDOW_S - now) if self.buckets else 0.0


class _KeyState:
    __slots__ = ("requests", "reservations", "reserved", "tokens")

    def __init__(self) -> None:
        self.requests = Window()
        self.tokens = Window()
        self.reservations: dict[str, int] = {}
        self.reserved = 0


class LocalLimiter(Limiter):
    def __init__(self) -> None:
        self._keys: dict[str, _KeyState] = {}

    def _state(self, key_id: str) -> _KeyState:
        st = self._keys.get(key_id)
        if st is None:
            st = self._keys[key_id] = _KeyState()
        return st

    def admit_now(self, lim: Limits) -> Decision:
        now = time.time()
        sec = int(now)
        st = self._keys.get(lim.key_id) or self._state(lim.key_id)
        requests, tokens = st.requests, st.tokens
        rpm, tpm, credit = lim.rpm, lim.tpm, lim.credit_units
        r_used = requests.used(sec) if rpm is not None else 0
        t_used = tokens.used(sec) if tpm is not None else 0
        verdict: Verdict
        if rpm is not None and r_used + 1 > rpm:
            verdict = "rpm"
        elif tpm is not None and t_used > 0 and t_used + lim.est_tokens > tpm:
            verdict = "tpm"
        elif credit is not None and _cannot_cover(
            credit - lim.spent_units - lim.held_units - st.reserved, lim.reserve_units
        ):
            verdict = "credit"
        else:
            verdict = "ok"
            if credit is not None:
                st.reservations[lim.request_id] = lim.reserve_units
                st.reserved += lim.reserve_units
            if rpm is not None:
                requests.add(sec, 1)
                r_used += 1
            if tpm is not None:
                tokens.add(sec, lim.est_tokens)
                t_used += lim.est_tokens
        return Decision(
            verdict=verdict,
            rpm_remaining=max(0, (rpm or 0) - r_used),
            rpm_reset_s=requests.reset_s(now),
            tpm_remaining=max(0, (tpm or 0) - t_used),
            tpm_reset_s=tokens.reset_s(now),
        )

    async def admit(self, lim: Limits) -> Decision:
        return self.admit_now(lim)

    def settle_now(self, key_id: str, request_id: str, *, token_delta: int, tpm: bool) -> None:
        st = self._keys.get(key_id)
        if st is None:
            return
        held = st.reservations.pop(request_id, 0)
        st.reserved -= held
        if tpm and token_delta:
            st.tokens.add(int(time.time()), token_delta)

    async def settle(
        self, key_id: str, request_id: str, *, cost_units: int, token_delta: int, tpm: bool, credit: bool
    ) -> None:
        # The charge itself is the gate's pending balance here (it knows what the database has not seen yet).
        self.settle_now(key_id, request_id, token_delta=token_delta, tpm=tpm)
