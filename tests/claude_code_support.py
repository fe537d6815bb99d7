"""Running the real Claude Code CLI (pinned in package-lock.json, installed by `make pytest` with `npm ci`) through
a running gateway, and reading what reached the scripted upstream, in each upstream family's own wire format.

Claude Code runs with its DEFAULT model (no ANTHROPIC_MODEL, no --model): the gateway config routes whatever name
it sends (``claude-*``) to the upstream under test. Nonessential traffic, telemetry and the auto-updater are off,
HOME and cwd are fresh temp directories, so the only network it may use is the gateway on loopback.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import struct
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from tests.gateway import ROOT

CLAUDE_BIN = ROOT / "node_modules" / ".bin" / "claude"
# Claude Code retries failed calls itself (with backoff); a bounded run fails with its output instead of hanging.
RUN_TIMEOUT_S = 180.0
# The tools a run may use without asking (-p cannot ask); --dangerously-skip-permissions is refused as root.
ALLOWED_TOOLS = "Bash,Read,Write"


class ClaudeRun(msgspec.Struct, kw_only=True):
    returncode: int
    events: list[dict[str, Any]]
    stderr: str

    def result(self) -> dict[str, Any]:
        """The final ``result`` event (exactly one per -p run)."""
        results = [e for e in self.events if e.get("type") == "result"]
        assert len(results) == 1, f"expected one result event:\n{self.describe()}"
        return results[0]

    def init(self) -> dict[str, Any]:
        inits = [e for e in self.events if e.get("type") == "system" and e.get("subtype") == "init"]
        assert inits, f"no system/init event:\n{self.describe()}"
        return inits[0]

    def blocks(self, event_type: str, block_type: str) -> list[dict[str, Any]]:
        """Content blocks of one type in the ``assistant`` or ``user`` events, in order."""
        out: list[dict[str, Any]] = []
        for e in self.events:
            if e.get("type") != event_type:
                continue
            content = (e.get("message") or {}).get("content")
            if isinstance(content, list):
                out.extend(b for b in content if isinstance(b, dict) and b.get("type") == block_type)
        return out

    def describe(self) -> str:
        lines = [json.dumps(e)[:800] for e in self.events if e.get("subtype") != "init"]
        return f"exit {self.returncode}\n" + "\n".join(lines) + f"\nstderr: {self.stderr[-3000:]}"


def claude_env(gateway_url: str, secret: str, home: Path, key_var: str) -> dict[str, str]:
    """The environment a user sets to run Claude Code on a gateway (the README's list), and nothing inherited but
    PATH: no ANTHROPIC_MODEL, so Claude Code sends its default model name. ``key_var``: ANTHROPIC_AUTH_TOKEN
    (sent as ``Authorization: Bearer``) or ANTHROPIC_API_KEY (sent as ``x-api-key``)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": gateway_url,
        key_var: secret,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "API_TIMEOUT_MS": "60000",
        "NO_PROXY": "127.0.0.1,localhost",
    }


def run_claude(
    prompt: str, *, gateway_url: str, secret: str, cwd: Path, home: Path, key_var: str = "ANTHROPIC_AUTH_TOKEN"
) -> ClaudeRun:
    assert CLAUDE_BIN.exists(), f"{CLAUDE_BIN} is missing: run `make node_modules/.package-lock.json` (npm ci)"
    argv = [str(CLAUDE_BIN), "-p", "--output-format", "stream-json", "--verbose"]
    argv += ["--allowedTools", ALLOWED_TOOLS, "--", prompt]
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=claude_env(gateway_url, secret, home, key_var),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its Bash tool's children die with it on a timeout
    )
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        partial = ClaudeRun(returncode=-9, events=list(_events(out)), stderr=err.decode(errors="replace"))
        raise AssertionError(f"claude did not finish within {RUN_TIMEOUT_S:.0f} s:\n{partial.describe()}") from None
    return ClaudeRun(returncode=proc.returncode, events=list(_events(out)), stderr=err.decode(errors="replace"))


def _events(stdout: bytes) -> Iterator[dict[str, Any]]:
    for line in stdout.decode(errors="replace").splitlines():
        line = line.strip()
        if line.startswith("{"):
            yield json.loads(line)


def tiny_png(width: int = 3, height: int = 2) -> bytes:
    """A valid RGB PNG, built by hand (signature, IHDR, one zlib IDAT, IEND)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"".join(bytes((200, 60 * x, 90 + 80 * y)) for x in range(width)) for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


# -- what the upstream received, per family -------------------------------------------------------------------


def offered_tools(family: str, body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Tool name -> JSON schema of its parameters, as the upstream request declares them."""
    if family == "openai":
        return {t["function"]["name"]: t["function"].get("parameters") or {} for t in body.get("tools") or []}
    out: dict[str, dict[str, Any]] = {}
    for tool in body.get("tools") or []:
        for fd in tool.get("functionDeclarations") or []:
            out[fd["name"]] = fd.get("parametersJsonSchema") or fd.get("parameters") or {}
    return out


def tool_results(family: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    """(tool name, the result's content as JSON text) for every tool result in the upstream conversation."""
    out: list[tuple[str, str]] = []
    if family == "openai":
        names: dict[str, str] = {}
        for m in body.get("messages") or []:
            for call in m.get("tool_calls") or []:
                names[call["id"]] = call["function"]["name"]
            if m.get("role") == "tool":
                out.append((names.get(m.get("tool_call_id", ""), "?"), json.dumps(m.get("content"))))
        return out
    for content in body.get("contents") or []:
        for part in content.get("parts") or []:
            fr = part.get("functionResponse")
            if fr is not None:
                out.append((fr.get("name", "?"), json.dumps(fr)))
    return out


def function_calls(family: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The assistant's earlier tool calls as sent back upstream: OpenAI ``tool_calls`` entries, Gemini parts
    holding a ``functionCall`` (the whole part, so its ``thoughtSignature`` is visible)."""
    if family == "openai":
        return [c for m in body.get("messages") or [] for c in m.get("tool_calls") or []]
    return [
        p
        for c in body.get("contents") or []
        for p in c.get("parts") or []
        if isinstance(p, dict) and "functionCall" in p
    ]


def images(family: str, body: dict[str, Any]) -> list[bytes]:
    """Every image in the upstream conversation, decoded: OpenAI ``image_url`` parts with a data URL, Gemini
    ``inlineData`` anywhere (a part of its own or inside a ``functionResponse``)."""
    found: list[bytes] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        if family == "openai" and node.get("type") == "image_url":
            url = (node.get("image_url") or {}).get("url", "")
            if url.startswith("data:") and ";base64," in url:
                found.append(base64.b64decode(url.split(";base64,", 1)[1]))
        inline = node.get("inlineData") or node.get("inline_data")
        if family == "gemini" and isinstance(inline, dict) and "data" in inline:
            found.append(base64.b64decode(inline["data"]))
        for value in node.values():
            walk(value)

    walk(body.get("messages") if family == "openai" else body.get("contents"))
    return found
