"""The configuration file: one YAML document, decoded into typed structs.

Secrets never live in the file: ``api_key_env: NAME`` (or ``api_key: ${NAME}``) reads them from the
environment at load time. ``UpstreamConfig.__repr__`` hides the key so it cannot leak through a log line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from omnirelay.core.catalog import Price

ProviderName = Literal["openai", "anthropic", "gemini", "local"]

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
    provider: ProviderName
    preset: str | None = None  # for provider "openai": openai, xai, deepseek, mistral, vllm, ollama, llamacpp
    base_url: str | None = None
    api_key: str | None = None
    api_key_env: str | None = None
    headers: dict[str, str] = {}
    models: list[str] = []  # models this upstream serves under its own names ("*" suffix globs allowed)
    model_map: dict[str, str] = {}  # public model name -> this upstream's name for it
    timeouts: Timeouts = msgspec.field(default_factory=Timeouts)
    max_concurrency: int | None = None
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


class ModelRoute(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    channels: list[ChannelConfig]
    fallbacks: list[str] = []  # other public model names to try when every channel failed


class ServerConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    max_body_bytes: int = 20 * 1024 * 1024
    # With neither a master key nor issued keys configured the gateway is open: fine on a laptop, and
    # the log says so at start.
    master_key: str | None = None
    master_key_env: str | None = None


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
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
        else:
            out[name] = route
    return out


def default_upstreams() -> list[dict[str, Any]]:
    """What runs with no config file: the bundled local model, plus every provider whose key is in the
    environment."""
    ups: list[dict[str, Any]] = [{"name": "local", "provider": "local", "models": ["smollm2-135m-instruct"]}]
    known = [
        ("openai", "openai", "openai", "OPENAI_API_KEY", ["gpt-*", "o1*", "o3*", "o4*", "chatgpt-*"]),
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
    try:
        cfg = msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
    names = [u.name for u in cfg.upstreams]
    if len(names) != len(set(names)):
        raise ConfigError("upstream names must be unique")
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
    return cfg


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
