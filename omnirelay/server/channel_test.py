"""The console's "test this channel" button: one tiny chat call straight to an upstream (no routing, retries or
breakers in between, and charged to nobody), timed, with its error if it failed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from omnirelay.config import Config
from omnirelay.core.errors import GatewayError
from omnirelay.core.types import ChatRequest, Message, TextPart
from omnirelay.providers import ProviderMap
from omnirelay.providers.base import HttpProvider
from omnirelay.routing.table import RouteTable
from omnirelay.upstream.executor import HttpExecutor


class ChannelTester:
    def __init__(self, config: Config, providers: ProviderMap, executor: HttpExecutor, routes: RouteTable) -> None:
        self.config = config
        self.providers = providers
        self.executor = executor
        self.routes = routes

    def _default_model(self, upstream: str) -> str | None:
        for model, owner in self.routes.public_models():
            if owner == upstream and self.routes.split_virtual(model) is None and "embed" not in model:
                return model
        return None

    async def test(self, upstream: str, model: str | None) -> dict[str, Any]:
        up = self.config.upstream(upstream)
        if up is None:
            raise GatewayError("not_found", f"no upstream {upstream!r}")
        model = model or self._default_model(upstream)
        if model is None:
            raise GatewayError(
                "invalid_request", f"upstream {upstream} lists no model to test: give one", param="model"
            )
        req = ChatRequest(model=model, messages=[Message(role="user", content=[TextPart(text="ping")])], max_tokens=8)
        provider = self.providers[up.name]
        target = up.upstream_model(model)
        t0 = time.perf_counter()
        status, error = 200, None
        try:
            if isinstance(provider, HttpProvider):
                await self.executor.complete(provider, req, target, up.timeouts)
            else:
                await asyncio.wait_for(provider.complete(req, target), timeout=up.timeouts.total)
        except GatewayError as err:
            status, error = err.status, err.message
        except TimeoutError:
            status, error = 504, "timed out"
        latency = round((time.perf_counter() - t0) * 1000.0, 3)
        return {"ok": error is None, "model": model, "latency_ms": latency, "status": status, "error": error}
