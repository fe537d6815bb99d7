"""Inbound protocols. Each module exports ``PROTOCOL``, an InboundProtocol instance that declares its endpoint
paths and renders its errors; the app mounts every module listed here. Adding an endpoint is one module plus
one line here."""

from __future__ import annotations

import importlib

from omnirelay.protocols.base import InboundProtocol

PROTOCOL_MODULES: tuple[str, ...] = (
    "omnirelay.protocols.openai_chat",
    "omnirelay.protocols.anthropic_messages",
    "omnirelay.protocols.openai_responses",
)


def load_protocol(module: str) -> InboundProtocol:
    """The ``PROTOCOL`` a protocol module exports."""
    protocol: InboundProtocol = importlib.import_module(module).PROTOCOL
    return protocol


def inbound_protocols() -> list[InboundProtocol]:
    return [load_protocol(module) for module in PROTOCOL_MODULES]
