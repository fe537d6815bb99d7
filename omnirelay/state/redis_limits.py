"""Rate limits and credit shared by every replica, in Redis: one Lua script per admit and one per settle,
so each is atomic and costs one round trip.

Per key (all under one hash tag, so a Redis Cluster keeps them in one slot):
  ``{id}:rq`` / ``{id}:tk``  hash second -> requests / tokens, the 60 s window (same rules as LocalLimiter)
  ``{id}:bal``               hash ``spent``: every charge settled by any replica, in 1e-10 USD. Seeded from the
                             database the first time (and again after an hour idle, when the database has
                             caught up with every replica's batched records).
  ``{id}:res`` / ``{id}:rx`` hash request -> reserved units (and ``_sum``, their total) / zset request ->
                             expiry: reservations in flight; a replica that dies with requests in flight leaves
                             reservations that expire. Every step is O(1) apart from expiring dead ones.
What open batches hold (``Limits.held_units``, read from the database) is passed with each admit and counted
against the credit there, never added to ``spent``: a hold ends with its batch, a counter would keep it.
Clock: Redis ``TIME``, so replicas with skewed clocks still share one window.

Failing fast: every call has a short socket, connect and pool-wait timeout (``TIMEOUT_S``; override with
``?socket_timeout=..&socket_connect_timeout=..&timeout=..`` in the Redis URL) and is never retried by the client.
After a failure (refused, reset, or a hung server that times out) calls raise ``RedisUnavailable`` at once for
``RETRY_AFTER_S`` (the gate then uses its in-process limiter, as for a dead Redis); then one call at a time tries
Redis again, and the first success makes limits shared once more. An admit that timed out may still run when a
hung Redis wakes up: its reservation is released once Redis answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from omnirelay.state.local_limits import Decision, Limiter, Limits, Verdict

log = logging.getLogger("omnirelay.state")

BALANCE_IDLE_TTL_S = 3600
MAX_CONNECTIONS = 64
TIMEOUT_S = 0.2  # socket read/write, connect, and waiting for a pooled connection
RETRY_AFTER_S = 1.0  # after a failure, this long on the local limiter before Redis is tried again
MAX_ORPHANS = 10_000  # timed-out admits whose reservation to release once Redis is back


class RedisUnavailable(redis.exceptions.ConnectionError):
    """Redis failed a moment ago; not tried again yet."""


# Redis did not answer (refused, reset, timed out). Any other RedisError (a script error) is an answer.
UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


_COMMON = """
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now = sec + tonumber(t[2]) / 1000000
local function window(key)
  local used, oldest = 0, nil
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local s = tonumber(all[i])
    if s <= sec - 60 then
      redis.call('HDEL', key, all[i])
    else
      used = used + tonumber(all[i + 1])
      if oldest == nil or s < oldest then oldest = s end
    end
  end
  if used < 0 then used = 0 end
  return used, oldest
end
-- Give a reservation back. Not HINCRBY with -n for n = 0: Lua renders that "-0", which Redis refuses as an
-- integer (the script then failed half-way for every request reserving nothing, e.g. an unpriced model).
local function release(held)
  local n = tonumber(held)
  if n ~= 0 then redis.call('HINCRBY', KEYS[4], '_sum', -n) end
end
"""

ADMIT_LUA = (
    _COMMON
    + """
local rpm, tpm, est = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local credit = tonumber(ARGV[4])
local rused, roldest, tused, toldest = 0, nil, 0, nil
if rpm > 0 then rused, roldest = window(KEYS[1]) end
if tpm > 0 then tused, toldest = window(KEYS[2]) end
local function reset(oldest)
  if oldest == nil then return '0' end
  return tostring(oldest + 60 - now)
end
local function answer(code)
  return {code, rpm - rused, reset(roldest), tpm - tused, reset(toldest)}
end
if rpm > 0 and rused + 1 > rpm then return answer(1) end
if tpm > 0 and tused > 0 and tused + est > tpm then return answer(2) end
if credit >= 0 then
  if redis.call('EXISTS', KEYS[3]) == 0 then redis.call('HSET', KEYS[3], 'spent', ARGV[5]) end
  redis.call('EXPIRE', KEYS[3], ARGV[9])
  local dead = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now)
  for _, rid in ipairs(dead) do
    local held = redis.call('HGET', KEYS[4], rid)
    if held then
      redis.call('HDEL', KEYS[4], rid)
      release(held)
    end
  end
  if #dead > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now) end
  local reserved = tonumber(redis.call('HGET', KEYS[4], '_sum') or '0')
  local spent = tonumber(redis.call('HGET', KEYS[3], 'spent'))
  local left = credit - spent - reserved - tonumber(ARGV[10])
  if left <= 0 or left < tonumber(ARGV[6]) then return answer(3) end
  local ttl = tonumber(ARGV[8])
  redis.call('HSET', KEYS[4], ARGV[7], ARGV[6])
  redis.call('HINCRBY', KEYS[4], '_sum', ARGV[6])
  redis.call('ZADD', KEYS[5], now + ttl, ARGV[7])
  redis.call('EXPIRE', KEYS[4], math.ceil(ttl) + 60)
  redis.call('EXPIRE', KEYS[5], math.ceil(ttl) + 60)
end
if rpm > 0 then
  redis.call('HINCRBY', KEYS[1], sec, 1)
  redis.call('EXPIRE', KEYS[1], 120)
  rused = rused + 1
  if roldest == nil then roldest = sec end
end
if tpm > 0 then
  redis.call('HINCRBY', KEYS[2], sec, est)
  redis.call('EXPIRE', KEYS[2], 120)
  tused = tused + est
  if toldest == nil then toldest = sec end
end
return answer(0)
"""
)

SETTLE_LUA = (
    _COMMON
    + """
local held = redis.call('HGET', KEYS[4], ARGV[1])
if held then
  redis.call('HDEL', KEYS[4], ARGV[1])
  release(held)
end
redis.call('ZREM', KEYS[5], ARGV[1])
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('HINCRBY', KEYS[3], 'spent', ARGV[2])
end
if ARGV[3] == '1' and tonumber(ARGV[5]) ~= 0 then
  redis.call('HINCRBY', KEYS[2], sec, ARGV[5])
  redis.call('EXPIRE', KEYS[2], 120)
end
return 0
"""
)

_VERDICTS: dict[int, Verdict] = {0: "ok", 1: "rpm", 2: "tpm", 3: "credit"}


class RedisLimiter(Limiter):
    def __init__(self, url: str, prefix: str = "omnirelay:", retry_after_s: float = RETRY_AFTER_S) -> None:
        self.url = url
        self.prefix = prefix
        self.retry_after_s = retry_after_s
        self._redis: aioredis.Redis | None = None
        self._admit: Any = None
        self._settle: Any = None
        self._down_until = 0.0  # monotonic; 0: Redis answered last time
        self._trying = False  # one call is finding out whether Redis is back
        self._orphans: deque[tuple[str, str]] = deque(maxlen=MAX_ORPHANS)  # (key id, request id)
        self._cleanup: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # A blocking pool: under a burst, callers wait for a connection instead of failing with
        # "Too many connections" (which would leak reservations until they expire); but only briefly, and
        # the client never retries on its own: a slow Redis must cost a request milliseconds, not seconds.
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=MAX_CONNECTIONS,
            timeout=TIMEOUT_S,
            socket_timeout=TIMEOUT_S,
            socket_connect_timeout=TIMEOUT_S,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        await self._redis.ping()
        self._admit = self._redis.register_script(ADMIT_LUA)
        self._settle = self._redis.register_script(SETTLE_LUA)

    async def close(self) -> None:
        if self._cleanup is not None:
            self._cleanup.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._cleanup
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    def keys_for(self, key_id: str) -> list[str]:
        base = f"{self.prefix}{{{key_id}}}"
        return [f"{base}:rq", f"{base}:tk", f"{base}:bal", f"{base}:res", f"{base}:rx"]

    # -- failing fast ------------------------------------------------------------------------------------

    def _enter(self) -> None:
        """Raise RedisUnavailable while Redis is resting after a failure (one caller at a time tries it)."""
        if not self._down_until:
            return
        if self._trying or time.monotonic() < self._down_until:
            raise RedisUnavailable("Redis failed recently; using the in-process limiter")
        self._trying = True

    def _failed(self, exc: BaseException) -> None:
        if not self._down_until:
            log.warning(
                "Redis did not answer (%s); limits are per process for %.1fs at a time until it does",
                type(exc).__name__,
                self.retry_after_s,
            )
        self._down_until = time.monotonic() + self.retry_after_s
        self._trying = False

    def _answered(self) -> None:
        if self._down_until:
            log.warning("Redis answers again; limits are shared")
            self._down_until = 0.0
            self._trying = False
            if self._orphans and (self._cleanup is None or self._cleanup.done()):
                self._cleanup = asyncio.get_running_loop().create_task(self._release_orphans())

    async def _release_orphans(self) -> None:
        """Release the reservations of admits that timed out (the script may have run after all)."""
        while self._orphans and not self._down_until:
            key_id, request_id = self._orphans.popleft()
            try:
                await self._settle(keys=self.keys_for(key_id), args=[request_id, 0, 0, 0, 0])
            except UNREACHABLE:  # away again: the next recovery carries on
                self._orphans.appendleft((key_id, request_id))
                return
            except redis.exceptions.RedisError as exc:
                log.warning("releasing a timed-out reservation failed: %s", exc)

    # -- limits ------------------------------------------------------------------------------------------

    async def admit(self, lim: Limits) -> Decision:
        self._enter()
        try:
            out = await self._call_admit(lim)
        except UNREACHABLE as exc:
            if isinstance(exc, redis.exceptions.TimeoutError) and lim.credit_units is not None:
                self._orphans.append((lim.key_id, lim.request_id))
            self._failed(exc)
            raise
        except BaseException:
            self._trying = False
            raise
        self._answered()
        return Decision(
            verdict=_VERDICTS[int(out[0])],
            rpm_remaining=max(0, int(out[1])),
            rpm_reset_s=max(0.0, float(out[2])),
            tpm_remaining=max(0, int(out[3])),
            tpm_reset_s=max(0.0, float(out[4])),
        )

    async def _call_admit(self, lim: Limits) -> Any:
        return await self._admit(
            keys=self.keys_for(lim.key_id),
            args=[
                lim.rpm or 0,
                lim.tpm or 0,
                lim.est_tokens,
                -1 if lim.credit_units is None else lim.credit_units,
                lim.spent_units,
                lim.reserve_units,
                lim.request_id,
                lim.reserve_ttl_s,
                BALANCE_IDLE_TTL_S,
                lim.held_units,
            ],
        )

    async def settle(
        self, key_id: str, request_id: str, *, cost_units: int, token_delta: int, tpm: bool, credit: bool
    ) -> None:
        self._enter()
        try:
            await self._settle(
                keys=self.keys_for(key_id),
                args=[request_id, cost_units, int(tpm), int(credit), token_delta],
            )
        except UNREACHABLE as exc:
            self._failed(exc)
            raise
        except BaseException:
            self._trying = False
            raise
        self._answered()

    async def spent(self, key_id: str) -> int | None:
        """The shared balance counter (tests and the admin API read it)."""
        assert self._redis is not None
        value = await self._redis.hget(self.keys_for(key_id)[2], "spent")
        return None if value is None else int(value)
