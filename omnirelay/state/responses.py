"""Stored Responses API objects: what ``POST /v1/responses`` keeps with ``store: true`` (the default), read back by
``GET``/``DELETE /v1/responses/{id}``, ``GET /v1/responses/{id}/input_items`` and ``previous_response_id``.

Each row belongs to the key that created it (``key_id``; None when the gateway is open or the master key called):
``get`` and ``delete`` with another owner behave as if the row did not exist, so callers answer 404 either way and
a key cannot even learn that another key's response id exists. A row lives ``state.responses_retention_s``
(``expires_at``); an expired row is invisible at once, and ``ResponseSweeper`` deletes expired rows in bounded
batches in the background. A response whose stored bytes (response + input items + conversation) exceed
``MAX_STORED_BYTES`` is not stored: the implementations log it and return, and the POST that produced it still
succeeds (a later ``previous_response_id`` naming it gets 404).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from omnirelay.core.records import ResponseStore, StoredResponse

log = logging.getLogger("omnirelay.state.responses")

# Far above any conversation a context window holds as text; images inlined as data URLs are what gets near it.
MAX_STORED_BYTES = 16 * 1024 * 1024
SWEEP_EVERY_S = 60.0
SWEEP_BATCH = 1000  # rows deleted per statement: one sweep never holds the database for long
# An id longer than this was not made by the gateway: answered as missing without a query.
MAX_ID_LENGTH = 256


def stored_size(r: StoredResponse) -> int:
    return len(r.response) + len(r.input_items) + len(r.conversation)


def too_large_to_store(r: StoredResponse) -> bool:
    """Whether ``r`` is above MAX_STORED_BYTES (then logged here; the implementations skip it)."""
    size = stored_size(r)
    if size <= MAX_STORED_BYTES:
        return False
    log.warning(
        "response %s not stored: %d bytes (response, input items and conversation) exceed the %d-byte limit",
        r.id,
        size,
        MAX_STORED_BYTES,
    )
    return True


def unreadable_id(response_id: str) -> bool:
    """An id no stored row can have: empty, too long, or holding NUL (which PostgreSQL cannot even compare)."""
    return not response_id or len(response_id) > MAX_ID_LENGTH or "\x00" in response_id


def visible_to(r: StoredResponse, key_id: str | None, now: float) -> bool:
    """Whether the caller ``key_id`` may read ``r`` at ``now``: it owns it and it has not expired."""
    return r.key_id == key_id and r.expires_at > now


class ResponseSweeper:
    """Deletes expired stored responses in the background: one batch every ``every_s``, and the next batch at
    once while batches come back full (a backlog drains without one long statement). Failures are logged and
    retried at the next sweep: expired rows are invisible to readers anyway."""

    def __init__(self, responses: ResponseStore, every_s: float = SWEEP_EVERY_S, batch: int = SWEEP_BATCH) -> None:
        self.responses = responses
        self.every_s = every_s
        self.batch = batch
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="responses-sweep")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def sweep_once(self) -> int:
        """Sweep until a batch comes back short; how many rows went."""
        total = 0
        while True:
            deleted = await self.responses.sweep(time.time(), self.batch)
            total += deleted
            if deleted < self.batch:
                return total
            await asyncio.sleep(0)  # let requests run between batches

    async def _run(self) -> None:
        while True:
            try:
                deleted = await self.sweep_once()
                if deleted:
                    log.info("deleted %d expired stored responses", deleted)
            except Exception as exc:
                log.warning("sweeping expired stored responses failed: %s", exc)
            await asyncio.sleep(self.every_s)
