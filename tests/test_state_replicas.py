"""Several gateway processes and crashes: two replicas sharing PostgreSQL + Redis hold one key's credit
between them; a gateway killed with SIGKILL under load loses no completed request's record or charge; a
database restart loses nothing either."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import openai
import pytest

from tests.gateway import Gateway
from tests.mocks.script import ScriptedReply
from tests.mocks.server import MockUpstreams
from tests.polling import wait_until, wait_until_async
from tests.state_helpers import BACKENDS, PG_BASE, Admin, Backend, backend, start_gateway, state_config

GPT = "gpt-4.1"
PER_CALL = (12 * 2.0 + 7 * 8.0) / 1e6  # the mock's default usage (12 in, 7 out) at gpt-4.1 prices


def _urls(mocks: MockUpstreams) -> tuple[str, str, str]:
    return mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini")


def _status(gw: Gateway, secret: str, model: str) -> int:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(gw.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {secret}"})
    return r.status_code


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def sigkill_tree(gw: Gateway) -> None:
    """SIGKILL the server and its worker processes at once (granian serves from a child process, which
    would outlive its parent)."""
    assert gw.proc is not None
    victims = [gw.proc.pid, *_children(gw.proc.pid)]
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    gw.proc.wait(10)
    for pid in victims[1:]:
        wait_until(functools.partial(_gone, pid), 5, f"worker {pid} to die")


def _gone(pid: int) -> bool:
    """The process has exited (or is a zombie nobody reaped: dead all the same)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture()
def pg(tmp_path: Path) -> Iterator[Backend]:
    with backend("postgres", tmp_path) as b:
        yield b


async def _fire(clients: list[openai.AsyncOpenAI], total: int) -> list[tuple[int, str | None]]:
    """``total`` concurrent calls spread over the clients: (status, request id)."""

    async def one(i: int) -> tuple[int, str | None]:
        client = clients[i % len(clients)]
        try:
            raw = await client.chat.completions.with_raw_response.create(
                model=GPT, messages=[{"role": "user", "content": f"q{i}"}], max_tokens=10
            )
            raw.parse()
            return 200, raw.headers["x-request-id"]
        except openai.APIStatusError as exc:
            return exc.status_code, None

    return await asyncio.gather(*(one(i) for i in range(total)))


def test_two_replicas_share_credit_and_limits(mocks: MockUpstreams, pg: Backend, tmp_path: Path) -> None:
    n = 10
    cfg = state_config(_urls(mocks))
    gws = [start_gateway(cfg, tmp_path / f"gw{i}", pg) for i in range(2)]
    try:
        admin = Admin(gws[0].url)
        kid, secret = admin.create_key(credit=PER_CALL * n, rpm=1000)
        # A request for a model nobody serves is free (404, recorded under that model only), so it probes
        # replica 2's view of the keys. Replica 2 was open (no key had been issued when it last refreshed), and
        # an open gateway serves any key, known or not: wait until it is closed (a wrong key gets 401) and knows
        # this key (404 for the model).
        wait_until(
            lambda: (
                _status(gws[1], secret + "-wrong", "no-such-model") == 401
                and _status(gws[1], secret, "no-such-model") == 404
            ),
            5,
            "replica 2 closed and knowing the key",
        )
        # Every answer is slow enough that many requests are in flight at once on both replicas.
        mocks.push("openai", *[ScriptedReply(delay_s=0.3) for _ in range(200)])

        async def waves() -> list[tuple[int, str | None]]:
            clients = [
                openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0, timeout=30) for gw in gws
            ]
            results: list[tuple[int, str | None]] = []
            for _ in range(3):  # 4N at once, three times: the credit must hold across waves
                results += await _fire(clients, 4 * n)
            for c in clients:
                await c.close()
            return results

        results = asyncio.run(waves())
        ok = [rid for status, rid in results if status == 200 and rid is not None]
        rejected = [status for status, _ in results if status != 200]
        assert set(rejected) == {429}
        # Each reservation (estimate with max_tokens=10) is above the true cost, so admission stops while the
        # balance is still >= 0; the bound allows one request of margin.
        assert 1 <= len(ok) <= n + 1, len(ok)
        records = admin.wait_usage(len(ok), key=kid, model=GPT)
        assert sorted(r["request_id"] for r in records) == sorted(ok)  # exactly one record per answered request
        assert all(r["status"] == 200 for r in records)
        both = {r["upstream"] for r in records}
        assert both == {"mock-openai"}
        key = admin.key(kid)
        assert key["spent"] == pytest.approx(PER_CALL * len(ok), abs=1e-12)
        assert key["balance"] >= -PER_CALL  # never below zero by more than one in-flight reservation
        # The replicas' own views agree (gateway 2 saw its share of records through the database).
        assert Admin(gws[1].url).key(kid)["spent"] == pytest.approx(key["spent"], abs=1e-12)
    finally:
        for gw in gws:
            gw.stop()


@pytest.mark.parametrize("kind", BACKENDS)
def test_sigkill_under_load_loses_no_completed_request(mocks: MockUpstreams, kind: str, tmp_path: Path) -> None:
    with backend(kind, tmp_path) as b:
        cfg = state_config(_urls(mocks), usage_flush_s=0.5)  # a long flush interval: most records only journalled
        gw = start_gateway(cfg, tmp_path / "gw", b)
        try:
            admin = Admin(gw.url)
            kid, secret = admin.create_key(credit=100.0)
            seen: dict[str, float] = {}

            async def load(stop_at: float) -> None:
                client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0, timeout=10)

                async def worker(w: int) -> None:
                    i = 0
                    while time.monotonic() < stop_at:
                        i += 1
                        try:
                            raw = await client.chat.completions.with_raw_response.create(
                                model=GPT, messages=[{"role": "user", "content": f"w{w} q{i}"}]
                            )
                            raw.parse()
                        except (openai.APIError, openai.APIConnectionError):
                            return  # the gateway is gone
                        seen[raw.headers["x-request-id"]] = float(raw.headers["x-omnirelay-cost"])

                await asyncio.gather(*(worker(w) for w in range(16)))
                await client.close()

            async def run() -> None:
                loader = asyncio.create_task(load(time.monotonic() + 30))
                # Kill once the load is well under way (the records since the last flush are only journalled).
                await wait_until_async(lambda: len(seen) >= 100, 20, "100 completed requests")
                await asyncio.to_thread(sigkill_tree, gw)
                await loader

            asyncio.run(run())
            assert len(seen) >= 100, "the load did not get going"
            gw.start()  # same data dir: the journal of the killed process is replayed
            records = {r["request_id"]: r for r in admin.wait_usage(len(seen), key=kid)}
            missing = [rid for rid in seen if rid not in records]
            assert not missing, f"{len(missing)} of {len(seen)} completed requests have no record"
            for rid, cost in seen.items():
                assert records[rid]["cost"] == pytest.approx(cost, abs=1e-15)
            # The charge is exactly the sum of the records (requests cut by the kill may add their own).
            assert admin.key(kid)["spent"] == pytest.approx(sum(r["cost"] for r in records.values()), abs=1e-12)
            assert admin.key(kid)["spent"] >= sum(seen.values()) - 1e-12
        finally:
            gw.stop()


def test_database_restart_loses_no_record(mocks: MockUpstreams, pg: Backend, tmp_path: Path) -> None:
    """A PostgreSQL restart as the gateway sees it: every connection dropped, and refused for a while
    (the schema renamed away); records wait in the journal and arrive when it is back."""
    gw = start_gateway(state_config(_urls(mocks)), tmp_path / "gw", pg)
    schema = pg.database_url.rsplit("schema=", 1)[1]

    async def sql(statement: str) -> None:
        conn = await asyncpg.connect(PG_BASE)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    try:
        admin = Admin(gw.url)
        kid, secret = admin.create_key(credit=1.0)
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0, timeout=10)
        ids: list[Any] = []
        asyncio.run(sql(f'ALTER SCHEMA "{schema}" RENAME TO "{schema}_away"'))
        asyncio.run(
            sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'omnirelay/{schema}'")
        )
        for i in range(5):  # served from the key cache while the database is away
            raw = client.chat.completions.with_raw_response.create(
                model=GPT, messages=[{"role": "user", "content": f"q{i}"}]
            )
            ids.append(raw.headers["x-request-id"])
        wait_until(lambda: "usage flush of" in gw.log(), 10, "a failed flush logged")  # the writer keeps the records
        asyncio.run(sql(f'ALTER SCHEMA "{schema}_away" RENAME TO "{schema}"'))
        records = admin.wait_usage(5, timeout=15, key=kid)
        assert sorted(r["request_id"] for r in records) == sorted(ids)
        assert admin.key(kid)["spent"] == pytest.approx(5 * PER_CALL, abs=1e-12)
    finally:
        gw.stop()
