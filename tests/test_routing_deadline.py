"""The routing deadline bounds a whole request: by default the longest ``total`` timeout of the model's
channels, every attempt, backoff and wait included, so retrying timeouts can no longer multiply it.

Here: first byte 1 s, total 3 s, eight attempts allowed and a breaker that never opens. Before the deadline
existed by default, a hanging upstream took eight first-byte timeouts (8 s and more) to give up.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.gateway import Gateway
from tests.mocks.faults import Fault, FaultServer
from tests.routing_support import ADMIN_KEY, base_config, channel

TOTAL_S = 3.0
BOUND_S = TOTAL_S + 1.5  # the deadline, plus the time to answer and generous slack for a loaded machine


@pytest.fixture(scope="module")
def gw(faults: FaultServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    models = {
        "solo": {"channels": [channel("dl-a")]},
        "pair": {"channels": [channel("dl-b"), channel("dl-c", priority=1)]},
    }
    cfg = base_config(
        faults,
        ["dl-a", "dl-b", "dl-c"],
        models,
        breaker={"enabled": False},
        budget={"ratio": 1.0, "min_per_second": 1000},
        max_total_attempts=10,
    )
    cfg["routing"]["retry"]["max_attempts"] = 8
    for up in cfg["upstreams"]:
        up["timeouts"] = {"connect": 1.0, "first_byte": 1.0, "total": TOTAL_S}
    g = Gateway(cfg, tmp_path_factory.mktemp("routing-deadline")).start()
    yield g
    g.stop()


def _ask(gw: Gateway, model: str, stream: bool) -> tuple[httpx.Response, float]:
    payload = {"model": model, "messages": [{"role": "user", "content": "q"}], "stream": stream}
    t0 = time.monotonic()
    resp = httpx.post(
        gw.url + "/v1/chat/completions",
        json=payload,
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=60,
    )
    return resp, time.monotonic() - t0


@pytest.mark.parametrize("stream", [False, True], ids=["n", "s"])
def test_a_hanging_upstream_gives_up_within_the_deadline(gw: Gateway, faults: FaultServer, stream: bool) -> None:
    faults.set("dl-a", Fault(mode="hang_headers"))
    before = faults.hits("dl-a")
    resp, took = _ask(gw, "solo", stream)
    assert resp.status_code == 504, resp.text
    assert resp.json()["error"]["type"]  # a well-formed OpenAI error body
    print(f"hanging upstream, stream={stream}: 504 after {took:.2f}s")
    assert took < BOUND_S, f"took {took:.2f}s"
    attempts = faults.hits("dl-a") - before
    assert 2 <= attempts <= 4, attempts  # retried, but only while the deadline left time
    assert int(resp.headers["x-omnirelay-attempts"]) == attempts


def test_a_timed_out_channel_is_left_for_another_first(gw: Gateway, faults: FaultServer) -> None:
    """Both channels hang: the attempts alternate between them (never the same one twice in a row) and the
    whole request still ends within the deadline."""
    faults.set("dl-b", Fault(mode="hang_headers"))
    faults.set("dl-c", Fault(mode="hang_headers"))
    resp, took = _ask(gw, "pair", False)
    assert resp.status_code == 504
    assert took < BOUND_S, f"took {took:.2f}s"
    b, c = faults.hits("dl-b"), faults.hits("dl-c")
    assert b >= 1 and c >= 1 and abs(b - c) <= 1, (b, c)
    # The second channel recovers: a request still within its deadline is answered by it.
    faults.set("dl-c", Fault())
    resp, took = _ask(gw, "pair", False)
    assert resp.status_code == 200 and resp.headers["x-omnirelay-channel"] == "dl-c/gpt-4.1-mini"
    assert took < 1.0 + 1.0  # one first-byte timeout on dl-b, then dl-c
