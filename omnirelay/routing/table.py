"""Model name -> channels. Resolution order:

0. ``<mode>:<model>`` for a mode registered with ``register_virtual`` (the compound package registers
   ``think``, ``heavy`` and ``deepsearch``): the mode's resolver, over a routable, non-virtual model;
1. an explicit route in ``models:`` (several channels, weights, priorities, fallbacks); a key ending in ``*``
   (``claude-*``) is a pattern for every well-formed name it prefixes, after the exact keys, longest first, so
   "every Claude name goes to this model" is one entry whatever name the client picks;
2. a known alias (built-in cloud spellings such as ``anthropic.claude-3-7-sonnet-20250219-v1:0``, plus config
   ``aliases``) resolves as the model it names, by the steps below;
3. ``<upstream>/<model>``: that upstream, that model;
4. every upstream whose ``models`` list serves the name.

Steps 3 and 4 take only well-formed names (``well_formed``): no control characters, spaces, trailing dots or
other punctuation a pattern could match by prefix, and a ``:suffix`` (as in ``llama3.2:3b``) only where an
upstream lists the name exactly or with a pattern whose fixed part has the colon (``llama3.2:*``). Otherwise
``gpt-4o-mini:x`` or ``"gpt-4o-mini "`` would reach the upstream through ``gpt-*`` and find no price. Names
configured in ``models:`` or ``aliases`` are taken as they are written.

Everything here is computed from the config at start; resolution of a name is then a dict lookup (results are
memoised) so the hot path does no scanning.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgspec

from omnirelay.config import (
    BreakerConfig,
    ChannelConfig,
    Config,
    ModelRoute,
    RetryConfig,
    Timeouts,
    UpstreamConfig,
)
from omnirelay.core.catalog import ALIASES, MODELS
from omnirelay.core.errors import GatewayError
from omnirelay.core.image_gen import IMAGE_MODEL_PREFIXES
from omnirelay.providers import provider_class
from omnirelay.routing.balancer import Balancer
from omnirelay.routing.breaker import Breaker, BreakerBoard
from omnirelay.routing.limits import Slots

# A model name that may be routed by an upstream's patterns: letters, digits and ``._@+/-`` inside, starting and
# ending with a letter or digit (``_+-`` may end it too), and at most one ``:suffix`` of the same kind.
_WELL_FORMED = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9._@+/-]*[A-Za-z0-9_+-])?(?::[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)?"
)


def well_formed(model: str) -> bool:
    return _WELL_FORMED.fullmatch(model) is not None


def serves(up: UpstreamConfig, model: str) -> bool:
    """``up.serves(model)``, except that a name with a ``:suffix`` matches only a pattern that names it exactly or
    whose fixed part already has the colon: ``gpt-*`` does not serve ``gpt-4o-mini:x``."""
    if ":" not in model:
        return up.serves(model)
    if model in up.model_map:
        return True
    for pattern in up.models:
        if pattern == model or (pattern.endswith("*") and ":" in pattern and model.startswith(pattern[:-1])):
            return True
    return False


class Channel(msgspec.Struct, kw_only=True, frozen=True):
    """One way to serve a model: an upstream, its name for the model, and the channel's runtime state (breaker,
    concurrency slots), bound once here so a request does no lookups."""

    upstream: UpstreamConfig
    model: str  # the upstream's own name for the model
    weight: float = 1.0
    priority: int = 0
    name: str = ""  # "<upstream>/<model>"; also the breaker's key, shared by every route using the channel
    timeouts: Timeouts | None = None  # None: the upstream's
    breaker: Any = None  # Breaker (Any: msgspec does not need to know the type)
    slots: tuple[Any, ...] = ()  # Slots to hold while calling: the channel's cap, the upstream's cap

    def __post_init__(self) -> None:
        if not self.name:
            msgspec.structs.force_setattr(self, "name", f"{self.upstream.name}/{self.model}")
        if self.timeouts is None:
            msgspec.structs.force_setattr(self, "timeouts", self.upstream.timeouts)
        if self.breaker is None:
            msgspec.structs.force_setattr(self, "breaker", Breaker(self.name, _DEFAULT_BREAKER))

    @property
    def effective_timeouts(self) -> Timeouts:
        return self.timeouts if self.timeouts is not None else self.upstream.timeouts


_DEFAULT_BREAKER = Config().routing.breaker
_NO_BREAKER = BreakerConfig(enabled=False)


class Route(msgspec.Struct, kw_only=True, frozen=True):
    public_name: str
    channels: tuple[Channel, ...]
    fallbacks: tuple[str, ...] = ()
    retry: RetryConfig = msgspec.field(default_factory=RetryConfig)
    balancer: Any = None  # Balancer[Channel], precomputed from the channels' weights and priorities
    # Seconds for a whole request, every attempt and wait included: ``retry.deadline``, by default the longest
    # ``total`` timeout among the channels (one attempt may use all of its own time, retries no more).
    deadline: float = 0.0

    def __post_init__(self) -> None:
        if not self.deadline:
            deadline = self.retry.deadline or max(
                (c.effective_timeouts.total for c in self.channels), default=Timeouts().total
            )
            msgspec.structs.force_setattr(self, "deadline", deadline)
        if self.balancer is None:
            msgspec.structs.force_setattr(
                self, "balancer", Balancer([(c, c.weight, c.priority) for c in self.channels])
            )

    def order(self) -> tuple[Channel, ...]:
        """The channels to try for one request: by priority, weighted-random within a priority."""
        balancer: Balancer[Channel] = self.balancer
        return balancer.order()


# Builds the route of ``<mode>:<base>`` (public name, base model), given that the base routes and is not virtual.
VirtualResolver = Callable[[str, str], Route | None]


def engine_route(public_name: str, upstream: UpstreamConfig, model: str) -> Route:
    """A route with one channel to an in-process engine (``upstream``) serving ``model``. One attempt only: the
    engine's calls retry themselves, and running a whole compound request again would multiply its cost; no
    breaker either."""
    name = f"{upstream.name}/{model}"
    channel = Channel(upstream=upstream, model=model, name=name, breaker=Breaker(name, _NO_BREAKER))
    return Route(public_name=public_name, channels=(channel,), retry=RetryConfig(max_attempts=1))


class RouteTable:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._aliases = {**ALIASES, **config.aliases}
        self._cache: dict[str, Route | None] = {}
        # ``models:`` keys ending in ``*``, as (prefix, key), longest prefix first: the first match wins.
        self._route_patterns = sorted(
            ((key[:-1], key) for key in config.models if key.endswith("*")), key=lambda item: -len(item[0])
        )
        self._virtual: dict[str, VirtualResolver] = {}
        routing = config.routing
        self.board = BreakerBoard(
            routing.breaker,
            redis_url=routing.redis_url or config.state.redis_url,
            redis_prefix=config.state.redis_prefix,
        )
        self.upstream_slots = {
            u.name: Slots(u.name, u.max_concurrency) for u in config.upstreams if u.max_concurrency is not None
        }
        self.channel_slots: dict[str, Slots] = {}
        for public, route in config.models.items():  # every configured channel is in the admin view at once
            for ch in route.channels:
                up = config.upstream(ch.upstream)
                if up is not None and (ch.model or not public.endswith("*")):
                    self.board.get(f"{up.name}/{ch.model or up.upstream_model(public)}")

    def register_virtual(self, mode: str, resolver: VirtualResolver) -> None:
        """Route ``<mode>:<model>`` with ``resolver`` for every routable, non-virtual model, and list it in
        ``public_models`` after the plain ones."""
        self._virtual[mode] = resolver
        self._cache.clear()

    def split_virtual(self, model: str) -> tuple[str, str] | None:
        """``("heavy", "gpt-4.1")`` for ``heavy:gpt-4.1`` when ``heavy`` is registered; None otherwise."""
        mode, sep, base = model.partition(":")
        if sep and base and mode in self._virtual:
            return mode, base
        return None

    async def start(self) -> None:
        await self.board.start()

    async def stop(self) -> None:
        await self.board.stop()

    def _channel(self, up: UpstreamConfig, model: str, cfg: ChannelConfig | None = None, priority: int = 0) -> Channel:
        name = f"{up.name}/{model}"
        slots: list[Slots] = []
        if cfg is not None and cfg.max_concurrency is not None:
            own = self.channel_slots.get(name)
            if own is None:
                own = self.channel_slots[name] = Slots(name, cfg.max_concurrency)
            slots.append(own)
        if up.name in self.upstream_slots:
            slots.append(self.upstream_slots[up.name])
        return Channel(
            upstream=up,
            model=model,
            weight=cfg.weight if cfg is not None else 1.0,
            priority=cfg.priority if cfg is not None else priority,
            name=name,
            timeouts=cfg.timeouts if cfg is not None and cfg.timeouts is not None else up.timeouts,
            breaker=self.board.get(name),
            slots=tuple(slots),
        )

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
        virtual = self.split_virtual(model) if self._virtual else None
        if virtual is not None:
            return self._virtual_route(model, *virtual)
        if model not in self.config.models and model in self._aliases:
            # A known other spelling routes as the model it names, so the upstream gets the canonical id
            # (``claude-3-7-sonnet@20250219`` would otherwise match a ``claude-*`` pattern verbatim).
            route = self._direct(self._aliases[model])
            if route is not None:
                return route
        return self._direct(model)

    def _explicit(self, model: str) -> ModelRoute | None:
        """The ``models:`` entry for ``model``: its own key, else the longest pattern key prefixing it."""
        explicit = self.config.models.get(model)
        if not self._route_patterns or (explicit is not None and not model.endswith("*")):
            return explicit
        if not well_formed(model):  # the pattern keys themselves included
            return None
        for prefix, key in self._route_patterns:
            if model.startswith(prefix):
                return self.config.models[key]
        return None

    def _direct(self, model: str) -> Route | None:
        cfg = self.config
        explicit = self._explicit(model)
        if explicit is not None:
            channels = []
            for ch in explicit.channels:
                up = cfg.upstream(ch.upstream)
                assert up is not None  # checked when the config was parsed
                channels.append(self._channel(up, ch.model or up.upstream_model(model), ch))
            return Route(
                public_name=model,
                channels=tuple(channels),
                fallbacks=tuple(explicit.fallbacks),
                retry=explicit.retry or cfg.routing.retry,
            )
        if not well_formed(model):
            return None
        prefix, sep, rest = model.partition("/")
        if sep:
            up = cfg.upstream(prefix)
            if up is not None and rest:
                channel = self._channel(up, up.upstream_model(rest))
                return Route(public_name=model, channels=(channel,), retry=cfg.routing.retry)
        serving = tuple(
            self._channel(u, u.upstream_model(model), priority=i)
            for i, u in enumerate(cfg.upstreams)
            if serves(u, model)
        )
        if serving:
            return Route(public_name=model, channels=serving, retry=cfg.routing.retry)
        return None

    def _virtual_route(self, model: str, mode: str, base: str) -> Route | None:
        if self.split_virtual(base) is not None or self._lookup(base) is None:
            return None
        return self._virtual[mode](model, base)

    def public_models(self) -> list[tuple[str, str]]:
        """(model id, owner) pairs for /v1/models: explicit routes, concrete upstream model names, catalogue
        models matched by an upstream's patterns, then each of them under every registered virtual mode."""
        seen: dict[str, str] = {}
        for name, route in self.config.models.items():
            if name.endswith("*"):  # a pattern, not a model id
                continue
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
        chat = {name: self._chats(name, owner) for name, owner in seen.items()}
        for name, owner in list(seen.items()):  # every chat model also as each registered mode
            if chat[name]:
                for mode in self._virtual:
                    seen.setdefault(f"{mode}:{name}", owner)
        # Plain chat models first, then the embedding and image models, then the virtual (compound) ones: a
        # client that takes the first model listed and chats with it gets a plain answer, not a refusal or a
        # think/heavy/deepsearch run. Each group in name order.
        return sorted(
            seen.items(),
            key=lambda item: (self.split_virtual(item[0]) is not None, not chat.get(item[0], True), item[0]),
        )

    def _chats(self, name: str, owner: str) -> bool:
        """Whether ``name`` (served by upstream ``owner``) answers chat: its upstream's provider has the chat
        capability and the catalogue does not know it as an embedding or image model."""
        up = next((u for u in self.config.upstreams if u.name == owner), None)
        if up is not None and "chat" not in provider_class(up.provider).capabilities:
            return False
        info = MODELS.get(name)
        if info is not None and (info.max_output == 0 or (info.price is not None and info.price.per_image)):
            return False
        return not name.rsplit("/", 1)[-1].startswith(IMAGE_MODEL_PREFIXES)
