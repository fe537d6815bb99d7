"""The ASGI application: a fixed route table, lifespan start/stop, and error rendering in the caller's format."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Awaitable, Callable

import msgspec

from omnirelay.config import Config, load_config
from omnirelay.core.errors import GatewayError
from omnirelay.core.ids import now
from omnirelay.pipeline.gate import Gate
from omnirelay.protocols.base import InboundProtocol
from omnirelay.providers import ProviderMap, provider_class
from omnirelay.providers.base import EngineProvider
from omnirelay.routing.admin import install as install_routing_admin
from omnirelay.routing.table import RouteTable
from omnirelay.server.asgi import AsgiExchange, Receive, Scope, Send
from omnirelay.server.exchange import BodyTimeouts, ClientGone, Exchange
from omnirelay.server.relay import Relay
from omnirelay.server.upstream import HttpExecutor
from omnirelay.state.admin import AdminApi
from omnirelay.state.gate import KeyGate

log = logging.getLogger("omnirelay")

Handler = Callable[[Exchange], Awaitable[None]]


def _load_protocol(module: str) -> InboundProtocol:
    proto: InboundProtocol = importlib.import_module(module).PROTOCOL
    return proto


class App:
    def __init__(self, config: Config, gate: Gate | None = None) -> None:
        self.config = config
        self.openai = _load_protocol("omnirelay.protocols.openai_chat")
        self.anthropic = _load_protocol("omnirelay.protocols.anthropic_messages")
        self.executor = HttpExecutor()
        self.providers = ProviderMap()
        for up in config.upstreams:
            self.providers[up.name] = provider_class(up.provider)(up)
        self.routes = RouteTable(config)
        self.gate = gate or KeyGate(config)
        self.relay = Relay(self.routes, self.providers, self.executor, self.gate)
        self.max_body = config.server.max_body_bytes
        self.body_timeouts = BodyTimeouts(config.server.body_timeout, config.server.body_idle_timeout)
        self.handlers: dict[tuple[str, str], Handler] = {}
        chat, messages = self._chat_handler(self.openai), self._chat_handler(self.anthropic)
        for prefix in ("/v1", ""):
            self.route("POST", prefix + "/chat/completions", chat)
            self.route("POST", prefix + "/messages", messages)
            self.route("GET", prefix + "/models", self.list_models)
        self.route("GET", "/health", self.health)
        if isinstance(self.gate, KeyGate):
            AdminApi(self.gate).register(self)
        install_routing_admin(self)

    def route(self, method: str, path: str, handler: Handler) -> None:
        """``path`` ending in ``/*`` matches everything below it (the handler reads the rest itself)."""
        self.handlers[(method, path)] = handler

    def _prefix_handler(self, method: str, path: str) -> Handler | None:
        parent = path
        while "/" in parent.rstrip("/"):
            parent = parent.rsplit("/", 1)[0]
            handler = self.handlers.get((method, parent + "/*"))
            if handler is not None:
                return handler
        return None

    def protocol_for(self, path: str) -> InboundProtocol:
        return self.anthropic if path.endswith("/messages") or "/messages/" in path else self.openai

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def startup(self) -> None:
        await self.executor.start()
        await self.gate.start()
        await self.routes.start()
        if self.config.server.master_key is None:
            log.warning("no master key configured: admission is decided by the key store only")

    async def shutdown(self) -> None:
        await self.routes.stop()
        await self.gate.stop()
        await self.executor.stop()
        for provider in self.providers.values():
            if isinstance(provider, EngineProvider):
                await provider.aclose()

    # -- ASGI ------------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.handle(AsgiExchange(scope, receive, send, self.body_timeouts))
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- every request, whatever the server interface ---------------------------------------------------

    async def handle(self, request: Exchange) -> None:
        path = request.path.rstrip("/") or "/"
        method = request.method
        handler = self.handlers.get((method, path)) or self._prefix_handler(method, path)
        try:
            if handler is None:
                if any(p == path for (_m, p) in self.handlers):
                    raise GatewayError("invalid_request", f"method {method} not allowed on {path}", status=405)
                raise GatewayError("not_found", f"no route for {method} {path}", code="unknown_url")
            await handler(request)
        except GatewayError as err:
            await self._send_error(request, err)
        except ClientGone:  # nobody to answer; not an error of the gateway's
            log.debug("client closed the connection during %s %s", method, path)
        except Exception:
            log.exception("unhandled error on %s", path)
            await self._send_error(request, GatewayError("internal", "internal error in the gateway"))

    async def _send_error(self, request: Exchange, err: GatewayError) -> None:
        protocol = self.protocol_for(request.path)
        headers = dict(err.headers)
        if err.retry_after is not None:
            headers["retry-after"] = str(max(0, round(err.retry_after)))
        try:
            await request.respond(err.status, protocol.render_error(err), headers=headers)
        except Exception:  # the response had already started or the client left; nothing more to say
            log.debug("could not send error response", exc_info=True)

    # -- handlers --------------------------------------------------------------------------------------

    def _chat_handler(self, protocol: InboundProtocol) -> Handler:
        async def handle(request: Exchange) -> None:
            body = await request.body(self.max_body)
            await self.relay.handle(protocol, request, body)

        return handle

    async def list_models(self, request: Exchange) -> None:
        models = self.routes.public_models()
        if "anthropic-version" in request.headers:
            data = [
                {"type": "model", "id": mid, "display_name": mid, "created_at": "2025-01-01T00:00:00Z"}
                for mid, _owner in models
            ]
            body = {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        else:
            created = now()
            body = {
                "object": "list",
                "data": [
                    {"id": mid, "object": "model", "created": created, "owned_by": owner} for mid, owner in models
                ],
            }
        await request.respond(200, msgspec.json.encode(body))

    async def health(self, request: Exchange) -> None:
        await request.respond(200, b'{"status":"ok"}')


def create_app() -> App:
    """Factory for the server process: the config path comes from OMNIRELAY_CONFIG (unset: defaults)."""
    logging.basicConfig(
        level=os.environ.get("OMNIRELAY_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return App(load_config(os.environ.get("OMNIRELAY_CONFIG") or None))
