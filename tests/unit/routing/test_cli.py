"""The channels table the CLI prints."""

from __future__ import annotations

from typing import Any

from omnirelay.config import BreakerConfig
from omnirelay.routing.breaker import Breaker
from omnirelay.routing.cli import render_table


def _breaker(**kw: Any) -> Breaker:
    cfg = BreakerConfig(**{"consecutive_failures": 5, "cooldown": 30.0, "min_requests": 20, "window": 30.0, **kw})
    return Breaker("up/m", cfg)


# Three failures in a row open it for 10 s.
def _small_breaker(**kw: Any) -> Breaker:
    cfg = BreakerConfig(**{"consecutive_failures": 3, "cooldown": 10.0, "min_requests": 4, "window": 10.0, **kw})
    return Breaker("up/m", cfg)


def test_channels_cli_table() -> None:
    snap = _small_breaker().snapshot(0.0)
    row = {"channel": "u1/m", **snap, "in_flight": 1, "max_concurrency": 3}
    row.update(state="open", open_for_s=12.0, last_error="upstream error 500: boom")
    out = render_table({"data": [row], "replica": "rep_1", "shared_state": True})
    header, line, footer = out.splitlines()
    assert header.split()[:2] == ["CHANNEL", "STATE"]
    assert line.startswith("u1/m") and "open (12s)" in line and "1/3" in line and "boom" in line
    assert "shared via Redis" in footer


def test_channels_table_shows_keys_kept_off() -> None:
    b = _breaker()
    for i in range(5):
        b.on_failure(1.0 + i * 0.01, "upstream error 500: boom", False, tenant="key_a")
    row = {"channel": "u1/m", **b.snapshot(2.0), "in_flight": None}
    assert row["isolated_keys"] == 1 and row["state"] == "closed"
    line = render_table({"data": [row], "replica": "rep_1"}).splitlines()[1]
    assert "closed 1 key(s) kept off" in line
