"""Orchestration: start the mock and every target, drive each with the same load, collect the numbers.

Targets are interleaved within each load level (direct, omnirelay, pyrelay, LiteLLM, Portkey, claude-code-router,
nginx, then the next level) so a noisy neighbour on this shared machine hits them all alike; comparisons are ratios
within one run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench import wrk
from bench.install import RUN, ensure_apt, log
from bench.procs import RssSampler, tree_cpu_seconds, tree_rss
from bench.scenarios import Request, Scenario, scenarios
from bench.targets import (
    CLIENT_KEY,
    ROOT,
    CCRTarget,
    LiteLLMTarget,
    MockTarget,
    NginxTarget,
    OmnirelayTarget,
    PortkeyTarget,
    PyRelayTarget,
    Target,
)

Summary = dict[str, object]


@dataclass
class Settings:
    duration: float
    warmup: float
    concurrency: list[int]
    rates: list[float]
    stream_rates: list[float]
    chunks: int
    workers: int
    targets: list[str]  # among omnirelay, pyrelay, litellm, portkey, ccr, nginx (the mock "direct" always runs)
    scenarios: list[str]
    state: bool
    install: bool
    use_wrk: bool = True
    metrics: bool = True  # omnirelay's metrics.enabled
    workers_check: bool = False  # after the scenarios: omnirelay and pyrelay again with 2 workers, openai at c=32


@dataclass
class Load:
    label: str  # "c=32" or "rate=1000/s"
    concurrency: int = 0
    rate: float = 0.0


@dataclass
class Results:
    settings: Settings
    started_at: float = field(default_factory=time.time)
    load_avg: tuple[float, float, float] = field(default_factory=os.getloadavg)
    # scenario key -> load label -> target name -> summary
    runs: dict[str, dict[str, dict[str, Summary]]] = field(default_factory=dict)
    idle_rss: dict[str, int] = field(default_factory=dict)
    peak_rss: dict[str, int] = field(default_factory=dict)
    peak_process_rss: dict[str, int] = field(default_factory=dict)  # the largest single process (a worker)
    notes: dict[str, list[str]] = field(default_factory=dict)
    soak: list[tuple[float, int]] = field(default_factory=list)
    workers2: dict[str, Summary] = field(default_factory=dict)  # target -> openai c=32 with --workers 2


def loads_for(scenario: Scenario, settings: Settings) -> list[Load]:
    loads = [Load(f"c={c}", concurrency=c) for c in settings.concurrency]
    if scenario.open_loop:
        for r in settings.stream_rates if scenario.stream else settings.rates:
            loads.append(Load(f"rate={r:g}/s", rate=r))
    return loads


def python_load(url: str, req: Request, stream: bool, load: Load, settings: Settings) -> Summary:
    body_file = RUN / "bodies" / f"{zlib.crc32(req.body):08x}.json"
    body_file.parent.mkdir(parents=True, exist_ok=True)
    body_file.write_bytes(req.body)
    argv = [sys.executable, "-m", "bench.loadgen", "--url", url, "--body-file", str(body_file)]
    argv += ["--headers", json.dumps(req.headers), "--duration", str(settings.duration)]
    argv += ["--warmup", str(settings.warmup), "--terminator", req.terminator or "[DONE]"]
    argv += ["--rate", str(load.rate)] if load.rate else ["--concurrency", str(load.concurrency)]
    if stream:
        argv.append("--stream")
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        raise RuntimeError(f"load client failed ({out.returncode}):\n{out.stderr[-3000:]}")
    result: Summary = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def drive(target: Target, scenario: Scenario, load: Load, settings: Settings) -> Summary:
    req = scenario.request_for(target.name)
    if target.key != CLIENT_KEY or target.headers:
        headers = {k: v.replace(CLIENT_KEY, target.key) for k, v in req.headers.items()}
        req = replace(req, headers={**headers, **target.headers})
    url = target.url + req.path
    if not scenario.stream and not load.rate and settings.use_wrk:
        script = wrk.write_script(RUN / f"wrk-{scenario.key}-{target.name}.lua", req.body, req.headers)
        return wrk.run(url, script, load.concurrency, settings.duration, settings.warmup)
    return python_load(url, req, scenario.stream, load, settings)


def _fmt(s: Summary) -> str:
    return (
        f"{float(s['rps']):9.1f} req/s  p50 {float(s['p50_ms']):7.3f}  p99 {float(s['p99_ms']):8.3f} ms"  # type: ignore[arg-type]
        f"  errors {s['errors']}"
    )


def start_target(name: str, settings: Settings, mock: MockTarget) -> Target:
    log(f"starting {name}")
    t0 = time.monotonic()
    target: Target
    if name == "omnirelay":
        target = OmnirelayTarget("omnirelay").start(mock.url, settings.workers, settings.state, settings.metrics)
    elif name == "pyrelay":
        target = PyRelayTarget("pyrelay").start(mock.url, settings.workers)
    elif name == "litellm":
        target = LiteLLMTarget("litellm").start(mock.url, settings.workers)
    elif name == "portkey":
        target = PortkeyTarget("portkey").start(mock.url, settings.install)
    elif name == "ccr":
        target = CCRTarget("ccr").start(mock.url, settings.install)
    elif name == "nginx":
        target = NginxTarget("nginx").start(mock.url, settings.workers)
    else:
        raise ValueError(f"unknown target {name!r}")
    log(f"{name} up in {time.monotonic() - t0:.1f}s")
    return target


def start_targets(settings: Settings, mock: MockTarget, targets: list[Target]) -> None:
    """Into ``targets`` one by one, so that the caller stops those already up if a later one fails to start."""
    targets.append(Target("direct", port=mock.port))
    for name in settings.targets:
        targets.append(start_target(name, settings, mock))


def check_targets(targets: list[Target], chosen: list[Scenario], settings: Settings) -> None:
    """One request per scenario and target before any timing: a misconfigured target fails loudly here."""
    probe = replace(settings, duration=0.2, warmup=0.0, use_wrk=False)
    for scenario in chosen:
        for target in targets:
            if not scenario.serves(target.name):
                continue
            res = drive(target, scenario, Load("probe", concurrency=1), probe)
            if not res["requests"] or res["errors"]:
                raise RuntimeError(f"{target.name} failed the {scenario.key} probe: {res}\n{_log_of(target)}")


def _log_of(target: Target) -> str:
    return target.service.log_tail() if target.service is not None else ""


def run_benchmark(settings: Settings, soak_seconds: float = 0.0) -> Results:
    tools = ["nginx"] if "nginx" in settings.targets else []
    if settings.use_wrk:
        tools.append("wrk")
    if settings.install and tools:
        ensure_apt(tools)
    if settings.use_wrk and not wrk.available():
        log("wrk is not installed: closed-loop non-streaming load uses the Python client instead")
        settings.use_wrk = False
    results = Results(settings)
    chosen = [s for s in scenarios() if s.key in settings.scenarios]
    mock = MockTarget("mock").start(settings.chunks)
    targets: list[Target] = []
    try:
        start_targets(settings, mock, targets)
        for t in targets:
            results.notes[t.name] = t.notes
            if t.root_pid is not None:
                time.sleep(0.5)
                results.idle_rss[t.name] = tree_rss(t.root_pid)
        check_targets(targets, chosen, settings)
        for scenario in chosen:
            by_load = results.runs.setdefault(scenario.key, {})
            for load in loads_for(scenario, settings):
                for i, target in enumerate(targets):
                    if not scenario.serves(target.name):
                        continue
                    log(f"{scenario.key:10s} {load.label:12s} {target.name:10s} ...")
                    res = _measured(target, scenario, load, settings, results)
                    by_load.setdefault(load.label, {})[target.name] = res
                    log(f"{scenario.key:10s} {load.label:12s} {target.name:10s} {_fmt(res)}")
                    if res.get("still_busy"):
                        # Still serving a backlog the client abandoned: start afresh, or the next run pays.
                        log(f"restarting {target.name}: still busy after the load stopped")
                        target.stop()
                        targets[i] = start_target(target.name, settings, mock)
                        results.notes[target.name].append(f"restarted after overload at {scenario.key} {load.label}")
        if soak_seconds > 0:
            omni = next((t for t in targets if t.name == "omnirelay"), None)
            if omni is not None:
                results.soak = soak(omni, chosen[0] if chosen else scenarios()[0], settings, soak_seconds)
        if settings.workers_check:  # last: it stops the 1-worker omnirelay and pyrelay
            workers_check(targets, chosen, settings, mock, results)
    finally:
        for t in reversed(targets):
            t.stop()
        mock.stop()
    return results


def workers_check(
    targets: list[Target], chosen: list[Scenario], settings: Settings, mock: MockTarget, results: Results
) -> None:
    """omnirelay and pyrelay once more with 2 workers each, non-streaming at c=32: how throughput scales with a
    second worker on this machine. The 1-worker servers are stopped first, so only the 2-worker ones run."""
    openai = next((s for s in chosen if s.key == "openai"), None)
    names = [t.name for t in targets if t.name in ("omnirelay", "pyrelay")]
    if openai is None or not names:
        return
    for t in targets:
        if t.name in names:
            t.stop()
    two = replace(settings, workers=2)
    for name in names:
        target = start_target(name, two, mock)
        try:
            time.sleep(1.0)
            res = _measured(target, openai, Load("c=32", concurrency=32), two, Results(two))
            results.workers2[name] = res
            log(f"openai     c=32 workers=2 {name:10s} {_fmt(res)}")
        finally:
            target.stop()


def _measured(target: Target, scenario: Scenario, load: Load, settings: Settings, results: Results) -> Summary:
    if settings.warmup > 0:
        drive(target, scenario, load, replace(settings, duration=settings.warmup, warmup=0.0))
    measured = replace(settings, warmup=0.0)
    if target.root_pid is None:
        return drive(target, scenario, load, measured)
    cpu0 = tree_cpu_seconds(target.root_pid)
    with RssSampler(target.root_pid) as sampler:
        res = drive(target, scenario, load, measured)
    cpu = tree_cpu_seconds(target.root_pid) - cpu0
    done = int(res["requests"]) + int(res["errors"])  # type: ignore[call-overload]
    res["cpu_us_per_request"] = cpu * 1e6 / done if done else None
    res["peak_rss"] = sampler.peak
    res["peak_process_rss"] = sampler.peak_process
    results.peak_rss[target.name] = max(results.peak_rss.get(target.name, 0), sampler.peak)
    most = max(results.peak_process_rss.get(target.name, 0), sampler.peak_process)
    results.peak_process_rss[target.name] = most
    res["still_busy"] = not wait_idle(target.root_pid)
    return res


def wait_idle(root: int, limit: float = 20.0, busy_fraction: float = 0.1) -> bool:
    """Wait until the server tree stops using CPU: an overloaded server may still be chewing on requests the
    client gave up on, which would be charged to the next run. False if it is still busy after ``limit``."""
    t0 = time.monotonic()
    last = tree_cpu_seconds(root)
    while time.monotonic() - t0 < limit:
        time.sleep(0.5)
        now = tree_cpu_seconds(root)
        if now - last < 0.5 * busy_fraction:
            return True
        last = now
    return False


def soak(target: Target, scenario: Scenario, settings: Settings, seconds: float) -> list[tuple[float, int]]:
    """Steady load at c=32 for ``seconds``; the tree's RSS after each slice shows whether memory stays flat."""
    assert target.root_pid is not None
    samples: list[tuple[float, int]] = [(0.0, tree_rss(target.root_pid))]
    t0 = time.monotonic()
    slice_settings = replace(settings, duration=30.0, warmup=0.0)
    while time.monotonic() - t0 < seconds:
        drive(target, scenario, Load("soak", concurrency=32), slice_settings)
        samples.append((time.monotonic() - t0, tree_rss(target.root_pid)))
        log(f"soak {samples[-1][0]:6.0f}s rss {samples[-1][1] / 2**20:.1f} MB")
    return samples


def save_raw(results: Results, path: Path, command: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": command,
        "started_at": results.started_at,
        "load_avg": results.load_avg,
        "settings": results.settings.__dict__,
        "runs": results.runs,
        "idle_rss": results.idle_rss,
        "peak_rss": results.peak_rss,
        "peak_process_rss": results.peak_process_rss,
        "notes": results.notes,
        "soak": results.soak,
        "workers2": results.workers2,
    }
    path.write_text(json.dumps(payload, indent=1, default=str))


def load_raw(path: Path) -> tuple[Results, str]:
    """Results saved by ``save_raw`` (to re-render RESULTS.md without re-running), and the command that ran."""
    raw = json.loads(path.read_text())
    results = Results(Settings(**raw["settings"]), started_at=raw["started_at"], load_avg=tuple(raw["load_avg"]))
    results.runs, results.idle_rss, results.peak_rss = raw["runs"], raw["idle_rss"], raw["peak_rss"]
    results.peak_process_rss = raw.get("peak_process_rss", {})
    results.notes = raw["notes"]
    results.soak = [(t, v) for t, v in raw["soak"]]
    results.workers2 = raw.get("workers2", {})
    return results, str(raw["command"])
