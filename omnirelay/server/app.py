"""The ASGI application: the route table composed of mounts (one per inbound protocol, the model list, health,
the admin API), lifespan start/stop, and error rendering in the format of the mount a request came to."""

from __future__ import annotations

import logging
import os
from functools import partial

from omnirelay.admin import admin_mount
from omnirelay.batches import Batches
from omnirelay.config import Config, load_config
from omnirelay.console import admin_key_endpoints, console_mounts
from omnirelay.console.bootstrap import bootstrap_admin
from omnirelay.console.context import ConsoleContext
from omnirelay.core.errors import GatewayError
from omnirelay.observability.observer import Observability
from omnirelay.pipeline.gate import Admission
from omnirelay.protocols import inbound_protocols
from omnirelay.protocols.anthropic_messages import COUNT_TOKENS_PATHS
from omnirelay.protocols.anthropic_messages import PROTOCOL as ANTHROPIC
from omnirelay.protocols.base import InboundProtocol
from omnirelay.protocols.openai_chat import PROTOCOL as OPENAI
from omnirelay.providers import ProviderMap, provider_class
from omnirelay.providers.base import EngineProvider
from omnirelay.routing.table import RouteTable
from omnirelay.server.asgi import AsgiExchange, Receive, Scope, Send
from omnirelay.server.channel_test import ChannelTester
from omnirelay.server.collector import settle_after_startup
from omnirelay.server.count_tokens import TokenCounter
from omnirelay.server.embeddings import EmbeddingsEndpoint
from omnirelay.server.images import ImageGenerator
from omnirelay.server.models import ModelDirectory
from omnirelay.server.relay import Relay
from omnirelay.server.stored_responses import StoredResponsesApi
from omnirelay.state.gate import KeyGate
from omnirelay.upstream.executor import HttpExecutor
from omnirelay.web.exchange import BodyTimeouts, ClientGone, Exchange
from omnirelay.web.routes import Endpoint, Handler, Mount, Route, Router

log = logging.getLogger("omnirelay")


class App:
    def __init__(self, config: Config, gate: KeyGate | None = None, *, server_process: bool = False) -> None:
        """``server_process``: this App is the process's whole purpose (a worker of ``omnirelay serve``), so
        once started it may tune the process's garbage collector (server/collector.py)."""
        self.config = config
        self.server_process = server_process
        self.executor = HttpExecutor()
        self.providers = ProviderMap()
        for up in config.upstreams:
            self.providers[up.name] = provider_class(up.provider)(up)
        self.routes = RouteTable(config)
        self.gate = gate or KeyGate(config)
        self.relay = Relay(self.routes, self.providers, self.executor, self.gate)
        self.counter = TokenCounter(self.relay.pipeline, self.executor, self.gate, config.server.max_body_bytes)
        self.images = ImageGenerator(self.relay.pipeline, self.executor, self.gate, config.server.max_body_bytes)
        self.embeddings = EmbeddingsEndpoint(self.relay.pipeline, self.gate, config.server.max_body_bytes)
        self.in_flight = 0  # requests being answered: the batch runner yields to them
        self.batches = Batches(config, self.gate, self.relay.pipeline, self.executor, lambda: self.in_flight)
        self.max_body = config.server.max_body_bytes
        tester = ChannelTester(config, self.providers, self.executor, self.routes)
        self.console = ConsoleContext(config, self.gate, self.routes, self._playground_chat, tester.test)
        self.body_timeouts = BodyTimeouts(config.server.body_timeout, config.server.body_idle_timeout)
        self.observability = Observability(config, self._breaker_states, self._journal_backlog)
        # Errors outside any protocol's endpoints (the model list, health, admin, unknown paths) are OpenAI's.
        self.router = Router(self.mounts(), OPENAI.render_error)

    def mounts(self) -> list[Mount]:
        """Everything the gateway answers, built once at start: the hot path is one dict lookup."""
        protocols = [self._protocol_mount(protocol) for protocol in inbound_protocols()]
        models = ModelDirectory(self.routes).mount()
        count = Mount(
            "", [Endpoint("POST", path, self.counter.handle) for path in COUNT_TOKENS_PATHS], ANTHROPIC.render_error
        )
        health = Mount("", [Endpoint("GET", "/health", self.health)], OPENAI.render_error)
        accounts = admin_key_endpoints(self.console)
        admin = admin_mount(self.config, self.gate, self.routes, OPENAI.render_error, accounts)
        stored_responses = StoredResponsesApi(self.gate).mount(OPENAI.render_error)
        embeddings = self.embeddings.mount(self.observability)
        console = console_mounts(self.console, OPENAI.render_error) if self.config.console.enabled else []
        mounts = [
            *protocols,
            count,
            embeddings,
            models,
            health,
            admin,
            stored_responses,
            self.images.mount(self.observability),
        ]
        mounts += [*self.batches.mounts(), *console]
        metrics = self.observability.mount(OPENAI.render_error)
        return mounts if metrics is None else [*mounts, metrics]

    async def _playground_chat(self, request: Exchange, body: bytes, admission: Admission) -> None:
        """The console's playground: a chat completions request served by the relay as ``admission``."""
        await self.relay.handle(OPENAI, request, body, admission=admission)

    def _protocol_mount(self, protocol: InboundProtocol) -> Mount:
        handler = self._chat_handler(protocol)
        return Mount("", [Endpoint("POST", path, handler) for path in protocol.paths], protocol.render_error)

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def startup(self) -> None:
        await self.executor.start()
        await self.gate.start()
        await bootstrap_admin(self.gate.store.accounts)
        await self.routes.start()
        await self.batches.start()
        await self.observability.start()
        if self.config.server.master_key is None:
            log.warning("no master key configured: admission is decided by the key store only")
        if self.server_process:
            settle_after_startup(self.config.server.gc_threshold)

    async def shutdown(self) -> None:
        await self.batches.stop()
        await self.observability.stop()
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
        route = self.router.match(method, path)
        self.in_flight += 1
        try:
            if route is None:
                if self.router.allows_other_method(path):
                    raise GatewayError("invalid_request", f"method {method} not allowed on {path}", status=405)
                raise GatewayError("not_found", f"no route for {method} {path}", code="unknown_url")
            await route.handler(request)
        except GatewayError as err:
            await self._send_error(request, err, route, path)
        except ClientGone:  # nobody to answer; not an error of the gateway's
            log.debug("client closed the connection during %s %s", method, path)
        except Exception:
            log.exception("unhandled error on %s", path)
            await self._send_error(request, GatewayError("internal", "internal error in the gateway"), route, path)
        finally:
            self.in_flight -= 1

    async def _send_error(self, request: Exchange, err: GatewayError, route: Route | None, path: str) -> None:
        """``err`` in the format of the mount ``route`` came from (no route: of the one owning ``path``)."""
        render_error = route.render_error if route is not None else self.router.render_error_for(path)
        headers = dict(err.headers)
        if err.retry_after is not None:
            headers["retry-after"] = str(max(0, round(err.retry_after)))
        try:
            await request.respond(err.status, render_error(err), headers=headers)
        except Exception:  # the response had already started or the client left; nothing more to say
            log.debug("could not send error response", exc_info=True)

    # -- handlers --------------------------------------------------------------------------------------

    def _chat_handler(self, protocol: InboundProtocol) -> Handler:
        if not self.observability.active:  # nothing observes: not even a wrapper on the hot path

            async def handle(request: Exchange) -> None:
                body = await request.body(self.max_body)
                await self.relay.handle(protocol, request, body)

            return handle

        return self.observability.wrap(protocol.name, self.max_body, partial(self.relay.handle, protocol))

    def _breaker_states(self) -> dict[str, str]:
        return {name: snapshot["state"] for name, snapshot in self.routes.board.snapshot().items()}

    def _journal_backlog(self) -> int:
        return len(self.gate.writer.pending)

    async def health(self, request: Exchange) -> None:
        await request.respond(200, b'{"status":"ok"}')


def create_app() -> App:
    """Factory for the server process: the config path comes from OMNIRELAY_CONFIG (unset: defaults)."""
    logging.basicConfig(
        level=os.environ.get("OMNIRELAY_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return App(load_config(os.environ.get("OMNIRELAY_CONFIG") or None), server_process=True)
