"""Stored Responses API objects on real SQLite files and real PostgreSQL: round trip of the exact bytes, owner checks
on every read and delete, replacement by the owner only, expiry (invisible at once, swept in bounded batches, by
the background sweeper too), the size cap, and the responses table after a migration from each prior version."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from omnirelay.core.records import StoredResponse
from omnirelay.state.backends import open_store
from omnirelay.state.migrations import LATEST_VERSION, MIGRATIONS
from omnirelay.state.responses import MAX_STORED_BYTES, ResponseSweeper
from omnirelay.state.store import Store
from tests.polling import POLL_S
from tests.state_helpers import BACKENDS, PG_BASE, drop_schema

on_session_loop = pytest.mark.asyncio(loop_scope="session")
DAY = 86400.0
# The migration that adds the table: every version before it is a schema without it.
RESPONSES_VERSION = next(
    (m.version for m in MIGRATIONS if any("CREATE TABLE responses" in q for q in m.sqlite)), LATEST_VERSION + 1
)


def _url(kind: str, tmp_path: Path, tag: str) -> str:
    return f"{PG_BASE}?schema=omni_{tag}" if kind == "postgres" else f"sqlite:///{tmp_path}/state.db"


@pytest.fixture(params=BACKENDS)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    tag = "r" + uuid.uuid4().hex[:12]
    yield _url(request.param, tmp_path, tag)
    if request.param == "postgres":
        await drop_schema(tag)


@pytest.fixture()
async def store(store_url: str) -> AsyncIterator[Store]:
    s = open_store(store_url)
    await s.open()
    yield s
    await s.close()


def stored(response_id: str, key_id: str | None, *, expires_in: float = DAY, text: str = "hi") -> StoredResponse:
    now = time.time()
    items = [{"id": f"msg_{response_id}_in", "type": "message", "role": "user", "content": text}]
    output = {"id": response_id, "object": "response", "status": "completed", "output_text": text}
    return StoredResponse(
        id=response_id,
        key_id=key_id,
        created_at=now,
        expires_at=now + expires_in,
        # A NUL byte and non-ASCII text: the bytes must come back exactly (PostgreSQL text could hold neither NUL).
        response=msgspec.json.encode(output) + b"\x00\xff",
        input_items=msgspec.json.encode(items),
        conversation=msgspec.json.encode([*items, {"type": "message", "role": "assistant", "content": "é"}]),
    )


async def _row_count(store: Store) -> int:
    if store.dialect == "sqlite":
        rows = await store.reader.execute_fetchall("SELECT COUNT(*) FROM responses")  # type: ignore[attr-defined]
        return int(next(iter(rows))[0])
    return int(await store.pool.fetchval("SELECT COUNT(*) FROM responses"))  # type: ignore[attr-defined]


@on_session_loop
async def test_a_stored_response_comes_back_exactly_and_only_to_its_owner(store: Store) -> None:
    responses = store.responses
    mine, open_one = stored("resp_a", "k1"), stored("resp_b", None)
    await responses.put(mine)
    await responses.put(open_one)
    assert await responses.get("resp_a", "k1") == mine
    assert await responses.get("resp_a", "k2") is None
    assert await responses.get("resp_a", None) is None  # an open gateway's caller does not see a key's rows
    assert await responses.get("resp_b", None) == open_one
    assert await responses.get("resp_b", "k1") is None  # nor a key the rows stored without one
    assert await responses.get("resp_missing", "k1") is None
    assert await responses.get("resp_a\x00", "k1") is None  # not an error on PostgreSQL either
    assert await responses.get("x" * 10_000, "k1") is None


@on_session_loop
async def test_only_the_owner_deletes(store: Store) -> None:
    responses = store.responses
    await responses.put(stored("resp_a", "k1"))
    await responses.put(stored("resp_b", None))
    assert await responses.delete("resp_a", "k2") is False
    assert await responses.delete("resp_a", None) is False
    assert await responses.get("resp_a", "k1") is not None
    assert await responses.delete("resp_a", "k1") is True
    assert await responses.get("resp_a", "k1") is None
    assert await responses.delete("resp_a", "k1") is False
    assert await responses.delete("resp_b", "k1") is False
    assert await responses.delete("resp_b", None) is True
    assert await responses.delete("nul\x00", None) is False
    assert await _row_count(store) == 0


@on_session_loop
async def test_put_replaces_a_row_of_the_same_owner_only(store: Store) -> None:
    responses = store.responses
    await responses.put(stored("resp_a", "k1", text="first"))
    await responses.put(stored("resp_a", "k1", text="second"))
    found = await responses.get("resp_a", "k1")
    assert found is not None and b"second" in found.response and b"second" in found.input_items
    await responses.put(stored("resp_a", "k2", text="hijack"))  # another key cannot take the id over
    await responses.put(stored("resp_a", None, text="hijack"))
    found = await responses.get("resp_a", "k1")
    assert found is not None and b"second" in found.response
    assert await responses.get("resp_a", "k2") is None and await responses.get("resp_a", None) is None
    await responses.put(stored("resp_n", None, text="one"))
    await responses.put(stored("resp_n", None, text="two"))  # NULL owners compare equal for replacement
    found = await responses.get("resp_n", None)
    assert found is not None and b"two" in found.response


@on_session_loop
async def test_expired_rows_are_invisible_at_once_and_swept_in_bounded_batches(store: Store) -> None:
    responses = store.responses
    for i in range(5):
        await responses.put(stored(f"resp_old{i}", "k1", expires_in=-10.0 - i))
    await responses.put(stored("resp_live", "k1"))
    assert await responses.get("resp_old0", "k1") is None
    assert await responses.delete("resp_old0", "k1") is False
    now = time.time()
    assert await responses.sweep(now, limit=2) == 2
    assert await responses.sweep(now, limit=2) == 2
    assert await _row_count(store) == 2
    assert await responses.sweep(now, limit=2) == 1
    assert await responses.sweep(now, limit=2) == 0
    assert await _row_count(store) == 1
    assert await responses.get("resp_live", "k1") is not None


@on_session_loop
async def test_the_sweeper_deletes_expired_rows_in_the_background(store: Store) -> None:
    responses = store.responses
    for i in range(7):
        await responses.put(stored(f"resp_old{i}", None, expires_in=-1.0))
    await responses.put(stored("resp_live", None))
    sweeper = ResponseSweeper(responses, every_s=0.05, batch=3)
    sweeper.start()
    try:
        end = time.monotonic() + 10
        while (left := await _row_count(store)) != 1:
            assert time.monotonic() < end, f"the sweeper left {left} rows"
            await asyncio.sleep(POLL_S)
    finally:
        await sweeper.stop()
    assert await responses.get("resp_live", None) is not None


@on_session_loop
async def test_a_response_above_the_size_cap_is_not_stored_and_is_logged(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    big = stored("resp_big", "k1")
    big.conversation = b"[" + b'"' + b"x" * MAX_STORED_BYTES + b'"]'
    with caplog.at_level(logging.WARNING, logger="omnirelay.state.responses"):
        await store.responses.put(big)  # no error: the POST that produced it still succeeds
    assert await store.responses.get("resp_big", "k1") is None
    assert any("resp_big" in r.getMessage() and "not stored" in r.getMessage() for r in caplog.records)
    at_cap = stored("resp_cap", "k1")
    at_cap.conversation = b"x" * (MAX_STORED_BYTES - len(at_cap.response) - len(at_cap.input_items))
    await store.responses.put(at_cap)
    assert await store.responses.get("resp_cap", "k1") == at_cap


@pytest.mark.parametrize("start_version", [0, *(m.version for m in MIGRATIONS if m.version < RESPONSES_VERSION)])
@on_session_loop
async def test_the_responses_table_exists_after_migrating_from_each_prior_version(
    store_url: str, start_version: int
) -> None:
    old = open_store(store_url)
    await old.open(migrate_to=start_version)
    await old.close()
    new = open_store(store_url)
    await new.open()
    try:
        row = stored("resp_m", "k1")
        await new.responses.put(row)
        assert await new.responses.get("resp_m", "k1") == row
        assert await new.responses.sweep(time.time() + 2 * DAY) == 1
    finally:
        await new.close()
