"""The benchmark harness runs end to end on a tiny load (omnirelay and the mock only; no LiteLLM, no nginx).

No timing assertions: this only proves `make bench` can produce its tables on this machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(240)
def test_bench_quick_produces_tables(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    argv = [sys.executable, "-m", "bench", "--quick", "--targets", "omnirelay", "--no-install"]
    argv += ["--duration", "0.5", "--warmup", "0.2", "--concurrency", "1,4", "--out", str(out)]
    env = {**os.environ, "BENCH_RUN_DIR": str(tmp_path / "run")}
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=220, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()
    titles = ("OpenAI-in -> OpenAI-up, non-streaming", "streaming (50 chunks)", "Anthropic-in (/v1/messages)")
    for title in (*titles, "Responses-in (/v1/responses) -> OpenAI-up, streaming (50 chunks)"):
        assert title in text
    assert "| load | metric | mock direct | omnirelay |" in text
    rows = [line for line in text.splitlines() if "| throughput (req/s) |" in line]
    assert len(rows) >= 4 * 2  # four scenarios, at least two closed-loop levels each
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        direct, omnirelay = cells[2], cells[3]
        assert re.fullmatch(r"[\d,.]+", direct), row
        assert re.fullmatch(r"[\d,.]+", omnirelay), row
        assert float(omnirelay.replace(",", "")) > 0, row
    errors = [line for line in text.splitlines() if "| errors |" in line]
    assert errors and all(line.rstrip(" |").endswith("| 0") for line in errors), errors
    assert "peak RSS" in text and "Machine" in text and "make bench ARGS=" in text
