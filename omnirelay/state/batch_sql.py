"""Files and batch jobs in the SQL stores (SQLite and PostgreSQL alike, through ``batch_db.Db``).

Claiming is one ``UPDATE ... WHERE (batch_id, idx) IN (SELECT ... LIMIT n) RETURNING``: on PostgreSQL the
selection locks its rows and skips those another replica's claim holds (``FOR UPDATE SKIP LOCKED``), on SQLite
the single writer's transaction excludes every other claim. A result is written only while the item is not done
(``finish``), so it is recorded once however many runners ran the item.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from omnirelay.core.batches import (
    AdmitHolds,
    BatchApi,
    BatchItem,
    BatchJob,
    BatchStatus,
    BatchStore,
    ClaimedItem,
    DoneItem,
    FileStore,
    ItemResult,
    StoredFile,
)
from omnirelay.state.batch_db import Db, Row

MAX_ID_LENGTH = 256
FILE_META = "id, key_id, purpose, filename, bytes, lines, created_at"
JOB_COLUMNS = (
    "id, key_id, api, endpoint, input_file_id, completion_window, status, created_at, expires_at, in_progress_at,"
    " finalizing_at, completed_at, failed_at, expired_at, cancelling_at, cancelled_at, metadata, output_file_id,"
    " error_file_id, reserved_units, models, native_upstream, native_id"
)
_JOB_COUNT = JOB_COLUMNS.count(",") + 1
ITEM_COLUMNS = "batch_id, idx, custom_id, body, reserve_units"
_ENDED = "('completed', 'failed', 'expired', 'cancelled')"
_meta_decoder = msgspec.json.Decoder(dict[str, str] | None)
_models_decoder = msgspec.json.Decoder(list[str])


def _unreadable(object_id: str) -> bool:
    return not object_id or len(object_id) > MAX_ID_LENGTH or "\x00" in object_id


def _owner(key_id: str | None) -> tuple[str, list[Any]]:
    """A NULL-safe owner condition and its argument."""
    return ("key_id IS NULL", []) if key_id is None else ("key_id = ?", [key_id])


def _file(row: Row, content: bytes = b"") -> StoredFile:
    return StoredFile(
        id=row[0],
        key_id=row[1],
        purpose=row[2],
        filename=row[3],
        bytes=int(row[4]),
        lines=int(row[5]),
        created_at=float(row[6]),
        content=content,
    )


def _file_values(f: StoredFile) -> tuple[Any, ...]:
    return (f.id, f.key_id, f.purpose, f.filename, f.bytes, f.lines, f.created_at, f.content)


_PUT_FILE = f"INSERT INTO files ({FILE_META}, content) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"


class SqlFiles(FileStore):
    def __init__(self, db: Db) -> None:
        self.db = db

    async def put(self, f: StoredFile) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(_PUT_FILE, _file_values(f))

    async def get(self, file_id: str, key_id: str | None, content: bool = False) -> StoredFile | None:
        if _unreadable(file_id):
            return None
        owner, args = _owner(key_id)
        cols = FILE_META + (", content" if content else "")
        rows = await self.db.fetch(f"SELECT {cols} FROM files WHERE id = ? AND {owner}", [file_id, *args])
        if not rows:
            return None
        return _file(rows[0], bytes(rows[0][7]) if content else b"")

    async def page(self, key_id: str | None, purpose: str | None, after: str | None, limit: int) -> list[StoredFile]:
        owner, args = _owner(key_id)
        where = owner
        if purpose is not None:
            where += " AND purpose = ?"
            args.append(purpose)
        if after is not None:
            where += " AND (created_at, id) < (SELECT created_at, id FROM files WHERE id = ?)"
            args.append(after)
        sql = f"SELECT {FILE_META} FROM files WHERE {where} ORDER BY created_at DESC, id DESC LIMIT {int(limit)}"
        return [_file(r) for r in await self.db.fetch(sql, args)]

    async def delete(self, file_id: str, key_id: str | None) -> bool:
        if _unreadable(file_id):
            return False
        owner, args = _owner(key_id)
        async with self.db.transaction() as tx:
            return await tx.execute(f"DELETE FROM files WHERE id = ? AND {owner}", [file_id, *args]) > 0


def _job_values(j: BatchJob) -> tuple[Any, ...]:
    return (
        j.id,
        j.key_id,
        j.api,
        j.endpoint,
        j.input_file_id,
        j.completion_window,
        j.status,
        j.created_at,
        j.expires_at,
        j.in_progress_at,
        j.finalizing_at,
        j.completed_at,
        j.failed_at,
        j.expired_at,
        j.cancelling_at,
        j.cancelled_at,
        None if j.metadata is None else msgspec.json.encode(j.metadata).decode(),
        j.output_file_id,
        j.error_file_id,
        j.reserved_units,
        msgspec.json.encode(j.models).decode(),
        j.native_upstream,
        j.native_id,
    )


def _job(row: Row) -> BatchJob:
    return BatchJob(
        id=row[0],
        key_id=row[1],
        api=row[2],
        endpoint=row[3],
        input_file_id=row[4],
        completion_window=row[5],
        status=row[6],
        created_at=row[7],
        expires_at=row[8],
        in_progress_at=row[9],
        finalizing_at=row[10],
        completed_at=row[11],
        failed_at=row[12],
        expired_at=row[13],
        cancelling_at=row[14],
        cancelled_at=row[15],
        metadata=None if row[16] is None else _meta_decoder.decode(row[16]),
        output_file_id=row[17],
        error_file_id=row[18],
        reserved_units=int(row[19]),
        models=_models_decoder.decode(row[20]),
        native_upstream=row[21],
        native_id=row[22],
    )


_INSERT_JOB = f"INSERT INTO batches ({JOB_COLUMNS}) VALUES ({', '.join(['?'] * _JOB_COUNT)})"
_INSERT_ITEM = f"INSERT INTO batch_items ({ITEM_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
_COUNTS = (
    "SELECT batch_id, state, outcome, COUNT(*), COALESCE(SUM(cost_units), 0) FROM batch_items"
    " WHERE batch_id IN ({marks}) GROUP BY batch_id, state, outcome"
)
_CLAIM = (
    "UPDATE batch_items SET state = 'running', lease_owner = ?, lease_expires = ?, attempts = attempts + 1"
    " WHERE (batch_id, idx) IN (SELECT i.batch_id, i.idx FROM batch_items i JOIN batches b ON b.id = i.batch_id"
    " WHERE b.status = 'in_progress' AND b.native_upstream IS NULL"
    " AND (i.state = 'pending' OR (i.state = 'running' AND i.lease_expires < ?))"
    " ORDER BY b.created_at, i.batch_id, i.idx LIMIT ?{skip_locked})"
    " RETURNING batch_id, idx, custom_id, body, attempts"
)
_FINISH = (
    "UPDATE batch_items SET state = 'done', outcome = ?, status_code = ?, result = ?, request_id = ?, cost_units = ?,"
    " lease_expires = NULL WHERE batch_id = ? AND idx = ? AND state <> 'done'"
)
_DUE = (
    "SELECT {cols} FROM batches WHERE (status IN ('in_progress', 'cancelling') AND NOT EXISTS"
    " (SELECT 1 FROM batch_items i WHERE i.state IN ('pending', 'running') AND i.batch_id = batches.id))"
    " OR (status = 'finalizing' AND finalizing_at < ?) OR (status = 'cancelling' AND finalizing_at < ?)"
)


def _add_counts(jobs: dict[str, BatchJob], rows: Sequence[Row]) -> None:
    for batch_id, state, outcome, count, cost in rows:
        c = jobs[batch_id].counts
        n = int(count)
        c.total += n
        c.cost_units += int(cost)
        if state != "done":
            c.processing += n
        elif outcome in ("succeeded", "errored", "canceled", "expired"):
            setattr(c, outcome, getattr(c, outcome) + n)


# What open batches hold, per owner key: the reservations of their items not done yet.
_HELD = (
    "SELECT b.key_id, COALESCE(SUM(i.reserve_units), 0) FROM batch_items i JOIN batches b"
    " ON b.id = i.batch_id WHERE i.state IN ('pending', 'running') AND b.key_id IS NOT NULL GROUP BY b.key_id"
)

# PostgreSQL advisory lock taken by batch creations that check credit (any 64-bit number no other lock uses;
# the migrations' is PG_MIGRATION_LOCK): one at a time reads the holds and adds its own.
BATCH_HOLDS_LOCK = 0x6F6D6E6962617463  # "omnibatc" in ASCII


def _holds(rows: list[Row]) -> dict[str, int]:
    return {r[0]: int(r[1]) for r in rows if int(r[1])}


class SqlBatches(BatchStore):
    def __init__(self, db: Db) -> None:
        self.db = db
        self._claim = _CLAIM.format(skip_locked=db.skip_locked)

    async def create(self, job: BatchJob, items: list[BatchItem], admit: AdmitHolds | None = None) -> None:
        rows = [(job.id, it.index, it.custom_id, it.body, it.reserve_units) for it in items]
        async with self.db.transaction() as tx:
            if admit is not None:
                await tx.serialize(BATCH_HOLDS_LOCK)
                await admit(_holds(await tx.fetch(_HELD)))
            await tx.execute(_INSERT_JOB, _job_values(job))
            await tx.executemany(_INSERT_ITEM, rows)

    async def _with_counts(self, jobs: list[BatchJob]) -> list[BatchJob]:
        if jobs:
            by_id = {j.id: j for j in jobs}
            sql = _COUNTS.format(marks=", ".join(["?"] * len(jobs)))
            _add_counts(by_id, await self.db.fetch(sql, list(by_id)))
        return jobs

    async def get(self, batch_id: str, key_id: str | None) -> BatchJob | None:
        job = await self.get_any(batch_id)
        return job if job is not None and job.key_id == key_id else None

    async def get_any(self, batch_id: str) -> BatchJob | None:
        if _unreadable(batch_id):
            return None
        rows = await self.db.fetch(f"SELECT {JOB_COLUMNS} FROM batches WHERE id = ?", [batch_id])
        return (await self._with_counts([_job(rows[0])]))[0] if rows else None

    async def page(
        self,
        key_id: str | None,
        api: BatchApi | None,
        after: str | None = None,
        before: str | None = None,
        limit: int = 20,
        all_owners: bool = False,
    ) -> list[BatchJob]:
        where, args = ("1 = 1", []) if all_owners else _owner(key_id)
        if api is not None:
            where += " AND api = ?"
            args.append(api)
        order = "DESC"
        if after is not None:
            where += " AND (created_at, id) < (SELECT created_at, id FROM batches WHERE id = ?)"
            args.append(after)
        elif before is not None:
            where += " AND (created_at, id) > (SELECT created_at, id FROM batches WHERE id = ?)"
            args.append(before)
            order = "ASC"  # the newest ``limit`` just before it, then put back newest first
        sql = f"SELECT {JOB_COLUMNS} FROM batches WHERE {where} ORDER BY created_at {order}, id {order}"
        jobs = [_job(r) for r in await self.db.fetch(f"{sql} LIMIT {int(limit)}", args)]
        if order == "ASC":
            jobs.reverse()
        return await self._with_counts(jobs)

    async def delete(self, batch_id: str, key_id: str | None) -> bool:
        if _unreadable(batch_id):
            return False
        owner, args = _owner(key_id)
        cond = f"id = ? AND {owner} AND status IN {_ENDED}"
        async with self.db.transaction() as tx:
            await tx.execute(
                f"DELETE FROM batch_items WHERE batch_id IN (SELECT id FROM batches WHERE {cond})", [batch_id, *args]
            )
            return await tx.execute(f"DELETE FROM batches WHERE {cond}", [batch_id, *args]) > 0

    async def cancel(self, batch_id: str, key_id: str | None, now: float) -> BatchJob | None:
        job = await self.get(batch_id, key_id)
        if job is None:
            return None
        async with self.db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE batches SET status = 'cancelling', cancelling_at = ?"
                " WHERE id = ? AND status IN ('validating', 'in_progress')",
                [now, batch_id],
            )
            if changed:  # a batch an upstream runs is cancelled there (native_runner), its results read as usual
                await tx.execute(
                    "UPDATE batch_items SET state = 'done', outcome = 'canceled' WHERE batch_id = ?"
                    " AND state = 'pending' AND (SELECT native_id FROM batches WHERE id = ?) IS NULL",
                    [batch_id, batch_id],
                )
        return await self.get_any(batch_id)

    async def any_open(self) -> bool:
        return bool(await self.db.fetch(f"SELECT 1 FROM batches WHERE status NOT IN {_ENDED} LIMIT 1"))

    async def start_validated(self, now: float) -> int:
        async with self.db.transaction() as tx:
            return await tx.execute(
                "UPDATE batches SET status = 'in_progress', in_progress_at = ? WHERE status = 'validating'", [now]
            )

    async def claim(self, owner: str, now: float, lease_s: float, limit: int) -> list[ClaimedItem]:
        if limit <= 0:
            return []
        async with self.db.transaction() as tx:
            rows = await tx.fetch(self._claim, [owner, now + lease_s, now, limit])
            if not rows:
                return []
            ids = sorted({r[0] for r in rows})
            marks = ", ".join(["?"] * len(ids))
            jobs = await tx.fetch(f"SELECT id, key_id, endpoint FROM batches WHERE id IN ({marks})", ids)
        owners = {j[0]: (j[1], j[2]) for j in jobs}
        return [
            ClaimedItem(
                batch_id=r[0],
                index=int(r[1]),
                custom_id=r[2],
                body=bytes(r[3]),
                attempts=int(r[4]),
                key_id=owners[r[0]][0],
                endpoint=owners[r[0]][1],
            )
            for r in sorted(rows, key=lambda r: (r[0], r[1]))
        ]

    async def renew(self, owner: str, items: list[tuple[str, int]], until: float) -> None:
        if not items:
            return
        async with self.db.transaction() as tx:
            await tx.executemany(
                "UPDATE batch_items SET lease_expires = ? WHERE batch_id = ? AND idx = ? AND lease_owner = ?"
                " AND state = 'running'",
                [(until, b, i, owner) for b, i in items],
            )

    async def release(self, owner: str) -> int:
        async with self.db.transaction() as tx:
            return await tx.execute(
                "UPDATE batch_items SET state = 'pending', lease_owner = NULL, lease_expires = NULL"
                " WHERE state = 'running' AND lease_owner = ?",
                [owner],
            )

    async def finish(self, batch_id: str, index: int, result: ItemResult) -> bool:
        r = result
        args = [r.outcome, r.status_code, r.body, r.request_id, r.cost_units, batch_id, index]
        async with self.db.transaction() as tx:
            return await tx.execute(_FINISH, args) > 0

    async def finish_many(self, results: list[tuple[str, int, ItemResult]]) -> None:
        rows = [(r.outcome, r.status_code, r.body, r.request_id, r.cost_units, b, i) for b, i, r in results]
        async with self.db.transaction() as tx:
            await tx.executemany(_FINISH, rows)

    async def close_open_items(self, now: float) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "UPDATE batch_items SET state = 'done', outcome = 'expired' WHERE state = 'pending' AND batch_id IN"
                " (SELECT id FROM batches WHERE status = 'in_progress' AND expires_at <= ?)",
                [now],
            )
            await tx.execute(
                "UPDATE batch_items SET state = 'done', outcome = 'canceled' WHERE state = 'running'"
                " AND lease_expires < ? AND batch_id IN (SELECT id FROM batches WHERE status = 'cancelling')",
                [now],
            )

    async def due(self, now: float, stale_s: float) -> list[BatchJob]:
        rows = await self.db.fetch(_DUE.format(cols=JOB_COLUMNS), [now - stale_s, now - stale_s])
        return await self._with_counts([_job(r) for r in rows])

    async def begin_finalizing(self, batch_id: str, now: float, stale_s: float) -> bool:
        """in_progress -> finalizing; a cancelling batch keeps its status (it ends cancelled) and marks the
        start in ``finalizing_at``; a stale finalization is taken over."""
        async with self.db.transaction() as tx:
            return (
                await tx.execute(
                    "UPDATE batches SET status = CASE WHEN status = 'cancelling' THEN status ELSE 'finalizing' END,"
                    " finalizing_at = ? WHERE id = ? AND (status = 'in_progress' OR ((status = 'finalizing' OR"
                    " status = 'cancelling') AND (finalizing_at IS NULL OR finalizing_at < ?)))",
                    [now, batch_id, now - stale_s],
                )
                > 0
            )

    async def open_items(self, batch_id: str) -> list[BatchItem]:
        rows = await self.db.fetch(
            "SELECT idx, custom_id, body, reserve_units FROM batch_items WHERE state = 'pending' AND batch_id = ?"
            " ORDER BY idx",
            [batch_id],
        )
        return [BatchItem(index=int(r[0]), custom_id=r[1], body=bytes(r[2]), reserve_units=int(r[3])) for r in rows]

    async def done_items(self, batch_id: str) -> list[DoneItem]:
        rows = await self.db.fetch(
            "SELECT idx, custom_id, outcome, status_code, result, request_id, cost_units FROM batch_items"
            " WHERE batch_id = ? AND state = 'done' ORDER BY idx",
            [batch_id],
        )
        return [
            DoneItem(
                index=int(r[0]),
                custom_id=r[1],
                result=ItemResult(
                    outcome=r[2],
                    status_code=int(r[3] or 0),
                    body=bytes(r[4]) if r[4] is not None else b"",
                    request_id=r[5] or "",
                    cost_units=int(r[6]),
                ),
            )
            for r in rows
        ]

    async def finalize(self, job: BatchJob, status: BatchStatus, files: list[StoredFile], now: float) -> None:
        column = {"completed": "completed_at", "expired": "expired_at", "cancelled": "cancelled_at"}.get(
            status, "failed_at"
        )
        output = next((f.id for f in files if f.filename.endswith("_output.jsonl")), None)
        errors = next((f.id for f in files if f.filename.endswith("_error.jsonl")), None)
        async with self.db.transaction() as tx:
            for f in files:
                await tx.execute(_PUT_FILE, _file_values(f))
            await tx.execute(
                f"UPDATE batches SET status = ?, {column} = ?, output_file_id = ?, error_file_id = ?"
                f" WHERE id = ? AND status NOT IN {_ENDED}",
                [status, now, output, errors, job.id],
            )

    async def claim_native(self, owner: str, now: float, hold_s: float, limit: int) -> list[BatchJob]:
        # The alias ``i`` is what the dialect's row lock names (Db.skip_locked).
        pick = (
            "SELECT i.id FROM batches i WHERE i.native_upstream IS NOT NULL"
            " AND i.status IN ('in_progress', 'cancelling') AND"
            f" (i.lease_expires IS NULL OR i.lease_expires < ?) ORDER BY i.created_at LIMIT ?{self.db.skip_locked}"
        )
        async with self.db.transaction() as tx:
            rows = await tx.fetch(
                f"UPDATE batches SET lease_owner = ?, lease_expires = ? WHERE id IN ({pick}) RETURNING {JOB_COLUMNS}",
                [owner, now + hold_s, now, limit],
            )
        return [_job(r) for r in rows]

    async def set_native_id(self, batch_id: str, native_id: str) -> bool:
        async with self.db.transaction() as tx:
            sql = "UPDATE batches SET native_id = ? WHERE id = ? AND native_id IS NULL"
            return await tx.execute(sql, [native_id, batch_id]) > 0

    async def held_units(self) -> dict[str, int]:
        return _holds(await self.db.fetch(_HELD))
