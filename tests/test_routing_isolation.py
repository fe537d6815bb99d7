"""One tenant cannot take a model from everyone: only failures the upstream caused count against a channel's
breaker, each attempt once, and failures that all come from one key keep only that key off the channel.

The breakers here have the default thresholds (5 consecutive failures; a 50 % failure rate over 20 requests
in 30 s; a 30 s cool-down), so a channel wrongly opened stays open for the rest of a test.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.gateway import Gateway
from tests.mocks.faults import Fault, FaultServer
from tests.routing_support import ADMIN_KEY, admin_get, base_config, channel, channel_states

MODEL = "gpt-4.1-mini"
PREFIXES = ["rej", "lim", "err", "cut", "flaky"]


@pytest.fixture(scope="module")
def gw(faults: FaultServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    # One channel per model: nothing to fail over to, so a wrongly opened breaker shows as a 503.
    models = {p: {"channels": [channel(p)]} for p in PREFIXES}
    cfg = base_config(faults, PREFIXES, models, budget={"ratio": 1.0, "min_per_second": 1000})
    cfg["state"] = {"key_refresh_s": 0.2, "usage_flush_s": 0.1}
    for up in cfg["upstreams"]:  # bursts of streams on a shared machine: no timeout may stand in for a cut
        if up["name"] == "flaky":
            up["timeouts"] = {"connect": 10.0, "first_byte": 10.0, "total": 30.0}
    g = Gateway(cfg, tmp_path_factory.mktemp("routing-isolation")).start()
    yield g
    g.stop()


def _new_key(gw: Gateway, name: str) -> str:
    r = httpx.post(
        gw.url + "/admin/keys", json={"name": name}, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10
    )
    assert r.status_code == 201, r.text
    secret: str = r.json()["secret"]
    # The key cache refreshes every 0.2 s: wait until the new key is let in.
    deadline = time.monotonic() + 5
    while httpx.get(gw.url + "/v1/models", headers=_auth(secret), timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "the new key was never accepted"
        time.sleep(0.05)
    return secret


@pytest.fixture(scope="module")
def keys(gw: Gateway) -> dict[str, str]:
    return {name: _new_key(gw, f"tenant-{name}") for name in ("a", "b", "c")}


def _auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _ask(gw: Gateway, secret: str, model: str, stream: bool = False, **body: Any) -> httpx.Response:
    payload = {"model": model, "messages": [{"role": "user", "content": "q"}], "stream": stream, **body}
    return httpx.post(gw.url + "/v1/chat/completions", json=payload, headers=_auth(secret), timeout=30)


def _breaker(gw: Gateway, prefix: str) -> dict[str, Any]:
    states = channel_states(gw)
    assert states is not None
    return states[f"{prefix}/{MODEL}"]


def test_requests_the_upstream_refuses_do_not_count(gw: Gateway, faults: FaultServer, keys: dict[str, str]) -> None:
    """Key A sends requests the upstream refuses (400, 404, 413, 422) and ones that hit its rate limit (429):
    none of them is the channel failing, so key B is served at once and the breaker has no failure."""
    shown = {400: 400, 404: 404, 413: 413, 422: 400}  # what the caller sees for each upstream status
    for status in (400, 404, 413, 422, 400, 422, 400, 404):
        faults.set("rej", Fault(status=status, times=1))
        assert _ask(gw, keys["a"], "rej").status_code == shown[status]
    # 429s from the upstream: a capacity signal. The channel rests for the Retry-After (1 s), no failure.
    faults.set("lim", Fault(mode="429", retry_after=1, times=8))
    for _ in range(4):
        assert _ask(gw, keys["a"], "lim").status_code == 429
    faults.set("lim", Fault())
    for prefix in ("rej", "lim"):
        t0 = time.monotonic()
        resp = _ask(gw, keys["b"], prefix)
        assert resp.status_code == 200, (prefix, resp.text)
        assert time.monotonic() - t0 < 2.5  # at most the rest of the last 429, not a 30 s cool-down
        state = _breaker(gw, prefix)
        assert state["state"] == "closed" and state["failures"] == 0, (prefix, state)


def test_one_keys_upstream_failures_keep_only_that_key_off(
    gw: Gateway, faults: FaultServer, keys: dict[str, str]
) -> None:
    """Five failing attempts in a row, all from key A, would open a default breaker: only A is kept off the
    channel; B and C are still served. Once failures come from two keys, the channel opens for everyone."""
    faults.set("err", Fault(mode="500", times=5))
    for _ in range(3):  # two attempts each, but A is kept off after the fifth failure
        assert _ask(gw, keys["a"], "err").status_code == 502
    assert faults.hits("err") == 5
    resp = _ask(gw, keys["b"], "err")
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"].startswith("from err: ")
    state = _breaker(gw, "err")
    assert state["state"] == "closed" and state["isolated_keys"] == 1, state
    kept_off = _ask(gw, keys["a"], "err")  # A's own cool-down: refused without calling the upstream
    assert kept_off.status_code == 503 and faults.hits("err") == 6
    assert "kept off" in kept_off.json()["error"]["message"] and int(kept_off.headers["retry-after"]) > 1
    # The channel really fails now, for B and C alike: the breaker opens for everyone.
    faults.set("err", Fault(mode="500"))
    assert _ask(gw, keys["b"], "err").status_code == 502
    assert _ask(gw, keys["c"], "err").status_code == 502
    assert _ask(gw, keys["b"], "err").status_code == 502
    assert _breaker(gw, "err")["state"] == "open"
    faults.set("err", Fault())
    assert _ask(gw, keys["c"], "err").status_code == 503


def _stream_cut_by_client(gw: Gateway, secret: str, model: str) -> None:
    payload = {"model": model, "messages": [{"role": "user", "content": "a b c d e f g h"}], "stream": True}
    with (
        httpx.Client(timeout=30) as client,
        client.stream("POST", gw.url + "/v1/chat/completions", json=payload, headers=_auth(secret)) as resp,
    ):
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                return  # leave mid-stream: closing the connection before the upstream is done


def _stream(gw: Gateway, secret: str, model: str) -> tuple[int, bool]:
    """(status, whether the stream ended with [DONE])."""
    payload = {"model": model, "messages": [{"role": "user", "content": "a b c d"}], "stream": True}
    with (
        httpx.Client(timeout=30) as client,
        client.stream("POST", gw.url + "/v1/chat/completions", json=payload, headers=_auth(secret)) as resp,
    ):
        body = resp.read().decode()
        return resp.status_code, resp.status_code == 200 and "data: [DONE]" in body


def test_streams_the_client_cuts_do_not_count_and_one_in_seven_cut_upstream_opens_nothing(
    gw: Gateway, faults: FaultServer, keys: dict[str, str]
) -> None:
    # Clients that leave mid-stream: the upstream did nothing wrong. (It sends one chunk and then nothing: had
    # the gateway not noticed the client leave, its 1 s silence timeout would count a failure.)
    faults.set("cut", Fault(mode="hang_mid", after_chunks=1))
    for _ in range(8):
        _stream_cut_by_client(gw, keys["a"], "cut")
    deadline = time.monotonic() + 5  # every upstream call ended: the gateway let go of them
    while faults.open_handlers and time.monotonic() < deadline:
        time.sleep(0.05)
    faults.set("cut", Fault())
    status, done = _stream(gw, keys["b"], "cut")
    assert (status, done) == (200, True)
    state = _breaker(gw, "cut")
    assert state["state"] == "closed" and state["failures"] == 0, state

    # The upstream resets 1 stream in 7 after content reached the client (14 %). Bursts of 42 streams at once:
    # the cut ones end last (the reset comes 0.4 s in), after the successes that started with them. Each cut
    # counts once, the successes count too, and neither the 5-in-a-row nor the 50 % rate breaker opens.
    faults.set("flaky", Fault(mode="reset_mid", after_chunks=1, every=7))
    tenants = [keys["a"], keys["b"], keys["c"]]
    outcome: Counter[str] = Counter()
    with ThreadPoolExecutor(42) as pool:
        for _ in range(4):
            start = threading.Barrier(42)

            def one(i: int, start: threading.Barrier = start) -> tuple[int, bool]:
                start.wait()
                return _stream(gw, tenants[i % 3], "flaky")

            outcome.update("done" if done else str(status) for status, done in pool.map(one, range(42)))
    assert outcome["503"] == 0, outcome
    assert outcome["done"] >= 168 - 168 // 7 - 3, outcome
    state = _breaker(gw, "flaky")
    assert state["state"] == "closed", state
    cut = faults.hits("flaky") // 7
    assert state["failures"] <= cut, (state, cut)  # a cut stream counts once, not once per frame or attempt


def test_admin_view_lists_isolated_keys(gw: Gateway) -> None:
    """The admin view carries the per-channel count of keys kept off (zero on a channel no key broke)."""
    resp = admin_get(gw, "/admin/channels")
    assert resp.status_code == 200
    rows = {c["channel"]: c for c in resp.json()["data"]}
    assert rows[f"rej/{MODEL}"]["isolated_keys"] == 0
