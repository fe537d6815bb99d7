"""The breaker in-process: its state machine, failure rate and rest; what counts, in which order, and whose
failures open what."""

from __future__ import annotations

import time
from typing import Any

import pytest

from omnirelay.config import BreakerConfig
from omnirelay.routing.breaker import Breaker


def _breaker(**kw: Any) -> Breaker:
    cfg = BreakerConfig(**{"consecutive_failures": 5, "cooldown": 30.0, "min_requests": 20, "window": 30.0, **kw})
    return Breaker("up/m", cfg)


# Three failures in a row open it for 10 s.
def _small_breaker(**kw: Any) -> Breaker:
    cfg = BreakerConfig(**{"consecutive_failures": 3, "cooldown": 10.0, "min_requests": 4, "window": 10.0, **kw})
    return Breaker("up/m", cfg)


def _st(b: Breaker) -> str:
    return b.state  # a plain str for the checks: mypy would narrow the Literal across calls


def test_breaker_state_machine() -> None:
    b = _small_breaker()
    t = 1000.0
    for _ in range(2):
        b.on_failure(t, "boom", probe=False)
    assert _st(b) == "closed" and b.available(t)
    b.on_failure(t, "boom", probe=False)
    assert _st(b) == "open" and not b.available(t + 9.9) and b.ready_in(t) == pytest.approx(10.0)
    assert b.available(t + 10.0)
    assert b.admit(t + 10.0) is True and _st(b) == "half_open"
    assert not b.available(t + 10.1)  # a single probe
    b.on_failure(t + 10.2, "still", probe=True)
    assert _st(b) == "open" and b.ready_in(t + 10.2) == pytest.approx(10.0)
    assert b.admit(t + 20.3) is True
    b.on_success(t + 20.4, probe=True)
    assert _st(b) == "closed" and b.consecutive == 0 and b.available(t + 20.4)
    assert b.admit(t + 20.5) is False  # closed: no probe


def test_breaker_failure_rate_and_rest() -> None:
    b = _small_breaker(consecutive_failures=100, failure_rate=0.5)
    t = 50.0
    b.on_success(t, False)
    b.on_failure(t, "x", False)
    b.on_success(t, False)
    assert _st(b) == "closed"
    b.on_failure(t, "x", False)  # 2 of 4 in the window
    assert _st(b) == "open"
    r = _small_breaker()
    r.rest(t, 2.0)
    assert not r.available(t + 1.9) and r.available(t + 2.0) and r.ready_in(t) == pytest.approx(2.0)
    r.rest(t, 10_000.0)
    assert r.ready_in(t) == pytest.approx(60.0)  # max_rest caps what a Retry-After can do
    old = _small_breaker(consecutive_failures=100, failure_rate=0.5)
    for _ in range(4):
        old.on_failure(t, "x", False)
        old.on_success(t, False)
    assert _st(old) == "open"
    fresh = _small_breaker(consecutive_failures=100, failure_rate=0.5)
    for _ in range(3):
        fresh.on_failure(t, "x", False)
    fresh.on_success(t + 11.0, False)  # the failures left the window
    fresh.on_failure(t + 11.0, "x", False)
    assert _st(fresh) == "closed"


def test_remote_changes_apply_to_the_local_view() -> None:
    b = _small_breaker()
    b.apply_remote("open", time.time() + 5.0, "from another replica")
    assert _st(b) == "open" and not b.available(time.monotonic()) and b.last_error == "from another replica"
    b.apply_remote("closed", None, None)
    assert _st(b) == "closed" and b.available(time.monotonic())
    b.apply_remote("open", time.time() - 1.0, None)  # stale: ignored
    assert _st(b) == "closed"


def test_failures_that_end_after_a_success_that_began_later_are_not_a_run() -> None:
    """70 attempts start together; 10 fail, but only after the 60 successes ended: no run of 5."""
    b = _breaker()
    t = 100.0
    for i in range(60):
        b.on_success(t + 0.01 + i * 0.001, False)
    for i in range(10):
        b.on_failure(t + 0.4 + i * 0.001, "reset", False, tenant=f"k{i % 3}", started=t)
    assert _st(b) == "closed" and b.consecutive == 0 and b.failures == 10
    # Attempts that began after the last success do make a run.
    for i in range(5):
        b.on_failure(t + 1.0 + i, "down", False, tenant=f"k{i % 2}", started=t + 0.9 + i)
    assert _st(b) == "open"


def test_one_tenants_failures_isolate_that_tenant_only() -> None:
    b = _breaker()
    t = 10.0
    for i in range(5):
        b.on_failure(t + i * 0.1, "500", False, tenant="key_a")
    assert _st(b) == "closed"
    assert not b.available(t + 1, "key_a") and b.available(t + 1, "key_b") and b.available(t + 1)
    assert b.ready_in(t + 1, "key_a") == pytest.approx(29.4)  # the cool-down from its fifth failure
    assert b.available(t + 40.5, "key_a")  # its own cool-down is over
    # The counters started afresh: B's failures must reach the threshold on their own.
    for i in range(4):
        b.on_failure(t + 2 + i * 0.1, "500", False, tenant="key_b")
    assert _st(b) == "closed"
    b.on_failure(t + 3, "500", False, tenant="key_c")  # a second tenant: the channel itself is failing
    assert _st(b) == "open" and not b.available(t + 3, "key_b")


def test_unattributed_failures_open_for_everyone_and_the_rate_is_per_tenant_too() -> None:
    b = _breaker()
    for i in range(5):
        b.on_failure(1.0 + i * 0.01, "500", False)
    assert _st(b) == "open"
    rate = _breaker(consecutive_failures=1000)
    t = 5.0
    for i in range(10):
        rate.on_success(t + i * 0.01, False)
        rate.on_failure(t + i * 0.01, "500", False, tenant="key_a")
    assert _st(rate) == "closed" and not rate.available(t + 1, "key_a") and rate.available(t + 1, "key_b")


def test_answers_and_abandons_are_no_verdict_but_answer_a_probe() -> None:
    b = _breaker(consecutive_failures=2)
    b.on_failure(1.0, "500", False)
    b.on_answered(1.1, False)  # a 400 in between neither resets the run nor dilutes the rate
    b.on_failure(1.2, "500", False)
    assert _st(b) == "open" and b.successes == 0
    assert b.admit(31.5) is True
    b.on_answered(31.6, True)  # the probe's request was refused, but the upstream answered: closed
    assert _st(b) == "closed"
