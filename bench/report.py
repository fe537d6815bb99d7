"""bench/RESULTS.md: one table per scenario, the targets side by side, ratios, the machine and the command."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from bench import wrk
from bench.goals import targets_summary
from bench.install import WORK, litellm_version, nginx_binary, peer_version
from bench.runner import Results, Summary
from bench.scenarios import scenarios

MB = 2**20
LABELS = {
    "direct": "mock direct",
    "omnirelay": "omnirelay",
    "pyrelay": "pyrelay",
    "litellm": "LiteLLM",
    "portkey": "Portkey",
    "ccr": "claude-code-router",
    "nginx": "nginx",
}
GATEWAYS = ["omnirelay", "pyrelay", "litellm", "portkey", "ccr", "nginx"]


def _num(s: Summary | None, key: str) -> float | None:
    if s is None:
        return None
    v = s.get(key)
    if v is None:
        return None
    f = float(v)  # type: ignore[arg-type]
    return None if math.isnan(f) else f


def fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    if unit == "int":
        return f"{v:,.0f}"
    if unit == "rps":
        return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"
    if unit == "MB":
        return f"{v:.0f}"
    if unit == "us":
        return f"{v:.0f}"
    if abs(v) < 1:
        return f"{v:.3f}"
    return f"{v:.2f}" if abs(v) < 100 else f"{v:,.0f}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or a <= 0 or b <= 0:
        return "-"
    r = a / b
    if r >= 10:
        return f"{r:.1f}x"
    return f"{r:.2f}x" if r >= 0.1 else f"{r:.3f}x"


Row = tuple[str, Callable[[str], float | None], str]


def _rows(by_target: dict[str, Summary], stream: bool, chunks: int) -> list[Row]:
    direct = by_target.get("direct")

    def get(key: str) -> Callable[[str], float | None]:
        return lambda t: _num(by_target.get(t), key)

    def added(key: str) -> Callable[[str], float | None]:
        def f(t: str) -> float | None:
            a, d = _num(by_target.get(t), key), _num(direct, key)
            return None if a is None or d is None or t == "direct" else a - d

        return f

    def per_chunk(t: str) -> float | None:
        a = added("p50_ms")(t)
        return None if a is None else a * 1000.0 / max(1, chunks)

    def rss(field: str) -> Callable[[str], float | None]:
        def f(t: str) -> float | None:
            v = _num(by_target.get(t), field)
            return None if v is None else v / MB

        return f

    rows: list[Row] = [
        ("throughput (req/s)", get("rps"), "rps"),
        ("p50 latency (ms)", get("p50_ms"), "ms"),
        ("p90 latency (ms)", get("p90_ms"), "ms"),
        ("p99 latency (ms)", get("p99_ms"), "ms"),
        ("added p50 vs mock (ms)", added("p50_ms"), "ms"),
        ("added p99 vs mock (ms)", added("p99_ms"), "ms"),
    ]
    if stream:
        rows.append(("added p50 per chunk (µs)", per_chunk, "us"))
        rows.append(("time to first byte p50 (ms)", get("ttft_p50_ms"), "ms"))
    rows.append(("server CPU per request (µs)", get("cpu_us_per_request"), "us"))
    rows.append(("errors", get("errors"), "int"))
    rows.append(("peak RSS, process tree (MB)", rss("peak_rss"), "MB"))
    rows.append(("peak RSS, largest process (MB)", rss("peak_process_rss"), "MB"))
    return rows


def scenario_table(runs: dict[str, dict[str, Summary]], targets: list[str], stream: bool, chunks: int) -> list[str]:
    served = [t for t in GATEWAYS if t in targets and any(t in r for r in runs.values())]
    cols = ["direct", *served]
    ratio_cols = [t for t in served if t != "omnirelay" and "omnirelay" in served]
    head = ["load", "metric", *(LABELS[c] for c in cols), *(f"omnirelay/{LABELS[r]}" for r in ratio_cols)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for load, by_target in runs.items():
        for i, (name, value, unit) in enumerate(_rows(by_target, stream, chunks)):
            cells = [load if i == 0 else "", name, *(fmt(value(c), unit) for c in cols)]
            cells += [ratio(value("omnirelay"), value(r)) for r in ratio_cols]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def machine(load: tuple[float, float, float]) -> list[str]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return [
        f"- CPU: {os.cpu_count()} logical cores, {cpu}",
        f"- memory: {mem:.0f} GiB; kernel {platform.release()}; {platform.platform(terse=True)}",
        f"- load average when the run started: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
        "(a shared, noisy VM: compare ratios within one run, not absolute numbers across runs)",
        "- everything on one host over loopback: the mock upstream, each server, and the load generators "
        "share the same 2 cores",
    ]


def _pkg(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def versions(targets: list[str], used_wrk: bool) -> list[str]:
    out = [
        f"- Python {platform.python_version()}; omnirelay {_pkg('omnirelay')} (granian {_pkg('granian')}, "
        f"aiohttp {_pkg('aiohttp')}, msgspec {_pkg('msgspec')}, uvloop {_pkg('uvloop')})",
    ]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False, cwd=WORK.parent
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "omnirelay"], capture_output=True, text=True, check=False
        ).stdout.strip()
        out.append(f"- omnirelay commit {commit or '?'}{' + uncommitted changes' if dirty else ''}")
    except OSError:
        pass
    if "pyrelay" in targets:
        out.append("- pyrelay: bench/pyrelay.py on the same granian, aiohttp, msgspec and uvloop as omnirelay")
    if "litellm" in targets:
        out.append(f"- LiteLLM proxy {litellm_version(WORK / 'litellm-venv' / 'bin' / 'litellm')} (own venv)")
    if "portkey" in targets or "ccr" in targets:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
        out.append(f"- Node.js {node or '?'} (the Node peers; npm ci from bench/peers/*/package-lock.json)")
    if "portkey" in targets:
        out.append(
            f"- Portkey gateway {peer_version('portkey', '@portkey-ai/gateway')} "
            f"(@hono/node-server {peer_version('portkey', '@hono/node-server')})"
        )
    if "ccr" in targets:
        out.append(f"- claude-code-router {peer_version('claude-code-router', '@musistudio/claude-code-router')}")
    if "nginx" in targets and (ng := nginx_binary()):
        v = subprocess.run([ng, "-v"], capture_output=True, text=True, check=False).stderr.strip()
        out.append(f"- {v.removeprefix('nginx version: ')}")
    if used_wrk:
        out.append(f"- {wrk.version()}; SSE and open-loop load: bench/loadgen.py (aiohttp {_pkg('aiohttp')}, uvloop)")
    else:
        out.append("- load: bench/loadgen.py for every run (wrk was not available)")
    return out


def render(results: Results, command: str) -> str:
    s = results.settings
    lines = [
        "# omnirelay benchmark results",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(results.started_at))} by:",
        "",
        "```",
        command,
        "```",
        "",
        f"Each run: {s.duration:g} s measured after {s.warmup:g} s warm-up; {s.workers} worker(s) per server; "
        f"mock upstream streams {s.chunks} content chunks. Closed-loop runs (`c=N`) keep N requests in flight; "
        "open-loop runs (`rate=R/s`) send at a fixed rate whatever the server does, and measure latency from "
        'when each request was due (no coordinated omission). "added" = the target\'s percentile minus the same '
        "percentile calling the mock directly under the same load. Ratios are omnirelay divided by the other: "
        "above 1 is better for throughput, below 1 is better for latency and memory.",
        "",
        "## Machine",
        "",
        *machine(results.load_avg),
        "",
        "## Versions",
        "",
        *versions(s.targets, s.use_wrk),
        "",
        "## Configuration",
        "",
    ]
    for name, notes in results.notes.items():
        if notes:
            lines.append(f"- {LABELS.get(name, name)}: {'; '.join(notes)}")
    for sc in scenarios():
        if sc.key not in results.runs:
            continue
        lines += ["", f"## {sc.title.format(chunks=s.chunks)}", ""]
        passthrough = [LABELS[t] for t in sc.passthrough if t in s.targets]
        if passthrough:
            who = " and ".join(passthrough)
            lines += [
                f"{who} {'do' if len(passthrough) > 1 else 'does'} not translate this: "
                f"{'their columns pass' if len(passthrough) > 1 else 'its column passes'} "
                "the OpenAI stream through (reference only).",
                "",
            ]
        for name, why in sc.cannot:
            if name in s.targets:
                lines += [f"{LABELS[name]} cannot serve this scenario (no column): {why}.", ""]
        lines += scenario_table(results.runs[sc.key], s.targets, sc.stream, s.chunks)
    lines += [
        "",
        "## Memory",
        "",
        "Process tree: every process of the server summed (a granian or nginx supervisor and its workers; pages they "
        "share count once per process). Largest process: the biggest single one, a worker where there is a "
        "supervisor.",
        "",
        "| server | idle RSS, tree (MB) | peak RSS over the run, tree (MB) | peak RSS, largest process (MB) |",
        "|---|---|---|---|",
    ]
    for name, idle in results.idle_rss.items():
        tree, one = results.peak_rss.get(name, 0) / MB, results.peak_process_rss.get(name)
        lines.append(
            f"| {LABELS.get(name, name)} | {idle / MB:.0f} | {tree:.0f} | {'-' if one is None else f'{one / MB:.0f}'} |"
        )
    if results.soak:
        first, last = results.soak[0][1], results.soak[-1][1]
        peak = max(v for _t, v in results.soak)
        lines += [
            "",
            f"Soak (omnirelay, c=32 non-streaming, {results.soak[-1][0]:.0f} s): RSS {first / MB:.1f} MB at start, "
            f"{last / MB:.1f} MB at end, {peak / MB:.1f} MB peak ({(last - first) / max(first, 1) * 100:+.1f}%).",
        ]
    lines += ["", *targets_summary(results), ""]
    return "\n".join(lines)


def command_line() -> str:
    args = " ".join(sys.argv[1:])
    return f"make bench ARGS='{args}'" if args else "make bench"
