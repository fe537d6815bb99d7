"""The batch runner: a background task in each gateway process that claims items from the job table, runs them
(``ItemExecutor``) and finalizes batches whose items are all done.

Several processes (workers, replicas) run one each over the same database: an item is leased to one runner at
a time (``BatchStore.claim``), the lease renewed while the item runs and retaken by any runner once it lapses
(its runner was killed), and a result is recorded at most once. Concurrency is ``batches.concurrency`` while the
gateway is otherwise idle and ``batches.busy_concurrency`` while interactive requests are in flight, so batches
take what interactive traffic leaves.

Per tick it also moves validated batches to in_progress, closes the items of expired or cancelled batches,
refreshes the credit batches hold (``on_held``) and finalizes what is due (``finalize.finalize_batch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from omnirelay.batches.execute import ItemExecutor
from omnirelay.batches.finalize import finalize_batch
from omnirelay.batches.native_runner import NativeBatches
from omnirelay.config import BatchesConfig
from omnirelay.core.batches import BatchJob, BatchStore, ClaimedItem, FileStore, ItemResult
from omnirelay.core.ids import new_id

log = logging.getLogger("omnirelay.batches.runner")

_INTERNAL_ERROR = (
    b'{"error":{"message":"internal error in the gateway","type":"server_error","param":null,"code":null}}'
)


class BatchRunner:
    def __init__(
        self,
        batches: BatchStore,
        files: FileStore,
        executor: ItemExecutor,
        settings: BatchesConfig,
        busy: Callable[[], int],
        on_held: Callable[[dict[str, int]], None],
        native: NativeBatches | None = None,
    ) -> None:
        self.batches = batches
        self.files = files
        self.executor = executor
        self.settings = settings
        self.busy = busy
        self.on_held = on_held
        self.native = native
        self._native_turns: dict[str, asyncio.Task[None]] = {}  # batch id -> its turn at the upstream running
        self.owner = new_id("runner_")
        self.running: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_tick = 0.0
        self._last_renew = 0.0
        self._open = True  # some batch has not ended, as of the last tick (or a notify since)
        self._results: list[tuple[str, int, ItemResult]] = []  # finished items whose results are not written yet
        self._writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="batch-runner")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, self._writer, *self.running.values(), *self._native_turns.values()) if t]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None
        self.running.clear()
        try:  # what was cut short runs again at once elsewhere, not after its lease (charged once either way)
            await self.batches.release(self.owner)
        except Exception as exc:
            log.warning("releasing the batch items of %s failed (their leases lapse instead): %s", self.owner, exc)

    def notify(self) -> None:
        """Work arrived (a batch was created or cancelled here): look now rather than at the next poll."""
        self._last_tick = 0.0
        self._open = True
        self._wake.set()

    def limit(self) -> int:
        s = self.settings
        return min(s.busy_concurrency, s.concurrency) if self.busy() > 0 else s.concurrency

    async def _run(self) -> None:
        while True:
            claimed = 0
            try:
                now = time.time()
                if now - self._last_tick >= self.settings.poll_s:
                    self._last_tick = now
                    await self.tick(now)
                if now - self._last_renew >= self.settings.lease_s / 3:
                    self._last_renew = now
                    await self.batches.renew(self.owner, list(self.running), now + self.settings.lease_s)
                claimed = await self.claim_some(now)
            except Exception as exc:  # the database away: keep trying, items stay leased or pending
                log.warning("batch runner: %s", exc)
            if claimed:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_s)
            self._wake.clear()

    async def claim_some(self, now: float) -> int:
        if not self.settings.run or not self._open:
            return 0
        free = self.limit() - len(self.running)
        if free <= 0:
            return 0
        items = await self.batches.claim(self.owner, now, self.settings.lease_s, free)
        for item in items:
            key = (item.batch_id, item.index)
            self.running[key] = asyncio.create_task(self._run_item(item), name=f"batch-item-{item.batch_id}")
        return len(items)

    async def _run_item(self, item: ClaimedItem) -> None:
        try:
            result = await self.executor.run(item)
        except Exception:
            log.exception("batch %s item %d failed in the gateway", item.batch_id, item.index)
            result = ItemResult(outcome="errored", status_code=500, body=_INTERNAL_ERROR)
        finally:
            self.running.pop((item.batch_id, item.index), None)
        self._results.append((item.batch_id, item.index, result))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_results(), name="batch-results")

    async def _write_results(self) -> None:
        """Group commit: the results that finished together go in one transaction (the usage record of each is
        journalled already, so a result lost here only makes its item run again, charged once)."""
        await asyncio.sleep(0)  # let the items finishing in this tick join
        while self._results:
            batch, self._results = self._results, []
            try:
                await self.batches.finish_many(batch)
            except Exception as exc:  # not recorded: the leases lapse and the items run again
                log.warning("recording %d batch results failed: %s", len(batch), exc)
        self._last_tick = 0.0  # their batches may be due
        self._wake.set()

    async def tick(self, now: float) -> None:
        self._open = bool(self.running) or await self.batches.any_open()
        if not self._open:  # the usual case: one read, no write transaction
            self.on_held({})
            return
        await self.batches.start_validated(now)
        await self.batches.close_open_items(now)
        self.on_held(await self.batches.held_units())
        stale = self.settings.lease_s
        for job in await self.batches.due(now, stale):
            if await self.batches.begin_finalizing(job.id, now, stale):
                await finalize_batch(self.batches, job, time.time())
        if self.native is not None and self.settings.run:
            for job in await self.batches.claim_native(self.owner, now, self.native.hold_s, 4):
                if job.id not in self._native_turns:  # a turn still running here keeps its batch
                    task = asyncio.create_task(self._native_turn(self.native, job), name=f"batch-native-{job.id}")
                    self._native_turns[job.id] = task

    async def _native_turn(self, native: NativeBatches, job: BatchJob) -> None:
        try:
            await native.advance(job)
        finally:
            self._native_turns.pop(job.id, None)
            self._last_tick = 0.0
            self._wake.set()
