"""A hung Redis (SIGSTOP: connections stay open, nothing answers) must cost admission milliseconds, not the
socket timeout: the limiter gives up after a short timeout, uses the in-process limits for a while (as for a
dead Redis), and goes back to the shared ones on its own once Redis answers again (SIGCONT)."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from omnirelay.state.local_limits import Limits
from omnirelay.state.redis_limits import RedisLimiter, RedisUnavailable
from tests.gateway import Gateway
from tests.mocks.faults import FaultServer
from tests.routing_support import ADMIN_KEY, base_config, channel, private_redis

PREFIX = "hung:"
# What a hung Redis may add to a request, over the same gateway's latency with a healthy one (the machine may be
# loaded): at the median, and at most (the first requests to meet the hang pay one short timeout). Before the
# fix every admission waited for the 5 s socket timeout.
P50_EXTRA_S = 0.3
MAX_EXTRA_S = 1.0


@pytest.fixture(scope="module")
def redis_server() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A private redis-server (this test stops it) and its URL."""
    with private_redis() as server:
        yield server


def _requests_counted(url: str, key_id: str) -> int:
    """The key's request count in Redis' shared RPM window."""
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return sum(int(v) for v in client.hvals(f"{PREFIX}{{{key_id}}}:rq"))
    finally:
        client.close()


def _reserved(url: str, key_id: str) -> int:
    """Credit units the key's requests in flight hold in Redis."""
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return int(client.hget(f"{PREFIX}{{{key_id}}}:res", "_sum") or 0)
    finally:
        client.close()


def _ask(gw: Gateway, secret: str) -> tuple[int, float]:
    t0 = time.monotonic()
    resp = httpx.post(
        gw.url + "/v1/chat/completions",
        json={"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "q"}]},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    return resp.status_code, time.monotonic() - t0


def test_hung_redis_keeps_admission_fast_and_sharing_resumes(
    redis_server: tuple[subprocess.Popen[bytes], str], faults: FaultServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    proc, url = redis_server
    cfg = base_config(faults, ["hr-a"], {"gpt-4.1-mini": {"channels": [channel("hr-a")]}})
    cfg["state"] = {"redis_url": url, "redis_prefix": PREFIX, "key_refresh_s": 0.2, "usage_flush_s": 0.1}
    gw = Gateway(cfg, tmp_path_factory.mktemp("redis-hung")).start()
    try:
        r = httpx.post(
            gw.url + "/admin/keys",
            json={"name": "hung", "rpm": 100_000, "credit": 100.0},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            timeout=10,
        )
        assert r.status_code == 201, r.text
        key_id, secret = r.json()["key"]["id"], r.json()["secret"]
        deadline = time.monotonic() + 5
        while _ask(gw, secret)[0] != 200:  # the key cache picks the new key up
            assert time.monotonic() < deadline
            time.sleep(0.05)
        healthy = sorted(_ask(gw, secret)[1] for _ in range(20))
        print(f"healthy Redis: p50 {statistics.median(healthy) * 1000:.0f} ms, max {healthy[-1] * 1000:.0f} ms")
        shared_before = _requests_counted(url, key_id)
        assert shared_before >= 1  # limits are taken in Redis

        os.kill(proc.pid, signal.SIGSTOP)
        try:
            results = [_ask(gw, secret) for _ in range(20)]
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        latencies = sorted(t for _, t in results)
        p50 = statistics.median(latencies)
        print(f"hung Redis: p50 {p50 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms over 20 requests")
        assert [s for s, _ in results] == [200] * 20
        assert p50 < statistics.median(healthy) + P50_EXTRA_S, (latencies, healthy)
        assert latencies[-1] < healthy[-1] + MAX_EXTRA_S, (latencies, healthy)

        # Redis answers again: within a few seconds admissions are counted there again.
        counted = _requests_counted(url, key_id)
        deadline = time.monotonic() + 10
        while True:
            assert _ask(gw, secret)[0] == 200
            now_counted = _requests_counted(url, key_id)
            if now_counted > counted:
                break
            counted = now_counted
            assert time.monotonic() < deadline, "limits never went back to Redis"
            time.sleep(0.1)
        # Admits that timed out ran once Redis woke up; their reservations are released, not left to expire
        # (which takes the longest upstream timeout plus a minute, the key's credit held all that time).
        deadline = time.monotonic() + 10
        while _reserved(url, key_id) != 0:
            assert time.monotonic() < deadline, f"{_reserved(url, key_id)} credit units still reserved"
            time.sleep(0.1)
        log = gw.log()
        assert log.count("Redis unavailable, limits fall back") <= 2, log  # logged once, not per request
    finally:
        gw.stop()


def _limits(key_id: str, request_id: str, reserve_units: int) -> Limits:
    return Limits(
        key_id=key_id,
        request_id=request_id,
        rpm=None,
        tpm=None,
        est_tokens=10,
        credit_units=10**12,
        spent_units=0,
        reserve_units=reserve_units,
        reserve_ttl_s=60.0,
    )


def test_a_request_reserving_nothing_settles(redis_server: tuple[subprocess.Popen[bytes], str]) -> None:
    """A credit-tracked request that reserves nothing (an unpriced model) settles in Redis; its settle script
    used to fail half-way on ``HINCRBY _sum -0``."""
    _, url = redis_server

    async def run() -> None:
        limiter = RedisLimiter(url, prefix="zero:")
        await limiter.start()
        try:
            assert (await limiter.admit(_limits("k0", "r1", 0))).verdict == "ok"
            await limiter.settle("k0", "r1", cost_units=0, token_delta=0, tpm=False, credit=True)
            assert (await limiter.admit(_limits("k0", "r2", 500))).verdict == "ok"
            await limiter.settle("k0", "r2", cost_units=400, token_delta=0, tpm=False, credit=True)
            assert await limiter.spent("k0") == 400
        finally:
            await limiter.close()
        assert _reserved_at(url, "zero:", "k0") == 0

    asyncio.run(run())


def _reserved_at(url: str, prefix: str, key_id: str) -> int:
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return int(client.hget(f"{prefix}{{{key_id}}}:res", "_sum") or 0)
    finally:
        client.close()


def test_after_a_failure_redis_is_not_tried_again_for_a_while(
    redis_server: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, url = redis_server

    async def run() -> None:
        limiter = RedisLimiter(url, prefix="rest:", retry_after_s=0.5)
        await limiter.start()
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            with pytest.raises(redis.exceptions.TimeoutError):
                await limiter.admit(_limits("k1", "r1", 1))
            first = time.monotonic() - t0
            t1 = time.monotonic()
            for i in range(50):  # no network at all while Redis rests
                with pytest.raises(RedisUnavailable):
                    await limiter.admit(_limits("k1", f"r{i + 2}", 1))
            rest = time.monotonic() - t1
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        try:
            assert first < 1.0 and rest < 0.2, (first, rest)
            await asyncio.sleep(0.6)
            assert (await limiter.admit(_limits("k1", "r99", 1))).verdict == "ok"  # tried again, and shared
        finally:
            await limiter.close()

    asyncio.run(run())
