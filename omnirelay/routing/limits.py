"""Concurrency caps for channels and upstreams.

A channel at its cap (or whose upstream is at its cap) is skipped in favour of the next channel of the plan;
only when every channel of the request is full does the request wait, up to ``routing.queue_timeout``, for a
slot to free, then fail with 503. Counters are plain ints: the event loop is single-threaded.
"""

from __future__ import annotations

import asyncio


class Slots:
    __slots__ = ("cap", "in_use", "name")

    def __init__(self, name: str, cap: int) -> None:
        self.name = name
        self.cap = cap
        self.in_use = 0

    @property
    def full(self) -> bool:
        return self.in_use >= self.cap


class SlotWaiters:
    """Wakes requests waiting for any slot when one is released."""

    __slots__ = ("_event", "waiting")

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None
        self.waiting = 0

    def released(self) -> None:
        if self.waiting and self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for a release; True if one happened."""
        if self._event is None:
            self._event = asyncio.Event()
        event = self._event
        self.waiting += 1
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self.waiting -= 1
