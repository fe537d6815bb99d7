"""The relay's side of compound models: the ``ModelCaller`` the engines use (normal routing, retries and
fallbacks, per-call pricing), and the registration of the engines as providers of the virtual channels.

Each call is admitted against the caller of the compound request being served (``server.gate
.compound_admission``) like a request of its own: the key's allow-list filters its models (403 when none is
left), it counts against the key's RPM and TPM and reserves its worst-case cost (429 when the credit left
cannot cover it), and its cost is charged to the key as soon as it ends. An engine sees a refused call as a
failed one (a heavy agent that failed); the outer request's record still sums every call."""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from functools import partial
from typing import TYPE_CHECKING

from omnirelay.compound import ENGINES, PROVIDER_NAME, upstream_name, virtual_upstream
from omnirelay.compound.options import CompoundSettings, load_settings
from omnirelay.config import Timeouts
from omnirelay.core.errors import GatewayError, invalid
from omnirelay.core.estimate import estimated_usage
from omnirelay.core.events import (
    ReasoningDelta,
    StreamEvent,
    StreamFailure,
    StreamStart,
    TextDelta,
    ToolCallArgs,
    UsageReport,
)
from omnirelay.core.pricing import cost_of
from omnirelay.core.types import ChatRequest, ChatResponse, Usage
from omnirelay.providers import ProviderMap
from omnirelay.routing.table import Channel, Route
from omnirelay.server.gate import Admission, UsageRecord, compound_admission

if TYPE_CHECKING:
    from omnirelay.compound.engine import CompoundEngine
    from omnirelay.server.relay import Relay

log = logging.getLogger("omnirelay.compound")


def is_virtual(channel: Channel) -> bool:
    return channel.upstream.provider == PROVIDER_NAME


class RelayModelCaller:
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def _price(self, model_used: str, model_requested: str, usage: Usage) -> float:
        price = self.relay.gate.price(model_used, model_requested)
        return cost_of(usage, price) if price is not None else 0.0

    def _check(self, req: ChatRequest) -> None:
        route = self.relay.routes.resolve(req.model)
        if any(is_virtual(c) for c in route.channels):
            raise invalid(f"compound models cannot call compound models (`{req.model}`)", param="model")

    async def _admit(self, req: ChatRequest) -> tuple[Admission | None, list[Route]]:
        """This call's admission (None outside a request: engines driven directly) and the routes it may try."""
        self._check(req)
        relay = self.relay
        named = relay._plan(req)
        outer = compound_admission.get()
        if outer is None:
            return None, [route for _name, route in named]
        admission = relay.gate.sub_admission(outer)
        return admission, await relay.gate.admit(admission, req, "compound", named)

    async def complete(self, req: ChatRequest) -> ChatResponse:
        relay = self.relay
        admission, plan = await self._admit(req)
        used: list[Channel] = []
        tokens, cost = 0, 0.0

        async def call(channel: Channel, timeouts: Timeouts) -> ChatResponse:
            return await relay._complete_once(channel, req, timeouts)

        try:
            resp, _lease = await relay.dispatcher.run(plan, call, lambda ch, _n: used.append(ch))
            resp.cost = self._price(used[-1].model, req.model, resp.usage)
            tokens, cost = resp.usage.total_tokens, resp.cost
            return resp
        finally:
            if admission is not None:  # also when cancelled: the engine charges an abandoned call's estimate
                await relay.gate.settle_sub(admission, tokens, cost)

    def abandoned(self, req: ChatRequest) -> UsageReport:
        usage = estimated_usage(req)
        return UsageReport(usage=usage, cost=self._price(req.model, req.model, usage))

    async def stream(self, req: ChatRequest) -> AsyncIterator[StreamEvent]:
        relay = self.relay
        admission, plan = await self._admit(req)
        settled = False
        events = self._stream(req, plan)
        try:
            async for event in events:
                if isinstance(event, UsageReport) and admission is not None:
                    settled = True
                    await relay.gate.settle_sub(admission, event.usage.total_tokens, event.cost or 0.0)
                yield event
        finally:
            await events.aclose()  # at once, not when collected: it holds the channel's lease
            if admission is not None and not settled:
                await relay.gate.settle_sub(admission, 0, 0.0)

    async def _stream(self, req: ChatRequest, plan: list[Route]) -> AsyncGenerator[StreamEvent, None]:
        relay = self.relay
        record = UsageRecord(request_id="", created_at=0.0, key_id=None, protocol="compound", model_requested=req.model)
        events, head, lease = await relay._open_stream(req, plan, record)
        usage: Usage | None = None
        produced = 0
        failure: GatewayError | None = None
        completed = False
        try:
            pending = iter(head)
            while True:
                event = next(pending, None)
                if event is None:
                    event = await anext(events, None)
                    if event is None:
                        break
                if isinstance(event, UsageReport):
                    usage = event.usage
                    continue
                if isinstance(event, StreamStart):
                    continue
                if isinstance(event, StreamFailure):
                    raise event.error
                if isinstance(event, TextDelta | ReasoningDelta):
                    produced += len(event.text)
                elif isinstance(event, ToolCallArgs):
                    produced += len(event.arguments)
                yield event
            completed = True
        except GatewayError as err:
            failure = err
            raise
        finally:
            closer = getattr(events, "aclose", None)
            if closer is not None:
                with contextlib.suppress(Exception):  # a broken stream's close must not mask the outcome
                    await closer()
            if failure is not None:
                lease.fail(failure)
            elif completed:
                lease.succeed()
            else:
                lease.abandon()
        if usage is None:
            usage = estimated_usage(req, produced)
        yield UsageReport(usage=usage, cost=self._price(record.model_used or req.model, req.model, usage))


def install(relay: Relay) -> CompoundSettings:
    """Register the compound engines as the providers of the virtual channels. The settings are checked now (a
    bad config fails at start); each engine is built, and its module imported, on its first use when the relay's
    providers are a ``ProviderMap``."""
    config = relay.routes.config
    settings = load_settings(config.extra, config.state.data_dir)
    if settings.python.enabled:
        _check_python_sandbox(settings)
    caller = RelayModelCaller(relay)
    providers = relay.providers
    for mode, where in ENGINES.items():
        factory = partial(_build_engine, where, mode, caller, settings)
        if isinstance(providers, ProviderMap):
            providers.add_lazy(upstream_name(mode), factory)
        else:
            providers[upstream_name(mode)] = factory()
    return settings


def _check_python_sandbox(settings: CompoundSettings) -> None:
    """Say at start whether the enabled ``python`` tool can run (it needs an OS sandbox; the probe is cached)."""
    from omnirelay.tools.python_sandbox import sandbox_problem

    problem = sandbox_problem(settings.python)
    if problem is None:
        log.info("python tool enabled: programs run in a bubblewrap sandbox")
    else:
        log.warning("python tool enabled but unavailable, requests naming it get 400: %s", problem)


def _build_engine(where: str, mode: str, caller: RelayModelCaller, settings: CompoundSettings) -> CompoundEngine:
    module, _, name = where.partition(":")
    cls: type[CompoundEngine] = getattr(importlib.import_module(module), name)
    return cls(virtual_upstream(mode), caller, settings)
