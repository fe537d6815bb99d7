"""Usage records off the hot path, without losing any: a local write-ahead journal, then batched inserts.

The path of one settled record:

1. ``UsageWriter.record(row)`` appends it to the journal and waits until it is on disk. Appends are
   group-committed: while one ``write + fsync`` runs (in a thread), later records queue and go together
   in the next one, so throughput does not depend on the fsync latency (about 1-3 ms), and each settle
   waits at most about two fsyncs.
2. Once fsync'ed, the record joins ``pending``; every ``usage_flush_s`` the writer inserts ``pending`` into
   the database in one transaction that also charges the keys (idempotent by request_id, see store.py).
3. Only after that commit are the journal segments holding those records deleted. The writer rotates to a
   new segment under the same lock as the fsync, so "records in old segments" is exactly "records taken
   for this flush" (plus earlier flushes that failed, which stay pending and keep their segments).

If the database is down (or restarting) the flush fails, records stay pending and in the journal, and the
next flush retries with backoff. A batch the database refuses because of what its rows hold
(``Store.is_row_error``: a number out of range, text it cannot store) is split in halves until the rows at
fault are found: every other row commits and charges its key, and each row at fault goes to the
``usage_rejected`` table (the record as journalled and the error, listed by ``GET /admin/usage/rejected`` and
``omnirelay usage --rejected``, and logged with its request id), never to be retried. A failed flush starts no
new journal segment unless records arrived since the last one.

If the gateway dies (SIGKILL included), the next process to start with the same data dir replays the journal:
each process owns ``<owner>.lock`` under an exclusive ``flock`` for its lifetime (the kernel drops it when the
process dies), so a lock file that can be locked belongs to a dead owner, whose segments are read, inserted
(duplicates ignored, rows at fault kept aside as above) and then deleted.

Guarantee: a record survives a crash or SIGKILL of the gateway once ``record()`` has returned, i.e. when
``Gate.settle`` reaches the end of its journal step; the relay settles before the reply's last byte. By
default (``state.journal_fsync: false``) the append is a plain ``write`` into the kernel's page cache, which
is all a process crash needs; a power loss or kernel crash can then lose records not yet flushed to the
database (at most ``usage_flush_s`` worth). Those writes are group-committed too, per event-loop tick: each
``record()`` adds its row to the tick's batch and yields once, and the first of them to resume writes the
whole batch with one ``write`` (a system call per record was the largest single cost of a settle).
``journal_fsync: true`` adds the group-committed fsync described in step 1 (about 1-3 ms per settle) for
power-loss durability. A torn last line (a crash in the middle of a write that was never acknowledged) is
skipped at replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from omnirelay.state.store import Store, UsageRow, rejected_from

log = logging.getLogger("omnirelay.state.usage")

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(UsageRow)
MAX_BACKOFF_S = 5.0


class Journal:
    """This process's append-only journal segments, ``<owner>.<seq>.jnl``."""

    def __init__(self, directory: Path, fsync: bool = True) -> None:
        self.dir = directory
        self.fsync = fsync
        self.owner = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.seq = 0
        self.oldest = 0  # the oldest segment not deleted yet
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._torn = False  # a failed write may have left a partial line: end it before the next one
        self.dirty = False  # something was written to the current segment (else rotating would add an empty one)

    def open(self) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_fd = os.open(self.dir / f"{self.owner}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._open_segment()

    def _segment(self, seq: int) -> Path:
        return self.dir / f"{self.owner}.{seq:08d}.jnl"

    def _open_segment(self) -> None:
        self._torn = False
        self._fd = os.open(self._segment(self.seq), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        if self.fsync:
            # The new file's directory entry must be durable too.
            dir_fd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def write(self, data: bytes) -> None:
        """Appends whole lines; with fsync on, also makes them durable (blocking: then run it in a thread)."""
        assert self._fd is not None
        if self._torn:
            # Otherwise replay would read the partial line and the next record as one (torn, skipped) line.
            data = b"\n" + data
        self._torn = True
        self.dirty = True
        n = os.write(self._fd, data)
        if n < len(data):  # short writes are rare on a regular file (disk full, signal): finish it
            view = memoryview(data)[n:]
            while view:
                view = view[os.write(self._fd, view) :]
        self._torn = False
        if self.fsync:
            os.fdatasync(self._fd)

    def rotate(self) -> int:
        """Start a new segment; returns the first seq still live (older ones may go once committed). With
        nothing written to the current segment it stays, and is the first live one."""
        if not self.dirty:
            return self.seq
        self.dirty = False
        if self._fd is not None:
            os.close(self._fd)
        self.seq += 1
        self._open_segment()
        return self.seq

    def drop_before(self, seq: int) -> None:
        for old in range(self.oldest, seq):
            with contextlib.suppress(FileNotFoundError):
                self._segment(old).unlink()
        self.oldest = max(self.oldest, seq)

    def close(self, remove: bool) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if remove:
            self.drop_before(self.seq + 1)
        if self._lock_fd is not None:
            if remove:
                with contextlib.suppress(FileNotFoundError):
                    (self.dir / f"{self.owner}.lock").unlink()
            os.close(self._lock_fd)
            self._lock_fd = None


def claim_orphans(directory: Path) -> tuple[list[UsageRow], list[Path], list[int]]:
    """Rows journalled by dead processes, their files, and the lock fds now held on them (keep until the rows
    are committed, so no other starting process replays them concurrently)."""
    rows: list[UsageRow] = []
    files: list[Path] = []
    held: list[int] = []
    if not directory.is_dir():
        return rows, files, held
    for lock_path in sorted(directory.glob("*.lock")):
        fd = os.open(lock_path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # a live process owns it
            continue
        held.append(fd)
        owner = lock_path.name.removesuffix(".lock")
        for seg in sorted(directory.glob(f"{owner}.*.jnl")):
            files.append(seg)
            for line in seg.read_bytes().splitlines():
                if not line:  # the line end written after a failed write (Journal.write)
                    continue
                try:
                    rows.append(_decoder.decode(line))
                except msgspec.DecodeError:
                    log.warning("skipping a torn journal line in %s", seg.name)
        files.append(lock_path)
    return rows, files, held


class _Progress:
    """How far a write got: ``rows[:handled]`` are stored or rejected, ``stored`` are the committed ones."""

    __slots__ = ("handled", "stored")

    def __init__(self) -> None:
        self.handled = 0
        self.stored: list[UsageRow] = []


class UsageWriter:
    def __init__(
        self,
        store: Store,
        journal_dir: Path,
        *,
        flush_s: float = 0.25,
        batch: int = 1000,
        fsync: bool = True,
        on_committed: Callable[[list[UsageRow]], None] | None = None,
    ) -> None:
        self.store = store
        self.journal = Journal(journal_dir, fsync=fsync)
        self.flush_s = flush_s
        self.batch = batch
        self.on_committed = on_committed
        # Held by the database flush and by whoever must see the keys' spent and ``pending`` consistently.
        self.db_lock = asyncio.Lock()
        self.pending: list[UsageRow] = []
        self._journal_lock = asyncio.Lock()
        self._flush_lock = asyncio.Lock()
        self._buffer: list[UsageRow] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._tick: list[UsageRow] = []  # rows settled in this event-loop tick, not written yet (no fsync)
        self._syncer: asyncio.Task[None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._orphans: list[UsageRow] = []
        self._orphan_files: list[Path] = []
        self._orphan_fds: list[int] = []
        self._failures = 0
        self.committed = 0
        self.rejected = 0

    async def start(self) -> None:
        await asyncio.to_thread(self.journal.open)
        rows, files, fds = await asyncio.to_thread(claim_orphans, self.journal.dir)
        self._orphan_files, self._orphan_fds = files, fds
        if rows:
            log.info("replaying %d usage records from the journal of a previous run", len(rows))
            try:
                await self._write_orphans(rows)
            except Exception:
                # _write_orphans left the rows still to write in self._orphans: the flush loop retries them.
                log.warning(
                    "database unavailable at start: %d journalled records wait", len(self._orphans), exc_info=True
                )
        else:
            await self._drop_orphan_files()
        self._loop_task = asyncio.create_task(self._run(), name="usage-writer")

    async def _write_orphans(self, rows: list[UsageRow]) -> None:
        progress = _Progress()
        try:
            await self._store_rows(rows, progress)
        finally:
            self._orphans = rows[progress.handled :]
        await self._drop_orphan_files()

    async def _store_rows(self, rows: list[UsageRow], progress: _Progress) -> None:
        """Write ``rows`` in batches. A batch refused for what it holds is halved, and halved again, until each
        row at fault is alone: that one is rejected, all others commit. Rows are handled in order, so on any
        other error (raised) ``rows[progress.handled:]`` are exactly the ones still to write."""
        for i in range(0, len(rows), self.batch):
            parts = [rows[i : i + self.batch]]
            while parts:
                part = parts.pop()
                try:
                    await self.store.write_usage(part)
                except Exception as exc:
                    if not self.store.is_row_error(exc):
                        raise
                    if len(part) > 1:
                        half = len(part) // 2
                        parts += [part[half:], part[:half]]  # the first half is popped first: order is kept
                        continue
                    await self._reject(part[0], exc)
                else:
                    progress.stored.extend(part)
                progress.handled += len(part)

    async def _reject(self, row: UsageRow, exc: Exception) -> None:
        rejected = rejected_from(row, exc)
        try:
            await self.store.reject_usage(rejected)
        except Exception as again:
            if not self.store.is_row_error(again):
                raise  # the database went away: the row stays pending and is tried again
            # Not even the quarantine can hold it: the log line is all that is left of it.
            log.error("usage record %s cannot be stored nor kept: %s; record: %s", row.request_id, exc, rejected.record)
            return
        log.error(
            "usage record %s (key %s) cannot be stored, kept in usage_rejected: %s",
            rejected.request_id,
            rejected.key_id,
            rejected.error,
        )
        self.rejected += 1

    async def _drop_orphan_files(self) -> None:
        def drop() -> None:
            for path in self._orphan_files:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            for fd in self._orphan_fds:
                os.close(fd)

        await asyncio.to_thread(drop)
        self._orphan_files, self._orphan_fds = [], []

    async def record(self, row: UsageRow) -> None:
        """Journal the row durably, then queue it for the database."""
        if not self.journal.fsync:
            # Surviving a crash or SIGKILL of this process only needs the bytes in the kernel. Every row
            # settled in this tick joins one batch; after one yield, the first of its writers to resume
            # appends the batch (the others find it written). The write and the queueing happen together,
            # with no await between them, so no rotation interleaves (see _flush). On cancellation the
            # finally still writes it: the row is never left behind.
            batch = self._tick
            batch.append(row)
            try:
                await asyncio.sleep(0)
            finally:
                if batch is self._tick:
                    self._write_tick()
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._buffer.append(row)
        self._waiters.append(fut)
        if self._syncer is None or self._syncer.done():
            self._syncer = asyncio.create_task(self._sync())
        await fut

    def _write_tick(self) -> None:
        rows, self._tick = self._tick, []
        try:
            self.journal.write(_encoder.encode_lines(rows))
        except OSError as exc:
            log.error("usage journal write failed, %d records are not crash-safe: %s", len(rows), exc)
        self.pending.extend(rows)

    async def _sync(self) -> None:
        while self._buffer:
            rows, waiters = self._buffer, self._waiters
            self._buffer, self._waiters = [], []
            data = _encoder.encode_lines(rows)
            try:
                async with self._journal_lock:
                    await asyncio.to_thread(self.journal.write, data)
                    self.pending.extend(rows)
            except Exception as exc:
                # No journal (disk full?): still queue the rows for the database, but say so loudly.
                log.error("usage journal write failed, %d records are not crash-safe: %s", len(rows), exc)
                self.pending.extend(rows)
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    async def _run(self) -> None:
        while True:
            delay = self.flush_s if self._failures == 0 else min(MAX_BACKOFF_S, self.flush_s * 2**self._failures)
            await asyncio.sleep(delay)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("usage flush failed unexpectedly")

    async def flush(self) -> None:
        """Write everything journalled so far; on success drop the covered journal segments. Flushes run
        one at a time, so when this returns every record journalled before the call is in the database
        (or the database failed)."""
        async with self._flush_lock:
            await self._flush()

    async def _flush(self) -> None:
        if self._orphans:
            try:
                await self._write_orphans(self._orphans)
            except Exception as exc:
                self._failures += 1
                log.warning("usage flush failed (database unavailable?), will retry: %s", exc)
                return
        if not self.pending:
            return
        if self.journal.fsync:
            async with self._journal_lock:
                live_from = await asyncio.to_thread(self.journal.rotate)
                rows, self.pending = self.pending, []
        else:
            # Inline appends never wait, so rotating inline (no fsync to make) keeps "old segments" ==
            # "rows taken now" exactly.
            live_from = self.journal.rotate()
            rows, self.pending = self.pending, []
        async with self.db_lock:
            progress = _Progress()
            try:
                await self._store_rows(rows, progress)
            except BaseException as exc:
                self.pending = rows[progress.handled :] + self.pending
                if not isinstance(exc, Exception):
                    raise  # cancelled (shutdown): the rows stay pending for stop()'s last flushes
                self._failures += 1
                log.warning("usage flush of %d records failed, will retry: %s", len(rows) - progress.handled, exc)
                return  # the journal segments stay: they hold the rows still pending
            finally:
                self.committed += len(progress.stored)
                if self.on_committed is not None and progress.stored:
                    self.on_committed(progress.stored)
            self._failures = 0
        await asyncio.to_thread(self.journal.drop_before, live_from)

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._syncer is not None:
            await self._syncer
        if self._tick:
            self._write_tick()
        deadline = time.monotonic() + 10.0
        while (self.pending or self._orphans) and time.monotonic() < deadline:
            await self.flush()
            if self.pending or self._orphans:
                await asyncio.sleep(0.5)
        clean = not self.pending and not self._orphans
        if not clean:
            log.warning(
                "stopping with %d usage records only in the journal; the next start replays them", len(self.pending)
            )
        await asyncio.to_thread(self.journal.close, clean)
