"""A hung Redis (SIGSTOP: connections stay open, nothing answers) must cost admission milliseconds, not the
socket timeout: the limiter gives up after a short timeout, uses the in-process limits for a while (as for a
dead Redis), and goes back to the shared ones on its own once Redis answers again (SIGCONT)."""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.gateway import Gateway, free_port
from tests.mocks.faults import FaultServer
from tests.routing_support import ADMIN_KEY, base_config, channel

PREFIX = "hung:"
# What a hung Redis may add to a request, over the same gateway's latency with a healthy one (the machine may be
# loaded): at the median, and at most (the first requests to meet the hang pay one short timeout). Before the
# fix every admission waited for the 5 s socket timeout.
P50_EXTRA_S = 0.3
MAX_EXTRA_S = 1.0


@pytest.fixture(scope="module")
def redis_server() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A private redis-server (this test stops it) and its URL."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    client.close()
    yield proc, url
    os.kill(proc.pid, signal.SIGCONT)
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def faults() -> Iterator[FaultServer]:
    server = FaultServer().start()
    yield server
    server.stop()


def _requests_counted(url: str, key_id: str) -> int:
    """The key's request count in Redis' shared RPM window."""
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return sum(int(v) for v in client.hvals(f"{PREFIX}{{{key_id}}}:rq"))
    finally:
        client.close()


def _ask(gw: Gateway, secret: str) -> tuple[int, float]:
    t0 = time.monotonic()
    resp = httpx.post(
        gw.url + "/v1/chat/completions",
        json={"model": "hr", "messages": [{"role": "user", "content": "q"}]},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    return resp.status_code, time.monotonic() - t0


def test_hung_redis_keeps_admission_fast_and_sharing_resumes(
    redis_server: tuple[subprocess.Popen[bytes], str], faults: FaultServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    proc, url = redis_server
    cfg = base_config(faults, ["hr-a"], {"hr": {"channels": [channel("hr-a")]}})
    cfg["state"] = {"redis_url": url, "redis_prefix": PREFIX, "key_refresh_s": 0.2, "usage_flush_s": 0.1}
    gw = Gateway(cfg, tmp_path_factory.mktemp("redis-hung")).start()
    try:
        r = httpx.post(
            gw.url + "/admin/keys",
            json={"name": "hung", "rpm": 100_000},
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
        log = gw.log()
        assert log.count("Redis unavailable, limits fall back") <= 2, log  # logged once, not per request
    finally:
        gw.stop()
