"""The runner over a real SQLite store with a stand-in executor: concurrency yields to interactive traffic, every
item runs once, the batch is finalized with its result files."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from omnirelay.batches.runner import BatchRunner
from omnirelay.config import BatchesConfig
from omnirelay.core.batches import BatchItem, BatchJob, ClaimedItem, ItemResult
from omnirelay.state.backends import open_store
from tests.polling import wait_until_async


class CountingExecutor:
    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.ran: list[int] = []
        self.release = asyncio.Event()

    async def run(self, item: ClaimedItem) -> ItemResult:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        self.ran.append(item.index)
        return ItemResult(outcome="succeeded", status_code=200, body=b'{"ok":true}', request_id=f"r{item.index}")


@pytest.mark.asyncio(loop_scope="session")
async def test_runner_yields_to_interactive_traffic_and_finalizes(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    await store.open()
    busy = {"n": 1}
    held: list[dict[str, int]] = []
    executor: Any = CountingExecutor()
    settings = BatchesConfig(concurrency=6, busy_concurrency=2, poll_s=0.05, lease_s=5)
    runner = BatchRunner(store.batches, store.files, executor, settings, lambda: busy["n"], held.append)
    now = time.time()
    job = BatchJob(id="batch_r", key_id="k", api="openai", endpoint="/v1/chat/completions", input_file_id="f",
                   completion_window="24h", status="validating", created_at=now, expires_at=now + 60)  # fmt: skip
    items = [BatchItem(index=i, custom_id=f"c{i}", body=b"{}", reserve_units=10) for i in range(20)]
    await store.batches.create(job, items)
    runner.start()
    try:
        await wait_until_async(lambda: executor.running == 2, 5, "two items while busy")
        assert held[-1] == {"k": 200}
        # A clean stop hands its items back at once: a new runner takes them without waiting for the lease.
        await runner.stop()
        again = await store.batches.claim("other", time.time(), 5, 100)
        assert len(again) == 20 and all(c.attempts <= 2 for c in again)
        assert await store.batches.release("other") == 20
        runner = BatchRunner(store.batches, store.files, executor, settings, lambda: busy["n"], held.append)
        runner.start()
        await wait_until_async(lambda: executor.running == 2, 5, "two items while busy, again")
        busy["n"] = 0
        runner.notify()
        await wait_until_async(lambda: executor.running == 6, 5, "six items once idle")
        executor.release.set()

        async def ended() -> bool:
            j = await store.batches.get_any("batch_r")
            return j is not None and j.status == "completed"

        for _ in range(500):  # the store is polled: nothing to wait on in-process
            if await ended():
                break
            await asyncio.sleep(0.02)
        assert await ended(), "the batch did not complete"
        assert sorted(executor.ran) == list(range(20)) and executor.peak == 6
        done = await store.batches.get_any("batch_r")
        assert done is not None and done.output_file_id == "file-batch_r-output" and done.finalizing_at is not None
        out = await store.files.get("file-batch_r-output", "k", content=True)
        assert out is not None and out.lines == 20
    finally:
        await runner.stop()
        await store.close()
