"""Batches survive the gateway: a SIGKILL in the middle of a 200-request batch, then a restart, and the batch
completes with every request once in the results, none run again beyond those in flight at the kill, and the
charges exact; two replicas on one PostgreSQL database share one batch, each request run by one of them only;
a key's credit is reserved for a batch up front, held against its interactive requests too (in one process and
through Redis), and a batch it cannot afford is refused."""

from __future__ import annotations

import asyncio
import collections
import io
import json
from pathlib import Path
from typing import Any

import anthropic
import asyncpg
import httpx
import openai
import pytest

from tests.gateway import Gateway
from tests.mocks.script import ScriptedReply
from tests.mocks.server import MockUpstreams
from tests.polling import wait_until
from tests.state_helpers import BACKENDS, PG_BASE, Admin, Backend, backend, start_gateway, state_config
from tests.test_state_replicas import sigkill_tree

PER_ITEM = (12 * 2.0 + 7 * 8.0) / 1e6 * 0.5  # the mock's usage (12 in, 7 out) at gpt-4.1's batch price
FAST_RUNNER = {"lease_s": 1.0, "poll_s": 0.1}
CONCURRENCY = 8


def _urls(mocks: MockUpstreams) -> tuple[str, str, str]:
    return mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini")


def _config(mocks: MockUpstreams) -> dict[str, Any]:
    cfg = state_config(_urls(mocks))
    cfg["batches"] = {**FAST_RUNNER, "concurrency": CONCURRENCY}
    return cfg


def _input(n: int, prefix: str = "q") -> bytes:
    lines = [
        {"custom_id": f"{prefix}{i}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "gpt-4.1", "messages": [{"role": "user", "content": f"{prefix}{i}"}], "max_tokens": 20}}
        for i in range(n)
    ]  # fmt: skip
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def _client(gw: Gateway, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=2, timeout=30)


def _submit(client: openai.OpenAI, n: int) -> str:
    f = client.files.create(file=("in.jsonl", io.BytesIO(_input(n))), purpose="batch")
    return client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h").id


def _completed(client: openai.OpenAI, batch_id: str) -> int:
    counts = client.batches.retrieve(batch_id).request_counts
    return counts.completed if counts is not None else 0


def _ended(client: openai.OpenAI, batch_id: str) -> Any:
    b = client.batches.retrieve(batch_id)
    return b if b.status in ("completed", "failed", "expired", "cancelled") else None


def _texts(mocks: MockUpstreams) -> collections.Counter[str]:
    return collections.Counter(r.body["messages"][-1]["content"] for r in mocks.requests("openai"))


def _check_results(client: openai.OpenAI, batch: Any, n: int) -> None:
    assert batch.status == "completed" and batch.request_counts.completed == n and batch.request_counts.failed == 0
    lines = [json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]
    ids = collections.Counter(line["custom_id"] for line in lines)
    assert ids == collections.Counter(f"q{i}" for i in range(n)), "every custom_id exactly once"
    for line in lines:
        assert line["response"]["body"]["choices"][0]["message"]["content"] == f"echo: {line['custom_id']}"


def _check_charges(admin: Admin, kid: str, batch_id: str, n: int) -> None:
    records = admin.wait_usage(n, timeout=10, key=kid, limit=10_000)
    assert sorted(r["request_id"] for r in records) == sorted(f"{batch_id}-{i}" for i in range(n))
    assert {r["protocol"] for r in records} == {"batch"}
    total = sum(r["cost"] for r in records)
    assert total == pytest.approx(n * PER_ITEM, abs=1e-12)
    spent = wait_until(lambda: admin.key(kid)["spent"] if admin.key(kid)["spent"] >= total - 1e-12 else None, 10)
    assert spent == pytest.approx(total, abs=1e-12)


@pytest.mark.parametrize("kind", BACKENDS)
def test_sigkill_mid_batch_then_restart(mocks: MockUpstreams, kind: str, tmp_path: Path) -> None:
    n = 200
    with backend(kind, tmp_path) as b:
        gw = start_gateway(_config(mocks), tmp_path / "gw", b)
        try:
            admin = Admin(gw.url)
            kid, secret = admin.create_key(credit=1.0)
            # Slow replies so that the kill lands mid-batch; each echoes its request's text.
            mocks.push("openai", *[ScriptedReply(echo=True, delay_s=0.1) for _ in range(n)])
            client = _client(gw, secret)
            batch_id = _submit(client, n)
            wait_until(lambda: _completed(client, batch_id) >= 40, 30, "40 requests done")
            sigkill_tree(gw)
            before = _texts(mocks)
            assert 40 <= sum(before.values()) < n, "the kill did not land mid-batch"
            gw.start()  # same database and data dir: the journal of the killed process is replayed
            client = _client(gw, secret)
            done = wait_until(lambda: _ended(client, batch_id), 60, "the batch to end after the restart")
            _check_results(client, done, n)
            seen = _texts(mocks)
            assert set(seen) == {f"q{i}" for i in range(n)}
            rerun = sum(seen.values()) - n
            assert rerun <= CONCURRENCY, f"{rerun} requests ran twice; at most those in flight at the kill may"
            _check_charges(admin, kid, batch_id, n)
            assert admin.key(kid)["balance"] == pytest.approx(1.0 - n * PER_ITEM, abs=1e-12)
        finally:
            gw.stop()


@pytest.fixture()
def pg(tmp_path: Path) -> Any:
    with backend("postgres", tmp_path) as b:
        yield b


def test_two_replicas_share_one_batch(mocks: MockUpstreams, pg: Backend, tmp_path: Path) -> None:
    n = 120
    mocks.push("openai", *[ScriptedReply(echo=True, delay_s=0.1) for _ in range(n)])
    cfg = _config(mocks)
    # Closed from the start: a replica that has not loaded the new key yet answers 401, not as an open gateway.
    cfg["server"] = {**cfg.get("server", {}), "open": False}
    gws = [start_gateway(cfg, tmp_path / f"gw{i}", pg) for i in range(2)]
    try:
        admin = Admin(gws[0].url)
        kid, secret = admin.create_key(credit=1.0)
        wait_until(lambda: httpx.get(gws[1].url + "/v1/batches", headers={"authorization": f"Bearer {secret}"})
                   .status_code == 200, 10, "the key on the second replica")  # fmt: skip
        batch_id = _submit(_client(gws[0], secret), n)
        done = wait_until(lambda: _ended(_client(gws[1], secret), batch_id), 60, "the batch to end")
        assert done.request_counts.completed == n
        assert len(mocks.requests("openai")) == n, "a request ran twice"
        runs = asyncio.run(_runs(pg, batch_id))
        assert len(runs) == n and all(attempts == 1 for _, attempts in runs), "an item was claimed twice"
        owners = collections.Counter(owner for owner, _ in runs)
        assert len(owners) == 2, f"both replicas should have run items: {owners}"
        _check_charges(admin, kid, batch_id, n)
    finally:
        for gw in gws:
            gw.stop()


async def _runs(b: Backend, batch_id: str) -> list[tuple[str, int]]:
    conn = await asyncpg.connect(PG_BASE, server_settings={"search_path": f"omni_{b.tag}"})
    try:
        rows = await conn.fetch("SELECT lease_owner, attempts FROM batch_items WHERE batch_id = $1", batch_id)
    finally:
        await conn.close()
    return [(r[0], int(r[1])) for r in rows]


@pytest.mark.parametrize("kind", BACKENDS)  # postgres: with Redis's shared limits and credit
def test_batch_credit_reserved_refused_and_owner_checked(mocks: MockUpstreams, tmp_path: Path, kind: str) -> None:
    with backend(kind, tmp_path) as b:
        cfg = _config(mocks)
        cfg["batches"]["run"] = False  # nothing runs: the reservation stays held
        cfg["batches"]["max_file_bytes"] = 4096
        gw = start_gateway(cfg, tmp_path / "gw", b)
        try:
            admin = Admin(gw.url)
            kid, secret = admin.create_key(credit=0.01)
            other_id, other = admin.create_key(credit=1.0)
            client = _client(gw, secret)
            # max_tokens 20: the worst case of one request is its input estimate + 20 output tokens.
            batch_id = _submit(client, 10)
            with pytest.raises(openai.NotFoundError):
                _client(gw, other).batches.retrieve(batch_id)
            with pytest.raises(openai.NotFoundError):
                _client(gw, other).batches.cancel(batch_id)
            inputs = [f for f in client.files.list() if f.purpose == "batch"]
            with pytest.raises(openai.NotFoundError):
                _client(gw, other).files.content(inputs[0].id)
            assert batch_id not in [x.id for x in _client(gw, other).batches.list()]
            mine = anthropic.Anthropic(base_url=gw.url, api_key=secret, max_retries=0)
            theirs = anthropic.Anthropic(base_url=gw.url, api_key=other, max_retries=0)
            params: Any = {
                "model": "claude-sonnet-4-20250514",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
            }
            m = mine.messages.batches.create(requests=[{"custom_id": "one", "params": params}])
            for call in (
                theirs.messages.batches.retrieve,
                theirs.messages.batches.cancel,
                theirs.messages.batches.delete,
            ):
                with pytest.raises(anthropic.NotFoundError):
                    call(m.id)
            assert m.id not in [x.id for x in theirs.messages.batches.list()]
            assert [x.id for x in mine.messages.batches.list()] == [m.id]
            mine.messages.batches.cancel(m.id)
            with pytest.raises(openai.APIStatusError) as big:
                client.files.create(file=("in.jsonl", io.BytesIO(_input(100))), purpose="batch")
            assert big.value.status_code == 413
            # Without max_tokens a request may produce gpt-4.1's whole 32768-token output: $0.13 at the batch
            # price, more than the key has.
            line = {"custom_id": "big", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": "gpt-4.1", "messages": [{"role": "user", "content": "x"}]}}  # fmt: skip
            f = client.files.create(file=("a.jsonl", io.BytesIO(json.dumps(line).encode())), purpose="batch")
            with pytest.raises(openai.RateLimitError) as poor:
                client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
            assert poor.value.code == "insufficient_quota"
            # The first batch's reservation is held against interactive requests too: $0.0096 of output fits
            # in the key's $0.01, but not once the batch holds its share.
            body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1200}
            headers = {"authorization": f"Bearer {secret}"}
            r = httpx.post(gw.url + "/v1/chat/completions", json=body, headers=headers)
            assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"
            assert client.batches.cancel(batch_id).status == "cancelling"
            wait_until(lambda: _ended(client, batch_id), 10, "the cancelled batch to end")
            ok = wait_until(
                lambda: httpx.post(gw.url + "/v1/chat/completions", json=body, headers=headers).status_code == 200, 10
            )
            assert ok and other_id != kid
        finally:
            gw.stop()
