"""The App as a worker of `omnirelay serve` (``server_process=True``, what create_app builds) tunes its process's
collector once started; an App embedded in another process (tests, bench.inproc without it) leaves it alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import asyncio, gc, json, sys
from omnirelay.config import parse_config
from omnirelay.server.app import App
cfg = parse_config({{"server": {server}, "state": {{"data_dir": sys.argv[1]}}}})
app = App(cfg, server_process={server_process})
before = gc.get_threshold()
async def main():
    await app.startup()
    after, frozen = gc.get_threshold(), gc.get_freeze_count()
    await app.shutdown()
    return after, frozen
after, frozen = asyncio.run(main())
print(json.dumps({{"before": before, "after": after, "frozen": frozen}}))
"""


def _started(tmp_path: Path, server: dict[str, int], server_process: bool) -> dict[str, list[int] | int]:
    code = PROBE.format(server=json.dumps(server), server_process=server_process)
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, list[int] | int] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(("server", "first"), [({}, 10_000), ({"gc_threshold": 2500}, 2500)])
def test_a_server_process_tunes_its_collector_once_started(tmp_path: Path, server: dict[str, int], first: int) -> None:
    seen = _started(tmp_path, server, server_process=True)
    before, after, frozen = seen["before"], seen["after"], seen["frozen"]
    assert isinstance(before, list) and isinstance(after, list) and isinstance(frozen, int)
    assert after == [first, before[1], before[2]]
    assert frozen > 10_000  # what start-up built: config, routes, schemas, modules


def test_an_embedded_app_leaves_the_collector_alone(tmp_path: Path) -> None:
    seen = _started(tmp_path, {}, server_process=False)
    assert seen["after"] == seen["before"] and seen["frozen"] == 0
