"""Settings for compound models: gateway-wide ones (config ``extra.compound``) and per-request ones (the
``omnirelay`` object of a request). Request settings not given are scaled from the request's reasoning effort
(``reasoning_effort`` / ``thinking.budget_tokens``)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from omnirelay.core.errors import invalid
from omnirelay.core.reasoning import effort_of
from omnirelay.core.types import ChatRequest, Effort
from omnirelay.tools.settings import FetchSettings, PythonSettings, SearchBackendConfig

# Models with reasoning of their own: think: asks them for it instead of running a separate reasoning pass.
NATIVE_REASONING = (
    "o1*",
    "o3*",
    "o4*",
    "gpt-5*",
    "claude-opus-4*",
    "claude-sonnet-4*",
    "claude-3-7-sonnet*",
    "deepseek-reasoner*",
    "grok-3-mini*",
    "grok-4*",
    "gemini-2.5*",
    "magistral*",
    "qwq*",
)


class CompoundSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    max_agents: int = 16
    max_rounds: int = 8
    max_time: float = 300.0  # wall seconds per compound request unless the request says less
    native_reasoning: list[str] = msgspec.field(default_factory=lambda: list(NATIVE_REASONING))
    search_backend: str = "local"
    search_backends: dict[str, SearchBackendConfig] = {}
    fetch: FetchSettings = msgspec.field(default_factory=FetchSettings)
    python: PythonSettings = msgspec.field(default_factory=PythonSettings)
    max_tool_steps: int = 8  # server-side tool loop: model turns per request
    # Anthropic server tools (``{"type": "web_search_20250305", ...}``) sent to a model served only by Anthropic
    # upstreams: "upstream" lets Anthropic run them; "gateway" runs them here like for any other model.
    anthropic_server_tools: Literal["upstream", "gateway"] = "upstream"
    data_dir: str | None = None  # filled from state.data_dir: where the local corpus index lives by default


def load_settings(extra: dict[str, Any], data_dir: str | None = None) -> CompoundSettings:
    raw = extra.get("compound") or {}
    try:
        settings = msgspec.convert(raw, CompoundSettings)
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid extra.compound settings: {exc}") from None
    settings.data_dir = settings.data_dir or data_dir
    return settings


class RequestOptions(msgspec.Struct, kw_only=True):
    agents: int | None = None
    max_rounds: int | None = None
    max_cost: float | None = None  # USD over every upstream call
    max_tokens: int | None = None  # input + output tokens over every upstream call
    max_time: float | None = None  # wall seconds
    search: str | None = None  # search backend name
    max_sources: int | None = None  # deepsearch: pages read in total
    tools: list[str] = []  # server-side tools: web_search, fetch, python


_KNOWN = frozenset(RequestOptions.__struct_fields__)
_DEFAULT_AGENTS: dict[Effort | None, int] = {None: 4, "minimal": 2, "low": 2, "medium": 4, "high": 8}
_DEFAULT_ROUNDS: dict[Effort | None, int] = {None: 3, "minimal": 1, "low": 2, "medium": 3, "high": 5}


class Effective(msgspec.Struct, kw_only=True):
    """The settings one compound request runs with, defaults filled in."""

    agents: int
    max_rounds: int
    max_cost: float | None
    max_tokens: int | None
    max_time: float
    search: str
    max_sources: int
    effort: Effort | None
    tools: list[str]


def request_options(req: ChatRequest, settings: CompoundSettings) -> Effective:
    given = {k: v for k, v in req.options.items() if k in _KNOWN}
    try:
        opts = msgspec.convert(given, RequestOptions)
    except msgspec.ValidationError as exc:
        raise invalid(f"invalid omnirelay options: {exc}", param="omnirelay") from None
    effort = effort_of(req.reasoning)
    agents = opts.agents if opts.agents is not None else _DEFAULT_AGENTS[effort]
    if not 1 <= agents <= settings.max_agents:
        raise invalid(f"omnirelay.agents must be between 1 and {settings.max_agents}", param="omnirelay.agents")
    rounds = opts.max_rounds if opts.max_rounds is not None else _DEFAULT_ROUNDS[effort]
    if not 1 <= rounds <= settings.max_rounds:
        raise invalid(f"omnirelay.max_rounds must be between 1 and {settings.max_rounds}", param="omnirelay.max_rounds")
    for name in ("max_cost", "max_tokens", "max_time", "max_sources"):
        value = getattr(opts, name)
        if value is not None and value <= 0:
            raise invalid(f"omnirelay.{name} must be positive", param=f"omnirelay.{name}")
    max_time = min(opts.max_time, settings.max_time) if opts.max_time is not None else settings.max_time
    for tool in opts.tools:
        if tool not in ("web_search", "fetch", "python"):
            raise invalid(f"unknown server-side tool {tool!r} (web_search, fetch, python)", param="omnirelay.tools")
    return Effective(
        agents=agents,
        max_rounds=rounds,
        max_cost=opts.max_cost,
        max_tokens=opts.max_tokens,
        max_time=max_time,
        search=opts.search or settings.search_backend,
        max_sources=opts.max_sources if opts.max_sources is not None else 4 * rounds,
        effort=effort,
        tools=opts.tools,
    )


def has_native_reasoning(model: str, settings: CompoundSettings) -> bool:
    name = model.rsplit("/", 1)[-1]
    for pattern in settings.native_reasoning:
        if pattern == name or (pattern.endswith("*") and name.startswith(pattern[:-1])):
            return True
    return False
