"""Closed-loop non-streaming load with wrk: a generated Lua script sets the POST body and headers and prints
exact percentiles as one JSON line from wrk's ``done`` hook."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

MARK = "BENCHJSON "

_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d}\n',
    "BENCHJSON ", summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""


def _lua_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def write_script(path: Path, body: bytes, headers: dict[str, str]) -> Path:
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(body.decode())}"]
    for name, value in {"Content-Type": "application/json", **headers}.items():
        lines.append(f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}")
    path.write_text("\n".join(lines) + "\n" + _DONE)
    return path


def available() -> bool:
    return shutil.which("wrk") is not None


def version() -> str:
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0] if first else "unknown"


def run(url: str, script: Path, connections: int, duration: float, warmup: float) -> dict[str, object]:
    threads = max(1, min(2, connections))
    base = ["wrk", f"-t{threads}", f"-c{connections}", "--timeout", "15s", "-s", str(script)]
    if warmup > 0:
        subprocess.run([*base, f"-d{max(1, round(warmup))}s", url], capture_output=True, check=False)
    out = subprocess.run([*base, f"-d{max(1, round(duration))}s", url], capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith(MARK):
            raw = json.loads(line[len(MARK) :])
            break
    else:
        raise RuntimeError(f"wrk printed no result (exit {out.returncode}):\n{out.stdout}\n{out.stderr}")
    errors = {k: int(raw[k]) for k in ("connect", "read", "write", "status", "timeout") if raw[k]}
    elapsed = raw["duration_us"] / 1e6
    failed = int(raw["status"]) + int(raw["timeout"]) + int(raw["read"]) + int(raw["write"])
    ok = max(0, int(raw["requests"]) - int(raw["status"]))
    return {
        "requests": ok,
        "errors": failed + int(raw["connect"]),
        "error_kinds": errors,
        "elapsed_s": elapsed,
        "rps": ok / elapsed if elapsed > 0 else 0.0,
        "p50_ms": raw["p50_us"] / 1000.0,
        "p90_ms": raw["p90_us"] / 1000.0,
        "p99_ms": raw["p99_us"] / 1000.0,
        "ttft_p50_ms": None,
        "ttft_p99_ms": None,
        "events_per_stream": None,
    }
