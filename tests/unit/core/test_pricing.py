"""The catalogue's output ceilings and prices."""

from __future__ import annotations

from omnirelay.core.catalog import Price
from omnirelay.core.pricing import max_output_for, price_for


def test_output_ceilings_and_the_free_local_model() -> None:
    assert max_output_for("gpt-4.1") == 32_768
    assert max_output_for("gpt-4.1-2025-04-14") == 32_768  # a dated snapshot has its base model's
    assert max_output_for("claude-3-7-sonnet@20250219") == 64_000  # an alias, its model's
    assert max_output_for("gpt-4.1-x") is None
    assert price_for("smollm2", {}) == Price(input=0.0, output=0.0)  # priced, at zero: a credit key may use it
