"""The names of the compound modes and of their virtual channels: what every part of the compound package (and
the eval commands, the tests) shares. Imports nothing of the package, so any module of it can import this."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from omnirelay.config import Timeouts, UpstreamConfig
from omnirelay.pipeline.gate import COMPOUND_PROVIDER

if TYPE_CHECKING:
    from omnirelay.core.types import ChatRequest

MODES: tuple[str, ...] = ("think", "heavy", "deepsearch")
PROVIDER_NAME = COMPOUND_PROVIDER  # UpstreamConfig.provider of the virtual channels
TOOLS_MODE = "tools"  # the hidden tool-loop engine's upstream is "compound:tools"; not a public model prefix
SERVER_TOOLS = frozenset(("web_search", "fetch", "python"))


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
        provider=PROVIDER_NAME,
        timeouts=Timeouts(connect=3600.0, first_byte=3600.0, total=3600.0),
    )


def may_name_server_tools(req: ChatRequest) -> bool:
    """Cheap test run on every request: could it name a server tool at all?"""
    if req.options and "tools" in req.options:
        return True
    if req.inbound_protocol == "anthropic" and "tools" in req.extra:
        return True
    return any(t.name in SERVER_TOOLS and not t.parameters for t in req.tools)
