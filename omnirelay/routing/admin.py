"""Admin API for routing: ``GET /admin/channels`` (every channel's breaker, rest and concurrency state) and
``GET /admin/debug/tasks`` (the worker's asyncio task count, for leak checks). Both need the admin key
(``state.admin_key`` / OMNIRELAY_ADMIN_KEY, else the server master key) as a bearer token; with no admin key
configured they answer 403.

Register on the app with ``install(app)`` (one line in ``App.__init__``). With several worker processes each
answers for itself; with Redis configured the breaker states agree across workers and replicas.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import msgspec

from omnirelay.config import Config
from omnirelay.core.errors import GatewayError
from omnirelay.pipeline.gate import bearer_token
from omnirelay.routing.table import RouteTable
from omnirelay.server.exchange import Exchange

AdminHandler = Callable[[Any], Awaitable[None]]


class AppWithRoutes(Protocol):
    config: Config
    routes: RouteTable

    def route(self, method: str, path: str, handler: Any) -> None: ...


def install(app: AppWithRoutes) -> None:
    app.route("GET", "/admin/channels", channels_handler(app.routes))
    app.route("GET", "/admin/debug/tasks", tasks_handler(app.config))


def admin_key(config: Config) -> str | None:
    return config.state.admin_key or config.server.master_key


def check_admin(config: Config, headers: Mapping[str, str]) -> None:
    key = admin_key(config)
    if key is None:
        raise GatewayError("permission", "the admin API is disabled: configure state.admin_key or server.master_key")
    token = bearer_token(headers)
    if token is None or not hmac.compare_digest(token.encode(), key.encode()):
        raise GatewayError("authentication", "admin key required", code="invalid_api_key")


def channels_view(routes: RouteTable) -> dict[str, Any]:
    config = routes.config
    used_by: dict[str, list[dict[str, Any]]] = {}
    for public, route in config.models.items():
        for ch in route.channels:
            up = config.upstream(ch.upstream)
            if up is not None:
                name = f"{up.name}/{ch.model or up.upstream_model(public)}"
                used_by.setdefault(name, []).append({"model": public, "weight": ch.weight, "priority": ch.priority})
    channels = []
    for name, snap in routes.board.snapshot().items():
        upstream, _, model = name.partition("/")
        own = routes.channel_slots.get(name)
        shared = routes.upstream_slots.get(upstream)
        channels.append(
            {
                "channel": name,
                "upstream": upstream,
                "model": model,
                **snap,
                "in_flight": own.in_use if own else None,
                "max_concurrency": own.cap if own else None,
                "upstream_in_flight": shared.in_use if shared else None,
                "upstream_max_concurrency": shared.cap if shared else None,
                "routes": used_by.get(name, []),
            }
        )
    return {
        "object": "list",
        "replica": routes.board.replica,
        "shared_state": routes.board.shared,
        "time": time.time(),
        "data": channels,
    }


def channels_handler(routes: RouteTable) -> AdminHandler:
    async def handle(request: Exchange) -> None:
        check_admin(routes.config, request.headers)
        await request.respond(200, msgspec.json.encode(channels_view(routes)))

    return handle


def tasks_handler(config: Config) -> AdminHandler:
    async def handle(request: Exchange) -> None:
        check_admin(config, request.headers)
        tasks = asyncio.all_tasks()
        names = Counter(getattr(t.get_coro(), "__qualname__", "?") for t in tasks)
        body = {"tasks": len(tasks), "by_coroutine": dict(names.most_common())}
        await request.respond(200, msgspec.json.encode(body))

    return handle
