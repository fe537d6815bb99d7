"""Running the real Codex CLI (pinned in package-lock.json, installed by `make pytest` with `npm ci`) through a
running gateway, and reading what reached the scripted upstream in each upstream family's own wire format.

Codex is configured the way the README tells a user to: a custom model provider in ``$CODEX_HOME/config.toml``
whose ``base_url`` is the gateway's ``/v1``, ``wire_api = "responses"`` (the only wire API Codex accepts) and
``env_key`` naming the variable that holds a virtual key. CODEX_HOME, HOME and cwd are fresh temp directories,
update checks and analytics are off and nothing but PATH is inherited, so the only network it may use is the
gateway on loopback. Observed with 0.171.0 against a custom provider: it sends only ``POST /v1/responses``
(``stream: true``, ``store: false``); no ``GET /v1/models`` and no WebSocket unless ``supports_websockets``
is set on the provider.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from tests.gateway import ROOT

CODEX_BIN = ROOT / "node_modules" / ".bin" / "codex"
RUN_TIMEOUT_S = 180.0
KEY_VAR = "OMNIRELAY_API_KEY"
PROVIDER_ID = "omnirelay"
# The tool Codex 0.171 offers for running a command (read from the upstream request's tools: ``exec_command``,
# parameters ``cmd``, ``workdir``, ``yield_time_ms``, ...). A newer Codex may rename it; the test checks it is
# offered and names what was offered instead.
SHELL_TOOL = "exec_command"
SHELL_COMMAND_PARAM = "cmd"


def codex_config(gateway_url: str, model: str, websockets: bool = False) -> str:
    """The config.toml a user writes to run Codex on omnirelay (the README's example). No retries: a failure
    shows up at once instead of after Codex's five attempts with backoff. ``websockets``: the provider claims
    WebSocket support, so Codex first tries ``GET /v1/responses`` with ``Upgrade: websocket`` (observed with
    0.171: a 426 refusal makes it fall back to HTTP at once; a 404 or 405 costs five reconnect attempts with
    backoff, about 6 s, before the fallback; a 400 fails the turn). Those reconnects are only visible with
    Codex's default retry settings (with no retries it falls back after any failure), so ``websockets`` keeps them.
    """
    retries = "" if websockets else "request_max_retries = 0\nstream_max_retries = 0\n"
    transport = "supports_websockets = true\n" if websockets else ""
    return f"""\
model = "{model}"
model_provider = "{PROVIDER_ID}"
check_for_update_on_startup = false

[analytics]
enabled = false

[model_providers.{PROVIDER_ID}]
name = "omnirelay"
base_url = "{gateway_url}/v1"
env_key = "{KEY_VAR}"
wire_api = "responses"
{retries}{transport}"""


class CodexRun(msgspec.Struct, kw_only=True):
    returncode: int
    events: list[dict[str, Any]]
    stderr: str

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == event_type]

    def items(self, item_type: str) -> list[dict[str, Any]]:
        """The completed items of one type (``command_execution``, ``agent_message``, ...), in order."""
        out: list[dict[str, Any]] = []
        for e in self.of_type("item.completed"):
            item = e.get("item") or {}
            if item.get("type") == item_type:
                out.append(item)
        return out

    def describe(self) -> str:
        lines = [json.dumps(e)[:800] for e in self.events]
        return f"exit {self.returncode}\n" + "\n".join(lines) + f"\nstderr: {self.stderr[-3000:]}"


def codex_env(home: Path, codex_home: Path, secret: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CODEX_HOME": str(codex_home),
        KEY_VAR: secret,
        "NO_PROXY": "127.0.0.1,localhost",
    }


def run_codex(
    prompt: str, *, gateway_url: str, secret: str, model: str, cwd: Path, home: Path, websockets: bool = False
) -> CodexRun:
    assert CODEX_BIN.exists(), f"{CODEX_BIN} is missing: run `make node_modules/.package-lock.json` (npm ci)"
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(codex_config(gateway_url, model, websockets))
    argv = [str(CODEX_BIN), "exec", "--json", "--skip-git-repo-check", "--ephemeral"]
    # Its sandbox needs namespaces the test machine may not give; the test's temp cwd is the only thing touched.
    argv += ["--dangerously-bypass-approvals-and-sandbox", "--", prompt]
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=codex_env(home, codex_home, secret),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # the commands it runs die with it on a timeout
    )
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        partial = CodexRun(returncode=-9, events=list(_events(out)), stderr=err.decode(errors="replace"))
        raise AssertionError(f"codex did not finish within {RUN_TIMEOUT_S:.0f} s:\n{partial.describe()}") from None
    return CodexRun(returncode=proc.returncode, events=list(_events(out)), stderr=err.decode(errors="replace"))


def _events(stdout: bytes) -> Iterator[dict[str, Any]]:
    for line in stdout.decode(errors="replace").splitlines():
        line = line.strip()
        if line.startswith("{"):
            yield json.loads(line)


# -- what the upstream received, per family (OpenAI chat completions, Anthropic messages) ----------------------


def offered_tools(family: str, body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Tool name -> JSON schema of its parameters, as the upstream request declares them."""
    tools = body.get("tools") or []
    if family == "openai":
        return {t["function"]["name"]: t["function"].get("parameters") or {} for t in tools if "function" in t}
    return {t["name"]: t.get("input_schema") or {} for t in tools if "name" in t}


def tool_results(family: str, body: dict[str, Any]) -> dict[str, str]:
    """Tool call id -> the result's content as JSON text, for every tool result in the upstream conversation."""
    out: dict[str, str] = {}
    for m in body.get("messages") or []:
        if family == "openai":
            if m.get("role") == "tool":
                out[m.get("tool_call_id", "?")] = json.dumps(m.get("content"))
            continue
        content = m.get("content")
        if m.get("role") == "user" and isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    out[block.get("tool_use_id", "?")] = json.dumps(block.get("content"))
    return out


def tool_calls(family: str, body: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(id, name, arguments) of the assistant's earlier tool calls as sent back upstream."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    for m in body.get("messages") or []:
        if m.get("role") != "assistant":
            continue
        if family == "openai":
            for c in m.get("tool_calls") or []:
                out.append((c["id"], c["function"]["name"], json.loads(c["function"]["arguments"] or "{}")))
            continue
        content = m.get("content")
        if isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_use":
                    out.append((block["id"], block["name"], block.get("input") or {}))
    return out
