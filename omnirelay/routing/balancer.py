"""Weighted random choice within a priority tier.

Everything is precomputed once per route: for each channel of a tier, the full try-order that starts with it
(the others follow by descending weight). A request then costs one ``random()`` and one ``bisect`` per tier,
and the order it gets is a ready-made tuple. The first channel is chosen with probability weight / tier total;
zero-weight channels are never chosen first but still serve as the tier's last resort.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
from typing import Generic, TypeVar

T = TypeVar("T")


class WeightedTier(Generic[T]):
    __slots__ = ("cumulative", "orders", "total")

    def __init__(self, items: Sequence[tuple[T, float]]) -> None:
        if not items:
            raise ValueError("a tier needs at least one channel")
        weights = [max(0.0, w) for _, w in items]
        if not any(weights):
            weights = [1.0] * len(items)  # all zero: spread evenly rather than never
        by_weight = sorted(range(len(items)), key=lambda i: -weights[i])  # stable: config order breaks ties
        chosen = [i for i in range(len(items)) if weights[i] > 0]
        self.cumulative = list(accumulate(weights[i] for i in chosen))
        self.total = self.cumulative[-1]
        self.orders: tuple[tuple[T, ...], ...] = tuple(
            (items[i][0], *(items[j][0] for j in by_weight if j != i)) for i in chosen
        )

    def order(self, rand: float | None = None) -> tuple[T, ...]:
        if len(self.orders) == 1:
            return self.orders[0]
        point = (random.random() if rand is None else rand) * self.total
        return self.orders[min(bisect_right(self.cumulative, point), len(self.orders) - 1)]


class Balancer(Generic[T]):
    """Channels grouped by priority (lower first); ``order()`` is the try-order for one request."""

    __slots__ = ("_single", "tiers")

    def __init__(self, items: Sequence[tuple[T, float, int]]) -> None:
        priorities = sorted({p for _, _, p in items})
        self.tiers: tuple[WeightedTier[T], ...] = tuple(
            WeightedTier([(item, w) for item, w, p in items if p == prio]) for prio in priorities
        )
        self._single: tuple[T, ...] | None = None
        if all(len(t.orders) == 1 for t in self.tiers):  # nothing random: compute the order once
            self._single = tuple(x for t in self.tiers for x in t.orders[0])

    def order(self) -> tuple[T, ...]:
        if self._single is not None:
            return self._single
        if len(self.tiers) == 1:
            return self.tiers[0].order()
        return tuple(x for t in self.tiers for x in t.order())
