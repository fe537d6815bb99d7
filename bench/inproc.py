"""``python -m bench.inproc``: CPU per request of omnirelay's App, driven in-process (no HTTP server, no load
generator sharing the cores), against the usual mock upstream in its own process.

Steadier than the HTTP runs on a shared machine, so it is what bench/CHANGES.md compares before and after a
change: ``process_time`` of this process per request (the gateway's own work plus its aiohttp client). With
``--profile`` it prints cProfile's top functions instead.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import uvloop
import yaml

from bench.procs import Service, free_port
from bench.scenarios import Request, scenarios
from bench.targets import UPSTREAM_KEY, create_key


async def _one(app: Any, req: Request, key: str) -> int:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(req.body)).encode())]
    for name, value in req.headers.items():
        if name.lower() in ("authorization", "x-api-key"):
            value = value.replace(value.split()[-1], key)
        headers.append((name.lower().encode(), value.encode()))
    scope = {"type": "http", "method": "POST", "path": req.path, "headers": headers, "query_string": b""}
    sent = False
    gone = asyncio.Event()
    size = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": req.body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal size
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"status {message['status']}")
        size += len(message.get("body", b""))

    await app(scope, receive, send)
    gone.set()
    return size


async def drive_in_process(app: Any, req: Request, key: str, concurrency: int, count: int) -> None:
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await _one(app, req, key)

    # One deadline for the whole run (not one per request, which would cost a timer each): a hang fails loudly.
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), timeout=300)


async def started_app(args: argparse.Namespace, upstream: str, workdir: Path, metrics: bool) -> tuple[Any, str]:
    """A started App over the mock with a key of its own (limits and credit checked on every request)."""
    from omnirelay.config import load_config
    from omnirelay.server.app import App

    config_path = workdir / "omnirelay.yaml"
    server: dict[str, Any] = {"host": "127.0.0.1", "port": 1}
    if args.access_log:
        server["access_log"] = "json"
    if args.gc_threshold is not None:
        server["gc_threshold"] = args.gc_threshold
    config = {
        "server": server,
        "upstreams": [
            {
                "name": "mock",
                "provider": "openai",
                "preset": "openai",
                "base_url": upstream + "/v1",
                "api_key": UPSTREAM_KEY,
                "models": ["gpt-*"],
            }
        ],
        "state": {"data_dir": str(workdir)},
        "metrics": {"enabled": metrics},
    }
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    key = create_key(config_path, {"OMNIRELAY_DATA_DIR": str(workdir)})
    app = App(load_config(str(config_path)), server_process=True)  # as a worker of `omnirelay serve` runs
    await app.startup()
    if args.wallet:
        key = await _wallet_key(app)
    return app, key


async def _main(args: argparse.Namespace, upstream: str, workdir: Path) -> None:
    if args.ab_metrics:
        await _ab_metrics(args, upstream, workdir)
        return
    app, key = await started_app(args, upstream, workdir, args.metrics == "on")
    try:
        for sc in scenarios():
            if sc.key not in args.scenarios:
                continue
            await drive_in_process(app, sc.inbound, key, args.concurrency, 200)  # warm-up
            count = args.requests if not sc.stream else max(1, args.requests // 5)
            prof = cProfile.Profile() if args.profile else None
            cpu, wall = time.process_time(), time.perf_counter()
            if prof is not None:
                prof.enable()
            await drive_in_process(app, sc.inbound, key, args.concurrency, count)
            if prof is not None:
                prof.disable()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(
                f"{sc.key:10s} c={args.concurrency:<3d} {count:6d} req  {1e6 * cpu / count:7.0f} µs CPU/req  "
                f"{count / wall:7.0f} req/s in-process",
                flush=True,
            )
            if prof is not None:
                stats = pstats.Stats(prof).sort_stats(args.sort)
                stats.print_stats(args.top)
                if args.callers:
                    stats.print_callers(args.callers)
    finally:
        await app.shutdown()


async def _ab_metrics(args: argparse.Namespace, upstream: str, workdir: Path) -> None:
    """Metrics on against off in one process: two apps, batches alternating between them (neither always
    first), so the machine's noise falls on both alike. Prints each one's min and median CPU per request."""
    apps = {
        "off": await started_app(args, upstream, workdir / "off", False),
        "on": await started_app(args, upstream, workdir / "on", True),
    }
    try:
        for sc in scenarios():
            if sc.key not in args.scenarios:
                continue
            count = args.requests if not sc.stream else max(1, args.requests // 5)
            per: dict[str, list[float]] = {name: [] for name in apps}
            for app, key in apps.values():
                await drive_in_process(app, sc.inbound, key, args.concurrency, 200)  # warm-up
            for i in range(args.rounds):
                for name in ("off", "on") if i % 2 == 0 else ("on", "off"):
                    app, key = apps[name]
                    cpu = time.process_time()
                    await drive_in_process(app, sc.inbound, key, args.concurrency, count)
                    per[name].append(1e6 * (time.process_time() - cpu) / count)
            (off_min, off_med), (on_min, on_med) = ((min(per[n]), statistics.median(per[n])) for n in ("off", "on"))
            print(
                f"{sc.key:10s} c={args.concurrency} {args.rounds}x{count} req each: metrics off "
                f"{off_min:.1f} / {off_med:.1f} µs, on {on_min:.1f} / {on_med:.1f} µs CPU/req (min / median): "
                f"{100 * (on_min / off_min - 1):+.1f} % / {100 * (on_med / off_med - 1):+.1f} %",
                flush=True,
            )
    finally:
        for app, _key in apps.values():
            await app.shutdown()


async def _wallet_key(app: Any) -> str:
    """A key owned by a console user in a group with a multiplier, drawing from a funded wallet (the accounts'
    costs on the hot path: the wallet reservation, the multiplier, the ledger entry per usage record)."""
    from omnirelay.state.keys import new_key, to_units

    accounts = app.gate.store.accounts
    await accounts.create_group("bench", 1.25)
    user = await accounts.create_user("bench@example.com", "unused", "member", group="bench")
    await accounts.add_entry(user.wallet_id, to_units(1_000_000), "topup", "bench", None)
    rec, secret = new_key("bench-wallet", owner_user_id=user.id, rpm=100_000_000, tpm=1_000_000_000)
    await app.gate.store.insert_key(rec)
    await app.gate.refresh()
    return str(secret)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.inproc", description=__doc__)
    p.add_argument("--scenarios", default="openai,stream,anthropic,responses")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--requests", type=int, default=5000, help="non-streaming requests (streams: a fifth)")
    p.add_argument("--chunks", type=int, default=50)
    p.add_argument("--metrics", choices=["on", "off"], default="on", help="GET /metrics and its counting")
    p.add_argument("--ab-metrics", action="store_true", help="metrics on vs off, alternating in one process")
    p.add_argument("--rounds", type=int, default=10, help="with --ab-metrics: batches per variant")
    p.add_argument("--access-log", action="store_true", help="the JSON access log on (lines go to stderr)")
    p.add_argument("--wallet", action="store_true", help="use a key owned by a console user (wallet + ledger)")
    p.add_argument("--gc-threshold", type=int, help="server.gc_threshold (default: the config's; 0: Python's)")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--sort", default="tottime")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--callers", help="with --profile: also print who calls functions matching this")
    args = p.parse_args()
    args.scenarios = args.scenarios.split(",")
    subdirs = ("prometheus", "off", "on")  # the last two: --ab-metrics' apps
    with_mock(args.chunks, "omnirelay-inproc-", subdirs, lambda url, workdir: _main(args, url, workdir))


def with_mock(
    chunks: int, prefix: str, subdirs: tuple[str, ...], run: Callable[[str, Path], Coroutine[Any, Any, None]]
) -> None:
    """``run(upstream_url, workdir)`` on uvloop, with the mock upstream in its own process and a scratch data dir
    (``subdirs`` made in it: the first holds prometheus_client's multiprocess files)."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    argv = [sys.executable, "-m", "bench.mock_upstream", "--port", str(port), "--chunks", str(chunks)]
    mock = Service("mock", argv, workdir / "mock.log").start(cwd=Path(__file__).resolve().parent.parent)
    try:
        mock.wait_http(f"http://127.0.0.1:{port}/health", timeout=30)
        os.environ["OMNIRELAY_DATA_DIR"] = str(workdir)
        # As under `omnirelay serve`: the metrics in prometheus_client's multiprocess files (set before the app
        # imports prometheus_client), so the per-request cost measured is the served one.
        for sub in subdirs:
            (workdir / sub).mkdir()
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(workdir / subdirs[0]))
        uvloop.run(run(f"http://127.0.0.1:{port}", workdir))
    finally:
        mock.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
