"""Compound virtual models: ``think:<model>``, ``heavy:<model>`` and ``deepsearch:<model>`` over any routable model.

Each mode is an ``EngineProvider`` (so both inbound protocols, streaming or not, work unchanged) that calls the
base model through an injected ``ModelCaller`` (normal routing, per-call pricing). The engines report the exact
sum of every upstream call's usage and its cost; the relay charges that cost.
"""

from __future__ import annotations

from functools import cache
from typing import cast

from omnirelay.config import ProviderName, Timeouts, UpstreamConfig

MODES: tuple[str, ...] = ("think", "heavy", "deepsearch")
PROVIDER_NAME = "compound"  # UpstreamConfig.provider of the virtual channels


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
