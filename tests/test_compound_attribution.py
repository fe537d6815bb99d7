"""A compound request's upstream calls go through the same call pipeline as a plain request: their channel
failures are attributed to the caller's key, so one key's failing ``think:`` requests keep only that key off
the base model's channel, not everyone (the breaker has its default thresholds: 5 failures in a row)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.gateway import Gateway
from tests.mocks.faults import Fault, FaultServer
from tests.polling import wait_until
from tests.routing_support import ADMIN_KEY, base_config, channel, channel_states

MODEL = "gpt-4.1-mini"


@pytest.fixture(scope="module")
def faults() -> Iterator[FaultServer]:
    server = FaultServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(faults: FaultServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    # One channel: nothing to fail over to, so a wrongly opened breaker shows as a 503.
    cfg = base_config(faults, ["sub"], {"sub": {"channels": [channel("sub")]}})
    cfg["state"] = {"key_refresh_s": 0.2, "usage_flush_s": 0.1}
    g = Gateway(cfg, tmp_path_factory.mktemp("compound-attribution")).start()
    yield g
    g.stop()


def _new_key(gw: Gateway, name: str) -> str:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    r = httpx.post(gw.url + "/admin/keys", json={"name": name}, headers=admin, timeout=10)
    assert r.status_code == 201, r.text
    secret: str = r.json()["secret"]
    wait_until(  # the key cache refreshes every 0.2 s
        lambda: httpx.get(gw.url + "/v1/models", headers=_auth(secret), timeout=5).status_code == 200,
        what="the new key accepted",
    )
    return secret


def _auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _ask(gw: Gateway, secret: str, model: str, stream: bool = False) -> httpx.Response:
    payload: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "q"}], "stream": stream}
    return httpx.post(gw.url + "/v1/chat/completions", json=payload, headers=_auth(secret), timeout=30)


def test_a_compound_requests_failures_keep_only_its_key_off(gw: Gateway, faults: FaultServer) -> None:
    a, b = _new_key(gw, "tenant-a"), _new_key(gw, "tenant-b")
    faults.set("sub", Fault(mode="500", times=5))
    for _ in range(3):  # think's first pass fails on both attempts; A is kept off after the fifth failure
        resp = _ask(gw, a, "think:sub")
        assert resp.status_code in (502, 503), resp.text
    assert faults.hits("sub") == 5
    state = channel_states(gw)[f"sub/{MODEL}"]
    assert state["state"] == "closed" and state["isolated_keys"] == 1, state
    # B is served at once, directly and through think: (two passes on the base model).
    resp = _ask(gw, b, "sub")
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"].startswith("from sub: ")
    streamed = _ask(gw, b, "think:sub", stream=True)
    assert streamed.status_code == 200 and "data: [DONE]" in streamed.text, streamed.text
    # A's own cool-down: its compound call is refused without reaching the upstream.
    hits = faults.hits("sub")
    assert _ask(gw, a, "think:sub").status_code in (502, 503)
    assert faults.hits("sub") == hits
