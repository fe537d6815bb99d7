"""``python -m bench.ablate``: where omnirelay's CPU per request goes, by taking parts away.

One process, one mock upstream, one started App; rounds of requests alternate between variants (each variant
a set of parts replaced by no-ops for the round, restored after it), so the machine's noise falls on all alike.
``floor`` is no omnirelay at all: the same in-process driver, a JSON decode and encode of the body and
omnirelay's own HTTP/1.1 client to the mock, which is what bench/pyrelay.py does per request. Each variant's
figure minus the full App's is what its missing parts cost.

The variants cut corners that are not safe to serve with (no limits, no usage record): this is a measuring
tool, never a configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from bench.inproc import drive_in_process, started_app, with_mock
from bench.scenarios import scenarios
from bench.targets import UPSTREAM_KEY

Patch = Callable[[Any], contextlib.AbstractContextManager[None]]


@contextlib.contextmanager
def patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    """``obj.name = value`` for the block; afterwards what was there (an instance's own attribute removed)."""
    own = vars(obj)
    had, old = name in own, own.get(name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if had:
            setattr(obj, name, old)
        else:
            delattr(obj, name)


async def _admit_all(admission: Any, req: Any, protocol: str, plan: Any, reserve: Any = None) -> Any:
    """``Gate.admit`` letting every planned route through, with no limit, reservation or credit check."""
    return [route for _name, route in plan]


@contextlib.contextmanager
def _no_limits(app: Any) -> Iterator[None]:
    """Admission without limits, reservations or charging; the usage record is still journalled."""
    gate = app.gate

    async def settle(admission: Any, record: Any) -> None:
        from omnirelay.state.store import UsageRow

        if getattr(admission, "settled", False):
            return
        admission.settled = True
        await gate.writer.record(UsageRow.from_record(record))

    with patched(gate, "admit", _admit_all), patched(gate, "settle", settle):
        yield


@contextlib.contextmanager
def _no_gate(app: Any) -> Iterator[None]:
    """No limits and no usage record at all."""

    async def settle(admission: Any, record: Any) -> None:
        return None

    with patched(app.gate, "admit", _admit_all), patched(app.gate, "settle", settle):
        yield


@contextlib.contextmanager
def _python_gc(app: Any) -> Iterator[None]:
    """The collector at Python's default first threshold (700) instead of ``server.gc_threshold``."""
    before = gc.get_threshold()
    gc.set_threshold(700, before[1], before[2])
    try:
        yield
    finally:
        gc.set_threshold(*before)


VARIANTS: dict[str, list[Patch]] = {
    "full": [],
    "no-limits": [_no_limits],
    "no-gate": [_no_gate],
    "python-gc": [_python_gc],
}


class Floor:
    """The least a relay does per request, in the same driver: decode, encode, send upstream, reply."""

    def __init__(self, upstream: str) -> None:
        from omnirelay.upstream.http1 import HTTP1Client

        self.client = HTTP1Client(keepalive=60.0)
        self.url = upstream + "/v1/chat/completions"
        self.headers = {"authorization": "Bearer " + UPSTREAM_KEY, "content-type": "application/json"}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = (await receive())["body"]
        payload = msgspec.json.encode(msgspec.json.decode(body))
        reply = await self.client.open(
            "POST", self.url, self.headers, payload, connect_timeout=5, read_timeout=30, total_timeout=60
        )
        try:
            if reply.headers.get("content-type", "").startswith("text/event-stream"):
                await send({"type": "http.response.start", "status": reply.status, "headers": []})
                while chunk := await reply.next_chunk():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            else:
                data = await reply.read()
                await send({"type": "http.response.start", "status": reply.status, "headers": []})
                await send({"type": "http.response.body", "body": data, "more_body": False})
        finally:
            reply.close()


async def _main(args: argparse.Namespace, upstream: str, workdir: Path) -> None:
    app, key = await started_app(args, upstream, workdir, args.metrics == "on")
    floor = Floor(upstream)
    names = ["floor", *[v for v in VARIANTS if v in args.variants]]
    try:
        for sc in scenarios():
            if sc.key not in args.scenarios:
                continue
            count = args.requests if not sc.stream else max(1, args.requests // 5)
            per: dict[str, list[float]] = {name: [] for name in names}
            await drive_in_process(app, sc.inbound, key, args.concurrency, 200)
            if sc.key in ("openai", "stream"):
                await drive_in_process(floor, sc.inbound, key, args.concurrency, 200)
            for i in range(args.rounds):
                order = names if i % 2 == 0 else list(reversed(names))
                for name in order:
                    if name == "floor" and sc.key not in ("openai", "stream"):
                        continue
                    with contextlib.ExitStack() as stack:
                        target: Any = floor if name == "floor" else app
                        for patch in VARIANTS.get(name, []):
                            stack.enter_context(patch(app))
                        cpu = time.process_time()
                        await drive_in_process(target, sc.inbound, key, args.concurrency, count)
                        per[name].append(1e6 * (time.process_time() - cpu) / count)
            full = statistics.median(per["full"])
            for name in names:
                if not per[name]:
                    continue
                med = statistics.median(per[name])
                print(
                    f"{sc.key:10s} c={args.concurrency:<3d} {name:16s} min {min(per[name]):6.1f}  median {med:6.1f} "
                    f"µs CPU/req  ({med - full:+6.1f} vs full)",
                    flush=True,
                )
    finally:
        floor.client.close()
        await app.shutdown()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.ablate", description=__doc__)
    p.add_argument("--scenarios", default="openai,stream")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--requests", type=int, default=2000, help="non-streaming requests per round (streams: a fifth)")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--chunks", type=int, default=50)
    p.add_argument("--metrics", choices=["on", "off"], default="on")
    args = p.parse_args()
    args.scenarios = args.scenarios.split(",")
    args.variants = args.variants.split(",")
    args.access_log = False
    args.wallet = False
    args.gc_threshold = None
    with_mock(args.chunks, "omnirelay-ablate-", ("prometheus",), lambda url, workdir: _main(args, url, workdir))


if __name__ == "__main__":
    main()
