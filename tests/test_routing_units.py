"""Routing building blocks in-process: balancer, breaker, retry policy, config, admin handlers."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import msgspec
import pytest

from omnirelay.config import BreakerConfig, ConfigError, RetryBudgetConfig, RetryConfig, parse_config
from omnirelay.core.errors import GatewayError, upstream_status_error
from omnirelay.routing.balancer import Balancer, WeightedTier
from omnirelay.routing.breaker import Breaker
from omnirelay.routing.retry import RetryBudget, Verdict, backoff_delay, verdict
from omnirelay.routing.table import RouteTable


def test_weighted_tier_first_pick_follows_weights() -> None:
    tier = WeightedTier([("a", 1.0), ("b", 3.0), ("z", 0.0)])
    rng = random.Random(7)
    firsts = Counter(tier.order(rng.random())[0] for _ in range(20_000))
    assert abs(firsts["a"] / 20_000 - 0.25) < 0.015 and firsts["z"] == 0
    # Every order holds every channel once; the zero-weight one is the last resort.
    for order in tier.orders:
        assert sorted(order) == ["a", "b", "z"] and order[-1] == "z"
    assert tier.order(0.0) == ("a", "b", "z") and tier.order(0.99) == ("b", "a", "z")


def test_balancer_orders_tiers_by_priority_and_precomputes_fixed_orders() -> None:
    fixed = Balancer([("backup", 1.0, 1), ("main", 1.0, 0)])
    assert fixed.order() == ("main", "backup") and fixed.order() is fixed.order()
    mixed = Balancer([("x", 1.0, 0), ("y", 1.0, 0), ("last", 1.0, 5)])
    assert all(mixed.order()[-1] == "last" for _ in range(50))
    assert WeightedTier([("p", 0.0), ("q", 0.0)]).total == 2.0  # all zero: spread evenly


def _breaker(**kw: Any) -> Breaker:
    cfg = BreakerConfig(**{"consecutive_failures": 3, "cooldown": 10.0, "min_requests": 4, "window": 10.0, **kw})
    return Breaker("up/m", cfg)


def _st(b: Breaker) -> str:
    return b.state  # a plain str for the checks: mypy would narrow the Literal across calls


def test_breaker_state_machine() -> None:
    b = _breaker()
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
    b = _breaker(consecutive_failures=100, failure_rate=0.5)
    t = 50.0
    b.on_success(t, False)
    b.on_failure(t, "x", False)
    b.on_success(t, False)
    assert _st(b) == "closed"
    b.on_failure(t, "x", False)  # 2 of 4 in the window
    assert _st(b) == "open"
    r = _breaker()
    r.rest(t, 2.0)
    assert not r.available(t + 1.9) and r.available(t + 2.0) and r.ready_in(t) == pytest.approx(2.0)
    r.rest(t, 10_000.0)
    assert r.ready_in(t) == pytest.approx(60.0)  # max_rest caps what a Retry-After can do
    old = _breaker(consecutive_failures=100, failure_rate=0.5)
    for _ in range(4):
        old.on_failure(t, "x", False)
        old.on_success(t, False)
    assert _st(old) == "open"
    fresh = _breaker(consecutive_failures=100, failure_rate=0.5)
    for _ in range(3):
        fresh.on_failure(t, "x", False)
    fresh.on_success(t + 11.0, False)  # the failures left the window
    fresh.on_failure(t + 11.0, "x", False)
    assert _st(fresh) == "closed"


def test_remote_changes_apply_to_the_local_view() -> None:
    import time

    b = _breaker()
    b.apply_remote("open", time.time() + 5.0, "from another replica")
    assert _st(b) == "open" and not b.available(time.monotonic()) and b.last_error == "from another replica"
    b.apply_remote("closed", None, None)
    assert _st(b) == "closed" and b.available(time.monotonic())
    b.apply_remote("open", time.time() - 1.0, None)  # stale: ignored
    assert _st(b) == "closed"


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


def test_config_inherits_and_validates() -> None:
    raw: dict[str, Any] = {
        "routing": {"retry": {"max_attempts": 4, "backoff_cap": 0.5}, "breaker": {"cooldown": 5}},
        "upstreams": [
            {"name": "u1", "provider": "openai", "timeouts": {"connect": 2, "first_byte": 30}, "max_concurrency": 8},
            {"name": "u2", "provider": "openai"},
        ],
        "models": {
            "m": {
                "channels": [
                    {"upstream": "u1", "weight": 3, "timeouts": {"first_byte": 5}, "max_concurrency": 2},
                    {"upstream": "u2", "model": "other", "priority": 1},
                ],
                "retry": {"max_attempts": 2},
                "fallbacks": ["n"],
            },
            "n": {"upstream": "u2", "retry": {"deadline": 9}},
        },
    }
    cfg = parse_config(raw)
    m = cfg.models["m"]
    assert m.retry is not None and (m.retry.max_attempts, m.retry.backoff_cap) == (2, 0.5)
    assert m.channels[0].timeouts is not None
    assert (m.channels[0].timeouts.connect, m.channels[0].timeouts.first_byte) == (2.0, 5.0)
    assert cfg.models["n"].retry is not None and cfg.models["n"].retry.deadline == 9
    table = RouteTable(cfg)
    route = table.resolve("m")
    first, second = route.channels
    assert first.name == "u1/m" and first.effective_timeouts.first_byte == 5.0
    assert [s.cap for s in first.slots] == [2, 8] and second.slots == ()
    assert route.order()[-1] is second and route.retry.max_attempts == 2
    assert table.resolve("u2/anything").retry.max_attempts == 4
    assert table.resolve("n").channels[0].breaker is table.board.get("u2/n")
    for bad in (
        {"routing": {"retry": {"max_attempts": 0}}},
        {"routing": {"breaker": {"failure_rate": 1.5}}},
        {"upstreams": [{"name": "u", "provider": "openai"}], "models": {"x": {"upstream": "u", "weight": -1}}},
    ):
        with pytest.raises(ConfigError):
            parse_config(bad)


async def _call(app: Any, path: str, token: str | None) -> tuple[int, Any]:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    scope = {"type": "http", "method": "GET", "path": path, "headers": headers, "query_string": b""}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], msgspec.json.decode(body)


def test_admin_handlers_in_process(tmp_path: Any) -> None:
    from omnirelay.server.app import App

    cfg = parse_config(
        {
            "server": {"master_key": "sk-admin"},
            "state": {"data_dir": str(tmp_path)},
            "upstreams": [{"name": "u1", "provider": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"}],
            "models": {"m": {"upstream": "u1", "max_concurrency": 3}},
        }
    )
    app = App(cfg)
    status, body = asyncio.run(_call(app, "/admin/channels", "sk-admin"))
    assert status == 200
    (ch,) = body["data"]
    assert ch["channel"] == "u1/m" and ch["state"] == "closed" and ch["routes"][0]["model"] == "m"
    assert asyncio.run(_call(app, "/admin/channels", "nope"))[0] == 401
    status, tasks = asyncio.run(_call(app, "/admin/debug/tasks", "sk-admin"))
    assert status == 200 and tasks["tasks"] >= 1


def test_channels_cli_table() -> None:
    from omnirelay.routing.cli import render_table

    snap = _breaker().snapshot(0.0)
    row = {"channel": "u1/m", **snap, "in_flight": 1, "max_concurrency": 3}
    row.update(state="open", open_for_s=12.0, last_error="upstream error 500: boom")
    out = render_table({"data": [row], "replica": "rep_1", "shared_state": True})
    header, line, footer = out.splitlines()
    assert header.split()[:2] == ["CHANNEL", "STATE"]
    assert line.startswith("u1/m") and "open (12s)" in line and "1/3" in line and "boom" in line
    assert "shared via Redis" in footer
