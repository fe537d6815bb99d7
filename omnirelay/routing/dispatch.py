"""The attempt loop: try a request's plan (its model's route, then each fallback model's) channel by channel
until one answers.

Per model, up to ``retry.max_attempts`` upstream calls: untried channels first, in the balancer's order; once
every usable channel was tried, the least-tried one again after an exponential backoff with full jitter.
Channels whose breaker is open, that rest after a 429's Retry-After, or that are at their concurrency cap are
skipped. When nothing is usable the loop waits, if the wait is short (a rest or cool-down ending within
``retry_after_cap``; a concurrency slot within ``routing.queue_timeout``), else moves on to the next model.
Every retry after the first call also needs the per-process retry budget, and the first model's deadline
(``retry.deadline``; by default the longest ``total`` timeout of its channels, 600 s with the defaults) bounds
the whole request: every attempt, backoff and wait, each call's timeouts clipped to what is left. A timed-out
channel is called again only once every other usable channel was tried, and only within the deadline.

Only failures the upstream caused count against a channel's breaker (``retry.outcome_of``), each attempt once,
and they are attributed to the caller's key (``tenant``) so one key cannot open a channel for everyone.

The caller is told about every attempt (``note``) before it starts, so a failure can still say which channel
and how many attempts it took, and (through what ``note`` returned) when it ended and how long it took: the
upstream time behind ``x-omnirelay-overhead-ms`` and the attempt spans of a trace.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from omnirelay.config import RetryConfig, Timeouts
from omnirelay.core.errors import GatewayError
from omnirelay.routing.breaker import Breaker
from omnirelay.routing.limits import SlotWaiters
from omnirelay.routing.retry import Outcome, RetryBudget, Verdict, backoff_delay, outcome_of, verdict
from omnirelay.routing.table import Channel, Route, RouteTable

log = logging.getLogger("omnirelay.routing")

TIMER_PAD_S = 0.005
# A 429 without Retry-After still says the channel is full: other requests skip it this long.
RATE_LIMIT_REST_S = 1.0

T = TypeVar("T")

# Told when an attempt ends: the channel, the attempt's number, when it started (time.monotonic()), how many
# seconds it took, and its failure (None: it succeeded). ``note`` may return one for each attempt it is told of.
AttemptEnded = Callable[[Channel, int, float, float, GatewayError | None], None]


class Lease:
    """One attempt's hold on a channel: its concurrency slots and, if it is the half-open probe, the probe.
    Exactly one of ``succeed``/``fail``/``abandon`` ends it; later calls are ignored."""

    __slots__ = ("_done", "_waiters", "breaker", "channel", "probe", "started", "tenant")

    def __init__(self, channel: Channel, probe: bool, waiters: SlotWaiters, tenant: str | None = None) -> None:
        self.channel = channel
        self.breaker: Breaker = channel.breaker
        self.probe = probe
        self.tenant = tenant
        self.started = time.monotonic()
        self._waiters = waiters
        self._done = False
        for slots in channel.slots:
            slots.in_use += 1

    def _release(self) -> bool:
        if self._done:
            return False
        self._done = True
        if self.channel.slots:
            for slots in self.channel.slots:
                slots.in_use -= 1
            self._waiters.released()
        return True

    def succeed(self) -> None:
        if self._release():
            self.breaker.on_success(time.monotonic(), self.probe)

    def fail(self, err: GatewayError) -> None:
        if not self._release():
            return
        now = time.monotonic()
        outcome = outcome_of(err)
        if outcome is Outcome.CHANNEL_FAILED:
            self.breaker.on_failure(now, err.message, self.probe, self.tenant, self.started)
            if err.retry_after is not None and err.kind == "overloaded":
                self.breaker.rest(now, err.retry_after)
        elif outcome is Outcome.AT_CAPACITY:  # full, not broken: rest it, count nothing
            self.breaker.rest(now, err.retry_after if err.retry_after is not None else RATE_LIMIT_REST_S)
            self.breaker.on_abandoned(self.probe)
        else:  # the upstream answered and refused this request (a 400, a 404): no verdict on the channel
            self.breaker.on_answered(now, self.probe)

    def abandon(self) -> None:
        if self._release():
            self.breaker.on_abandoned(self.probe)


def _usable(channel: Channel, now: float, tenant: str | None = None) -> bool:
    if not channel.breaker.available(now, tenant):
        return False
    return not any(s.full for s in channel.slots) if channel.slots else True


def _clip(timeouts: Timeouts, deadline: float, now: float) -> Timeouts:
    left = max(0.001, deadline - now)
    if left >= timeouts.total:
        return timeouts
    return Timeouts(connect=min(timeouts.connect, left), first_byte=min(timeouts.first_byte, left), total=left)


class Dispatcher:
    def __init__(self, routes: RouteTable) -> None:
        self.routes = routes
        self.cfg = routes.config.routing
        self.board = routes.board
        self.budget = RetryBudget(self.cfg.budget)
        self.waiters = SlotWaiters()

    async def run(
        self,
        plan: list[Route],
        call: Callable[[Channel, Timeouts], Awaitable[T]],
        note: Callable[[Channel, int], AttemptEnded | None],
        hold: bool = False,
        tenant: str | None = None,
    ) -> tuple[T, Lease]:
        """The first successful ``call`` and its lease (already settled unless ``hold``: the caller then ends
        it with succeed/fail/abandon, e.g. when a stream it opened is over). Raises the last failure.
        ``tenant``: the caller's key id, to which the breakers attribute failures (None: unattributed)."""
        self.board.ensure_started()
        self.budget.deposit()
        started = time.monotonic()
        deadline_s = plan[0].deadline
        deadline = started + deadline_s
        queue_until: float | None = None
        attempts = 0
        retries = 0  # backoff exponent: pauses taken before calling a channel again
        last: GatewayError | None = None
        for route in plan:
            retry = route.retry
            order = route.order()
            tried: dict[str, int] = {}
            excluded: set[str] = set()
            used = waits = 0
            backed_off = False
            while used < retry.max_attempts and attempts < self.cfg.max_total_attempts:
                now = time.monotonic()
                if now >= deadline:
                    raise self._exhausted(last, route, f"gave up after {deadline_s}s (routing deadline)")
                channel = self._pick(order, tried, excluded, now, tenant)
                if channel is None:
                    if waits < retry.max_attempts:
                        waits += 1
                        if queue_until is None:
                            queue_until = now + self.cfg.queue_timeout
                        if await self._wait(order, excluded, now, retry, deadline, queue_until, tenant):
                            continue
                    break
                if tried.get(channel.name) and not backed_off:
                    # Calling a channel again: pause first, then pick again (another may be usable by then).
                    delay = backoff_delay(retries, retry)
                    retries += 1
                    backed_off = True
                    await asyncio.sleep(min(delay, max(0.0, deadline - now)))
                    continue
                backed_off = False
                if attempts and not self.budget.withdraw():
                    log.warning("retry budget exhausted; not retrying %s", route.public_name)
                    raise self._exhausted(last, route, "retry budget exhausted")
                attempts += 1
                used += 1
                tried[channel.name] = tried.get(channel.name, 0) + 1
                ended = note(channel, attempts)
                lease = Lease(channel, channel.breaker.admit(now), self.waiters, tenant)
                try:
                    value = await call(channel, _clip(channel.effective_timeouts, deadline, now))
                except GatewayError as err:
                    if ended is not None:
                        ended(channel, attempts, now, time.monotonic() - now, err)
                    lease.fail(err)
                    last = err
                    v = verdict(err)
                    if v is Verdict.FATAL:
                        raise
                    if v is Verdict.OTHER_CHANNEL:
                        excluded.add(channel.name)
                    log.info("attempt %d on %s failed: %s", attempts, channel.name, err.message)
                    continue
                except BaseException:
                    lease.abandon()
                    raise
                if ended is not None:
                    ended(channel, attempts, now, time.monotonic() - now, None)
                if not hold:
                    lease.succeed()
                return value, lease
        raise self._exhausted(last, plan[0], None, tenant)

    def _pick(
        self,
        order: tuple[Channel, ...],
        tried: dict[str, int],
        excluded: set[str],
        now: float,
        tenant: str | None = None,
    ) -> Channel | None:
        """The first usable untried channel; else the usable one tried least; None if none is usable."""
        best: Channel | None = None
        best_tries = 1 << 30
        for channel in order:
            if not _usable(channel, now, tenant) or (excluded and channel.name in excluded):
                continue
            n = tried.get(channel.name, 0) if tried else 0
            if n == 0:
                return channel
            if n < best_tries:
                best, best_tries = channel, n
        return best

    async def _wait(
        self,
        order: tuple[Channel, ...],
        excluded: set[str],
        now: float,
        retry: RetryConfig,
        deadline: float,
        queue_until: float,
        tenant: str | None = None,
    ) -> bool:
        """Nothing is usable now: wait if it is worth it. True if the caller should look again."""
        soonest: float | None = None
        any_full = False
        for channel in order:
            if channel.name in excluded:
                continue
            if channel.breaker.available(now, tenant):
                any_full = True  # usable but for its concurrency cap
                continue
            ready = channel.breaker.ready_in(now, tenant)
            if ready is not None and (soonest is None or ready < soonest):
                soonest = ready
        limit = min(retry.retry_after_cap, deadline - now)
        if soonest is not None and soonest <= limit:
            # uvloop's timers have millisecond granularity and may fire just before the rest ends; the pad
            # makes the next pick see the channel usable instead of spending another bounded wait.
            await asyncio.sleep(soonest + TIMER_PAD_S)
            return True
        if any_full:
            wait = min(queue_until, deadline) - now
            if wait > 0:
                return await self.waiters.wait(wait) or time.monotonic() < queue_until
        return False

    def _exhausted(
        self, last: GatewayError | None, route: Route, why: str | None, tenant: str | None = None
    ) -> GatewayError:
        if last is not None:
            if why:
                log.info("%s: %s", route.public_name, why)
            return last
        now = time.monotonic()
        waits = [r for c in route.channels if (r := c.breaker.ready_in(now, tenant))]
        full = any(_usable(c, now, tenant) is False and c.breaker.available(now, tenant) for c in route.channels)
        kept_off = tenant is not None and any(c.breaker.available(now) for c in route.channels)
        if why:
            reason = why
        elif full:
            reason = "every channel is at its concurrency limit"
        elif kept_off:
            reason = "this key's recent requests failed there; it is kept off for a cool-down"
        else:
            reason = "every channel is unavailable"
        return GatewayError(
            "overloaded",
            f"no channel can serve `{route.public_name}` now: {reason}",
            retry_after=max(1.0, min(waits)) if waits else 1.0,
            code="channels_unavailable",
        )
