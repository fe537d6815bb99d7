"""Issue 16's targets, checked against one run: every comparison is a ratio between targets measured in the same
run (interleaved), never against numbers from another run."""

from __future__ import annotations

import math

from bench.runner import Results, Summary

MB = 2**20
CLOSED = ("c=1", "c=32", "c=256")


def _num(s: Summary | None, key: str) -> float | None:
    if s is None or s.get(key) is None:
        return None
    f = float(s[key])  # type: ignore[arg-type]
    return None if math.isnan(f) else f


def _ratio(results: Results, scenario: str, load: str, key: str, a: str, b: str) -> float | None:
    by_target = results.runs.get(scenario, {}).get(load, {})
    x, y = _num(by_target.get(a), key), _num(by_target.get(b), key)
    return None if x is None or y is None or y <= 0 else x / y


def _line(what: str, got: float | None, goal: float, at_least: bool, unit: str = "x") -> str:
    if got is None:
        return f"- {what}: not measured in this run (goal {'>=' if at_least else '<='} {goal:g}{unit})"
    held = got >= goal if at_least else got <= goal
    shown = f"{got:.2f}{unit}" if unit == "x" else f"{got:.0f} {unit.strip()}"
    return f"- {what}: {shown} (goal {'>=' if at_least else '<='} {goal:g}{unit}): {'met' if held else 'NOT met'}"


def targets_summary(results: Results) -> list[str]:
    if "omnirelay" not in results.settings.targets:
        return []
    chosen = results.settings.targets
    out = ["## Targets (issue 16) in this run", ""]
    for load in ("c=32", "c=256"):
        for other, goal in (("litellm", 30.0), ("portkey", 4.0)):
            if other in chosen:
                got = _ratio(results, "openai", load, "rps", "omnirelay", other)
                out.append(_line(f"non-streaming throughput at {load}, omnirelay/{other}", got, goal, True))
    if "pyrelay" in chosen:
        got = _ratio(results, "openai", "c=1", "rps", "omnirelay", "pyrelay")
        out.append(_line("non-streaming throughput at c=1, omnirelay/pyrelay", got, 0.97, True))
        for load in CLOSED:
            got = _ratio(results, "stream", load, "cpu_us_per_request", "omnirelay", "pyrelay")
            out.append(_line(f"same-format stream CPU per stream at {load}, omnirelay/pyrelay", got, 1.25, False))
        for scenario, title in (("anthropic", "Anthropic-in"), ("responses", "Responses-in")):
            for load in CLOSED:
                # pyrelay's column in the translated scenarios is its same-format OpenAI stream.
                got = _ratio(results, scenario, load, "cpu_us_per_request", "omnirelay", "pyrelay")
                out.append(_line(f"{title} stream CPU at {load}, omnirelay / pyrelay same-format", got, 1.5, False))
    stream = results.runs.get("stream", {}).get("c=1", {})
    a, d = _num(stream.get("omnirelay"), "p50_ms"), _num(stream.get("direct"), "p50_ms")
    per_chunk = None if a is None or d is None else (a - d) * 1000.0 / max(1, results.settings.chunks)
    out.append(_line("same-format stream added p50 per chunk at c=1", per_chunk, 50, False, " µs"))
    two = _num(results.workers2.get("omnirelay"), "rps")
    one = _num(results.runs.get("openai", {}).get("c=32", {}).get("omnirelay"), "rps")
    out.append(
        _line("--workers 2 non-streaming throughput at c=32 / 1 worker", two / one if two and one else None, 1.6, True)
    )
    worker, tree = results.peak_process_rss.get("omnirelay"), results.peak_rss.get("omnirelay")
    if worker:
        tree_note = f" (the whole tree with granian's supervisor: {tree / MB:.0f} MB)" if tree else ""
        out.append(_line("peak RSS per worker (largest process)", worker / MB, 100, False, " MB") + tree_note)
    elif tree:  # results saved before the per-process peak was kept
        per_worker = tree / MB / max(1, results.settings.workers)
        out.append(_line("peak RSS per worker (process tree / workers)", per_worker, 100, False, " MB"))
    if results.soak:
        first, last = results.soak[0][1], results.soak[-1][1]
        change = (last - first) / max(first, 1) * 100
        held = "met" if abs(change) <= 10 else "NOT met"
        seconds = results.soak[-1][0]
        out.append(f"- RSS change over the {seconds:.0f} s soak: {change:+.1f} % (goal: flat within 10 %): {held}")
    return out
