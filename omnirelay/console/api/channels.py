"""Channels (admin): ``GET /admin/channels`` (per upstream: its models, the worst breaker state of its channels,
latency percentiles and recent errors from the last hour's usage records) and ``POST
/admin/channels/{upstream}/test`` {model?} (one small call through the upstream's provider)."""

from __future__ import annotations

import time
from typing import Any

from omnirelay.console.api.usage import percentiles
from omnirelay.console.common import ApiRoute, Caller, json_object, not_found, path_id, send, text_field
from omnirelay.console.context import ConsoleContext
from omnirelay.web.exchange import Exchange

WINDOW_S = 3600.0
RECENT_ERRORS = 5
_SEVERITY = {"closed": 0, "half_open": 1, "open": 2}


class ChannelsApi:
    def __init__(self, ctx: ConsoleContext) -> None:
        self.ctx = ctx

    async def channels(self, request: Exchange, caller: Caller) -> None:
        routes = self.ctx.routes
        snapshot = routes.board.snapshot()
        await self.ctx.gate.writer.flush()
        since = time.time() - WINDOW_S
        rows = await self.ctx.accounts.db.fetch(
            "SELECT upstream, status, latency_ms, created_at, error FROM usage"
            " WHERE created_at >= ? AND upstream IS NOT NULL ORDER BY created_at DESC LIMIT 50000",
            since,
        )
        latency: dict[str, list[float]] = {}
        errors: dict[str, list[dict[str, Any]]] = {}
        for upstream, status, latency_ms, at, error in rows:
            if int(status) < 400:
                latency.setdefault(upstream, []).append(float(latency_ms))
            elif len(errors.setdefault(upstream, [])) < RECENT_ERRORS:
                errors[upstream].append({"at": at, "status": int(status), "message": error})
        data = []
        for up in self.ctx.config.upstreams:
            states = [
                snap.get("state", "closed") for name, snap in snapshot.items() if name.split("/", 1)[0] == up.name
            ]
            breaker = max(states, key=lambda s: _SEVERITY.get(s, 0), default="closed")
            models = sorted({name.split("/", 1)[1] for name in snapshot if name.split("/", 1)[0] == up.name})
            models = models or [m for m in up.models if not m.endswith("*")]
            values = latency.get(up.name)
            p = percentiles(values) if values else None
            data.append(
                {
                    "upstream": up.name,
                    "provider": up.provider,
                    "models": models,
                    "breaker": breaker,
                    "healthy": breaker == "closed",
                    "latency_ms": {"p50": p["p50"], "p90": p["p90"]} if p else None,
                    "recent_errors": errors.get(up.name, []),
                }
            )
        await send(request, 200, {"data": data})

    async def test(self, request: Exchange, caller: Caller) -> None:
        upstream, action = path_id(request, "/channels/")
        if action != "test" or self.ctx.config.upstream(upstream) is None:
            raise not_found(f"no upstream {upstream!r}")
        model = text_field(await json_object(request), "model", required=False)
        await send(request, 200, await self.ctx.test_channel(upstream, model))

    def routes(self) -> list[ApiRoute]:
        return [("GET", "/channels", self.channels), ("POST", "/channels/*", self.test)]
