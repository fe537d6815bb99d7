"""Creating a batch, for both API shapes: every request decoded by its endpoint's protocol, routed, checked
against the owner key's allow-list, and priced at its worst case at the batch price. With a credit limit the
sum of those is reserved up front: a batch the key's remaining credit (less what its other open batches hold)
cannot cover is refused before anything runs, as the gate refuses an interactive request (429
``insufficient_quota``). The runner releases the reservation item by item as results are recorded."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from omnirelay.batches.execute import DEFAULT_BATCH_DISCOUNT
from omnirelay.batches.native import native_capable
from omnirelay.batches.targets import EMBEDDINGS, parse_item
from omnirelay.config import BatchesConfig
from omnirelay.core.batches import AdmitHolds, BatchApi, BatchItem, BatchJob, BatchStore
from omnirelay.core.errors import GatewayError, invalid
from omnirelay.core.ids import new_id
from omnirelay.pipeline.calls import CallPipeline
from omnirelay.pipeline.gate import Admission
from omnirelay.routing.table import Route
from omnirelay.state.gate import KeyAdmission, KeyGate
from omnirelay.state.keys import to_usd

COMPLETION_WINDOW_S = {"24h": 86400.0}
MAX_METADATA_PAIRS = 16


class Entry:
    """One request of a batch being created: its id, and where an error about it points (a file line, or
    ``requests[i]``)."""

    __slots__ = ("body", "custom_id", "where")

    def __init__(self, custom_id: str, body: bytes, where: str) -> None:
        self.custom_id = custom_id
        self.body = body
        self.where = where


def check_metadata(metadata: object) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_PAIRS:
        raise invalid(f"metadata must be an object of at most {MAX_METADATA_PAIRS} string pairs", param="metadata")
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str) or len(k) > 64 or len(v) > 512:
            raise invalid("metadata keys (64 characters) and values (512) must be strings", param="metadata")
    return metadata


class BatchCreator:
    def __init__(
        self,
        batches: BatchStore,
        gate: KeyGate,
        pipeline: CallPipeline,
        settings: BatchesConfig,
        notify: Callable[[], None],
    ) -> None:
        self.batches = batches
        self.gate = gate
        self.pipeline = pipeline
        self.settings = settings
        self.notify = notify

    def _item(self, admission: Admission, endpoint: str, index: int, entry: Entry) -> tuple[BatchItem, str, str | None]:
        """The item, with its worst-case cost reserved. A body its endpoint cannot decode refuses the batch (400
        naming where); a model that is unknown or not allowed to the key fails that request alone when it runs
        (as it would interactively), so it reserves nothing."""
        try:
            req = parse_item(endpoint, entry.body).chat
        except GatewayError as err:
            err.message = f"{entry.where}: {err.message}"
            err.param = f"{entry.where}.{err.param}" if err.param else entry.where
            raise
        units = 0
        try:
            routes = self.gate.permitted(admission, req, self.pipeline.plan(req))
        except GatewayError:
            routes = []
        if routes:
            price = self.gate.price(None, req.model)
            discount = price.batch_discount if price is not None else DEFAULT_BATCH_DISCOUNT
            units = math.ceil(self.gate.worst_case_units(req, routes) * discount * admission.multiplier)
        item = BatchItem(index=index, custom_id=entry.custom_id, body=entry.body, reserve_units=units)
        return item, req.model, self._native(endpoint, routes)

    def _native(self, endpoint: str, routes: list[Route]) -> str | None:
        """The upstream whose own batch API may run this request: its only channel, with ``native_batches``."""
        if endpoint == EMBEDDINGS or len(routes) != 1 or len(routes[0].channels) != 1:
            return None
        upstream = routes[0].channels[0].upstream.name
        return upstream if native_capable(self.pipeline.providers.get(upstream)) else None

    async def create(
        self,
        admission: Admission,
        api: BatchApi,
        endpoint: str,
        entries: list[Entry],
        input_file_id: str | None = None,
        completion_window: str = "24h",
        metadata: dict[str, str] | None = None,
    ) -> BatchJob:
        if completion_window not in COMPLETION_WINDOW_S:
            raise invalid("completion_window must be 24h", param="completion_window")
        if len(entries) > self.settings.max_requests:
            raise invalid(f"a batch holds at most {self.settings.max_requests} requests", param="requests")
        items: list[BatchItem] = []
        models: set[str] = set()
        natives: set[str | None] = set()
        for index, entry in enumerate(entries):
            item, model, native = self._item(admission, endpoint, index, entry)
            items.append(item)
            models.add(model)
            natives.add(native)
        reserved = sum(i.reserve_units for i in items)
        now = time.time()
        job = BatchJob(
            id=new_id("msgbatch_" if api == "anthropic" else "batch_"),
            key_id=admission.key_id,
            api=api,
            endpoint=endpoint,
            input_file_id=input_file_id,
            completion_window=completion_window,
            status="validating",
            created_at=now,
            expires_at=now + COMPLETION_WINDOW_S[completion_window],
            metadata=metadata,
            reserved_units=reserved,
            models=sorted(models),
            native_upstream=natives.pop() if len(natives) == 1 else None,  # every request to that one upstream
        )
        await self.batches.create(job, items, self._credit_check(admission, reserved))
        self.notify()
        job.counts.total = job.counts.processing = len(items)
        return job

    def _credit_check(self, admission: Admission, reserved: int) -> AdmitHolds | None:
        """With a credit limit (the key's, or its owner's wallet): what ``BatchStore.create`` runs with the holds of
        the open batches, inside its transaction, to refuse a batch that the credit left after them cannot pay
        for at its worst case. None: nothing limits the key."""
        cached = admission.key if isinstance(admission, KeyAdmission) else None
        if cached is None:
            return None
        wallet = cached.ownership.wallet if cached.ownership is not None else None
        rec = cached.record
        if wallet is None and rec.credit_units is None:
            return None

        async def admit(holds: dict[str, int]) -> None:
            if wallet is not None:  # a console user's key: the batch must fit the owner's wallet too
                held = sum(holds.get(k, 0) for k in wallet.key_ids)
                if reserved > wallet.balance_units(self.gate.pending_units) - held:
                    raise _refused(
                        f"the wallet of API key {rec.id}'s owner has not enough balance left for this batch",
                        reserved,
                        held,
                    )
            balance = self.gate.balance_units(rec) if rec.credit_units is not None else None
            held = holds.get(rec.id, 0)
            if balance is not None and reserved > balance - held:
                raise _refused(
                    f"API key {rec.id} has not enough credit left for this batch", reserved, held, "its other "
                )

        return admit


def _refused(why: str, reserved: int, held: int, whose: str = "") -> GatewayError:
    return GatewayError(
        "quota",
        f"You exceeded your current quota: {why}, which may cost up to ${to_usd(reserved):.6f} at the batch price "
        f"({whose}open batches hold ${to_usd(held):.6f}).",
        code="insufficient_quota",
        retryable=False,
    )
