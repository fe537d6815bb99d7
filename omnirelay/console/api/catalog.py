"""``GET /models``: the models the gateway serves with their list prices per million tokens, multiplied by the
caller's group multiplier (null where a model has no price)."""

from __future__ import annotations

from typing import Any

from omnirelay.console.common import ApiRoute, Caller, send
from omnirelay.console.context import ConsoleContext
from omnirelay.core.catalog import Price
from omnirelay.core.image_gen import is_image_model
from omnirelay.core.pricing import price_for
from omnirelay.web.exchange import Exchange


def _per_mtok(value: float | None, multiplier: float) -> float | None:
    return None if value is None else round(value * multiplier, 10)


def price_view(model: str, kind: str, price: Price | None, multiplier: float) -> dict[str, Any]:
    batch = price.batch_discount if price is not None else 1.0
    return {
        "id": model,
        "kind": kind,
        "input_usd_per_mtok": _per_mtok(price.input if price else None, multiplier),
        "cached_input_usd_per_mtok": _per_mtok(
            (price.cached_input if price.cached_input is not None else price.input) if price else None, multiplier
        ),
        "output_usd_per_mtok": _per_mtok(price.output if price else None, multiplier),
        "batch_input_usd_per_mtok": _per_mtok(price.input * batch if price else None, multiplier),
        "batch_output_usd_per_mtok": _per_mtok(price.output * batch if price else None, multiplier),
    }


class CatalogApi:
    def __init__(self, ctx: ConsoleContext) -> None:
        self.ctx = ctx

    async def models(self, request: Exchange, caller: Caller) -> None:
        assert caller.user is not None
        multiplier = (await self.ctx.accounts.group_of(caller.user)).multiplier
        routes = self.ctx.routes
        overrides = self.ctx.config.prices
        data = []
        for model, _owner in routes.public_models():
            if routes.split_virtual(model) is not None:
                data.append(price_view(model, "compound", None, multiplier))
                continue
            price = price_for(model, overrides)
            kind = "image" if is_image_model(model, price) else "embedding" if "embed" in model else "chat"
            data.append(price_view(model, kind, price, multiplier))
        await send(request, 200, {"multiplier": multiplier, "data": data})

    def routes(self) -> list[ApiRoute]:
        return [("GET", "/models", self.models)]
