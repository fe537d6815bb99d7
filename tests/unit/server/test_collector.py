"""server/collector.py: what a worker's collector looks like after start-up. Each case runs in a fresh
interpreter, since freezing and thresholds are the whole process's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from omnirelay.config import ConfigError, parse_config

PROBE = """
import gc, json
from omnirelay.server.collector import settle_after_startup
kept = [[i] for i in range(1000)]  # live at "start-up": must end up frozen
before = gc.get_threshold()
settle_after_startup({threshold})
print(json.dumps({{"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count(),
                   "tracked": len(gc.get_objects())}}))
"""


def _probe(threshold: int) -> dict[str, list[int] | int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(threshold=threshold)], capture_output=True, text=True, check=True
    )
    result: dict[str, list[int] | int] = json.loads(out.stdout)
    return result


def test_the_first_threshold_is_raised_and_start_up_is_frozen() -> None:
    seen = _probe(10_000)
    before, after = seen["before"], seen["after"]
    assert isinstance(before, list) and isinstance(after, list)
    assert after == [10_000, before[1], before[2]]  # the older generations keep Python's multipliers
    frozen, tracked = seen["frozen"], seen["tracked"]
    assert isinstance(frozen, int) and isinstance(tracked, int)
    assert frozen >= 1000 and tracked < frozen  # the 1,000 live lists and the modules: out of the collector's sight


def test_zero_leaves_pythons_threshold() -> None:
    seen = _probe(0)
    assert seen["after"] == seen["before"]
    frozen = seen["frozen"]
    assert isinstance(frozen, int) and frozen >= 1000


def test_a_negative_threshold_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"server\.gc_threshold must be 0"):
        parse_config({"upstreams": [], "server": {"gc_threshold": -1}})
    assert parse_config({"upstreams": []}).server.gc_threshold == 10_000
