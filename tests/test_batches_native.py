"""Upstreams with ``native_batches: true``: a batch whose every request goes to one of them is passed to that
provider's own batch API (the mocks' OpenAI Files + Batch API and Anthropic Message Batches API), polled, and its
results translated back into the caller's shape and charged at the batch price."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.mocks.script import ScriptedReply
from tests.mocks.server import MockUpstreams
from tests.polling import wait_until
from tests.state_helpers import Admin, backend, start_gateway, state_config

NATIVE = {"native_batches": True, "native_batch_poll_s": 0.2}


@pytest.fixture(scope="module")
def env(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Admin, str]]:
    tmp = tmp_path_factory.mktemp("native")
    with backend("sqlite", tmp) as b:
        cfg = state_config((mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini")))
        cfg["batches"] = {"poll_s": 0.1}
        for up in cfg["upstreams"]:
            if up["name"] in ("mock-openai", "mock-anthropic"):
                up["options"] = dict(NATIVE)
        gw = start_gateway(cfg, tmp / "gw", b)
        try:
            admin = Admin(gw.url)
            kid, secret = admin.create_key(credit=1.0)
            yield gw.url, secret, admin, kid
        finally:
            gw.stop()


def _paths(mocks: MockUpstreams, family: str) -> list[str]:
    return [r.path for r in mocks.requests(family)]


def _chat_batch(client: openai.OpenAI, model: str, prefix: str, text: str, n: int) -> str:
    """Upload ``n`` chat requests to ``model`` (custom ids ``{prefix}{i}``, contents ``{text} {i}``) as one batch."""
    lines = [
        {"custom_id": f"{prefix}{i}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": model, "max_tokens": 30, "messages": [{"role": "user", "content": f"{text} {i}"}]}}
        for i in range(n)
    ]  # fmt: skip
    data = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
    f = client.files.create(file=(f"{prefix}.jsonl", io.BytesIO(data)), purpose="batch")
    return client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h").id


def _creates(mocks: MockUpstreams) -> list[Any]:
    """The bodies of the OpenAI batch creations (``POST /v1/batches``; the list is a GET with no body)."""
    return [r.body for r in mocks.requests("openai") if r.path == "/v1/batches" and r.body is not None]


def _ended(client: openai.OpenAI, batch_id: str) -> Any:
    b = client.batches.retrieve(batch_id)
    return b if b.status in ("completed", "failed", "expired", "cancelled") else None


@pytest.mark.parametrize(("model", "family"), [("gpt-4.1", "openai"), ("claude-sonnet-4-20250514", "anthropic")])
def test_openai_batch_through_the_upstreams_batch_api(
    env: tuple[str, str, Admin, str], mocks: MockUpstreams, model: str, family: str
) -> None:
    url, secret, admin, kid = env
    client = openai.OpenAI(base_url=url + "/v1", api_key=secret, max_retries=0)
    batch_id = _chat_batch(client, model, "n", "native", 3)
    done = wait_until(lambda: _ended(client, batch_id), 30, "the native batch to end")
    assert done.status == "completed" and done.request_counts.completed == 3
    paths = _paths(mocks, family)
    if family == "openai":
        # The list (was it submitted before?), upload, create; then polls and the output download.
        assert paths[:3] == ["/v1/batches", "/v1/files", "/v1/batches"]
        assert any(p.startswith("/v1/batches/batch_") for p in paths)
        assert any(p.startswith("/v1/files/file-") and p.endswith("/content") for p in paths)
        (created,) = _creates(mocks)
        assert created["endpoint"] == "/v1/chat/completions" and created["metadata"] == {"omnirelay_batch": batch_id}
    else:
        assert paths[0] == "/v1/messages/batches"
        (created,) = [r.body for r in mocks.requests(family) if r.path == "/v1/messages/batches"]
        assert [r["custom_id"] for r in created["requests"]] == ["n0", "n1", "n2"]
        assert created["requests"][0]["params"]["max_tokens"] == 30  # the provider's own translation
    assert paths.count("/v1/chat/completions" if family == "openai" else "/v1/messages") == 3  # run once each
    out = {
        json.loads(x)["custom_id"]: json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()
    }
    for i in range(3):
        body = out[f"n{i}"]["response"]["body"]
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"] == f"echo: native {i}"
    records = admin.wait_usage(3, key=kid, model=model)
    prices = {"gpt-4.1": (2.0, 8.0), "claude-sonnet-4-20250514": (3.0, 15.0)}[model]
    assert sum(r["cost"] for r in records) == pytest.approx(3 * (12 * prices[0] + 7 * prices[1]) / 1e6 * 0.5)
    assert {r["protocol"] for r in records} == {"batch"}


def test_anthropic_message_batch_natively(env: tuple[str, str, Admin, str], mocks: MockUpstreams) -> None:
    url, secret, _admin, _kid = env
    client = anthropic.Anthropic(base_url=url, api_key=secret, max_retries=0)
    reqs: Any = [
        {"custom_id": f"a{i}", "params": {"model": "claude-sonnet-4-20250514", "max_tokens": 20,
                                          "messages": [{"role": "user", "content": f"hey {i}"}]}}
        for i in range(2)
    ]  # fmt: skip
    batch = client.messages.batches.create(requests=reqs)

    def ended() -> Any:
        b = client.messages.batches.retrieve(batch.id)
        return b if b.processing_status == "ended" else None

    done = wait_until(ended, 30, "the native message batch to end")
    assert done.request_counts.succeeded == 2
    assert "/v1/messages/batches" in _paths(mocks, "anthropic")
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert results["a1"].type == "succeeded" and results["a1"].message.content[0].text == "echo: hey 1"  # type: ignore[union-attr]


@pytest.mark.parametrize(("model", "family"), [("gpt-4.1", "openai"), ("claude-sonnet-4-20250514", "anthropic")])
def test_cancel_reaches_the_upstream(
    env: tuple[str, str, Admin, str], mocks: MockUpstreams, model: str, family: str
) -> None:
    url, secret, admin, kid = env
    mocks.push(family, *[ScriptedReply(echo=True, delay_s=0.3) for _ in range(20)])
    client = openai.OpenAI(base_url=url + "/v1", api_key=secret, max_retries=0)
    lines = [
        {"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": model, "max_tokens": 9, "messages": [{"role": "user", "content": f"c{i}"}]}}
        for i in range(20)
    ]  # fmt: skip
    data = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
    f = client.files.create(file=("c.jsonl", io.BytesIO(data)), purpose="batch")
    batch = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    run_path = "/v1/chat/completions" if family == "openai" else "/v1/messages"
    poll = "/v1/batches/batch_" if family == "openai" else "/v1/messages/batches/msgbatch_"
    # A poll comes only once the upstream's batch id is recorded: then a cancel is passed on.
    wait_until(lambda: any(p.startswith(poll) for p in _paths(mocks, family)), 15, "the upstream's batch polled")
    client.batches.cancel(batch.id)
    done = wait_until(lambda: _ended(client, batch.id), 30, "the cancelled batch to end")
    assert done.status == "cancelled"
    assert any(p.endswith("/cancel") for p in _paths(mocks, family)), "the cancel was not passed on"
    ran = _paths(mocks, family).count(run_path)
    assert 0 < ran < 20 and done.request_counts.completed == ran
    err = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert len(err) == 20 - ran and {e["error"]["code"] for e in err} == {"batch_cancelled"}
    records = [r for r in admin.usage(key=kid, limit=1000) if r["request_id"].startswith(batch.id)]
    assert len(records) == ran  # only what ran is charged


def test_a_mixed_batch_runs_here(env: tuple[str, str, Admin, str], mocks: MockUpstreams) -> None:
    """Requests to two upstreams: no single batch API can take it, so the gateway runs it itself."""
    url, secret, _admin, _kid = env
    client = anthropic.Anthropic(base_url=url, api_key=secret, max_retries=0)
    reqs: Any = [
        {"custom_id": f"m{i}", "params": {"model": model, "max_tokens": 20,
                                          "messages": [{"role": "user", "content": "mixed"}]}}
        for i, model in enumerate(["claude-sonnet-4-20250514", "gemini-2.5-pro"])
    ]  # fmt: skip
    batch = client.messages.batches.create(requests=reqs)
    wait_until(lambda: client.messages.batches.retrieve(batch.id).processing_status == "ended", 30)
    assert "/v1/messages/batches" not in _paths(mocks, "anthropic")
    assert _paths(mocks, "anthropic") == ["/v1/messages"]


def test_a_submission_whose_answer_was_lost_is_not_submitted_again(mocks: MockUpstreams, tmp_path: Path) -> None:
    """OpenAI creates the batch but its answer comes after the gateway's first-byte timeout: the next turn finds
    it in the upstream's batch list by its metadata and polls it, instead of running (and billing) it twice."""
    with backend("sqlite", tmp_path) as b:
        cfg = state_config((mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini")))
        cfg["batches"] = {"poll_s": 0.1}
        for up in cfg["upstreams"]:
            if up["name"] == "mock-openai":
                up["options"] = dict(NATIVE)
                up["timeouts"] = {"first_byte": 0.5}
        gw = start_gateway(cfg, tmp_path / "gw", b)
        try:
            admin = Admin(gw.url)
            kid, secret = admin.create_key(credit=1.0)
            mocks.states["openai"].batch_create_delay_s = 1.5
            client = openai.OpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0)
            batch_id = _chat_batch(client, "gpt-4.1", "l", "lost", 3)
            done = wait_until(lambda: _ended(client, batch_id), 30, "the native batch to end")
            assert done.status == "completed" and done.request_counts.completed == 3
            assert len(_creates(mocks)) == 1, "the batch was submitted to the upstream twice"
            assert _paths(mocks, "openai").count("/v1/chat/completions") == 3  # each request ran once
            records = admin.wait_usage(3, key=kid)
            assert sorted(r["request_id"] for r in records) == [f"{batch_id}-{i}" for i in range(3)]
        finally:
            gw.stop()


def test_an_upstream_without_the_batch_list_still_gets_the_batch(
    env: tuple[str, str, Admin, str], mocks: MockUpstreams
) -> None:
    url, secret, _admin, _kid = env
    mocks.states["openai"].batch_list_missing = True
    client = openai.OpenAI(base_url=url + "/v1", api_key=secret, max_retries=0)
    batch_id = _chat_batch(client, "gpt-4.1", "x", "no list", 1)
    done = wait_until(lambda: _ended(client, batch_id), 30, "the native batch to end")
    assert done.status == "completed" and done.request_counts.completed == 1
    assert len(_creates(mocks)) == 1
