"""Waiting for observable state instead of sleeping: poll a predicate until it holds, fail the test at a deadline.

A sleep guesses how long something takes and passes vacuously (or flakes) when the guess is wrong; polling
returns as soon as the state is there and says what never happened when it is not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

POLL_S = 0.02


def wait_until(predicate: Callable[[], T], deadline: float = 5.0, what: str = "") -> T:
    """The first truthy value of ``predicate()`` within ``deadline`` seconds; fails the test otherwise."""
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= end:
            raise AssertionError(f"not within {deadline} s: {what or getattr(predicate, '__name__', predicate)}")
        time.sleep(POLL_S)


async def wait_until_async(predicate: Callable[[], T], deadline: float = 5.0, what: str = "") -> T:
    """``wait_until`` for a test running on an event loop: the loop keeps running between polls."""
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= end:
            raise AssertionError(f"not within {deadline} s: {what or getattr(predicate, '__name__', predicate)}")
        await asyncio.sleep(POLL_S)
