"""Model name -> channels. Resolution order:

1. an explicit route in ``models:`` (several channels, weights, priorities, fallbacks);
2. ``<upstream>/<model>``: that upstream, that model;
3. every upstream whose ``models`` list serves the name;
4. the same again for the name's alias (built-in cloud spellings such as
   ``anthropic.claude-3-7-sonnet-20250219-v1:0``, plus config ``aliases``).

Everything here is computed from the config at start; resolution of a name is then a dict lookup (results are
memoised) so the hot path does no scanning.
"""

from __future__ import annotations

import msgspec

from omnirelay.config import Config, UpstreamConfig
from omnirelay.core.catalog import ALIASES, MODELS
from omnirelay.core.errors import GatewayError


class Channel(msgspec.Struct, kw_only=True, frozen=True):
    upstream: UpstreamConfig
    model: str  # the upstream's own name for the model
    weight: float = 1.0
    priority: int = 0

    @property
    def name(self) -> str:
        return f"{self.upstream.name}/{self.model}"


class Route(msgspec.Struct, kw_only=True, frozen=True):
    public_name: str
    channels: tuple[Channel, ...]
    fallbacks: tuple[str, ...] = ()


class RouteTable:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._aliases = {**ALIASES, **config.aliases}
        self._cache: dict[str, Route | None] = {}

    def resolve(self, model: str) -> Route:
        route = self._cache.get(model)
        if route is None and model not in self._cache:
            route = self._lookup(model)
            if len(self._cache) < 10_000:  # bounded: callers control the names
                self._cache[model] = route
        if route is None:
            raise GatewayError(
                "not_found",
                f"The model `{model}` does not exist or is not served by this gateway",
                param="model",
                code="model_not_found",
            )
        return route

    def _lookup(self, model: str) -> Route | None:
        route = self._direct(model)
        if route is None and model in self._aliases:
            route = self._direct(self._aliases[model])
        return route

    def _direct(self, model: str) -> Route | None:
        cfg = self.config
        explicit = cfg.models.get(model)
        if explicit is not None:
            channels = []
            for ch in explicit.channels:
                up = cfg.upstream(ch.upstream)
                assert up is not None  # checked when the config was parsed
                channels.append(
                    Channel(
                        upstream=up,
                        model=ch.model or up.upstream_model(model),
                        weight=ch.weight,
                        priority=ch.priority,
                    )
                )
            return Route(public_name=model, channels=tuple(channels), fallbacks=tuple(explicit.fallbacks))
        prefix, sep, rest = model.partition("/")
        if sep:
            up = cfg.upstream(prefix)
            if up is not None and rest:
                return Route(public_name=model, channels=(Channel(upstream=up, model=up.upstream_model(rest)),))
        serving = tuple(
            Channel(upstream=u, model=u.upstream_model(model), priority=i)
            for i, u in enumerate(cfg.upstreams)
            if u.serves(model)
        )
        if serving:
            return Route(public_name=model, channels=serving)
        return None

    def public_models(self) -> list[tuple[str, str]]:
        """(model id, owner) pairs for /v1/models: explicit routes, concrete upstream model names, and
        catalogue models matched by an upstream's patterns."""
        seen: dict[str, str] = {}
        for name, route in self.config.models.items():
            first = self.config.upstream(route.channels[0].upstream) if route.channels else None
            seen.setdefault(name, first.name if first else "omnirelay")
        for up in self.config.upstreams:
            for pattern in up.models:
                if not pattern.endswith("*"):
                    seen.setdefault(pattern, up.name)
            for public in up.model_map:
                seen.setdefault(public, up.name)
            for known in MODELS:
                if up.serves(known):
                    seen.setdefault(known, up.name)
        return sorted(seen.items())
