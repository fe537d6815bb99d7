"""``python -m bench.instructions``: instructions per request of omnirelay's App, counted by valgrind's callgrind.

Timings on a shared VM swing by a third from one run to the next (bench/CHANGES.md); an instruction count does
not: the same code on the same input counts the same within about one percent, whatever the other core
does.
So a change to the hot path is compared here by what it costs in instructions, beside the timed runs.

Each scenario runs ``python -m bench.inproc`` twice under callgrind, with ``--requests`` N and 3N (streaming
scenarios: a fifth of that in streams); the difference of the two totals, over the difference in requests, is
what one request costs, start-up and the warm-up cancelling out. The mock upstream runs in its own process,
outside valgrind. ``--trees`` compares checkouts (e.g. ``git worktree add ../base main~1``): each tree's own
omnirelay and bench, this interpreter.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.scenarios import scenarios

ROOT = Path(__file__).resolve().parent.parent
_COLLECTED = re.compile(rb"Collected : (\d+)")


def collected(tree: Path, scenario: str, requests: int) -> int:
    """Instructions callgrind counted in one ``bench.inproc`` run of ``scenario`` in ``tree``."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={tmp}/out",
            sys.executable,
            "-m",
            "bench.inproc",
            "--scenarios",
            scenario,
            "--requests",
            str(requests),
        ]
        env = {**os.environ, "PYTHONPATH": str(tree)}
        done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, check=False)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"callgrind run failed in {tree} ({scenario}):\n{done.stderr.decode()[-2000:]}")
    return int(found.group(1))


def _served(requests: int, streams: bool) -> int:
    """What ``bench.inproc --requests N`` serves: N requests, or a fifth as many streams."""
    return max(1, requests // 5) if streams else requests


def per_request(tree: Path, scenario: str, requests: int) -> float:
    """Instructions per request (per stream for a streaming scenario)."""
    streams = next(s.stream for s in scenarios() if s.key == scenario)
    small, large = collected(tree, scenario, requests), collected(tree, scenario, 3 * requests)
    served = _served(3 * requests, streams) - _served(requests, streams)
    return (large - small) / served


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenarios", default="openai,stream,anthropic,responses")
    p.add_argument("--requests", type=int, default=500, help="N: runs of N and 3N requests (streams: a fifth)")
    p.add_argument("--trees", default=str(ROOT), help="comma-separated checkouts to compare, the first the base")
    args = p.parse_args()
    trees = [Path(t).resolve() for t in args.trees.split(",")]
    print(f"{'scenario':10s} " + " ".join(f"{t.name:>14s}" for t in trees) + "   (instructions per request)")
    for scenario in args.scenarios.split(","):
        counts = [per_request(tree, scenario, args.requests) for tree in trees]
        changes = " ".join(f"{(c / counts[0] - 1) * 100:+6.1f}%" for c in counts[1:])
        print(f"{scenario:10s} " + " ".join(f"{c:14,.0f}" for c in counts) + f"   {changes}", flush=True)


if __name__ == "__main__":
    main()
