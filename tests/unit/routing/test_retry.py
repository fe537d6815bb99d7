"""The retry policy: which failure is retried where, backoff, the retry budget."""

from __future__ import annotations

import pytest

from omnirelay.config import RetryBudgetConfig, RetryConfig
from omnirelay.core.errors import GatewayError, upstream_status_error
from omnirelay.routing.retry import Outcome, RetryBudget, Verdict, backoff_delay, outcome_of, verdict


def test_outcome_of_each_failure() -> None:
    for status in (400, 404, 413, 422):
        assert outcome_of(upstream_status_error(status, "x")) is Outcome.REQUEST_REFUSED
    assert outcome_of(upstream_status_error(429, "slow down", 2.0)) is Outcome.AT_CAPACITY
    for status in (408, 500, 502, 503, 504, 529, 401, 403):
        assert outcome_of(upstream_status_error(status, "x")) is Outcome.CHANNEL_FAILED
    assert outcome_of(GatewayError("upstream", "reset mid-stream")) is Outcome.CHANNEL_FAILED
    assert outcome_of(GatewayError("timeout", "timed out")) is Outcome.CHANNEL_FAILED
    assert outcome_of(GatewayError("quota", "account out of credit")) is Outcome.CHANNEL_FAILED


def test_retry_policy() -> None:
    cfg = RetryConfig(backoff_base=0.1, backoff_cap=1.0)
    assert backoff_delay(0, cfg, rand=1.0) == pytest.approx(0.1)
    assert backoff_delay(3, cfg, rand=1.0) == pytest.approx(0.8)
    assert backoff_delay(10, cfg, rand=1.0) == pytest.approx(1.0)
    assert all(0 <= backoff_delay(5, cfg) <= 1.0 for _ in range(100))
    assert verdict(upstream_status_error(500, "x")) is Verdict.RETRY
    assert verdict(upstream_status_error(429, "x", 2.0)) is Verdict.RETRY
    assert verdict(upstream_status_error(400, "x")) is Verdict.FATAL
    assert verdict(GatewayError("quota", "no credit")) is Verdict.OTHER_CHANNEL


def test_retry_budget() -> None:
    budget = RetryBudget(RetryBudgetConfig(ratio=0.5, min_per_second=0))
    assert not budget.withdraw()
    for _ in range(4):
        budget.deposit()
    assert budget.withdraw() and budget.withdraw() and not budget.withdraw()
    floor = RetryBudget(RetryBudgetConfig(ratio=0.0, min_per_second=3))
    assert [floor.withdraw() for _ in range(4)] == [True, True, True, False]
