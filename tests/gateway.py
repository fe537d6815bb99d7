"""Start omnirelay as a real server process for a test, with a generated config file."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Gateway:
    """A running ``omnirelay serve``; ``url`` is the base (no /v1)."""

    def __init__(self, config: dict[str, Any], workdir: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        config = dict(config)
        server = dict(config.get("server", {}))
        server.setdefault("host", "127.0.0.1")
        server["port"] = self.port
        config["server"] = server
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "omnirelay.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "gateway.log"
        self.env = {**os.environ, **(env or {})}
        self.env.setdefault("OMNIRELAY_DATA_DIR", str(workdir))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Gateway:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "omnirelay", "serve", "--config", str(self.config_path)],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # granian forks workers: stop/kill the whole group
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"omnirelay exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"omnirelay did not become healthy:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return ""

    def stop(self, kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = os.getpgid(self.proc.pid)
        os.killpg(pgid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(5)
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)  # workers that outlived the parent


def mock_config(openai_url: str, anthropic_url: str, gemini_url: str) -> dict[str, Any]:
    """Upstreams pointing at the three mocks, one per provider family plus OpenAI-compatible presets."""
    return {
        "server": {"max_body_bytes": 2 * 1024 * 1024},
        "upstreams": [
            {
                "name": "mock-openai",
                "provider": "openai",
                "preset": "openai",
                "base_url": openai_url,
                "api_key": "sk-mock-openai-secret",
                "models": ["gpt-*", "o3*", "o4*"],
            },
            {
                "name": "mock-deepseek",
                "provider": "openai",
                "preset": "deepseek",
                "base_url": openai_url,
                "api_key": "sk-mock-deepseek-secret",
                "models": ["deepseek-*"],
            },
            {
                "name": "mock-xai",
                "provider": "openai",
                "preset": "xai",
                "base_url": openai_url,
                "api_key": "xai-mock-secret",
                "models": ["grok-*"],
            },
            {
                "name": "mock-anthropic",
                "provider": "anthropic",
                "base_url": anthropic_url,
                "api_key": "sk-ant-mock-secret",
                "models": ["claude-*"],
            },
            {
                "name": "mock-gemini",
                "provider": "gemini",
                "base_url": gemini_url,
                "api_key": "gm-mock-secret",
                "models": ["gemini-*"],
            },
        ],
    }
