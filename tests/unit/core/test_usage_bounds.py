"""core.usage_bounds: any usage an upstream reports becomes one that fits the conventions and every store, and
no usage prices to a negative cost."""

from __future__ import annotations

import math
from typing import Any

import pytest

from omnirelay.core.catalog import Price
from omnirelay.core.pricing import cost_of
from omnirelay.core.types import Usage
from omnirelay.core.usage_bounds import MAX_COST_USD, MAX_TOKENS_PER_REQUEST, sane_cost, sane_usage

INT64_MAX = 2**63 - 1
PRICE = Price(input=2.0, cached_input=0.5, output=8.0)


def _usage(**counts: Any) -> Usage:
    # Built the way a decoder could build it: the fields hold whatever the upstream sent.
    u = Usage()
    for name, value in counts.items():
        setattr(u, name, value)
    return u


def _counts(u: Usage) -> tuple[int, int, int, int, int]:
    return (u.input_tokens, u.output_tokens, u.cached_tokens, u.cache_write_tokens, u.reasoning_tokens)


def test_sane_usage_is_returned_unchanged() -> None:
    u = Usage(input_tokens=100, output_tokens=50, cached_tokens=40, cache_write_tokens=10, reasoning_tokens=20)
    assert sane_usage(u) is u


def test_huge_counts_are_capped() -> None:
    u = sane_usage(_usage(input_tokens=10**19, output_tokens=10**30, cached_tokens=10**19, reasoning_tokens=10**19))
    assert _counts(u) == (
        MAX_TOKENS_PER_REQUEST,
        MAX_TOKENS_PER_REQUEST,
        MAX_TOKENS_PER_REQUEST,
        0,
        MAX_TOKENS_PER_REQUEST,
    )


def test_negative_counts_become_zero() -> None:
    u = sane_usage(_usage(input_tokens=-(10**9), output_tokens=-5, cached_tokens=-1, reasoning_tokens=-3))
    assert _counts(u) == (0, 0, 0, 0, 0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12.9, 12),
        (-3.5, 0),
        (math.nan, 0),
        (math.inf, 0),
        (-math.inf, 0),
        ("12", 0),
        (None, 0),
        (True, 0),
        (1e300, 10**9),
    ],
)
def test_counts_of_other_types(value: Any, expected: int) -> None:
    u = sane_usage(_usage(input_tokens=value, output_tokens=value))
    assert u.input_tokens == expected and u.output_tokens == expected
    assert type(u.input_tokens) is int and type(u.output_tokens) is int


def test_cache_counts_never_exceed_the_input() -> None:
    u = sane_usage(_usage(input_tokens=100, cached_tokens=80, cache_write_tokens=50))
    assert (u.input_tokens, u.cached_tokens, u.cache_write_tokens) == (100, 80, 20)
    u = sane_usage(_usage(input_tokens=10, cached_tokens=500))
    assert (u.cached_tokens, u.cache_write_tokens) == (10, 0)


def test_reasoning_never_exceeds_the_output() -> None:
    u = sane_usage(_usage(output_tokens=30, reasoning_tokens=31))
    assert (u.output_tokens, u.reasoning_tokens) == (30, 30)


def test_bounded_usage_fits_a_batch_in_int64() -> None:
    # A whole default batch (1,000 records) of maximal records sums, in cost units, below 2**63.
    worst = Price(input=1000.0, output=1000.0)
    cost = cost_of(_usage(input_tokens=10**19, output_tokens=10**19), worst)
    assert cost == MAX_COST_USD
    assert 1000 * round(cost * 10**10) < INT64_MAX
    assert 1000 * 5 * MAX_TOKENS_PER_REQUEST < INT64_MAX


@pytest.mark.parametrize("counts", [{"input_tokens": -(10**12)}, {"output_tokens": -7}, {"cached_tokens": 10**6}])
def test_cost_is_never_negative(counts: dict[str, int]) -> None:
    assert cost_of(_usage(**counts), PRICE) >= 0.0


def test_cost_of_a_negative_price_is_zero() -> None:
    assert cost_of(Usage(input_tokens=1000, output_tokens=10), Price(input=-5.0, output=-5.0)) == 0.0


def test_cost_of_unchanged_for_sane_usage() -> None:
    u = Usage(input_tokens=1_000_000, output_tokens=1_000_000, cached_tokens=500_000)
    assert cost_of(u, PRICE) == pytest.approx(0.5 * 2.0 + 0.5 * 0.5 + 8.0)


@pytest.mark.parametrize(
    ("cost", "expected"),
    [
        (1.25, 1.25),
        (-6000.0, 0.0),
        (math.nan, 0.0),
        (math.inf, MAX_COST_USD),
        (-math.inf, 0.0),
        (10**400, MAX_COST_USD),
    ],
)
def test_sane_cost(cost: float, expected: float) -> None:
    assert sane_cost(cost) == expected
