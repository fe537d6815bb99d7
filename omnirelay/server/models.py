"""Model discovery, in the caller's format (Anthropic's SDK and Claude Code send ``anthropic-version``):
``GET /v1/models`` (the list) and ``GET /v1/models/{id}`` (one model: any name the route table resolves, pattern
routes included; 404 in the caller's error shape otherwise), and ``HEAD /``, which Claude Code probes before
every run."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote

import msgspec

from omnirelay.core.errors import GatewayError
from omnirelay.core.ids import now
from omnirelay.protocols.anthropic_messages import PROTOCOL as ANTHROPIC
from omnirelay.protocols.openai_chat import PROTOCOL as OPENAI
from omnirelay.routing.table import RouteTable
from omnirelay.web.exchange import Exchange
from omnirelay.web.routes import SUBTREE, Endpoint, Mount
from omnirelay.wire import anthropic_messages as anthropic_wire
from omnirelay.wire import openai_chat as openai_wire

MODELS_PATHS = ("/v1/models", "/models")
MODEL_CREATED_AT = "2025-01-01T00:00:00Z"  # Anthropic's listing has room for a date the gateway does not know


def wants_anthropic(headers: Mapping[str, str]) -> bool:
    return "anthropic-version" in headers


def anthropic_model(model_id: str) -> anthropic_wire.ModelInfo:
    return anthropic_wire.ModelInfo(id=model_id, display_name=model_id, created_at=MODEL_CREATED_AT)


class ModelDirectory:
    def __init__(self, routes: RouteTable) -> None:
        self.routes = routes

    def mount(self) -> Mount:
        endpoints = [Endpoint("GET", path, self.list_models) for path in MODELS_PATHS]
        endpoints += [Endpoint("GET", path + SUBTREE, self.retrieve) for path in MODELS_PATHS]
        endpoints.append(Endpoint("HEAD", "/", self.probe))
        return Mount("", endpoints, OPENAI.render_error)

    async def list_models(self, request: Exchange) -> None:
        """In ``public_models`` order."""
        models = self.routes.public_models()
        body: anthropic_wire.ModelPage | openai_wire.ModelList
        if wants_anthropic(request.headers):
            data = [anthropic_model(mid) for mid, _ in models]
            first, last = (data[0].id, data[-1].id) if data else (None, None)
            body = anthropic_wire.ModelPage(data=data, first_id=first, last_id=last)
        else:
            created = now()
            body = openai_wire.ModelList(
                data=[openai_wire.Model(id=mid, created=created, owned_by=owner) for mid, owner in models]
            )
        await request.respond(200, msgspec.json.encode(body))

    async def retrieve(self, request: Exchange) -> None:
        path = request.path.rstrip("/")
        model_id = unquote(path.split("/models/", 1)[1]) if "/models/" in path else ""
        anthropic = wants_anthropic(request.headers)
        try:
            if not model_id:
                raise GatewayError("not_found", "a model id is required", param="model", code="model_not_found")
            route = self.routes.resolve(model_id)
        except GatewayError as err:
            render = ANTHROPIC.render_error if anthropic else OPENAI.render_error
            await request.respond(err.status, render(err))
            return
        body: anthropic_wire.ModelInfo | openai_wire.Model
        if anthropic:
            body = anthropic_model(model_id)
        else:
            owner = route.channels[0].upstream.name if route.channels else "omnirelay"
            body = openai_wire.Model(id=model_id, created=now(), owned_by=owner)
        await request.respond(200, msgspec.json.encode(body))

    async def probe(self, request: Exchange) -> None:
        await request.respond(200, b"", content_type="text/plain")
