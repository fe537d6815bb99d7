"""The benchmark harness runs end to end on a tiny load: omnirelay and the mock, then (when installed) the Node
peers, Portkey and claude-code-router, in the scenarios each can serve. No LiteLLM, no nginx.

No timing assertions: this only proves `make bench` can produce its tables on this machine. No network either: the
Node peers are installed beforehand by `make pytest` (`python -m bench.install peers`, npm ci from the pinned locks
under bench/peers/); without them their test is skipped, saying how to install them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.install import peer_installed

ROOT = Path(__file__).resolve().parent.parent
TITLES = {
    "openai": "OpenAI-in -> OpenAI-up, non-streaming",
    "stream": "OpenAI-in -> OpenAI-up, streaming (50 chunks)",
    "anthropic": "Anthropic-in (/v1/messages) -> OpenAI-up, streaming (50 chunks)",
    "responses": "Responses-in (/v1/responses) -> OpenAI-up, streaming (50 chunks)",
}


def _quick(tmp_path: Path, targets: str) -> str:
    out = tmp_path / "RESULTS.md"
    argv = [sys.executable, "-m", "bench", "--quick", "--targets", targets, "--no-install"]
    argv += ["--duration", "0.5", "--warmup", "0.2", "--concurrency", "1,4", "--out", str(out)]
    env = {**os.environ, "BENCH_RUN_DIR": str(tmp_path / "run")}
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=280, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out.read_text()


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def _throughputs(section: str, column: str) -> list[float]:
    """The throughput cells of ``column`` in a scenario's table (one per load level)."""
    header = next(line for line in section.splitlines() if line.startswith("| load | metric |"))
    names = [c.strip() for c in header.strip("|").split("|")]
    at = names.index(column)
    values = []
    for line in section.splitlines():
        if "| throughput (req/s) |" in line:
            cell = [c.strip() for c in line.strip("|").split("|")][at]
            assert re.fullmatch(r"[\d,.]+", cell), line
            values.append(float(cell.replace(",", "")))
    return values


def _no_errors(section: str) -> None:
    errors = [line for line in section.splitlines() if "| errors |" in line]
    assert errors, section
    for line in errors:
        cells = [c.strip() for c in line.strip("|").split("|")][2:]
        assert all(c in ("0", "-") for c in cells if not c.endswith("x")), line


@pytest.mark.timeout(300)
def test_bench_quick_produces_tables(tmp_path: Path) -> None:
    text = _quick(tmp_path, "omnirelay")
    for title in TITLES.values():
        section = _section(text, title)
        assert "| load | metric | mock direct | omnirelay |" in section
        rows = _throughputs(section, "omnirelay")
        assert len(rows) >= 2 and all(v > 0 for v in rows), section  # at least two closed-loop levels each
        assert all(v > 0 for v in _throughputs(section, "mock direct"))
        _no_errors(section)
    assert "Machine" in text and "make bench ARGS=" in text
    _worker_within_tree(_section(text, "Memory"))
    assert "## Targets (issue 16) in this run" in text
    assert "- peak RSS per worker (largest process): " in text


def _worker_within_tree(memory: str) -> None:
    """omnirelay's memory row: a worker's own peak is measured, above zero and no more than the whole tree's."""
    row = next(line for line in memory.splitlines() if line.startswith("| omnirelay |"))
    _idle, tree, largest = (float(c) for c in [c.strip() for c in row.strip("|").split("|")][1:])
    assert 0 < largest <= tree, row


@pytest.mark.timeout(300)
def test_bench_quick_with_the_node_peers(tmp_path: Path) -> None:
    missing = [name for name in ("portkey", "claude-code-router") if peer_installed(name) is None]
    if missing:
        pytest.skip(
            f"Node peers not installed ({', '.join(missing)}): `python -m bench.install peers` (npm ci from "
            "bench/peers/*/package-lock.json; `make pytest` does it) needs the npm registry once"
        )
    text = _quick(tmp_path, "omnirelay,portkey,ccr")
    # Portkey serves the OpenAI-in scenarios, claude-code-router only Anthropic-in; each says why not the others.
    for key, served in (("openai", "Portkey"), ("stream", "Portkey"), ("anthropic", "claude-code-router")):
        section = _section(text, TITLES[key])
        assert all(v > 0 for v in _throughputs(section, served)), section
        header = next(line for line in section.splitlines() if line.startswith("| load | metric |"))
        assert header.rstrip().endswith(f"| omnirelay/{served} |"), header
        ratios = [line for line in section.splitlines() if "| throughput (req/s) |" in line]
        assert all(re.search(r"\| [\d.]+x \|$", line) for line in ratios), ratios  # omnirelay/peer
        _no_errors(section)
    for key, absent in (("anthropic", "Portkey"), ("responses", "Portkey"), ("openai", "claude-code-router")):
        section = _section(text, TITLES[key])
        assert f"{absent} cannot serve this scenario (no column): " in section
        header = next(line for line in section.splitlines() if line.startswith("| load | metric |"))
        assert f"| {absent} |" not in header
    assert "Portkey gateway 1.15.2" in text and "claude-code-router 1.0.73" in text


@pytest.mark.timeout(200)
def test_ablation_reports_every_variant_and_the_floor() -> None:
    """``python -m bench.ablate`` on a tiny load: a CPU figure for the floor and each variant in both scenarios."""
    argv = [sys.executable, "-m", "bench.ablate", "--rounds", "2", "--requests", "60", "--concurrency", "4"]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = re.findall(r"^(openai|stream) +c=4 +(\S+) +min +([\d.]+) +median +([\d.]+)", proc.stdout, re.M)
    seen = {(scenario, variant) for scenario, variant, _min, _median in rows}
    variants = ("floor", "full", "no-limits", "no-gate", "python-gc")
    assert seen == {(s, v) for s in ("openai", "stream") for v in variants}, proc.stdout
    assert all(0 < float(low) <= float(median) for *_names, low, median in rows), proc.stdout


def test_ablation_patches_are_undone() -> None:
    """A variant's no-ops last for its round only: the gate's own methods are back afterwards."""
    from bench.ablate import patched

    class Gate:
        def admit(self) -> str:
            return "real"

    gate = Gate()
    with patched(gate, "admit", lambda: "no-op"):
        assert gate.admit() == "no-op"
    assert gate.admit() == "real" and "admit" not in vars(gate)


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed (Debian's valgrind package)")
def test_instruction_counts_are_read_from_callgrind() -> None:
    # The smallest run: one scenario, two short runs under callgrind. The count is not judged (no cost
    # assertions in the suite; at 20 requests warm-up still weighs several percent); that it is read is.
    cmd = [sys.executable, "-m", "bench.instructions", "--scenarios", "openai", "--requests", "20"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("openai"))
    found = re.fullmatch(r"openai\s+([\d,]+)\s*", row)
    assert found is not None, row
    assert int(found.group(1).replace(",", "")) > 10_000  # a request through the App is thousands of lines of Python
