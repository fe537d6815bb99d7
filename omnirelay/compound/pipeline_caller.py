"""The compound engines over the call pipeline: the ``ModelCaller`` the engines use (normal routing, retries and
fallbacks, per-call pricing), and ``install``, which registers the engines as the providers of the virtual
channels, their modes with the route table and the tool loop with the pipeline.

Each call is admitted against the caller of the compound request being served (``pipeline.gate
.compound_admission``) like a request of its own: the key's allow-list filters its models (403 when none is
left), it counts against the key's RPM and TPM and reserves its worst-case cost (429 when the credit left
cannot cover it), its channels' failures are attributed to the key, and its cost is charged to the key as soon
as it ends. An engine sees a refused call as a failed one (a heavy agent that failed); the outer request's
record still sums every call."""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import TYPE_CHECKING

from omnirelay.compound.modes import (
    MODES,
    PROVIDER_NAME,
    TOOLS_MODE,
    may_name_server_tools,
    split_virtual,
    upstream_name,
    virtual_upstream,
)
from omnirelay.compound.options import CompoundSettings, load_settings
from omnirelay.core.errors import invalid
from omnirelay.core.estimate import estimated_usage
from omnirelay.core.events import StreamEvent, StreamFailure, StreamStart, UsageReport
from omnirelay.core.records import UsageRecord
from omnirelay.core.types import ChatRequest, ChatResponse
from omnirelay.pipeline.calls import CallPipeline
from omnirelay.pipeline.context import CallContext
from omnirelay.pipeline.gate import Admission, compound_admission, priced_for
from omnirelay.providers import ProviderMap
from omnirelay.routing.table import Channel, Route, engine_route

if TYPE_CHECKING:
    from omnirelay.compound.engine import CompoundEngine

log = logging.getLogger("omnirelay.compound")

# mode -> "module:class" of its engine, registered by ``pipeline_caller.install`` to be built on first use.
ENGINES: dict[str, str] = {
    "think": "omnirelay.compound.think:ThinkEngine",
    "heavy": "omnirelay.compound.heavy:HeavyEngine",
    "deepsearch": "omnirelay.compound.deepsearch:DeepSearchEngine",
    TOOLS_MODE: "omnirelay.compound.toolloop:ToolLoopEngine",
}


def tool_loop_route(pipeline: CallPipeline, req: ChatRequest) -> Route | None:
    """The route to the tool loop when ``req`` names server tools the gateway should run; None otherwise (the
    request then routes as usual). The pipeline's interceptor (``CallPipeline.intercept``); the tool loop's
    module is imported only once a request may need it."""
    if not may_name_server_tools(req) or split_virtual(req.model) is not None:
        return None
    from omnirelay.compound.toolloop import loop_route

    return loop_route(pipeline, req)


SUB_PROTOCOL = "compound"  # the protocol an engine's sub-call is admitted and recorded under


def is_virtual(channel: Channel) -> bool:
    return channel.upstream.provider == PROVIDER_NAME


class PipelineModelCaller:
    def __init__(self, pipeline: CallPipeline) -> None:
        self.pipeline = pipeline

    def _check(self, req: ChatRequest) -> None:
        route = self.pipeline.routes.resolve(req.model)
        if any(is_virtual(c) for c in route.channels):
            raise invalid(f"compound models cannot call compound models (`{req.model}`)", param="model")

    async def _context(self, req: ChatRequest) -> CallContext:
        """This call's context: its admission (None outside a request: engines driven directly), the routes it
        may try, and a record of its own (which channel answered, what it used and cost)."""
        self._check(req)
        pipeline = self.pipeline
        named = pipeline.plan(req)
        outer = compound_admission.get()
        admission: Admission | None = None
        if outer is None:
            plan = [route for _name, route in named]
        else:
            admission = pipeline.gate.sub_admission(outer)
            plan = await pipeline.gate.admit(admission, req, SUB_PROTOCOL, named)
        record = UsageRecord(
            request_id="",
            created_at=0.0,
            key_id=admission.key_id if admission is not None else None,
            protocol=SUB_PROTOCOL,
            model_requested=req.model,
            stream=req.stream,
        )
        return CallContext(SUB_PROTOCOL, req, plan, admission, record, time.perf_counter())

    async def complete(self, req: ChatRequest) -> ChatResponse:
        ctx = await self._context(req)
        tokens, cost = 0, 0.0
        try:
            resp = await self.pipeline.complete(ctx)
            tokens, cost = resp.usage.total_tokens, ctx.record.cost
            return resp
        finally:
            if ctx.admission is not None:  # also when cancelled: the engine charges an abandoned call's estimate
                await self.pipeline.gate.settle_sub(ctx.admission, tokens, cost)

    def abandoned(self, req: ChatRequest) -> UsageReport:
        usage = estimated_usage(req)
        record = UsageRecord(
            request_id="", created_at=0.0, key_id=None, protocol=SUB_PROTOCOL, model_requested=req.model
        )
        record.model_used, record.usage = req.model, usage
        return UsageReport(usage=usage, cost=priced_for(compound_admission.get(), self.pipeline.cost(record, [])))

    async def stream(self, req: ChatRequest) -> AsyncIterator[StreamEvent]:
        ctx = await self._context(req)
        admission = ctx.admission
        settled = False
        try:
            upstream = await self.pipeline.stream(ctx)
            try:
                async for event in upstream:
                    if isinstance(event, StreamStart | UsageReport):
                        continue  # the engines see one final UsageReport, with the cost
                    if isinstance(event, StreamFailure):
                        raise event.error
                    yield event
            finally:
                await upstream.aclose()  # at once, not when collected: it holds the channel's lease
            record = ctx.record
            if admission is not None:
                settled = True
                await self.pipeline.gate.settle_sub(admission, record.usage.total_tokens, record.cost)
            yield UsageReport(usage=record.usage, cost=record.cost)
        finally:
            if admission is not None and not settled:
                await self.pipeline.gate.settle_sub(admission, 0, 0.0)


def install(pipeline: CallPipeline) -> CompoundSettings:
    """Register the compound engines as the providers of the virtual channels, their modes with the route table
    and the tool loop with the pipeline. The settings are checked now (a bad config fails at start); each engine
    is built, and its module imported, on its first use when the providers are a ``ProviderMap``."""
    routes = pipeline.routes
    config = routes.config
    settings = load_settings(config.extra, config.state.data_dir)
    if settings.python.enabled:
        _check_python_sandbox(settings)
    caller = PipelineModelCaller(pipeline)
    providers = pipeline.providers
    for mode, where in ENGINES.items():
        factory = partial(_build_engine, where, mode, caller, settings)
        if isinstance(providers, ProviderMap):
            providers.add_lazy(upstream_name(mode), factory)
        else:
            providers[upstream_name(mode)] = factory()
    for mode in MODES:
        routes.register_virtual(mode, partial(_virtual_route, mode))
    pipeline.intercept(tool_loop_route)
    return settings


def _virtual_route(mode: str, public_name: str, base: str) -> Route:
    """``think:``/``heavy:``/``deepsearch:`` over ``base``: one channel to the mode's engine, which routes its
    own calls to the base model."""
    return engine_route(public_name, virtual_upstream(mode), base)


def _check_python_sandbox(settings: CompoundSettings) -> None:
    """Say at start whether the enabled ``python`` tool can run (it needs an OS sandbox; the probe is cached)."""
    from omnirelay.tools.python_sandbox import sandbox_problem

    problem = sandbox_problem(settings.python)
    if problem is None:
        log.info("python tool enabled: programs run in a bubblewrap sandbox")
    else:
        log.warning("python tool enabled but unavailable, requests naming it get 400: %s", problem)


def _build_engine(where: str, mode: str, caller: PipelineModelCaller, settings: CompoundSettings) -> CompoundEngine:
    module, _, name = where.partition(":")
    cls: type[CompoundEngine] = getattr(importlib.import_module(module), name)
    return cls(virtual_upstream(mode), caller, settings)
