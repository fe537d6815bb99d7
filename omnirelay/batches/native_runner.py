"""Running a batch through an upstream's own batch API (see ``native.py``): the runner leases such a batch for one
poll interval at a time (``BatchStore.claim_native``); each turn either submits it (the upstream's batch id is
recorded once) or polls it, and once the upstream's batch has ended, reads every result with the provider's
parser, renders it as the batch's endpoint would, charges it at the batch price (usage records as for items run
here, request id batch id + index) and records it. A cancelled batch is cancelled at the upstream (asked each turn
until it has ended there) and its results read the same way: what never ran is canceled. A turn that fails (the
upstream away) is tried again at the next lease."""

from __future__ import annotations

import logging
import time

import msgspec

from omnirelay.batches.execute import PROTOCOL, batch_cost, item_request_id
from omnirelay.batches.native import (
    OPENAI_ENDED,
    AnthropicBatchState,
    AnthropicNative,
    NativeResult,
    OpenAIBatchState,
    OpenAINative,
    UploadedFile,
    anthropic_results,
    built,
    openai_results,
    poll_interval,
    submitted_before,
)
from omnirelay.batches.targets import CHAT_PROTOCOLS, parse_item, render_error
from omnirelay.core.batches import BatchItem, BatchJob, BatchStore, ItemResult
from omnirelay.core.errors import GatewayError
from omnirelay.core.records import UsageRecord
from omnirelay.core.types import ChatRequest
from omnirelay.core.usage_bounds import sane_usage
from omnirelay.pipeline.calls import CallPipeline
from omnirelay.providers.base import HttpProvider, UpstreamRequest
from omnirelay.routing.table import Channel
from omnirelay.state.gate import KeyAdmission, KeyGate
from omnirelay.state.keys import to_units
from omnirelay.upstream.executor import HttpExecutor

# How far back OpenAI's batch list is read for a lost submission: pages of 100, and batches created from a minute
# (the two clocks may differ) before the gateway's batch on.
MAX_LIST_PAGES = 10
CLOCK_SLACK_S = 60.0

log = logging.getLogger("omnirelay.batches.native_runner")


class Prepared:
    __slots__ = ("channel", "index", "req", "ureq")

    def __init__(self, index: int, req: ChatRequest, channel: Channel, ureq: UpstreamRequest) -> None:
        self.index = index
        self.req = req
        self.channel = channel
        self.ureq = ureq


class NativeBatches:
    def __init__(self, batches: BatchStore, pipeline: CallPipeline, gate: KeyGate, executor: HttpExecutor) -> None:
        self.batches = batches
        self.pipeline = pipeline
        self.gate = gate
        self.executor = executor
        polls = [poll_interval(p) for p in pipeline.providers.values() if isinstance(p, HttpProvider)]
        self.hold_s = min(polls, default=30.0)

    def _provider(self, job: BatchJob) -> HttpProvider:
        provider = self.pipeline.providers.get(job.native_upstream or "")
        if not isinstance(provider, HttpProvider):
            raise GatewayError("upstream", f"upstream {job.native_upstream} is no longer configured")
        return provider

    async def advance(self, job: BatchJob) -> None:
        try:
            await self._advance(job)
        except (GatewayError, msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            log.warning("batch %s at upstream %s: %s (tried again later)", job.id, job.native_upstream, exc)

    async def _advance(self, job: BatchJob) -> None:
        items = await self.batches.open_items(job.id)
        if not items:
            return
        provider = self._provider(job)
        prepared, failed = self._prepare(job, items, provider)
        if failed:
            await self.batches.finish_many(failed)
        if not prepared:
            return
        api = OpenAINative(prepared[0].ureq) if provider.family == "openai" else AnthropicNative(prepared[0].ureq)
        timeouts = provider.upstream.timeouts
        if job.native_id is None:
            native_id = await self._submitted_before(api, job, provider)
            if native_id is None:
                native_id = await self._submit(api, prepared, job, provider)
            else:
                log.warning("batch %s: %s already has it as %s (an earlier submission's answer was lost); "
                            "not submitted again", job.id, provider.upstream.name, native_id)  # fmt: skip
            if not await self.batches.set_native_id(job.id, native_id):
                log.error("batch %s was submitted twice to %s (%s is extra)", job.id, provider.upstream.name, native_id)
            return
        if job.status == "cancelling":  # asked again each turn until the upstream's batch has ended
            await self.executor.exchange(provider, api.cancel(job.native_id), timeouts)
        if isinstance(api, OpenAINative):
            state = msgspec.json.decode(
                await self.executor.exchange(provider, api.poll(job.native_id), timeouts), type=OpenAIBatchState
            )
            if state.status not in OPENAI_ENDED:
                return
            results: dict[int, NativeResult] = {}
            for file_id in (state.output_file_id, state.error_file_id):
                if file_id:
                    content = await self.executor.exchange(provider, api.content(file_id), timeouts)
                    results.update(openai_results(content))
        else:
            a_state = msgspec.json.decode(
                await self.executor.exchange(provider, api.poll(job.native_id), timeouts), type=AnthropicBatchState
            )
            if a_state.processing_status != "ended" or not a_state.results_url:
                return
            results = anthropic_results(
                await self.executor.exchange(provider, api.results(a_state.results_url), timeouts)
            )
        await self._settle(job, provider, prepared, results)

    def _prepare(
        self, job: BatchJob, items: list[BatchItem], provider: HttpProvider
    ) -> tuple[list[Prepared], list[tuple[str, int, ItemResult]]]:
        prepared: list[Prepared] = []
        failed: list[tuple[str, int, ItemResult]] = []
        for item in items:
            try:
                req = parse_item(job.endpoint, item.body).chat
                channel = self.pipeline.plan(req)[0][1].channels[0]
                prepared.append(Prepared(item.index, req, channel, built(provider, req, channel.model)))
            except GatewayError as err:
                body = render_error(job.endpoint, err)
                failed.append((job.id, item.index, ItemResult(outcome="errored", status_code=err.status, body=body)))
        return prepared, failed

    async def _submitted_before(
        self, api: OpenAINative | AnthropicNative, job: BatchJob, provider: HttpProvider
    ) -> str | None:
        """The upstream's id of a batch an earlier turn submitted for ``job`` and never recorded (the gateway
        died, or the answer to the create call was lost), from OpenAI's batch list: submitting again would run,
        and bill, every request twice. Anthropic's batches carry no metadata to find one by (see the README)."""
        if not isinstance(api, OpenAINative):
            return None
        after: str | None = None
        for _ in range(MAX_LIST_PAGES):
            try:
                page = await self.executor.exchange(provider, api.listed(after), provider.upstream.timeouts)
            except GatewayError as err:
                # A 404: an OpenAI-compatible batch API without the list (some proxies), nothing to look in.
                # Anything else (the upstream away): tried again at the next turn, before anything is submitted.
                if err.kind != "not_found":
                    raise
                log.info("batch %s: %s has no batch list; submitting", job.id, provider.upstream.name)
                return None
            found, after = submitted_before(page, job.id, job.created_at - CLOCK_SLACK_S)
            if found is not None or after is None:
                return found
        return None

    async def _submit(
        self, api: OpenAINative | AnthropicNative, prepared: list[Prepared], job: BatchJob, provider: HttpProvider
    ) -> str:
        timeouts = provider.upstream.timeouts
        items = [(p.index, p.ureq) for p in prepared]
        if isinstance(api, OpenAINative):
            uploaded = await self.executor.exchange(provider, api.upload(items), timeouts)
            file_id = msgspec.json.decode(uploaded, type=UploadedFile).id
            created = await self.executor.exchange(provider, api.create(file_id, job.id), timeouts)
            return msgspec.json.decode(created, type=OpenAIBatchState).id
        created = await self.executor.exchange(provider, api.create(items), timeouts)
        return msgspec.json.decode(created, type=AnthropicBatchState).id

    async def _settle(
        self, job: BatchJob, provider: HttpProvider, prepared: list[Prepared], results: dict[int, NativeResult]
    ) -> None:
        done: list[tuple[str, int, ItemResult]] = []
        missing: NativeResult = ("canceled" if job.status == "cancelling" else "expired", 0, b"")
        for p in prepared:
            outcome, status, body = results.get(p.index, missing)
            if outcome in ("canceled", "expired"):
                done.append((job.id, p.index, ItemResult(outcome=outcome)))  # type: ignore[arg-type]
                continue
            done.append((job.id, p.index, await self._charge(job, provider, p, outcome == "succeeded", status, body)))
        await self.batches.finish_many(done)

    async def _charge(
        self, job: BatchJob, provider: HttpProvider, p: Prepared, ok: bool, status: int, body: bytes
    ) -> ItemResult:
        admission = KeyAdmission(key_id=job.key_id, multiplier=self.gate.multiplier_of(job.key_id))
        record = UsageRecord(
            request_id=item_request_id(job.id, p.index),
            created_at=time.time(),
            key_id=job.key_id,
            protocol=PROTOCOL,
            model_requested=p.req.model,
            upstream=provider.upstream.name,
            provider=provider.upstream.provider,
            model_used=p.channel.model,
        )
        try:
            if not ok:
                raise provider.parse_error(status, {}, body)
            resp = provider.parse_response(body, p.req)
            record.usage = resp.usage = sane_usage(resp.usage)
            record.cost = resp.cost = batch_cost(self.gate, record, admission)
            out = CHAT_PROTOCOLS[job.endpoint].render_response(resp, p.req)
            result = ItemResult(outcome="succeeded", status_code=200, body=out, request_id=record.request_id)
        except GatewayError as err:
            record.status, record.error = err.status, err.message
            out = render_error(job.endpoint, err)
            result = ItemResult(outcome="errored", status_code=err.status, body=out, request_id=record.request_id)
        result.cost_units = to_units(record.cost)
        await self.gate.settle(admission, record)
        return result
