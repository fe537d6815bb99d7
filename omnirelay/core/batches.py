"""Batch jobs and uploaded files as the state backend keeps them (implemented in ``omnirelay.state``), and what
the batch runner (``omnirelay.batches``) needs from them.

A batch is one row (``BatchJob``) and one row per request (``BatchItem``). An item moves pending -> running
(claimed under a lease by one runner) -> done (its outcome and result recorded at most once); a lease that
expires (its runner died) makes the item claimable again. Every read by id is owner-checked: another key's file
or batch is answered like a missing one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Literal

import msgspec

Bytes = bytes  # ``StoredFile.bytes`` (OpenAI's field name) hides the type inside the class

# OpenAI's statuses; the Anthropic shape maps them onto in_progress / canceling / ended.
BatchStatus = Literal[
    "validating", "in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled"
]
TERMINAL_STATUSES = ("completed", "failed", "expired", "cancelled")
Outcome = Literal["succeeded", "errored", "canceled", "expired"]
BatchApi = Literal["openai", "anthropic"]


class StoredFile(msgspec.Struct, kw_only=True):
    id: str  # "file-..."
    key_id: str | None  # owner; None when the gateway is open (no key) or the master key uploaded it
    purpose: str  # "batch" (uploads), "batch_output" (results the gateway wrote)
    filename: str
    bytes: int
    lines: int
    created_at: float
    content: Bytes = b""  # empty when read without content


class BatchCounts(msgspec.Struct, kw_only=True):
    total: int = 0
    processing: int = 0  # pending or running
    succeeded: int = 0
    errored: int = 0
    canceled: int = 0
    expired: int = 0
    cost_units: int = 0  # what the settled items cost (batch price)


class BatchJob(msgspec.Struct, kw_only=True):
    id: str  # "batch_..." (OpenAI) or "msgbatch_..." (Anthropic)
    key_id: str | None
    api: BatchApi  # which API created it (and lists it)
    endpoint: str  # "/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/messages"
    input_file_id: str | None
    completion_window: str
    status: BatchStatus
    created_at: float
    expires_at: float
    in_progress_at: float | None = None
    finalizing_at: float | None = None
    completed_at: float | None = None
    failed_at: float | None = None
    expired_at: float | None = None
    cancelling_at: float | None = None
    cancelled_at: float | None = None
    metadata: dict[str, str] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    reserved_units: int = 0  # the worst case of every item, held from the key's credit while items are open
    models: list[str] = []
    native_upstream: str | None = None  # set: submitted to this upstream's own batch API (batches/native.py)
    native_id: str | None = None  # the batch's id at that upstream, once submitted
    counts: BatchCounts = msgspec.field(default_factory=BatchCounts)  # filled in on read

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL_STATUSES


class BatchItem(msgspec.Struct, kw_only=True):
    """One request of a batch as created."""

    index: int
    custom_id: str
    body: bytes  # the request body as the target endpoint takes it (JSON)
    reserve_units: int = 0  # its worst-case cost at the batch price


class ClaimedItem(msgspec.Struct, kw_only=True):
    """An item a runner holds the lease of."""

    batch_id: str
    index: int
    custom_id: str
    body: bytes
    attempts: int  # this claim included
    key_id: str | None
    endpoint: str


class ItemResult(msgspec.Struct, kw_only=True):
    outcome: Outcome
    status_code: int = 0
    body: bytes = b""  # the reply (or error) body as the endpoint renders it
    request_id: str = ""
    cost_units: int = 0


class DoneItem(msgspec.Struct, kw_only=True):
    index: int
    custom_id: str
    result: ItemResult


class FileStore(ABC):
    @abstractmethod
    async def put(self, f: StoredFile) -> None: ...

    @abstractmethod
    async def get(self, file_id: str, key_id: str | None, content: bool = False) -> StoredFile | None:
        """None when missing or owned by another key; ``content`` False leaves ``content`` empty."""

    @abstractmethod
    async def page(self, key_id: str | None, purpose: str | None, after: str | None, limit: int) -> list[StoredFile]:
        """The owner's files, newest first, those after the file ``after`` in that order."""

    @abstractmethod
    async def delete(self, file_id: str, key_id: str | None) -> bool: ...


# Decides, given the units open batches hold per key, whether a new batch may be created (raises if not).
AdmitHolds = Callable[[dict[str, int]], Awaitable[None]]


class BatchStore(ABC):
    @abstractmethod
    async def create(self, job: BatchJob, items: list[BatchItem], admit: AdmitHolds | None = None) -> None:
        """The job and its items, in one transaction. ``admit`` is given what open batches hold per key
        (``held_units``) inside that transaction, with every other creation that has an ``admit`` waiting, and
        refuses the batch by raising: two batches created at once cannot both spend the same credit."""

    @abstractmethod
    async def get(self, batch_id: str, key_id: str | None) -> BatchJob | None:
        """With its counts; None when missing or owned by another key."""

    @abstractmethod
    async def get_any(self, batch_id: str) -> BatchJob | None:
        """Whoever owns it (the command line, the runner)."""

    @abstractmethod
    async def page(
        self,
        key_id: str | None,
        api: BatchApi | None,
        after: str | None = None,
        before: str | None = None,
        limit: int = 20,
        all_owners: bool = False,
    ) -> list[BatchJob]:
        """Newest first: after the batch ``after`` in that order (older), or before ``before`` (newer)."""

    @abstractmethod
    async def delete(self, batch_id: str, key_id: str | None) -> bool:
        """Delete an ended batch and its items (False: missing, another key's, or not ended)."""

    @abstractmethod
    async def cancel(self, batch_id: str, key_id: str | None, now: float) -> BatchJob | None:
        """Mark it cancelling and its pending items canceled (a batch already ending is left as it is)."""

    @abstractmethod
    async def any_open(self) -> bool:
        """Whether some batch has not ended (one read: an idle runner does nothing else)."""

    @abstractmethod
    async def start_validated(self, now: float) -> int:
        """validating -> in_progress; how many."""

    @abstractmethod
    async def claim(self, owner: str, now: float, lease_s: float, limit: int) -> list[ClaimedItem]:
        """Lease at most ``limit`` claimable items of in-progress batches (pending, or running under a lease
        that expired before ``now``) to ``owner``, atomically: no item is leased to two owners at once."""

    @abstractmethod
    async def renew(self, owner: str, items: list[tuple[str, int]], until: float) -> None: ...

    @abstractmethod
    async def release(self, owner: str) -> int:
        """Put the items ``owner`` is running back to pending (a runner stopping cleanly); how many."""

    @abstractmethod
    async def finish(self, batch_id: str, index: int, result: ItemResult) -> bool:
        """Record an item's result unless one was recorded already; whether this call recorded it."""

    @abstractmethod
    async def finish_many(self, results: list[tuple[str, int, ItemResult]]) -> None:
        """``finish`` for several items (batch id, index, result) in one transaction."""

    @abstractmethod
    async def close_open_items(self, now: float) -> None:
        """Expired batches: their pending items become expired; cancelling batches: their running items whose
        lease expired become canceled."""

    @abstractmethod
    async def due(self, now: float, stale_s: float) -> list[BatchJob]:
        """Batches to finalize: in progress or cancelling with every item done, or finalizing for longer than
        ``stale_s`` (the runner that began died)."""

    @abstractmethod
    async def begin_finalizing(self, batch_id: str, now: float, stale_s: float) -> bool:
        """Take the finalization of a batch (one runner wins)."""

    @abstractmethod
    async def open_items(self, batch_id: str) -> list[BatchItem]:
        """The items not done yet (pending), in index order."""

    @abstractmethod
    async def done_items(self, batch_id: str) -> list[DoneItem]:
        """Every done item, in index order."""

    @abstractmethod
    async def finalize(self, job: BatchJob, status: BatchStatus, files: list[StoredFile], now: float) -> None:
        """Store the result files (kept if already there) and end the batch with ``status``."""

    @abstractmethod
    async def claim_native(self, owner: str, now: float, hold_s: float, limit: int) -> list[BatchJob]:
        """Lease in-progress batches run by an upstream's batch API whose lease lapsed (the time to look at
        them again) to ``owner`` until ``now + hold_s``."""

    @abstractmethod
    async def set_native_id(self, batch_id: str, native_id: str) -> bool:
        """Record the upstream's id of a batch once (False: one was recorded already)."""

    @abstractmethod
    async def held_units(self) -> dict[str, int]:
        """Per key: the reservations of items not done yet."""
