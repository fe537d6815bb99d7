"""Compound virtual models: ``think:<model>``, ``heavy:<model>`` and ``deepsearch:<model>`` over any routable model.

Each mode is an ``EngineProvider`` (so both inbound protocols, streaming or not, work unchanged) that calls the
base model through an injected ``ModelCaller`` (normal routing, per-call pricing). The engines report the exact
sum of every upstream call's usage and its cost; the call pipeline settles that cost.

``pipeline_caller.install`` registers it all at start: the engines as providers of the virtual channels, the modes
with the route table (``RouteTable.register_virtual``), the tool loop with the call pipeline
(``CallPipeline.intercept``); nothing below this package imports it. This module is all that install loads up
front. The engines' modules, and the server-side tools they use (aiohttp among them), load when a request first
needs one: see ``ENGINES`` and ``tool_loop_route``.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, cast

from omnirelay.config import ProviderName, Timeouts, UpstreamConfig
from omnirelay.pipeline.gate import COMPOUND_PROVIDER

if TYPE_CHECKING:
    from omnirelay.core.types import ChatRequest
    from omnirelay.pipeline.calls import CallPipeline
    from omnirelay.routing.table import Route

MODES: tuple[str, ...] = ("think", "heavy", "deepsearch")
PROVIDER_NAME = COMPOUND_PROVIDER  # UpstreamConfig.provider of the virtual channels
TOOLS_MODE = "tools"  # the hidden tool-loop engine's upstream is "compound:tools"; not a public model prefix
SERVER_TOOLS = frozenset(("web_search", "fetch", "python"))

# mode -> "module:class" of its engine, registered by ``pipeline_caller.install`` to be built on first use.
ENGINES: dict[str, str] = {
    "think": "omnirelay.compound.think:ThinkEngine",
    "heavy": "omnirelay.compound.heavy:HeavyEngine",
    "deepsearch": "omnirelay.compound.deepsearch:DeepSearchEngine",
    TOOLS_MODE: "omnirelay.compound.toolloop:ToolLoopEngine",
}


def split_virtual(model: str) -> tuple[str, str] | None:
    """``("heavy", "gpt-4.1")`` for ``heavy:gpt-4.1``; None for an ordinary model name."""
    mode, sep, base = model.partition(":")
    if sep and base and mode in MODES:
        return mode, base
    return None


def upstream_name(mode: str) -> str:
    return f"{PROVIDER_NAME}:{mode}"


@cache
def virtual_upstream(mode: str) -> UpstreamConfig:
    """The upstream of ``mode``'s virtual channels. No timeout of its own beyond the engine's wall-time cap
    (each sub-call keeps its own channel's timeouts)."""
    return UpstreamConfig(
        name=upstream_name(mode),
        provider=cast(ProviderName, PROVIDER_NAME),
        timeouts=Timeouts(connect=3600.0, first_byte=3600.0, total=3600.0),
    )


def may_name_server_tools(req: ChatRequest) -> bool:
    """Cheap test run on every request: could it name a server tool at all?"""
    if req.options and "tools" in req.options:
        return True
    if req.extra_family == "anthropic" and "tools" in req.extra:
        return True
    return any(t.name in SERVER_TOOLS and not t.parameters for t in req.tools)


def tool_loop_route(pipeline: CallPipeline, req: ChatRequest) -> Route | None:
    """The route to the tool loop when ``req`` names server tools the gateway should run; None otherwise (the
    request then routes as usual). The pipeline's interceptor (``CallPipeline.intercept``); the tool loop's
    module is imported only once a request may need it."""
    if not may_name_server_tools(req) or split_virtual(req.model) is not None:
        return None
    from omnirelay.compound.toolloop import loop_route

    return loop_route(pipeline, req)
