"""Cursors, money fields and CSV cells of the console API."""

from __future__ import annotations

import pytest

from omnirelay.console.api.usage import percentiles
from omnirelay.console.common import amount_units, csv_cell, decode_cursor, encode_cursor
from omnirelay.core.errors import GatewayError


def test_cursor_round_trip_and_garbage() -> None:
    assert decode_cursor(encode_cursor(1.5, "req_x")) == [1.5, "req_x"]
    assert decode_cursor(None) is None and decode_cursor("") is None
    for bad in ("!!!", "bm90IGpzb24", encode_cursor(1)[:-2] + "@@"):
        with pytest.raises(GatewayError) as err:
            decode_cursor(bad)
        assert err.value.status == 400 and err.value.param == "cursor"


def test_amounts() -> None:
    assert amount_units({"amount_usd": 1.25}) == 12_500_000_000
    assert amount_units({"amount_usd": -2}, allow_negative=True) == -20_000_000_000
    for bad in (0, -1, "5", True, None, float("nan"), 1e7):
        with pytest.raises(GatewayError):
            amount_units({"amount_usd": bad})


def test_csv_cells_never_become_formulas() -> None:
    assert csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert csv_cell("+1") == "'+1" and csv_cell("@x") == "'@x" and csv_cell("-x") == "'-x"
    assert csv_cell("gpt-4.1") == "gpt-4.1" and csv_cell(-1.5) == -1.5 and csv_cell(None) is None


def test_percentiles_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values) == {"p50": 50.0, "p90": 90.0, "p99": 99.0}
    assert percentiles([7.0]) == {"p50": 7.0, "p90": 7.0, "p99": 7.0}
