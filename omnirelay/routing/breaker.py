"""Per-channel circuit breakers.

closed --(N consecutive failures, or failure rate >= R over the window with enough requests)--> open
open --(cool-down elapsed; the next request to pick the channel becomes the probe)--> half-open
half-open --(probe succeeds)--> closed;  half-open --(probe fails)--> open again, for another cool-down.

Everything a request touches is local memory: the check is a few attribute reads. With Redis configured, state
*changes* (open, closed) are published in the background and other replicas apply them to their local view;
each replica still admits its own single half-open probe, and the first probe result closes or re-opens the
channel everywhere.

A 429 with Retry-After also rests the channel (skipped by every request) for that long, up to ``max_rest``.

What counts (``routing.retry.outcome_of`` classifies each attempt): only failures the upstream caused (5xx,
connection errors, timeouts, malformed or cut replies). A 429 is a capacity signal: it rests the channel for its
Retry-After but is no failure; a request the upstream rejected (400, 404, 413, 422) or a client that left says
nothing about the channel and counts neither way.

One tenant cannot open a channel for everyone: failures are attributed to the caller's key, and when every
failure that would open the breaker came from one key, only that key is kept off the channel for the cool-down
(its own requests may be what breaks the upstream) and the counters start afresh for the others. Failures from
two keys or more (or unattributed ones: an open gateway, compound sub-calls) open it for everyone as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Literal

import msgspec

from omnirelay.config import BreakerConfig
from omnirelay.core.ids import new_id

log = logging.getLogger("omnirelay.routing")

State = Literal["closed", "open", "half_open"]

_BUCKETS = 10  # the failure-rate window is kept as this many time slices
MAX_TRACKED = 10_000
MAX_ISOLATED = 1_000  # tenants kept off one channel at once (bounded: keys are many)
_MIXED = "\x00mixed"  # the failures came from more than one tenant (not a key id: ids never hold NUL)


class Breaker:
    """One channel's health: breaker state, rest period, and counters for the admin view."""

    __slots__ = (
        "_board",
        "_cfg",
        "_fail_tenant",
        "_fails",
        "_oks",
        "_run_tenant",
        "_slice",
        "_stamps",
        "consecutive",
        "failures",
        "isolated",
        "last_change",
        "last_error",
        "last_ok",
        "name",
        "open_until",
        "probe_started",
        "probing",
        "resting_until",
        "state",
        "successes",
    )

    def __init__(self, name: str, cfg: BreakerConfig, board: BreakerBoard | None = None) -> None:
        self.name = name
        self._cfg = cfg
        self._board = board
        self.state: State = "closed"
        self.consecutive = 0
        self.open_until = 0.0  # monotonic
        self.resting_until = 0.0  # monotonic
        self.probing = False
        self.probe_started = 0.0
        self.successes = 0
        self.failures = 0
        self.last_ok = float("-inf")  # monotonic time the last success ended
        self.last_error: str | None = None
        self.last_change = time.time()
        self._slice = cfg.window / _BUCKETS
        self._stamps = [-1] * _BUCKETS
        self._oks = [0] * _BUCKETS
        self._fails = [0] * _BUCKETS
        # Who failed: the tenant of every failure of the current run / of each bucket, _MIXED when several,
        # None when unattributed (counts as everyone).
        self._run_tenant: str | None = None
        self._fail_tenant: list[str | None] = [None] * _BUCKETS
        self.isolated: dict[str, float] = {}  # tenant -> monotonic time its own cool-down on the channel ends

    # -- admission --------------------------------------------------------------------------------------

    def available(self, now: float, tenant: str | None = None) -> bool:
        """May a request (of ``tenant``) be sent here now? (Does not change state: see ``admit``.)"""
        if now < self.resting_until:
            return False
        if tenant is not None and self.isolated and now < self.isolated.get(tenant, 0.0):
            return False
        state = self.state
        if state == "closed":
            return True
        if state == "open":
            return now >= self.open_until
        return not self.probing or now - self.probe_started > self._probe_timeout()

    def admit(self, now: float) -> bool:
        """Called when a request is about to use the channel. True if this request is the half-open probe."""
        if self.state == "closed":
            return False
        if self.state == "open":
            self._set("half_open", None)
        self.probing = True
        self.probe_started = now
        return True

    def ready_in(self, now: float, tenant: str | None = None) -> float | None:
        """Seconds until the channel becomes available, None if unknown (a probe is out)."""
        if self.state == "half_open":
            return None if self.probing else max(0.0, self.resting_until - now)
        until = self.resting_until
        if self.state == "open":
            until = max(until, self.open_until)
        if tenant is not None and self.isolated:
            until = max(until, self.isolated.get(tenant, 0.0))
        return max(0.0, until - now)

    def _probe_timeout(self) -> float:
        # A probe whose outcome never came back (should not happen) must not keep the channel out for ever.
        return max(self._cfg.cooldown, 600.0)

    # -- outcomes ---------------------------------------------------------------------------------------

    def _bucket(self, now: float) -> int:
        tick = int(now / self._slice)
        i = tick % _BUCKETS
        if self._stamps[i] != tick:
            self._stamps[i] = tick
            self._oks[i] = 0
            self._fails[i] = 0
            self._fail_tenant[i] = None
        return i

    def on_success(self, now: float, probe: bool) -> None:
        self.successes += 1
        self.consecutive = 0
        self.last_ok = now
        self._oks[self._bucket(now)] += 1
        if probe:
            self.probing = False
        if probe and self.state != "closed":
            self._close()

    def on_failure(
        self, now: float, error: str, probe: bool, tenant: str | None = None, started: float | None = None
    ) -> None:
        """An attempt failed because of the upstream. ``tenant``: the caller's key (None: unattributed);
        ``started``: when the attempt began (None: now)."""
        self.failures += 1
        self.last_error = error
        self._count_failure(now, tenant if tenant is not None else _MIXED, started)
        if probe:
            self.probing = False
        if not self._cfg.enabled:
            return
        if self.state == "half_open":
            if probe:
                self._open(now)
            return
        if self.state != "closed":
            return
        if self.consecutive >= self._cfg.consecutive_failures:
            culprit = self._run_tenant
        elif self._rate_exceeded(now):
            culprit = self._window_tenant(now)
        else:
            return
        if culprit is None or culprit == _MIXED:
            self._open(now)
        else:
            self._isolate(now, culprit)

    def _count_failure(self, now: float, who: str, started: float | None) -> None:
        # In a row means: no success since the attempt began. Under concurrency a failure (a cut stream, a
        # timeout) ends later than the successes that started with it; counting it in completion order would
        # make 1 failure in 7 look like a run of them.
        if started is None or started >= self.last_ok:
            self._run_tenant = who if self.consecutive == 0 or self._run_tenant == who else _MIXED
            self.consecutive += 1
        i = self._bucket(now)
        if self._fails[i] == 0:
            self._fail_tenant[i] = who
        elif self._fail_tenant[i] != who:
            self._fail_tenant[i] = _MIXED
        self._fails[i] += 1

    def on_abandoned(self, probe: bool) -> None:
        """The attempt ended without a verdict on the channel (the client left, a 400, a 429)."""
        if probe:
            self.probing = False

    def on_answered(self, now: float, probe: bool) -> None:
        """The upstream answered, but refused the request itself (400, 404, 413, 422): no failure and no success
        in the counters (else such requests would hide a failing channel), but a probe it answers closes it."""
        if probe:
            self.on_success(now, probe)

    def rest(self, now: float, seconds: float) -> None:
        self.resting_until = max(self.resting_until, now + min(seconds, self._cfg.max_rest))

    def _rate_exceeded(self, now: float) -> bool:
        tick = int(now / self._slice)
        oks = fails = 0
        for i in range(_BUCKETS):
            if self._stamps[i] > tick - _BUCKETS:
                oks += self._oks[i]
                fails += self._fails[i]
        total = oks + fails
        return total >= self._cfg.min_requests and fails >= self._cfg.failure_rate * total

    def _window_tenant(self, now: float) -> str | None:
        """The one tenant behind every failure in the window, else _MIXED."""
        tick = int(now / self._slice)
        found: str | None = None
        for i in range(_BUCKETS):
            if self._stamps[i] > tick - _BUCKETS and self._fails[i]:
                who = self._fail_tenant[i]
                if who == _MIXED or (found is not None and who != found):
                    return _MIXED
                found = who
        return found

    def _isolate(self, now: float, tenant: str) -> None:
        """Keep one tenant off this channel for a cool-down; everyone else's counters start afresh."""
        isolated = self.isolated
        if len(isolated) >= MAX_ISOLATED:
            for name in [n for n, until in isolated.items() if until <= now]:
                del isolated[name]
        if len(isolated) < MAX_ISOLATED or tenant in isolated:
            isolated[tenant] = now + self._cfg.cooldown
        else:  # too many tenants failing at once: the channel itself is the likelier cause
            self._open(now)
            return
        self.consecutive = 0
        self._run_tenant = None
        for i in range(_BUCKETS):
            self._fails[i] = 0
        log.warning(
            "channel %s: key %s kept off for %.1fs after its requests failed (%s); others still use it",
            self.name,
            tenant,
            self._cfg.cooldown,
            self.last_error,
        )

    # -- transitions ------------------------------------------------------------------------------------

    def _open(self, now: float) -> None:
        self.open_until = now + self._cfg.cooldown
        self._set("open", time.time() + self._cfg.cooldown)
        log.warning("channel %s: circuit opened for %.1fs (%s)", self.name, self._cfg.cooldown, self.last_error)

    def _close(self) -> None:
        self.consecutive = 0
        self._stamps = [-1] * _BUCKETS  # a fresh window: old failures must not re-open it at once
        self._set("closed", None)
        log.warning("channel %s: circuit closed", self.name)

    def _set(self, state: State, until_wall: float | None) -> None:
        self.state = state
        self.last_change = time.time()
        if self._board is not None and state != "half_open":
            self._board.publish(self, until_wall)

    def apply_remote(self, state: str, until_wall: float | None, error: str | None) -> None:
        """Another replica saw this channel open or close."""
        now = time.monotonic()
        if state == "open" and until_wall is not None:
            remaining = until_wall - time.time()
            if remaining <= 0:
                return
            self.state = "open"
            self.open_until = now + remaining
            self.probing = False
            self.last_error = error or self.last_error
            self.last_change = time.time()
        elif state == "closed" and self.state != "closed":
            self.state = "closed"
            self.consecutive = 0
            self._stamps = [-1] * _BUCKETS
            self.probing = False
            self.last_change = time.time()

    def snapshot(self, now: float) -> dict[str, Any]:
        state: str = self.state
        if state == "open" and now >= self.open_until:
            state = "half_open"  # the next request will probe
        tick = int(now / self._slice)
        recent = [i for i in range(_BUCKETS) if self._stamps[i] > tick - _BUCKETS]
        return {
            "state": state,
            "consecutive_failures": self.consecutive,
            "window_requests": sum(self._oks[i] + self._fails[i] for i in recent),
            "window_failures": sum(self._fails[i] for i in recent),
            "open_for_s": round(max(0.0, self.open_until - now), 3) if self.state == "open" else 0.0,
            "resting_for_s": round(max(0.0, self.resting_until - now), 3),
            "probe_in_flight": self.probing,
            "isolated_keys": sum(1 for until in self.isolated.values() if until > now),
            "successes": self.successes,
            "failures": self.failures,
            "last_error": self.last_error,
            "last_change": self.last_change,
        }


# Breaker sharing (never awaited by a request): each Redis call's socket and connect timeout (the URL's
# ``?socket_timeout=`` overrides it), the bound on subscribing, and the pause before trying Redis again.
REDIS_TIMEOUT_S = 0.2
REDIS_SETUP_TIMEOUT_S = 2.0
REDIS_RETRY_S = 1.0


class _Change(msgspec.Struct, kw_only=True):
    channel: str
    state: str
    until: float | None = None  # wall clock, for "open"
    error: str | None = None
    replica: str = ""


class BreakerBoard:
    """Every channel's Breaker, by channel name, plus the optional Redis sync."""

    def __init__(self, cfg: BreakerConfig, redis_url: str | None = None, redis_prefix: str = "omnirelay:") -> None:
        self.cfg = cfg
        self.breakers: dict[str, Breaker] = {}
        self.replica = new_id("rep_")
        self._sync = _RedisSync(self, redis_url, redis_prefix) if redis_url else None

    def get(self, name: str) -> Breaker:
        breaker = self.breakers.get(name)
        if breaker is None:
            breaker = Breaker(name, self.cfg, self)
            # Names can come from callers (``<upstream>/<any model>``): past a bound, new ones go untracked.
            if len(self.breakers) < MAX_TRACKED:
                self.breakers[name] = breaker
        return breaker

    @property
    def shared(self) -> bool:
        return self._sync is not None

    def publish(self, breaker: Breaker, until_wall: float | None) -> None:
        if self._sync is not None:
            change = _Change(
                channel=breaker.name,
                state=breaker.state,
                until=until_wall,
                error=breaker.last_error,
                replica=self.replica,
            )
            self._sync.push(change)

    def ensure_started(self) -> None:
        """Start the Redis sync on the running loop if it is configured and not running yet (cheap to call)."""
        if self._sync is not None and not self._sync.started:
            self._sync.start()

    async def start(self) -> None:
        self.ensure_started()

    async def stop(self) -> None:
        if self._sync is not None:
            await self._sync.stop()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        now = time.monotonic()
        return {name: b.snapshot(now) for name, b in sorted(self.breakers.items())}


class _RedisSync:
    """Publishes local state changes and applies other replicas' ones. Never awaited by a request: changes
    go through a queue, and a lost Redis only means replicas stop sharing state until it is back."""

    def __init__(self, board: BreakerBoard, url: str, prefix: str) -> None:
        self.board = board
        self.url = url
        self.hash_key = f"{prefix}breakers"
        self.topic = f"{prefix}breaker-changes"
        self.queue: asyncio.Queue[_Change] = asyncio.Queue(maxsize=10_000)
        self.tasks: list[asyncio.Task[None]] = []
        self.started = False

    def push(self, change: _Change) -> None:
        if not self.started:
            self.start()
        try:
            self.queue.put_nowait(change)
        except asyncio.QueueFull:  # Redis has been away for long; the newest state still applies locally
            log.debug("breaker change queue full; dropping %s", change.channel)

    def start(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self.started = True
        self.tasks = [loop.create_task(self._publisher()), loop.create_task(self._subscriber())]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.tasks = []
        self.started = False

    async def _publisher(self) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # Short timeouts, no client retries: a hung Redis must not hold changes back for long once it is gone.
        client = aioredis.Redis.from_url(
            self.url,
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
        )
        failing = False
        try:
            while True:
                change = await self.queue.get()
                payload = msgspec.json.encode(change)
                while True:
                    try:
                        async with client.pipeline(transaction=False) as pipe:
                            if change.state == "open":
                                pipe.hset(self.hash_key, change.channel, payload)
                            else:
                                pipe.hdel(self.hash_key, change.channel)
                            pipe.publish(self.topic, payload)
                            await pipe.execute()
                        if failing:
                            log.warning("breaker sync: publishing to Redis again")
                            failing = False
                        break
                    except Exception as exc:
                        if not failing:  # once per outage, not once per retry
                            log.warning("breaker sync: cannot publish to Redis (%s); retrying", type(exc).__name__)
                            failing = True
                        await asyncio.sleep(REDIS_RETRY_S)
        finally:
            await client.aclose()

    async def _subscriber(self) -> None:
        import redis.asyncio as aioredis

        failing = False
        while True:
            # No socket timeout here: a subscription is silent for as long as no breaker changes.
            client = aioredis.Redis.from_url(self.url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_keepalive=True)
            try:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                async with asyncio.timeout(REDIS_SETUP_TIMEOUT_S):
                    await pubsub.subscribe(self.topic)
                    # Subscribed first, then read the current state, so no change falls between the two.
                    current = await client.hgetall(self.hash_key)
                for raw in current.values():
                    self._apply(raw)
                if failing:
                    log.warning("breaker sync: subscribed to Redis again")
                    failing = False
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._apply(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:
                    log.warning("breaker sync: Redis subscription lost (%s); reconnecting", type(exc).__name__)
                    failing = True
                await asyncio.sleep(REDIS_RETRY_S)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()

    def _apply(self, raw: bytes | str) -> None:
        try:
            change = msgspec.json.decode(raw, type=_Change)
        except msgspec.DecodeError:
            return
        if change.replica == self.board.replica:
            return
        self.board.get(change.channel).apply_remote(change.state, change.until, change.error)
