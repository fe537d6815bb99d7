"""``python -m bench --profile``: where omnirelay's worker spends its time under load.

py-spy samples the whole omnirelay process tree (``--subprocesses``, native frames off, idle excluded) while
the usual load runs against it; the collapsed stacks are summarised here as self time per function and
inclusive time per omnirelay/library module, and kept in ``bench/.work/profile/`` (any flame graph tool reads
the collapsed ``.txt`` files).
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from bench.install import RUN, ensure_apt, ensure_pyspy, log
from bench.runner import Load, Settings, drive
from bench.scenarios import scenarios
from bench.targets import MockTarget, OmnirelayTarget

OUT = RUN / "profile"


def _frames(stack: str) -> list[str]:
    return stack.split(";")


def summarise(collapsed: Path, top: int = 25) -> str:
    """Self and inclusive sample shares from py-spy's collapsed ("raw") output."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = _frames(stack)
        total += count
        self_time[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        buckets[_bucket(frames)] += count
    if total == 0:
        return "no samples\n"
    lines = [f"{total} samples", "", "by component (innermost recognised frame):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in buckets.most_common()]
    lines += ["", f"top {top} self time:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in self_time.most_common(top)]
    lines += ["", f"top {top} inclusive (omnirelay frames):"]
    ours = [(f, n) for f, n in inclusive.most_common() if "omnirelay/" in f]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in ours[:top]]
    return "\n".join(lines) + "\n"


COMPONENTS = [
    ("omnirelay/state/", "state (keys, limits, usage DB)"),
    ("omnirelay/pipeline/gate", "gate"),
    ("omnirelay/pipeline/", "call pipeline (own code)"),
    ("omnirelay/protocols/", "inbound protocol (parse/render)"),
    ("omnirelay/providers/", "provider (build/parse upstream)"),
    ("omnirelay/wire/", "wire schemas / SSE"),
    ("omnirelay/core/", "core"),
    ("omnirelay/routing/", "routing"),
    ("omnirelay/upstream/", "upstream client + executor (own code)"),
    ("omnirelay/server/relay", "relay (own code)"),
    ("omnirelay/server/", "server/asgi (own code)"),
    ("aiohttp/", "aiohttp client"),
    ("msgspec", "msgspec"),
    ("logging/", "logging"),
    ("asyncio/", "asyncio"),
    ("sqlite", "sqlite"),
]


def _bucket(frames: list[str]) -> str:
    for frame in reversed(frames):
        for needle, name in COMPONENTS:
            if needle in frame:
                return name
    return "other (granian, interpreter, uvloop)"


def run_profile(settings: Settings, seconds: float = 20.0) -> None:
    pyspy = ensure_pyspy()
    if settings.install and settings.use_wrk:
        ensure_apt(["wrk"])
    OUT.mkdir(parents=True, exist_ok=True)
    mock = MockTarget("mock").start(settings.chunks)
    omni = OmnirelayTarget("omnirelay")
    try:
        omni.start(mock.url, settings.workers, settings.state)
        assert omni.root_pid is not None
        for sc in scenarios():
            if sc.key not in settings.scenarios:
                continue
            raw = OUT / f"{sc.key}.txt"
            run_settings = replace(settings, duration=seconds, warmup=1.0)
            argv = [str(pyspy), "record", "--pid", str(omni.root_pid), "--subprocesses", "--rate", "250"]
            for fmt, path in (("raw", raw),):
                spy = subprocess.Popen(
                    [*argv, "--format", fmt, "--output", str(path), "--duration", str(int(seconds) + 1)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                time.sleep(0.5)
                res = drive(omni, sc, Load("c=32", concurrency=32), run_settings)
                _out, err = spy.communicate(timeout=seconds + 30)
                if spy.returncode != 0:
                    log(f"py-spy failed: {err.decode(errors='replace')[-2000:]}")
                log(f"profile {sc.key} ({fmt}): {res['rps']:.0f} req/s p50 {res['p50_ms']:.2f} ms")
            summary = summarise(raw)
            (OUT / f"{sc.key}-summary.txt").write_text(summary)
            print(f"\n=== {sc.key} ===\n{summary}")
    finally:
        omni.stop()
        mock.stop()
