"""``GET /admin/channels`` (every channel's breaker, rest and concurrency state) and ``GET /admin/debug/tasks``
(the worker's asyncio task count, for leak checks).

With several worker processes each answers for itself; with Redis configured the breaker states agree across
workers and replicas.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from omnirelay.admin.common import send_json
from omnirelay.routing.table import RouteTable
from omnirelay.web.exchange import Exchange
from omnirelay.web.routes import Endpoint


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


def tasks_view() -> dict[str, Any]:
    tasks = asyncio.all_tasks()
    names = Counter(getattr(t.get_coro(), "__qualname__", "?") for t in tasks)
    return {"tasks": len(tasks), "by_coroutine": dict(names.most_common())}


def channel_endpoints(routes: RouteTable) -> list[Endpoint]:
    async def channels(request: Exchange) -> None:
        await send_json(request, 200, channels_view(routes))

    async def tasks(request: Exchange) -> None:
        await send_json(request, 200, tasks_view())

    return [Endpoint("GET", "/channels", channels), Endpoint("GET", "/debug/tasks", tasks)]
