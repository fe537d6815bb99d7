"""The Python load client: SSE streams (closed loop) and open-loop fixed-rate load (streaming or not).

wrk drives the closed-loop non-streaming runs; it cannot read an SSE stream to its end nor hold a fixed
arrival rate (wrk2 is not in Debian), so those runs use this client. It runs in its own process with uvloop and
prints one JSON summary line on stdout.

Open loop: request ``i`` is due at ``start + i / rate`` whatever happened to earlier ones, and its latency is
measured from that due time, so a slow server cannot hide its queueing delay (no coordinated omission).

Run: ``python -m bench.loadgen --url URL --body-file F [--stream] (--concurrency N | --rate R) --duration S``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import uvloop

REQUEST_TIMEOUT = 15.0
MAX_IN_FLIGHT = 4096  # open loop: beyond this the server has fallen hopelessly behind; count as dropped


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    events: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list (NaN when empty)."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(pct / 100.0 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def last_event(stream: bytes) -> bytes:
    """The final event of an SSE stream (events end with a blank line; CRLF framing tolerated). A complete stream
    ends with its protocol's last event: ``data: [DONE]``, ``event: message_stop`` or ``event: response.completed``
    (whose data line holds the whole response, so a fixed-size tail would not reach the event name)."""
    body = stream.rstrip()
    cut = max(body.rfind(b"\n\n"), body.rfind(b"\r\n\r\n"))
    return body[cut:].lstrip() if cut >= 0 else body


class Client:
    def __init__(self, url: str, body: bytes, headers: dict[str, str], stream: bool, terminator: bytes) -> None:
        self.url = url
        self.body = body
        self.headers = {"content-type": "application/json", **headers}
        self.stream = stream
        self.terminator = terminator
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        connector = aiohttp.TCPConnector(limit=0, force_close=False, keepalive_timeout=60)
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()

    async def one(self, tally: Tally | None, started: float) -> None:
        """One request; ``started`` is when it was due (perf_counter seconds). ``tally`` None: warm-up."""
        assert self.session is not None
        try:
            async with self.session.post(self.url, data=self.body, headers=self.headers) as resp:
                if resp.status != 200:
                    await resp.read()
                    if tally is not None:
                        tally.error(f"status_{resp.status}")
                    return
                if not self.stream:
                    await resp.read()
                    if tally is not None:
                        tally.latencies_ms.append((time.perf_counter() - started) * 1000.0)
                    return
                first: float | None = None
                parts: list[bytes] = []
                async for chunk in resp.content.iter_any():
                    if first is None:
                        first = time.perf_counter()
                    parts.append(chunk)
                done = time.perf_counter()
        except TimeoutError:
            if tally is not None:
                tally.error("timeout")
            return
        except (aiohttp.ClientError, OSError) as exc:
            if tally is not None:
                tally.error(type(exc).__name__)
            return
        if tally is None:
            return
        data = b"".join(parts)
        if self.terminator not in last_event(data):
            tally.error("truncated_stream")
            return
        tally.latencies_ms.append((done - started) * 1000.0)
        if first is not None:
            tally.ttft_ms.append((first - started) * 1000.0)
        tally.events += data.count(b"data:")


async def closed_loop(client: Client, concurrency: int, duration: float, warmup: float) -> tuple[Tally, float]:
    tally = Tally()

    async def worker(until: float, record: bool) -> None:
        while time.perf_counter() < until:
            await client.one(tally if record else None, time.perf_counter())

    if warmup > 0:
        until = time.perf_counter() + warmup
        await asyncio.gather(*(worker(until, False) for _ in range(concurrency)))
    t0 = time.perf_counter()
    until = t0 + duration
    await asyncio.gather(*(worker(until, True) for _ in range(concurrency)))
    return tally, time.perf_counter() - t0


async def open_loop(client: Client, rate: float, duration: float, warmup: float) -> tuple[Tally, float]:
    tally = Tally()
    if warmup > 0:
        await _paced(client, None, rate, warmup)
    t0 = time.perf_counter()
    await _paced(client, tally, rate, duration)
    return tally, time.perf_counter() - t0


async def _paced(client: Client, tally: Tally | None, rate: float, duration: float) -> None:
    total = max(1, int(rate * duration))
    start = time.perf_counter()
    tasks: set[asyncio.Task[None]] = set()
    sent = 0
    while sent < total:
        now = time.perf_counter()
        due = min(total, int((now - start) * rate) + 1)
        while sent < due:
            scheduled = start + sent / rate
            sent += 1
            if len(tasks) >= MAX_IN_FLIGHT:
                if tally is not None:
                    tally.error("dropped_client_backlog")
                continue
            task = asyncio.create_task(client.one(tally, scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        next_due = start + sent / rate
        await asyncio.sleep(max(0.0, next_due - time.perf_counter()))
    if tasks:
        await asyncio.gather(*tasks)


def summarise(tally: Tally, elapsed: float) -> dict[str, object]:
    lat = sorted(tally.latencies_ms)
    ttft = sorted(tally.ttft_ms)
    ok = len(lat)
    return {
        "requests": ok,
        "errors": sum(tally.errors.values()),
        "error_kinds": tally.errors,
        "elapsed_s": elapsed,
        "rps": ok / elapsed if elapsed > 0 else 0.0,
        "p50_ms": percentile(lat, 50),
        "p90_ms": percentile(lat, 90),
        "p99_ms": percentile(lat, 99),
        "ttft_p50_ms": percentile(ttft, 50) if ttft else None,
        "ttft_p99_ms": percentile(ttft, 99) if ttft else None,
        "events_per_stream": tally.events / ok if ok and ttft else None,
    }


async def run(args: argparse.Namespace, body: bytes) -> dict[str, object]:
    headers: dict[str, str] = json.loads(args.headers)
    async with Client(args.url, body, headers, args.stream, args.terminator.encode()) as client:
        if args.rate:
            tally, elapsed = await open_loop(client, args.rate, args.duration, args.warmup)
        else:
            tally, elapsed = await closed_loop(client, args.concurrency, args.duration, args.warmup)
    return summarise(tally, elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description="SSE / open-loop load client")
    parser.add_argument("--url", required=True)
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--headers", default="{}", help="JSON object of extra request headers")
    parser.add_argument("--stream", action="store_true", help="read an SSE stream to its end")
    parser.add_argument("--terminator", default="[DONE]", help="bytes the last event of a complete stream contains")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0.0, help="open loop: requests per second")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()
    print(json.dumps(uvloop.run(run(args, Path(args.body_file).read_bytes()))), flush=True)


if __name__ == "__main__":
    main()
