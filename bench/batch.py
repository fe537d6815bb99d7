"""Batch throughput: one batch of N chat requests run by omnirelay itself against bench/mock_upstream.py.

Starts the mock upstream and omnirelay (state on: an issued key with credit, usage records in SQLite), uploads
the JSONL file, creates the batch and polls it until it completes. Reports requests per second from the batch's
creation to its end, and the gateway's CPU time (its whole process tree) per request over that span.

Run: ``python -m bench.batch --requests 2000 [--concurrency 8] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from typing import Any

import httpx
import yaml

from bench.install import RUN
from bench.procs import Service, free_port, tree_cpu_seconds
from bench.targets import ROOT, UPSTREAM_KEY, create_key


def _input(n: int) -> bytes:
    lines = (
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 64},
        }
        for i in range(n)
    )
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def start(concurrency: int) -> tuple[Service, Service, str, str]:
    workdir = RUN / "batch"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    up_port, port = free_port(), free_port()
    upstream = Service("mock", [sys.executable, "-m", "bench.mock_upstream", "--port", str(up_port)], workdir / "m.log")
    upstream.start(cwd=ROOT).wait_http(f"http://127.0.0.1:{up_port}/health", 30)
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port},
        "state": {"data_dir": str(workdir)},
        "batches": {"concurrency": concurrency, "poll_s": 0.2},
        "upstreams": [
            {
                "name": "mock",
                "provider": "openai",
                "preset": "openai",
                "base_url": f"http://127.0.0.1:{up_port}/v1",
                "api_key": UPSTREAM_KEY,
                "models": ["gpt-*"],
            }
        ],
    }
    path = workdir / "omnirelay.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {"OMNIRELAY_DATA_DIR": str(workdir)}
    key = create_key(path, env)
    argv = [sys.executable, "-m", "omnirelay", "serve", "--config", str(path)]
    gateway = Service("omnirelay", argv, workdir / "omnirelay.log", env=env).start(cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    gateway.wait_http(url + "/health", 60)
    return upstream, gateway, url, key


def one_batch(client: httpx.Client, gateway: Service, n: int) -> tuple[float, float]:
    """(requests per second, gateway CPU microseconds per request) for one batch of ``n``."""
    f = client.post("/v1/files", files={"file": ("in.jsonl", _input(n))}, data={"purpose": "batch"})
    f.raise_for_status()
    cpu0 = tree_cpu_seconds(gateway.pid)
    t0 = time.monotonic()
    body = {"input_file_id": f.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    batch = client.post("/v1/batches", json=body)
    batch.raise_for_status()
    batch_id = batch.json()["id"]
    while True:
        state = client.get(f"/v1/batches/{batch_id}").json()
        if state["status"] in ("completed", "failed", "expired", "cancelled"):
            break
        time.sleep(0.2)
    elapsed = time.monotonic() - t0
    cpu = tree_cpu_seconds(gateway.pid) - cpu0
    counts = state["request_counts"]
    if state["status"] != "completed" or counts["completed"] != n:
        raise RuntimeError(f"batch ended {state['status']} with {counts}")
    return n / elapsed, cpu / n * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.batch", description=__doc__)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=8, help="batches.concurrency (the default is 8)")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    upstream, gateway, url, key = start(args.concurrency)
    try:
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {key}"}, timeout=60) as client:
            for r in range(args.rounds):
                rate, cpu = one_batch(client, gateway, args.requests)
                print(f"round {r + 1}: {args.requests} requests, {rate:.0f} req/s, gateway CPU {cpu:.0f} µs/request")
    finally:
        gateway.stop()
        upstream.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
