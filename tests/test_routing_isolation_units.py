"""The breaker's accounting in-process: what counts, in which order, and whose failures open what; the
default routing deadline."""

from __future__ import annotations

from typing import Any

import pytest

from omnirelay.config import BreakerConfig, RetryConfig, Timeouts, UpstreamConfig
from omnirelay.core.errors import GatewayError, upstream_status_error
from omnirelay.routing.breaker import Breaker
from omnirelay.routing.retry import Outcome, outcome_of
from omnirelay.routing.table import Channel, Route


def _breaker(**kw: Any) -> Breaker:
    cfg = BreakerConfig(**{"consecutive_failures": 5, "cooldown": 30.0, "min_requests": 20, "window": 30.0, **kw})
    return Breaker("up/m", cfg)


def _st(b: Breaker) -> str:
    return b.state


def test_outcome_of_each_failure() -> None:
    for status in (400, 404, 413, 422):
        assert outcome_of(upstream_status_error(status, "x")) is Outcome.REQUEST_REFUSED
    assert outcome_of(upstream_status_error(429, "slow down", 2.0)) is Outcome.AT_CAPACITY
    for status in (408, 500, 502, 503, 504, 529, 401, 403):
        assert outcome_of(upstream_status_error(status, "x")) is Outcome.CHANNEL_FAILED
    assert outcome_of(GatewayError("upstream", "reset mid-stream")) is Outcome.CHANNEL_FAILED
    assert outcome_of(GatewayError("timeout", "timed out")) is Outcome.CHANNEL_FAILED
    assert outcome_of(GatewayError("quota", "account out of credit")) is Outcome.CHANNEL_FAILED


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


def _route(retry: RetryConfig, *totals: float) -> Route:
    channels = tuple(
        Channel(
            upstream=UpstreamConfig(name=f"u{i}", provider="openai", timeouts=Timeouts(total=total)),
            model="m",
        )
        for i, total in enumerate(totals)
    )
    return Route(public_name="m", channels=channels, retry=retry)


def test_default_deadline_is_the_longest_channel_total() -> None:
    assert _route(RetryConfig(), 30.0, 90.0).deadline == 90.0
    assert _route(RetryConfig(), 600.0).deadline == 600.0  # the defaults: 10 min, not 3 x 600 s
    assert _route(RetryConfig(deadline=5.0), 600.0).deadline == 5.0


def test_channels_table_shows_keys_kept_off() -> None:
    from omnirelay.routing.cli import render_table

    b = _breaker()
    for i in range(5):
        b.on_failure(1.0 + i * 0.01, "upstream error 500: boom", False, tenant="key_a")
    row = {"channel": "u1/m", **b.snapshot(2.0), "in_flight": None}
    assert row["isolated_keys"] == 1 and row["state"] == "closed"
    line = render_table({"data": [row], "replica": "rep_1"}).splitlines()[1]
    assert "closed 1 key(s) kept off" in line
