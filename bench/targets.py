"""The servers under test, each configured for the same mock upstream: the mock itself (the baseline every
"added latency" is measured against), omnirelay, a minimal Python relay (bench/pyrelay.py: the floor any
Python gateway reaches here), LiteLLM's proxy, Portkey's open-source gateway (Node), claude-code-router (Node, the
Claude Code proxy: Anthropic-in only), and nginx ``proxy_pass`` (the ceiling)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.install import RUN, ensure_litellm, ensure_peer, nginx_binary, peer_installed
from bench.mock_upstream import MODEL
from bench.procs import Service, free_port

ROOT = Path(__file__).resolve().parent.parent
CLIENT_KEY = "sk-bench-client-key"
UPSTREAM_KEY = "sk-bench-upstream-key"


@dataclass
class Target:
    name: str
    service: Service | None = None
    port: int = 0
    key: str = CLIENT_KEY  # what the load sends as its API key
    headers: dict[str, str] = field(default_factory=dict)  # sent on every request besides the scenario's
    notes: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def root_pid(self) -> int | None:
        return self.service.pid if self.service is not None else None

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()


class MockTarget(Target):
    def start(self, chunks: int) -> MockTarget:
        self.port = free_port()
        argv = [sys.executable, "-m", "bench.mock_upstream", "--port", str(self.port), "--chunks", str(chunks)]
        self.service = Service("mock", argv, RUN / "logs" / "mock.log").start(cwd=ROOT)
        self.service.wait_http(self.url + "/health", timeout=20)
        return self


def _omnirelay_argv() -> list[str]:
    script = Path(sys.executable).parent / "omnirelay"
    return [str(script)] if script.exists() else [sys.executable, "-m", "omnirelay"]


class OmnirelayTarget(Target):
    def start(self, upstream: str, workers: int, state: bool, metrics: bool = True) -> OmnirelayTarget:
        self.port = free_port()
        workdir = RUN / "omnirelay"
        if workdir.exists():
            shutil.rmtree(workdir)  # a fresh usage database each run
        workdir.mkdir(parents=True)
        config: dict[str, Any] = {
            "server": {"host": "127.0.0.1", "port": self.port, "workers": workers},
            "upstreams": [
                {
                    "name": "mock",
                    "provider": "openai",
                    "preset": "openai",
                    "base_url": upstream + "/v1",
                    "api_key": UPSTREAM_KEY,
                    "models": ["gpt-*"],
                }
            ],
        }
        if not metrics:  # (on is the default: the key is left out, for a tree that predates it)
            config["metrics"] = {"enabled": False}
            self.notes.append("metrics off (metrics.enabled: false)")
        env = {"OMNIRELAY_DATA_DIR": str(workdir)}
        path = workdir / "omnirelay.yaml"
        if state:
            config["state"] = {"data_dir": str(workdir)}
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            self.key = create_key(path, env)
            self.notes.append(
                "issued key with rpm/tpm limits and a credit balance, checked on every request; "
                "usage records written to SQLite (state layer ON)"
            )
        else:
            config["server"]["master_key"] = CLIENT_KEY
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            self.notes.append("master-key check only; no issued key, so no per-key rate limits (state layer OFF)")
        argv = [*_omnirelay_argv(), "serve", "--config", str(path)]
        self.service = Service("omnirelay", argv, RUN / "logs" / "omnirelay.log", env=env).start(cwd=ROOT)
        self.service.wait_http(self.url + "/health", timeout=60)
        return self


def create_key(config_path: Path, env: dict[str, str]) -> str:
    """Issue a key in omnirelay's SQLite store with limits far above the benchmark's load (so they are checked
    on every request but never bite) and return its secret."""
    argv = [*_omnirelay_argv(), "keys", "create", "--name", "bench", "--config", str(config_path)]
    argv += ["--rpm", "100000000", "--tpm", "1000000000", "--credit", "1000000"]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env}, check=False)
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"omnirelay keys create failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return lines[-1].strip()


def _granian_argv() -> list[str]:
    script = Path(sys.executable).parent / "granian"
    return [str(script)] if script.exists() else [sys.executable, "-m", "granian"]


class PyRelayTarget(Target):
    def start(self, upstream: str, workers: int) -> PyRelayTarget:
        self.port = free_port()
        env = {"PYRELAY_UPSTREAM": upstream, "PYRELAY_KEY": CLIENT_KEY, "PYRELAY_UPSTREAM_KEY": UPSTREAM_KEY}
        # The same granian settings omnirelay serves with (omnirelay/serve.py), so only the app differs.
        argv = [*_granian_argv(), "--interface", "rsgi", "--loop", "uvloop", "--workers", str(workers)]
        argv += ["--no-log", "--host", "127.0.0.1", "--port", str(self.port), "--backlog", "2048", "bench.pyrelay:app"]
        self.service = Service("pyrelay", argv, RUN / "logs" / "pyrelay.log", env=env).start(cwd=ROOT)
        self.service.wait_http(self.url + "/health", timeout=30)
        self.notes.append(
            "granian RSGI + pooled aiohttp client, static key compare, no state: "
            "the floor a Python relay reaches on this machine (bench/pyrelay.py; no translation)"
        )
        return self


LITELLM_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO"},
        "uvicorn.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
    },
}


class LiteLLMTarget(Target):
    def start(self, upstream: str, workers: int) -> LiteLLMTarget:
        self.port = free_port()
        litellm = ensure_litellm()
        workdir = RUN / "litellm"
        workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "model_list": [
                {
                    "model_name": MODEL,
                    "litellm_params": {
                        "model": f"openai/{MODEL}",
                        "api_base": upstream + "/v1",
                        "api_key": UPSTREAM_KEY,
                    },
                }
            ],
            # The master key is LiteLLM's key check without a database (as in the calibration run).
            "general_settings": {"master_key": CLIENT_KEY},
            "litellm_settings": {
                "telemetry": False,
                "drop_params": True,
                # Anthropic-in must reach the same chat-completions upstream as omnirelay, not the Responses API.
                "use_chat_completions_url_for_anthropic_messages": True,
            },
        }
        path = workdir / "litellm.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        # No access log line per request: omnirelay and nginx run without one too.
        log_config = workdir / "logging.json"
        log_config.write_text(json.dumps(LITELLM_LOGGING))
        env = {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price list from the internet at start
            "LITELLM_LOG": "ERROR",
            "LITELLM_TELEMETRY": "False",
            "DISABLE_SCHEMA_UPDATE": "True",
        }
        argv = [str(litellm), "--config", str(path), "--host", "127.0.0.1", "--port", str(self.port)]
        argv += ["--num_workers", str(workers), "--log_config", str(log_config)]
        self.service = Service("litellm", argv, RUN / "logs" / "litellm.log", env=env).start(cwd=workdir)
        self.service.wait_http(self.url + "/health/liveliness", timeout=180)
        self.notes.append("no database: master-key check only, no rate limits, no spend logging")
        return self


NGINX_CONF = """\
worker_processes {workers};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream mock {{
        server {upstream_hostport};
        keepalive 512;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""


class NginxTarget(Target):
    def start(self, upstream: str, workers: int) -> NginxTarget:
        nginx = nginx_binary()
        if nginx is None:
            raise RuntimeError("nginx is not installed")
        self.port = free_port()
        prefix = RUN / "nginx"
        prefix.mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        hostport = upstream.removeprefix("http://")
        conf.write_text(NGINX_CONF.format(workers=workers, prefix=prefix, upstream_hostport=hostport, port=self.port))
        argv = [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
        self.service = Service("nginx", argv, RUN / "logs" / "nginx.log").start(cwd=prefix)
        self.service.wait_http(self.url + "/health", timeout=20)
        self.notes.append("proxy_pass with upstream keep-alive, buffering off; no auth, no translation")
        return self


def _node_modules(peer: str, install: bool) -> Path:
    found = peer_installed(peer)
    if found is not None:
        return found
    if not install:
        raise RuntimeError(f"the {peer} peer is not installed (run the bench once without --no-install)")
    return ensure_peer(peer)


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("Node.js is not installed")
    return node


class PortkeyTarget(Target):
    """Portkey's gateway (``@portkey-ai/gateway``), one Node process, reaching the mock as an OpenAI provider at a
    custom host. It has no key of its own: the client's key goes upstream as the provider key (checked by nobody),
    so like nginx it does no key check."""

    def start(self, upstream: str, install: bool) -> PortkeyTarget:
        modules = _node_modules("portkey", install)
        self.port = free_port()
        argv = [_node(), str(modules / "@portkey-ai" / "gateway" / "build" / "start-server.js")]
        argv += [f"--port={self.port}", "--headless"]
        # production: no log console UI and no per-request log stream kept in memory.
        env = {"NODE_ENV": "production", "ENVIRONMENT": "production"}
        self.service = Service("portkey", argv, RUN / "logs" / "portkey.log", env=env).start(cwd=modules.parent)
        self.service.wait_http(self.url + "/", timeout=60)
        self.headers = {"x-portkey-provider": "openai", "x-portkey-custom-host": upstream + "/v1"}
        self.notes.append(
            "one Node process whatever --workers (the gateway has no worker option); OpenAI provider at the mock via "
            "x-portkey-provider / x-portkey-custom-host headers; no key check of its own, no logging store"
        )
        return self


CCR_PROVIDER = "mock"


class CCRTarget(Target):
    """claude-code-router (``@musistudio/claude-code-router``, ``ccr start``): Claude Code's Anthropic Messages in,
    an OpenAI chat-completions provider out. Its config lives under ``$HOME/.claude-code-router``, so HOME is a
    bench-owned directory."""

    def start(self, upstream: str, install: bool) -> CCRTarget:
        modules = _node_modules("claude-code-router", install)
        self.port = free_port()
        home = RUN / "ccr-home"
        conf_dir = home / ".claude-code-router"
        conf_dir.mkdir(parents=True, exist_ok=True)
        config = {
            "LOG": False,  # its default is a debug log line per request
            "PORT": self.port,
            "APIKEY": CLIENT_KEY,  # checked on every request (x-api-key or Bearer)
            "NON_INTERACTIVE_MODE": True,
            "Providers": [
                {
                    "name": CCR_PROVIDER,
                    "api_base_url": upstream + "/v1/chat/completions",
                    "api_key": UPSTREAM_KEY,
                    "models": [MODEL],
                }
            ],
            "Router": {"default": f"{CCR_PROVIDER},{MODEL}"},
        }
        (conf_dir / "config.json").write_text(json.dumps(config, indent=1))
        (conf_dir / ".claude-code-router.pid").unlink(missing_ok=True)  # a stale pid file makes `start` a no-op
        argv = [_node(), str(modules / "@musistudio" / "claude-code-router" / "dist" / "cli.js"), "start"]
        env = {"HOME": str(home)}
        self.service = Service("ccr", argv, RUN / "logs" / "ccr.log", env=env).start(cwd=home)
        self.service.wait_http(self.url + "/health", timeout=60)
        self.notes.append(
            "one Node process whatever --workers; Anthropic Messages in only (it has no OpenAI-in route), "
            "API key checked, request log off"
        )
        return self
