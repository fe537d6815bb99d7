"""Cost of a call from its usage and a price table (USD per million tokens).

Usage convention (core.types): input_tokens includes cached reads and cache writes, output_tokens includes
reasoning. So: uncached input = input - cached - cache_write, each part at its own rate; reasoning is billed
inside output.

The usage is bounded first (``core.usage_bounds``) and the result is never negative: an upstream's numbers,
however odd, never turn into a credit for the caller.
"""

from __future__ import annotations

from collections.abc import Mapping

from omnirelay.core.catalog import ALIASES, MODELS, Price
from omnirelay.core.types import Usage
from omnirelay.core.usage_bounds import sane_cost, sane_usage

PER_TOKEN = 1e-6


def price_for(model: str, overrides: Mapping[str, Price]) -> Price | None:
    """Config overrides first, then the built-in catalogue; aliases resolve to their model; a dated
    snapshot (``gpt-4o-2024-08-06``) falls back to its base name."""
    for name in (model, ALIASES.get(model, model)):
        if name in overrides:
            return overrides[name]
        info = MODELS.get(name)
        if info is not None and info.price is not None:
            return info.price
    base = model
    while "-" in base:
        base = base.rsplit("-", 1)[0]
        if base in overrides:
            return overrides[base]
        info = MODELS.get(base)
        if info is not None and info.price is not None and model[len(base) + 1 :][:1].isdigit():
            return info.price
    return None


def max_output_for(model: str) -> int | None:
    """The catalogue's output ceiling for ``model`` (aliases and dated snapshots as in ``price_for``)."""
    for name in (model, ALIASES.get(model, model)):
        info = MODELS.get(name)
        if info is not None and info.max_output is not None:
            return info.max_output
    base = model
    while "-" in base:
        base = base.rsplit("-", 1)[0]
        info = MODELS.get(base)
        if info is not None and info.max_output is not None and model[len(base) + 1 :][:1].isdigit():
            return info.max_output
    return None


def cost_of(usage: Usage, price: Price, batch: bool = False) -> float:
    usage = sane_usage(usage)
    cached = min(usage.cached_tokens, usage.input_tokens)
    written = min(usage.cache_write_tokens, usage.input_tokens - cached)
    uncached = usage.input_tokens - cached - written
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    write_rate = price.cache_write if price.cache_write is not None else price.input
    total = (
        uncached * price.input + cached * cached_rate + written * write_rate + usage.output_tokens * price.output
    ) * PER_TOKEN
    if batch:
        total *= price.batch_discount
    return sane_cost(round(total, 10))
