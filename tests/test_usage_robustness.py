"""Usage records against a hostile upstream, on SQLite and on PostgreSQL + Redis: reported numbers no store can
hold (10**19 tokens) or that would mint credit (negative), or that are not numbers at all, never stop later
records from being stored and charged; a record the database refuses is kept aside (``usage_rejected``), listed,
and survives a restart without blocking anything; the journal does not grow a segment per failed flush."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from omnirelay.core.usage_bounds import MAX_TOKENS_PER_REQUEST
from omnirelay.state.backends import open_store
from omnirelay.state.keys import UNITS_PER_USD
from omnirelay.state.sqlite import SqliteStore
from omnirelay.state.store import UsageFilter, UsageRow
from omnirelay.state.usage import UsageWriter
from tests.gateway import ROOT, Gateway
from tests.mocks.script import ScriptedReply
from tests.mocks.server import MockUpstreams
from tests.state_helpers import BACKENDS, PG_BASE, Admin, Backend, backend, drop_schema, start_gateway, state_config

GPT = "gpt-4.1"  # 2.00 in / 8.00 out per million
CLAUDE = "claude-sonnet-4-20250514"
on_session_loop = pytest.mark.asyncio(loop_scope="session")


def _urls(mocks: MockUpstreams) -> tuple[str, str, str]:
    return (mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini"))


class Env:
    def __init__(self, gw: Gateway, b: Backend) -> None:
        self.gw = gw
        self.backend = b
        self.admin = Admin(gw.url)

    def ask(self, secret: str, model: str = GPT, **kw: Any) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **kw}
        return httpx.post(
            self.gw.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {secret}"}, timeout=30
        )

    def ask_claude(self, secret: str) -> httpx.Response:
        body = {"model": CLAUDE, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
        return httpx.post(self.gw.url + "/v1/messages", json=body, headers={"x-api-key": secret}, timeout=30)

    def record(self, key_id: str, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """The usage record of one request, once it is in the database (fails after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = [r for r in self.admin.usage(key=key_id) if r["request_id"] == request_id]
            if rows:
                return rows[0]
            assert time.monotonic() < deadline, f"no usage record for {request_id}:\n{self.gw.log()}"
            time.sleep(0.05)


@pytest.fixture(scope="module", params=BACKENDS)
def env(
    request: pytest.FixtureRequest, mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp(f"usage-{request.param}")
    with backend(request.param, workdir) as b:
        gw = start_gateway(state_config(_urls(mocks)), workdir, b)
        try:
            yield Env(gw, b)
        finally:
            gw.stop()


def _openai_usage(prompt: Any, completion: Any, **details: Any) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": 0, **details}


# -- hostile usage through the gateway ------------------------------------------------------------------------


def test_usage_beyond_any_integer_column_is_capped_and_later_requests_are_charged(
    env: Env, mocks: MockUpstreams
) -> None:
    key_id, secret = env.admin.create_key()  # no credit limit: the capped request alone costs 8,500 USD
    mocks.push(
        "openai",
        ScriptedReply(
            raw_usage=_openai_usage(
                10**19, 10**19, prompt_tokens_details={"cached_tokens": 10**19}, completion_tokens_details={}
            )
        ),
    )
    huge = env.ask(secret)
    assert huge.status_code == 200, huge.text
    # What the client sees is what is charged: bounded, and priced from the bounded numbers.
    usage = huge.json()["usage"]
    assert usage["prompt_tokens"] == MAX_TOKENS_PER_REQUEST
    assert usage["completion_tokens"] == MAX_TOKENS_PER_REQUEST
    huge_record = env.record(key_id, huge.headers["x-request-id"])
    assert huge_record["input_tokens"] == MAX_TOKENS_PER_REQUEST
    assert huge_record["cached_tokens"] == MAX_TOKENS_PER_REQUEST
    # (10**9 cached at 0.50 + 10**9 out at 8.00) per million
    assert huge_record["cost"] == pytest.approx(500.0 + 8000.0)

    normal = env.ask(secret)
    assert normal.status_code == 200, normal.text
    normal_record = env.record(key_id, normal.headers["x-request-id"])
    assert normal_record["input_tokens"] == 12 and normal_record["output_tokens"] == 7
    key = env.admin.key(key_id)
    assert key["spent"] == pytest.approx(huge_record["cost"] + normal_record["cost"])


def test_huge_anthropic_usage_is_capped(env: Env, mocks: MockUpstreams) -> None:
    key_id, secret = env.admin.create_key()
    mocks.push(
        "anthropic",
        ScriptedReply(
            raw_usage={
                "input_tokens": 10**19,
                "cache_read_input_tokens": 10**19,
                "cache_creation_input_tokens": 10**19,
                "output_tokens": 10**19,
            }
        ),
    )
    r = env.ask_claude(secret)
    assert r.status_code == 200, r.text
    record = env.record(key_id, r.headers["x-request-id"])
    assert record["input_tokens"] == MAX_TOKENS_PER_REQUEST
    assert record["cached_tokens"] + record["cache_write_tokens"] <= record["input_tokens"]
    assert record["output_tokens"] == MAX_TOKENS_PER_REQUEST
    after = env.ask_claude(secret)
    assert after.status_code == 200
    env.record(key_id, after.headers["x-request-id"])


@pytest.mark.parametrize("stream", [False, True])
def test_negative_usage_never_adds_credit(env: Env, mocks: MockUpstreams, stream: bool) -> None:
    key_id, secret = env.admin.create_key(credit=1.0)
    # -3 * 10**12 prompt tokens at 2.00 per million priced to -6000 USD: the balance of 1.0 became 6001.
    mocks.push(
        "openai",
        ScriptedReply(
            raw_usage=_openai_usage(
                -3 * 10**12, -5, completion_tokens_details={"reasoning_tokens": -(10**12)}, prompt_tokens_details={}
            )
        ),
    )
    kw: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
    r = env.ask(secret, **kw)
    assert r.status_code == 200, r.text
    record = env.record(key_id, r.headers["x-request-id"])
    assert (record["input_tokens"], record["output_tokens"], record["reasoning_tokens"]) == (0, 0, 0)
    assert record["cost"] == 0.0
    key = env.admin.key(key_id)
    assert key["spent"] == 0.0
    assert key["balance"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "raw",
    [
        _openai_usage(12.5, 7),
        _openai_usage("12", "7"),
        _openai_usage(None, [1]),
        _openai_usage(1e300, -1e300),
    ],
    ids=["float", "string", "null-and-list", "huge-float"],
)
def test_non_integer_usage_is_a_failed_attempt_and_recording_goes_on(
    env: Env, mocks: MockUpstreams, raw: dict[str, Any]
) -> None:
    key_id, secret = env.admin.create_key(credit=5.0)
    mocks.push("openai", ScriptedReply(raw_usage=raw))
    # The reply is malformed upstream data: that attempt fails and the next one (the mock's default reply) serves.
    r = env.ask(secret)
    assert r.status_code == 200, r.text
    record = env.record(key_id, r.headers["x-request-id"])
    assert (record["attempts"], record["input_tokens"], record["output_tokens"]) == (2, 12, 7)
    good = env.ask(secret)
    assert good.status_code == 200
    env.record(key_id, good.headers["x-request-id"])
    assert env.admin.key(key_id)["spent"] == pytest.approx(2 * (12 * 2.0 + 7 * 8.0) / 1e6)


# -- a record the database refuses ----------------------------------------------------------------------------


def _row(request_id: str, key_id: str | None, cost_units: int, **kw: Any) -> UsageRow:
    fields: dict[str, Any] = {
        "request_id": request_id,
        "created_at": time.time(),
        "key_id": key_id,
        "protocol": "openai",
        "model_requested": GPT,
        "upstream": "mock-openai",
        "provider": "openai",
        "model_used": GPT,
        "stream": False,
        "input_tokens": 12,
        "output_tokens": 7,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "cost_units": cost_units,
        "latency_ms": 5.0,
        "ttft_ms": 4.0,
        "status": 200,
        "error": None,
        "attempts": 1,
        **kw,
    }
    return UsageRow(**fields)


def _write_dead_journal(journal: Path, rows: list[UsageRow]) -> None:
    """The journal of a gateway that died before flushing (an older version, which did not bound usage)."""
    import msgspec

    journal.mkdir(parents=True, exist_ok=True)
    owner = "999999-deadbeef"
    (journal / f"{owner}.lock").touch()
    (journal / f"{owner}.00000000.jnl").write_bytes(msgspec.json.Encoder().encode_lines(rows))


def _rejected(admin: Admin) -> list[dict[str, Any]]:
    r = admin.http.get("/admin/usage/rejected")
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


@pytest.mark.parametrize("kind", BACKENDS)
def test_unstorable_journal_row_is_quarantined_and_the_rest_commit(
    mocks: MockUpstreams, kind: str, tmp_path: Path
) -> None:
    with backend(kind, tmp_path) as b:
        cfg = state_config(_urls(mocks))
        gw = start_gateway(cfg, tmp_path, b)
        admin = Admin(gw.url)
        key_id, _ = admin.create_key(credit=10)
        gw.stop()

        tag = uuid.uuid4().hex[:8]
        good = [_row(f"req_good{i}_{tag}", key_id, 1000 * (i + 1)) for i in range(5)]
        bad = _row(f"req_bad_{tag}", key_id, 10**19, input_tokens=10**19)
        _write_dead_journal(tmp_path / "journal", [*good[:2], bad, *good[2:]])

        gw.start()
        try:
            rows = Admin(gw.url).wait_usage(5, key=key_id)
            assert sorted(r["request_id"] for r in rows) == sorted(r.request_id for r in good)
            assert admin.key(key_id)["spent"] == pytest.approx(15000 / UNITS_PER_USD)
            rejected = _rejected(admin)
            assert [r["request_id"] for r in rejected] == [bad.request_id]
            assert rejected[0]["key_id"] == key_id
            assert rejected[0]["record"]["input_tokens"] == 10**19
            assert rejected[0]["error"]
            assert bad.request_id in gw.log()  # the operator is told which one
            # The dead owner's journal is gone: nothing is replayed again.
            assert not list((tmp_path / "journal").glob("999999-deadbeef.*"))
            # And the gateway goes on recording.
            secret = admin.create_key()[1]
            r = httpx.post(
                gw.url + "/v1/chat/completions",
                json={"model": GPT, "messages": [{"role": "user", "content": "hi"}]},
                headers={"authorization": f"Bearer {secret}"},
            )
            assert r.status_code == 200
            assert any(u["request_id"] == r.headers["x-request-id"] for u in admin.wait_usage(6))
        finally:
            gw.stop()

        gw.start()  # the quarantine survives a restart, and the restart neither retries nor charges it again
        try:
            assert [r["request_id"] for r in _rejected(admin)] == [bad.request_id]
            assert admin.key(key_id)["spent"] == pytest.approx(15000 / UNITS_PER_USD)
            assert len(admin.usage(key=key_id)) == 5
        finally:
            gw.stop()

        listed = subprocess.run(
            [sys.executable, "-m", "omnirelay", "usage", "--rejected", "--config", str(gw.config_path)],
            cwd=ROOT,
            env=gw.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        assert bad.request_id in listed.stdout


@on_session_loop
@pytest.mark.parametrize("kind", BACKENDS)
async def test_writer_isolates_unstorable_rows_in_a_live_batch(kind: str, tmp_path: Path) -> None:
    tag = "r" + uuid.uuid4().hex[:12]
    url = f"{PG_BASE}?schema=omni_{tag}" if kind == "postgres" else f"sqlite:///{tmp_path}/state.db"
    store = open_store(url)
    await store.open()
    writer = UsageWriter(store, tmp_path / "journal", flush_s=3600, fsync=False)
    await writer.start()
    try:
        rows = [_row(f"req_{i}_{tag}", None, 10) for i in range(40)]
        rows[7] = _row(f"req_bad7_{tag}", None, 10, input_tokens=10**19)  # beyond a 64-bit column
        rows[31] = _row(f"req_bad31_{tag}", None, 10, latency_ms=float("nan"))  # NULL in a NOT NULL column
        for row in rows:
            await writer.record(row)
        await writer.flush()
        assert writer.pending == [] and writer.committed == 38 and writer.rejected == 2
        assert len(await store.query_usage(UsageFilter())) == 38
        rejected = await store.query_rejected()
        assert sorted(r.request_id for r in rejected) == sorted([f"req_bad7_{tag}", f"req_bad31_{tag}"])
        # The batch's segment is gone once every row is stored or kept aside; only the live one is left.
        assert len(list((tmp_path / "journal").glob("*.jnl"))) == 1
    finally:
        await writer.stop()
        await store.close()
        if kind == "postgres":
            await drop_schema(tag)


class _DownStore(SqliteStore):
    async def write_usage(self, rows: list[UsageRow]) -> int:
        raise ConnectionRefusedError("database is down")


@on_session_loop
async def test_failed_flushes_add_no_empty_journal_segments(tmp_path: Path) -> None:
    store = _DownStore(str(tmp_path / "state.db"))
    await store.open()
    # Not started: no flush loop, so the flushes below are the only ones (and stop() would retry for 10 s).
    writer = UsageWriter(store, tmp_path / "journal", flush_s=3600, fsync=False)
    writer.journal.open()
    try:
        await writer.record(_row("req_waiting", None, 10))
        for _ in range(6):
            await writer.flush()
        assert len(writer.pending) == 1
        # The segment with the record and the live one: not one more per failed attempt.
        assert len(list((tmp_path / "journal").glob("*.jnl"))) == 2
    finally:
        writer.journal.close(remove=False)
        await store.close()


# -- file modes -------------------------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_database_and_journal_files_are_private(mocks: MockUpstreams, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with backend("sqlite", tmp_path) as b:
        b.env["OMNIRELAY_DATABASE_URL"] = "sqlite:///" + str(data / "omnirelay.db")
        b.env["OMNIRELAY_DATA_DIR"] = str(data)
        # An ordinary umask: without omnirelay's own care the files would be 0644.
        gw = Gateway(state_config(_urls(mocks), usage_flush_s=30), tmp_path, env=b.env)
        old_umask = os.umask(0o022)
        try:
            gw.start()
        finally:
            os.umask(old_umask)
        try:
            admin = Admin(gw.url)
            _, secret = admin.create_key()
            r = httpx.post(
                gw.url + "/v1/chat/completions",
                json={"model": GPT, "messages": [{"role": "user", "content": "hi"}]},
                headers={"authorization": f"Bearer {secret}"},
            )
            assert r.status_code == 200
            files = [data / "omnirelay.db", data / "omnirelay.db-wal", data / "omnirelay.db-shm"]
            files += sorted((data / "journal").glob("*.jnl")) + sorted((data / "journal").glob("*.lock"))
            assert len(files) >= 5 and all(f.exists() for f in files), files
            assert {str(f): _mode(f) for f in files} == {str(f): 0o600 for f in files}
            assert _mode(data) == 0o700 and _mode(data / "journal") == 0o700
        finally:
            gw.stop()


def test_database_left_world_readable_is_tightened(mocks: MockUpstreams, tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with backend("sqlite", tmp_path) as b:
        b.env["OMNIRELAY_DATABASE_URL"] = "sqlite:///" + str(db)
        gw = start_gateway(state_config(_urls(mocks)), tmp_path, b)
        gw.stop()
        for f in (db, db.with_name("old.db-wal"), db.with_name("old.db-shm")):
            if f.exists():
                f.chmod(0o644)  # as an older omnirelay left it
        gw.start()
        try:
            Admin(gw.url).create_key()
            assert _mode(db) == 0o600
            for f in (db.with_name("old.db-wal"), db.with_name("old.db-shm")):
                assert not f.exists() or _mode(f) == 0o600
        finally:
            gw.stop()
