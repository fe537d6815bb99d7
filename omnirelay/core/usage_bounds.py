"""Bounds on what an upstream may claim a request used, applied before usage is priced, charged or stored.

Usage numbers come from the upstream's reply, which omnirelay does not control: a buggy or hostile upstream can
report ``prompt_tokens: 10**19`` (more than a database integer holds) or negative counts (which would price
to a negative cost and add credit to the key). ``sane_usage`` turns any reported Usage into one that obeys the
conventions of ``core.types`` and fits every store:

* every count is an integer in ``[0, MAX_TOKENS_PER_REQUEST]``; 10**9 tokens is about 500 times the largest
  context window offered today, so no honest request comes near it, and a whole usage batch of such requests
  still sums far below 2**63;
* cached reads plus cache writes are not above the input (they are part of it), reasoning is not above the
  output (it is part of it).

``sane_cost`` does the same for a cost in USD: finite, non-negative, at most ``MAX_COST_USD``.
"""

from __future__ import annotations

import math

from omnirelay.core.types import Usage

MAX_TOKENS_PER_REQUEST = 10**9
# Far above any real request (10**9 tokens at $150/M is $150,000), and small enough that a usage batch of
# 1,000 such costs, in units of 1e-10 USD (state.keys), stays below 2**63.
MAX_COST_USD = 500_000.0


def _count(value: object) -> int:
    """One count, whatever type it arrived as, within [0, MAX_TOKENS_PER_REQUEST]."""
    if isinstance(value, bool):  # a bool is an int to Python; as a token count it means nothing
        return 0
    if isinstance(value, int):
        return min(max(value, 0), MAX_TOKENS_PER_REQUEST)
    if isinstance(value, float) and math.isfinite(value):
        return min(max(int(value), 0), MAX_TOKENS_PER_REQUEST)
    return 0  # NaN, infinities, anything else: nothing countable was reported


def _is_sane(u: Usage) -> bool:
    # One chained comparison per convention (this runs on every request): c, w >= 0 and c + w <= i <= MAX
    # make the input valid; 0 <= r <= o <= MAX the output.
    i, o, c, w, r = u.input_tokens, u.output_tokens, u.cached_tokens, u.cache_write_tokens, u.reasoning_tokens
    return (
        type(i) is int
        and type(o) is int
        and type(c) is int
        and type(w) is int
        and type(r) is int
        and c >= 0
        and w >= 0
        and c + w <= i <= MAX_TOKENS_PER_REQUEST
        and 0 <= r <= o <= MAX_TOKENS_PER_REQUEST
    )


def sane_usage(u: Usage) -> Usage:
    """``u`` itself when it is already within bounds (the usual case: no allocation), else a bounded copy."""
    if _is_sane(u):
        return u
    input_tokens = _count(u.input_tokens)
    output_tokens = _count(u.output_tokens)
    cached = min(_count(u.cached_tokens), input_tokens)
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_tokens=cached,
        cache_write_tokens=min(_count(u.cache_write_tokens), input_tokens - cached),
        reasoning_tokens=min(_count(u.reasoning_tokens), output_tokens),
    )


def sane_cost(cost: float) -> float:
    """A cost in USD within [0, MAX_COST_USD]; NaN (or anything not a number) is 0."""
    if type(cost) is float and 0.0 <= cost < MAX_COST_USD:  # the usual case, first
        return cost
    if isinstance(cost, bool) or not isinstance(cost, int | float) or cost != cost or cost <= 0:
        return 0.0
    if cost >= MAX_COST_USD:  # compared before float(): an int too large for a float would raise
        return MAX_COST_USD
    return float(cost)
