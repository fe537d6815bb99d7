"""The batch job table and file store on real SQLite files and real PostgreSQL: leases (one owner per item, an
expired lease reclaimed), results recorded at most once, owner checks, cancel, finalization."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from omnirelay.core.batches import BatchItem, BatchJob, ItemResult, StoredFile
from omnirelay.core.errors import GatewayError
from omnirelay.state.backends import open_store
from omnirelay.state.store import Store
from tests.state_helpers import BACKENDS, PG_BASE, drop_schema

# The async fixtures live on the session loop (pyproject); the tests must run there too.
pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    tag = "b" + uuid.uuid4().hex[:12]
    url = f"{PG_BASE}?schema=omni_{tag}" if request.param == "postgres" else f"sqlite:///{tmp_path}/state.db"
    s = open_store(url)
    await s.open()
    yield s
    await s.close()
    if request.param == "postgres":
        await drop_schema(tag)


def _job(batch_id: str, key_id: str | None = "k1", created: float | None = None) -> BatchJob:
    now = created or time.time()
    return BatchJob(
        id=batch_id,
        key_id=key_id,
        api="openai",
        endpoint="/v1/chat/completions",
        input_file_id="file-x",
        completion_window="24h",
        status="validating",
        created_at=now,
        expires_at=now + 86400,
        metadata={"team": "a"},
        reserved_units=300,
        models=["gpt-4.1"],
    )


def _items(n: int) -> list[BatchItem]:
    return [BatchItem(index=i, custom_id=f"c{i}", body=b'{"x":%d}' % i, reserve_units=100) for i in range(n)]


async def test_claims_lease_each_item_to_one_owner_and_reclaim_expired(store: Store) -> None:
    b = store.batches
    await b.create(_job("batch_a"), _items(3))
    assert await b.claim("r1", time.time(), 30, 10) == []  # still validating
    assert await b.start_validated(time.time()) == 1
    now = time.time()
    first, second = await asyncio.gather(b.claim("r1", now, 30, 2), b.claim("r2", now, 30, 2))
    taken = [(c.batch_id, c.index) for c in [*first, *second]]
    assert sorted(taken) == [("batch_a", 0), ("batch_a", 1), ("batch_a", 2)]
    assert all(c.key_id == "k1" and c.endpoint == "/v1/chat/completions" for c in [*first, *second])
    assert await b.claim("r3", now, 30, 5) == []  # every lease is live
    # r1's leases expire (it died): r3 takes them over, attempts counted.
    later = now + 31
    again = await b.claim("r3", later, 30, 5)
    assert sorted(c.index for c in again) == sorted(i for _, i in taken)
    assert all(c.attempts == 2 for c in again)
    held = await b.held_units()
    assert held == {"k1": 300}
    res = ItemResult(outcome="succeeded", status_code=200, body=b"{}", request_id="batch_a-0", cost_units=7)
    assert await b.finish("batch_a", 0, res) is True
    assert await b.finish("batch_a", 0, res) is False  # a second runner's result is not recorded
    job = await b.get("batch_a", "k1")
    assert job is not None and job.counts.succeeded == 1 and job.counts.processing == 2
    assert job.counts.cost_units == 7 and job.metadata == {"team": "a"}
    assert await b.get("batch_a", "k2") is None
    assert await b.held_units() == {"k1": 200}


async def test_cancel_finalize_list_and_delete(store: Store) -> None:
    b = store.batches
    t = time.time()
    await b.create(_job("batch_1", created=t - 2), _items(2))
    await b.create(_job("batch_2", created=t - 1), _items(2))
    await b.create(_job("batch_3", key_id="k2", created=t), _items(1))
    await b.start_validated(t)
    assert [j.id for j in await b.page("k1", "openai")] == ["batch_2", "batch_1"]
    assert [j.id for j in await b.page("k1", "openai", after="batch_2")] == ["batch_1"]
    assert [j.id for j in await b.page("k1", None, before="batch_1")] == ["batch_2"]
    claimed = await b.claim("r1", t, 30, 1)
    assert [(c.batch_id, c.index) for c in claimed] == [("batch_1", 0)]
    job = await b.cancel("batch_1", "k1", t)
    assert job is not None and job.status == "cancelling" and job.counts.canceled == 1
    assert await b.due(t, 60) == []  # one item still running
    await b.finish("batch_1", 0, ItemResult(outcome="succeeded", status_code=200, body=b"{}"))
    due = [j.id for j in await b.due(t, 60)]
    assert due == ["batch_1"]
    assert await b.begin_finalizing("batch_1", t, 60) is True
    assert await b.begin_finalizing("batch_1", t, 60) is False
    out = StoredFile(
        id="file-out", key_id="k1", purpose="batch_output", filename="batch_1_output.jsonl", bytes=2, lines=1,
        created_at=t, content=b"{}",
    )  # fmt: skip
    await b.finalize(job, "cancelled", [out], t)
    ended = await b.get("batch_1", "k1")
    assert ended is not None and ended.status == "cancelled" and ended.output_file_id == "file-out"
    assert [d.custom_id for d in await b.done_items("batch_1")] == ["c0", "c1"]
    f = await store.files.get("file-out", "k1", content=True)
    assert f is not None and f.content == b"{}"
    assert await store.files.get("file-out", "k2") is None
    assert await b.delete("batch_2", "k1") is False  # not ended
    assert await b.delete("batch_1", "k2") is False
    assert await b.delete("batch_1", "k1") is True
    assert await b.get_any("batch_1") is None


async def test_expiry_closes_pending_items(store: Store) -> None:
    b = store.batches
    t = time.time()
    job = _job("batch_e", created=t - 86401)
    await b.create(job, _items(2))
    await b.start_validated(t)
    await b.close_open_items(t)
    ended = await b.get_any("batch_e")
    assert ended is not None and ended.counts.expired == 2 and ended.counts.processing == 0
    assert [j.id for j in await b.due(t, 60)] == ["batch_e"]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_batches_created_at_once_cannot_spend_the_same_credit(backend: str, tmp_path: Path) -> None:
    """Two replicas create a batch for one key at once, each admitted only if the key's open batches leave room
    for its 300 units (the key's whole credit): the second reads the holds only after the first is in."""
    tag = "r" + uuid.uuid4().hex[:12]
    url = f"{PG_BASE}?schema=omni_{tag}" if backend == "postgres" else f"sqlite:///{tmp_path}/state.db"
    one, two = open_store(url), open_store(url)
    await one.open()
    await two.open()
    reached_while_first_inside = asyncio.Event()
    inside = 0
    second: list[asyncio.Task[None]] = []

    async def admit(holds: dict[str, int]) -> None:
        nonlocal inside
        if holds.get("k1", 0) + 300 > 300:
            raise GatewayError("quota", "not enough credit", code="insufficient_quota", retryable=False)
        inside += 1
        if inside > 1:
            reached_while_first_inside.set()
            return
        # The first creation, between reading the holds and adding its own: the other replica starts its own.
        second.append(asyncio.create_task(two.batches.create(_job("batch_two"), _items(3), admit)))
        with contextlib.suppress(TimeoutError):  # it must not get this far until this transaction has ended
            await asyncio.wait_for(reached_while_first_inside.wait(), 1.5)

    try:
        await one.batches.create(_job("batch_one"), _items(3), admit)
        with pytest.raises(GatewayError, match="not enough credit"):
            await second[0]
        assert not reached_while_first_inside.is_set()
        assert await one.batches.held_units() == {"k1": 300}
        assert await two.batches.get_any("batch_two") is None  # refused: nothing of it was written
    finally:
        await one.close()
        await two.close()
        if backend == "postgres":
            await drop_schema(tag)
