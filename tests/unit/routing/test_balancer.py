"""The balancer: weighted first picks, tiers by priority, fixed orders computed once."""

from __future__ import annotations

import random
from collections import Counter

from omnirelay.routing.balancer import Balancer, WeightedTier


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
