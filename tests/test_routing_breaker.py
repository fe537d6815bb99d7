"""Circuit breakers through the real gateway: open after consecutive failures or a failure rate, half-open
after the cool-down with a single probe, closed again on their own; shared across replicas through Redis."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest

from tests.gateway import Gateway
from tests.mocks.faults import Fault, FaultServer
from tests.polling import wait_until
from tests.routing_support import (
    ADMIN_KEY,
    admin_get,
    base_config,
    channel,
    channel_state,
    channel_states,
    private_redis,
)

MODEL = "gpt-4.1-mini"
COOLDOWN = 1.0


def _models(prefix: str) -> dict[str, Any]:
    return {f"{prefix}": {"channels": [channel(f"{prefix}-a"), channel(f"{prefix}-b", priority=1)]}}


def _config(faults: FaultServer, prefixes: list[str], **routing: Any) -> dict[str, Any]:
    models: dict[str, Any] = {}
    upstreams: list[str] = []
    for p in prefixes:
        models.update(_models(p))
        upstreams += [f"{p}-a", f"{p}-b"]
    breaker = {"consecutive_failures": 3, "failure_rate": 0.5, "window": 30, "min_requests": 10, "cooldown": COOLDOWN}
    return base_config(faults, upstreams, models, breaker=breaker, **routing)


@pytest.fixture(scope="module")
def gw(faults: FaultServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    g = Gateway(_config(faults, ["brk", "rate", "probe"]), tmp_path_factory.mktemp("routing-breaker")).start()
    yield g
    g.stop()


def _client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=ADMIN_KEY, max_retries=0, timeout=20)


def _answered_by(client: openai.OpenAI, model: str) -> tuple[str, int]:
    raw = client.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": "q"}])
    text = raw.parse().choices[0].message.content or ""
    channel_name = raw.headers["x-omnirelay-channel"]
    assert text.startswith(f"from {channel_name.split('/')[0]}: ")
    return channel_name.split("/")[0], int(raw.headers["x-omnirelay-attempts"])


def _state(gw: Gateway, name: str) -> str:
    return channel_state(gw, f"{name}/{MODEL}")


def _wait_state(gw: Gateway, name: str, state: str, deadline: float = COOLDOWN + 3.0) -> None:
    wait_until(lambda: _state(gw, name) == state, deadline, f"{name} {state} on {gw.url}")


def test_breaker_opens_half_opens_and_closes_on_its_own(gw: Gateway, faults: FaultServer) -> None:
    client = _client(gw)
    faults.set("brk-a", Fault(mode="500"))
    for _ in range(3):  # three consecutive failures on a (each request still answered by b)
        assert _answered_by(client, "brk") == ("brk-b", 2)
    assert _state(gw, "brk-a") == "open"
    hits = faults.hits("brk-a")
    for _ in range(3):  # open: a is not even tried
        assert _answered_by(client, "brk") == ("brk-b", 1)
    assert faults.hits("brk-a") == hits
    _wait_state(gw, "brk-a", "half_open")  # the cool-down is over: the next request probes
    # Half-open: the next request is the probe; a still fails, so it opens again for another cool-down.
    assert _answered_by(client, "brk") == ("brk-b", 2)
    assert faults.hits("brk-a") == hits + 1
    assert _state(gw, "brk-a") == "open"
    assert _answered_by(client, "brk") == ("brk-b", 1)
    # a recovers: after the cool-down the probe succeeds and the breaker closes.
    faults.set("brk-a", Fault())
    _wait_state(gw, "brk-a", "half_open")
    assert _answered_by(client, "brk") == ("brk-a", 1)
    assert _state(gw, "brk-a") == "closed"
    assert _answered_by(client, "brk") == ("brk-a", 1)
    a = channel_states(gw)[f"brk-a/{MODEL}"]
    assert a["state"] == "closed" and a["failures"] == 4 and a["successes"] == 2
    assert a["routes"] == [{"model": "brk", "weight": 1.0, "priority": 0}]


def test_breaker_opens_on_failure_rate(gw: Gateway, faults: FaultServer) -> None:
    client = _client(gw)
    faults.set("rate-a", Fault(mode="500", every=2))  # 50 % failures, never two in a row
    for _ in range(10):  # the 10th request on a completes the window's minimum
        assert _answered_by(client, "rate")[0] in ("rate-a", "rate-b")
    assert faults.hits("rate-a") == 10
    assert _state(gw, "rate-a") == "open"
    assert _answered_by(client, "rate") == ("rate-b", 1)
    assert faults.hits("rate-a") == 10


def test_half_open_admits_a_single_probe(gw: Gateway, faults: FaultServer) -> None:
    client = _client(gw)
    faults.set("probe-a", Fault(mode="500"))
    for _ in range(3):
        _answered_by(client, "probe")
    assert _state(gw, "probe-a") == "open"
    faults.set("probe-a", Fault(mode="slow", delay_s=0.6))  # healthy again, but slow to answer the probe
    _wait_state(gw, "probe-a", "half_open")
    before = faults.hits("probe-a")
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: _answered_by(client, "probe"), range(6)))
    assert faults.hits("probe-a") == before + 1
    assert sorted(results).count(("probe-a", 1)) == 1
    assert results.count(("probe-b", 1)) == 5


def test_admin_channels_requires_the_admin_key(gw: Gateway) -> None:
    import httpx

    resp = httpx.get(gw.url + "/admin/channels", headers={"Authorization": "Bearer wrong"})
    assert resp.status_code == 401
    assert httpx.get(gw.url + "/admin/channels").status_code == 401
    ok = admin_get(gw, "/admin/channels")
    assert ok.status_code == 200 and {c["channel"] for c in ok.json()["data"]} >= {f"brk-a/{MODEL}", f"brk-b/{MODEL}"}


# -- Redis: several replicas ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with private_redis() as (_proc, url):
        yield url


def test_breaker_state_is_shared_across_replicas(
    faults: FaultServer, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cfg = _config(faults, ["rd"], redis_url=redis_url)
    cfg["routing"]["breaker"]["cooldown"] = 2.0
    one = Gateway(cfg, tmp_path_factory.mktemp("replica-1")).start()
    two = Gateway(cfg, tmp_path_factory.mktemp("replica-2")).start()
    try:
        c1, c2 = _client(one), _client(two)
        assert _answered_by(c2, "rd") == ("rd-a", 1)  # replica two is connected and healthy
        faults.set("rd-a", Fault(mode="500"))
        for _ in range(3):
            assert _answered_by(c1, "rd") == ("rd-b", 2)
        hits = faults.hits("rd-a")
        assert _state(one, "rd-a") == "open"
        _wait_state(two, "rd-a", "open", deadline=1.5)  # through Redis, well within the cool-down
        # Replica two never saw a failure on rd-a, yet it does not try it any more.
        assert _answered_by(c2, "rd") == ("rd-b", 1)
        assert faults.hits("rd-a") == hits
        # rd-a recovers; replica one's probe closes the breaker for both.
        faults.set("rd-a", Fault())
        _wait_state(one, "rd-a", "half_open", deadline=5.0)
        assert _answered_by(c1, "rd") == ("rd-a", 1)
        assert _state(one, "rd-a") == "closed"
        _wait_state(two, "rd-a", "closed", deadline=3.0)  # closed by replica one's probe, not half-open
        assert _answered_by(c2, "rd") == ("rd-a", 1)
    finally:
        one.stop()
        two.stop()
