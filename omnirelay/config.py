"""The configuration file: one YAML document, decoded into typed structs.

Secrets never live in the file: ``api_key_env: NAME`` (or ``api_key: ${NAME}``) reads them from the
environment at load time. ``UpstreamConfig.__repr__`` hides the key so it cannot leak through a log line.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any

import msgspec
import yaml

from omnirelay.core.catalog import Price
from omnirelay.providers import PROVIDER_MODULES

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    pass


class Timeouts(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    connect: float = 10.0
    first_byte: float = 120.0  # until response headers arrive (and, streaming, the first event)
    total: float = 600.0  # whole request, streaming included


class UpstreamConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One account at one provider (an OpenAI key, a vLLM server, the embedded model, ...)."""

    name: str
    provider: str  # a key of providers.PROVIDER_MODULES (checked by parse_config)
    preset: str | None = None  # for provider "openai": openai, xai, deepseek, mistral, vllm, ollama, llamacpp
    base_url: str | None = None
    api_key: str | None = None
    api_key_env: str | None = None
    headers: dict[str, str] = {}
    models: list[str] = []  # models this upstream serves under its own names ("*" suffix globs allowed)
    model_map: dict[str, str] = {}  # public model name -> this upstream's name for it
    timeouts: Timeouts = msgspec.field(default_factory=Timeouts)
    max_concurrency: int | None = None
    # Decoded bytes of a non-streamed reply or an error body, read whole; beyond it the request gets a 502
    # ("upstream reply too large") and is not retried. Streams are bounded per event instead (wire/sse.py).
    max_reply_bytes: int = 32 * 1024 * 1024
    options: dict[str, Any] = {}  # provider-specific settings

    def __repr__(self) -> str:
        return f"UpstreamConfig(name={self.name!r}, provider={self.provider!r}, base_url={self.base_url!r})"

    def upstream_model(self, public: str) -> str:
        return self.model_map.get(public, public)

    def serves(self, model: str) -> bool:
        for pattern in self.models:
            if pattern == model or (pattern.endswith("*") and model.startswith(pattern[:-1])):
                return True
        return model in self.model_map


class ChannelConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One way to serve a public model: an upstream and the model name it knows."""

    upstream: str
    model: str | None = None  # default: the public name (after the upstream's model_map)
    weight: float = 1.0
    priority: int = 0  # lower numbers are tried first
    # Overrides of the upstream's settings for this channel only (keys not given keep the upstream's values).
    timeouts: Timeouts | None = None
    max_concurrency: int | None = None  # a channel at its cap is skipped (see RoutingConfig.queue_timeout)


class RetryConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How hard one model's route tries before moving on to its fallbacks (per model; default under routing)."""

    max_attempts: int = 3  # upstream calls for this model, the first one included
    backoff_base: float = 0.1  # seconds; full jitter: sleep uniform(0, min(cap, base * 2**retry))
    backoff_cap: float = 2.0
    retry_after_cap: float = 10.0  # wait for a Retry-After up to this; longer ones skip the channel instead
    # Seconds for the whole request, all attempts and waits included (None: the longest ``total`` timeout of the
    # model's channels, so one attempt may use all its time and retries add none; 600 s with the defaults).
    deadline: float | None = None


class ModelRoute(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    channels: list[ChannelConfig]
    fallbacks: list[str] = []  # other public model names to try when every channel failed
    retry: RetryConfig | None = None  # keys not given keep routing.retry's values


class BreakerConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Per-channel circuit breaker: open after ``consecutive_failures`` in a row, or a failure rate of at least
    ``failure_rate`` over the last ``window`` seconds once ``min_requests`` were seen there; half-open after
    ``cooldown`` seconds, admitting a single probe; closed again when the probe succeeds."""

    enabled: bool = True
    consecutive_failures: int = 5
    failure_rate: float = 0.5
    window: float = 30.0
    min_requests: int = 20
    cooldown: float = 30.0
    max_rest: float = 60.0  # longest a 429's Retry-After takes a channel out of rotation


class RetryBudgetConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Retries allowed per process: ``ratio`` of the requests, plus ``min_per_second`` when traffic is low.
    Keeps retries from multiplying the load on an upstream that is already failing."""

    ratio: float = 0.2
    min_per_second: float = 10.0


class RoutingConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    retry: RetryConfig = msgspec.field(default_factory=RetryConfig)
    breaker: BreakerConfig = msgspec.field(default_factory=BreakerConfig)
    budget: RetryBudgetConfig = msgspec.field(default_factory=RetryBudgetConfig)
    max_total_attempts: int = 10  # across the model and all its fallbacks
    # When every channel of the request is at its concurrency cap, wait this long for a free slot, then 503.
    queue_timeout: float = 0.5
    # Breaker state shared across replicas (default: state.redis_url / OMNIRELAY_REDIS_URL; none: in memory).
    redis_url: str | None = None


class ServerConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    max_body_bytes: int = 20 * 1024 * 1024
    # A request body must arrive within body_timeout seconds, with no gap longer than body_idle_timeout
    # (else 408 and the connection is closed); a connection must deliver a request's headers within
    # header_timeout seconds of opening or of its previous response (else it is closed: slow headers and
    # idle keep-alive connections alike; granian's HTTP/1 header read timeout).
    body_timeout: float = 30.0
    body_idle_timeout: float = 10.0
    header_timeout: float = 30.0
    master_key: str | None = None
    master_key_env: str | None = None
    # Whether requests without a valid key get in. Unset: only while no master key is set and the key store has
    # never held a key (a fresh laptop setup); the first key created closes the gateway for good, deleting every
    # key does not open it again. true: open whatever the store holds (a valid key is still honoured, with its
    # limits); false: never. The log says at start which applies.
    open: bool | None = None
    access_log: str | None = None  # "json": one JSON line per relayed request on the omnirelay.access logger
    # The cyclic garbage collector's first-generation threshold in a worker once it has started (Python's
    # default is 700; 0 leaves it at that). Requests make next to no cyclic garbage, so the collector's passes
    # are almost pure cost on the hot path (omnirelay/server/collector.py, bench/CHANGES.md section 18).
    gc_threshold: int = 10_000


class MetricsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``GET /metrics`` (Prometheus text, every worker process summed; omnirelay/observability/metrics.py)."""

    enabled: bool = True
    require_admin_key: bool = False  # true: /metrics answers only the admin key (as the admin API)
    key_label: bool = False  # true: requests and cost also by key id (one series per key: mind the cardinality)
    flush_interval_s: float = 1.0  # each worker adds what it counted to the shared files this often
    max_series: int = 2000  # distinct label sets per worker; past it new ones are counted under model "other"


class TracingConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """OpenTelemetry traces over OTLP/HTTP (omnirelay/observability/tracing.py); off unless enabled."""

    enabled: bool = False
    endpoint: str | None = None  # OTLP/HTTP base URL (…/v1/traces is added); default OTEL_EXPORTER_OTLP_ENDPOINT
    service_name: str = "omnirelay"
    sample_ratio: float = 1.0  # of the traces started here; an incoming traceparent's sampled flag wins
    include_content: bool = False  # true: the request's messages go on its span (gen_ai.input.messages)
    export_delay_ms: int = 5000  # the batch exporter sends at least this often


class StateConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Keys, balances, limits and usage records (``omnirelay.state``)."""

    # Default: a SQLite file in the data dir. ``postgresql://...`` for several replicas (env
    # OMNIRELAY_DATABASE_URL wins); ``?schema=NAME`` on a PostgreSQL URL keeps the tables in that schema.
    database_url: str | None = None
    redis_url: str | None = None  # env OMNIRELAY_REDIS_URL; shares limits and credit across replicas
    redis_prefix: str = "omnirelay:"  # env OMNIRELAY_REDIS_PREFIX
    data_dir: str | None = None  # env OMNIRELAY_DATA_DIR wins; default ~/.omnirelay
    admin_key: str | None = None  # env OMNIRELAY_ADMIN_KEY wins; unset: the server master key, if any
    admin_key_env: str | None = None
    key_refresh_s: float = 0.5  # key cache refresh: a revoked key stops working within ~2x this
    usage_flush_s: float = 0.25  # how often settled usage records are written to the database
    usage_batch: int = 1000
    reserve_output_tokens: int = 4096  # output assumed for the credit reservation when max_tokens is unset
    journal_fsync: bool = False  # True: fsync each settle (power-loss durable, ~1-3 ms); see state/usage.py
    # How long a stored Responses API object (POST /v1/responses, store: true) is kept; see state/responses.py.
    responses_retention_s: float = 30 * 86400.0


class ConsoleConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The web console at /console and its API (``omnirelay.console``)."""

    enabled: bool = True
    # The session cookie gets ``Secure`` when the request came over https (or a proxy says so with
    # X-Forwarded-Proto: https); true: always (a deployment behind a TLS-terminating proxy that does not say so).
    secure_cookies: bool = False
    session_ttl_s: float = 7 * 86400.0
    # Failed sign-ins allowed per email and per client address within the window; then 429 until it passes.
    login_max_failures_per_email: int = 5
    login_max_failures_per_ip: int = 5
    login_window_s: float = 15 * 60.0
    # Behind a reverse proxy every client has the proxy's address: name the header the proxy puts the client's
    # address in (e.g. x-forwarded-for; its last entry, the one the proxy added, is used). Unset: the connection's.
    client_ip_header: str | None = None


class BatchesConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The Files and Batch APIs and the runner that executes batches in each gateway process (omnirelay.batches)."""

    run: bool = True  # execute batch items in this process (the endpoints, expiry and finalizing work either way)
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 8  # items in flight per process when idle
    busy_concurrency: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 2  # ...while interactive requests are in flight
    max_file_bytes: Annotated[int, msgspec.Meta(ge=1)] = 100 * 1024 * 1024  # an upload above it gets 413
    max_requests: Annotated[int, msgspec.Meta(ge=1)] = 50_000  # lines of a file, requests of a batch
    lease_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0  # a claimed item whose runner is silent this long is retaken
    poll_s: Annotated[float, msgspec.Meta(gt=0)] = 0.5  # how often an idle runner looks for work


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    state: StateConfig = msgspec.field(default_factory=StateConfig)
    console: ConsoleConfig = msgspec.field(default_factory=ConsoleConfig)
    batches: BatchesConfig = msgspec.field(default_factory=BatchesConfig)
    routing: RoutingConfig = msgspec.field(default_factory=RoutingConfig)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    tracing: TracingConfig = msgspec.field(default_factory=TracingConfig)
    upstreams: list[UpstreamConfig] = []
    models: dict[str, ModelRoute] = {}
    aliases: dict[str, str] = {}
    prices: dict[str, Price] = {}
    # Per-request options and later subsystems read their own sections from here.
    extra: dict[str, Any] = {}

    def upstream(self, name: str) -> UpstreamConfig | None:
        for u in self.upstreams:
            if u.name == name:
                return u
        return None

    def admin_key(self) -> str | None:
        """The key of the admin API: ``state.admin_key`` (OMNIRELAY_ADMIN_KEY wins, applied at load), else the
        server master key; None disables the admin API."""
        return self.state.admin_key or self.server.master_key


def _interpolate(value: Any) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            found = os.environ.get(m.group(1))
            if found is None:
                if m.group(2) is not None:
                    return m.group(2)
                raise ConfigError(f"environment variable {m.group(1)} is not set")
            return found

        return _ENV_REF.sub(sub, value)
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    return value


def _normalise_models(raw: dict[str, Any]) -> dict[str, Any]:
    """Accept the shorthand ``name: {upstream: u, model: m}`` for a single-channel route."""
    out: dict[str, Any] = {}
    for name, route in raw.items():
        if isinstance(route, dict) and "channels" not in route:
            fallbacks = route.pop("fallbacks", [])
            out[name] = {"channels": [route], "fallbacks": fallbacks}
            if "retry" in route:
                out[name]["retry"] = route.pop("retry")
        else:
            out[name] = route
    return out


def _inherit_routing_settings(raw: dict[str, Any]) -> None:
    """Partial overrides: a model's ``retry`` keeps routing.retry's values for keys it does not set, a
    channel's ``timeouts`` keeps its upstream's."""
    routing = raw.get("routing")
    base_retry = routing.get("retry") if isinstance(routing, dict) else None
    upstream_timeouts = {
        u.get("name"): u.get("timeouts")
        for u in raw.get("upstreams") or []
        if isinstance(u, dict) and isinstance(u.get("timeouts"), dict)
    }
    for route in raw["models"].values():
        if not isinstance(route, dict):
            continue
        if isinstance(base_retry, dict) and isinstance(route.get("retry"), dict):
            route["retry"] = {**base_retry, **route["retry"]}
        for ch in route.get("channels") or []:
            if isinstance(ch, dict) and isinstance(ch.get("timeouts"), dict):
                ch["timeouts"] = {**(upstream_timeouts.get(ch.get("upstream")) or {}), **ch["timeouts"]}


def _check_routing(cfg: Config) -> None:
    retries = [("routing.retry", cfg.routing.retry)]
    retries += [(f"models.{n}.retry", r.retry) for n, r in cfg.models.items() if r.retry is not None]
    for where, retry in retries:
        if retry.max_attempts < 1:
            raise ConfigError(f"{where}.max_attempts must be at least 1")
        if retry.backoff_base < 0 or retry.backoff_cap < 0 or retry.retry_after_cap < 0:
            raise ConfigError(f"{where}: backoff and retry_after_cap must not be negative")
    for name, route in cfg.models.items():
        for i, ch in enumerate(route.channels):
            if ch.weight < 0:
                raise ConfigError(f"models.{name}.channels[{i}].weight must not be negative")
            if ch.max_concurrency is not None and ch.max_concurrency < 1:
                raise ConfigError(f"models.{name}.channels[{i}].max_concurrency must be at least 1")
    for u in cfg.upstreams:
        if u.max_concurrency is not None and u.max_concurrency < 1:
            raise ConfigError(f"upstream {u.name!r}: max_concurrency must be at least 1")
        if u.max_reply_bytes < 1024:
            raise ConfigError(f"upstream {u.name!r}: max_reply_bytes must be at least 1024")
    b = cfg.routing.breaker
    if b.consecutive_failures < 1 or not 0 < b.failure_rate <= 1 or b.window <= 0 or b.cooldown < 0:
        raise ConfigError(
            "routing.breaker: consecutive_failures >= 1, 0 < failure_rate <= 1, window > 0, cooldown >= 0"
        )
    if cfg.routing.max_total_attempts < 1:
        raise ConfigError("routing.max_total_attempts must be at least 1")


def default_upstreams() -> list[dict[str, Any]]:
    """What runs with no config file: the bundled local model, plus every provider whose key is in the
    environment."""
    ups: list[dict[str, Any]] = [
        {"name": "local", "provider": "local", "models": ["smollm2-135m-instruct"]},
        {"name": "local-embeddings", "provider": "local_embeddings", "models": ["all-minilm-l6-v2"]},
    ]
    known = [
        (
            "openai",
            "openai",
            "openai",
            "OPENAI_API_KEY",
            ["gpt-*", "o1*", "o3*", "o4*", "chatgpt-*", "text-embedding-*"],
        ),
        ("anthropic", "anthropic", None, "ANTHROPIC_API_KEY", ["claude-*"]),
        ("gemini", "gemini", None, "GEMINI_API_KEY", ["gemini-*"]),
        ("xai", "openai", "xai", "XAI_API_KEY", ["grok-*"]),
        ("deepseek", "openai", "deepseek", "DEEPSEEK_API_KEY", ["deepseek-*"]),
        ("mistral", "openai", "mistral", "MISTRAL_API_KEY", ["mistral-*", "magistral-*", "codestral-*"]),
    ]
    for name, provider, preset, env, models in known:
        if os.environ.get(env):
            entry: dict[str, Any] = {"name": name, "provider": provider, "api_key_env": env, "models": models}
            if preset:
                entry["preset"] = preset
            ups.append(entry)
    return ups


def parse_config(raw: dict[str, Any] | None) -> Config:
    raw = _interpolate(dict(raw or {}))
    assert isinstance(raw, dict)
    if "upstreams" not in raw:
        raw["upstreams"] = default_upstreams()
    if "models" in raw and isinstance(raw["models"], dict):
        raw["models"] = _normalise_models(raw["models"])
        _inherit_routing_settings(raw)
    try:
        cfg = msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
    names = [u.name for u in cfg.upstreams]
    if len(names) != len(set(names)):
        raise ConfigError("upstream names must be unique")
    _check_providers(cfg.upstreams)
    for u in cfg.upstreams:
        if u.api_key is None and u.api_key_env:
            u.api_key = os.environ.get(u.api_key_env)
            if u.api_key is None:
                raise ConfigError(f"upstream {u.name!r}: environment variable {u.api_key_env} is not set")
    for name, route in cfg.models.items():
        for ch in route.channels:
            if cfg.upstream(ch.upstream) is None:
                raise ConfigError(f"model {name!r}: channel names unknown upstream {ch.upstream!r}")
    if cfg.server.master_key is None and cfg.server.master_key_env:
        cfg.server.master_key = os.environ.get(cfg.server.master_key_env)
    _apply_state_env(cfg.state)
    _check_routing(cfg)
    _check_server(cfg.server)
    _check_observability(cfg)
    _check_state(cfg.state)
    return cfg


def _check_providers(upstreams: list[UpstreamConfig]) -> None:
    # Against the provider registry, so a new provider module is accepted here without a second list. (The
    # compound engines' virtual upstreams are built in code, never read from a file.)
    for u in upstreams:
        if u.provider not in PROVIDER_MODULES:
            known = ", ".join(sorted(PROVIDER_MODULES))
            raise ConfigError(
                f"invalid configuration: upstream {u.name!r}: unknown provider {u.provider!r}; known: {known}"
            )


def _check_server(server: ServerConfig) -> None:
    for name in ("body_timeout", "body_idle_timeout", "header_timeout"):
        if not getattr(server, name) > 0:
            raise ConfigError(f"server.{name} must be a positive number of seconds")
    if server.access_log not in (None, "json"):
        raise ConfigError("server.access_log must be json (or unset)")
    if server.gc_threshold < 0:
        raise ConfigError("server.gc_threshold must be 0 (Python's default) or a positive number of allocations")


def _check_observability(cfg: Config) -> None:
    if not cfg.metrics.flush_interval_s > 0:
        raise ConfigError("metrics.flush_interval_s must be a positive number of seconds")
    if cfg.metrics.max_series < 1:
        raise ConfigError("metrics.max_series must be at least 1")
    if not 0.0 <= cfg.tracing.sample_ratio <= 1.0:
        raise ConfigError("tracing.sample_ratio must be between 0 and 1")
    if cfg.tracing.export_delay_ms < 1:
        raise ConfigError("tracing.export_delay_ms must be at least 1")


def _check_state(state: StateConfig) -> None:
    if not (state.responses_retention_s > 0 and math.isfinite(state.responses_retention_s)):
        raise ConfigError("state.responses_retention_s must be a positive number of seconds")


def _apply_state_env(state: StateConfig) -> None:
    env = os.environ
    state.database_url = env.get("OMNIRELAY_DATABASE_URL") or state.database_url
    state.redis_url = env.get("OMNIRELAY_REDIS_URL") or state.redis_url
    state.redis_prefix = env.get("OMNIRELAY_REDIS_PREFIX") or state.redis_prefix
    state.data_dir = env.get("OMNIRELAY_DATA_DIR") or state.data_dir or str(Path.home() / ".omnirelay")
    if state.admin_key is None and state.admin_key_env:
        state.admin_key = env.get(state.admin_key_env)
    state.admin_key = env.get("OMNIRELAY_ADMIN_KEY") or state.admin_key
    if state.database_url is None:
        state.database_url = "sqlite:///" + str(Path(state.data_dir).expanduser().resolve() / "omnirelay.db")


def load_config(path: str | Path | None) -> Config:
    """Load ``path``, or the defaults when None."""
    if path is None:
        return parse_config(None)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a mapping at the top level")
    return parse_config(raw)
