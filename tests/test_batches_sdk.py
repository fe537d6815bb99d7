"""OpenAI's Files + Batch APIs and Anthropic's Message Batches API through the official SDKs, run by the gateway
itself over the mock upstreams of every family (OpenAI, Anthropic, Gemini), and the validation errors."""

from __future__ import annotations

import functools
import io
import json
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_MODELS
from tests.gateway import Gateway
from tests.mocks.server import MockUpstreams
from tests.polling import wait_until


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def _chat_line(custom_id: str, model: str, text: str, url: str = "/v1/chat/completions") -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 50}
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def _done(client: openai.OpenAI, batch_id: str) -> Any:
    batch = client.batches.retrieve(batch_id)
    return batch if batch.status in ("completed", "failed", "expired", "cancelled") else None


def test_openai_batch_over_every_family(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    lines = [_chat_line(f"req-{fam}", model, f"hello {fam}") for fam, model in UPSTREAM_MODELS.items()]
    lines.append(_chat_line("req-unknown", "no-such-model", "x"))
    uploaded = oai.files.create(file=("in.jsonl", io.BytesIO(_jsonl(lines))), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.bytes == len(_jsonl(lines))
    assert oai.files.retrieve(uploaded.id).filename == "in.jsonl"
    assert oai.files.content(uploaded.id).content == _jsonl(lines)
    batch = oai.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"run": "t1"}
    )
    assert batch.status == "validating" and batch.request_counts is not None and batch.request_counts.total == 4
    done = wait_until(lambda: _done(oai, batch.id), 30, "the batch to end")
    assert done.status == "completed" and done.metadata == {"run": "t1"}
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (4, 3, 1)
    assert done.in_progress_at is not None and done.finalizing_at is not None and done.completed_at is not None
    assert done.output_file_id and done.error_file_id
    out = [json.loads(line) for line in oai.files.content(done.output_file_id).text.splitlines()]
    assert sorted(o["custom_id"] for o in out) == ["req-anthropic", "req-gemini", "req-openai"]
    for o in out:
        fam = o["custom_id"].removeprefix("req-")
        assert o["error"] is None and o["response"]["status_code"] == 200
        assert (
            o["response"]["request_id"] == f"{batch.id}-{[line['custom_id'] for line in lines].index(o['custom_id'])}"
        )
        body = o["response"]["body"]
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == f"echo: hello {fam}"
    errors = [json.loads(line) for line in oai.files.content(done.error_file_id).text.splitlines()]
    assert [e["custom_id"] for e in errors] == ["req-unknown"]
    assert errors[0]["response"]["status_code"] == 404
    assert errors[0]["response"]["body"]["error"]["code"] == "model_not_found"
    assert mocks.requests("gemini") and mocks.requests("anthropic")
    assert batch.id in [b.id for b in oai.batches.list(limit=100)]
    assert uploaded.id in [f.id for f in oai.files.list()]
    assert oai.files.delete(uploaded.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve(uploaded.id)


def test_openai_embeddings_and_responses_batches(oai: openai.OpenAI) -> None:
    emb = [
        {"custom_id": "e1", "method": "POST", "url": "/v1/embeddings",
         "body": {"model": "gemini-embedding-001", "input": "hello"}},
    ]  # fmt: skip
    resp = [
        {"custom_id": "r1", "method": "POST", "url": "/v1/responses", "body": {"model": "gpt-4.1", "input": "hi"}},
    ]
    for lines, endpoint in ((emb, "/v1/embeddings"), (resp, "/v1/responses")):
        f = oai.files.create(file=("in.jsonl", io.BytesIO(_jsonl(lines))), purpose="batch")
        batch_id = oai.batches.create(input_file_id=f.id, endpoint=endpoint, completion_window="24h").id  # type: ignore[arg-type]
        done = wait_until(functools.partial(_done, oai, batch_id), 30, "the batch to end")
        assert done.status == "completed", done
        (line,) = [json.loads(x) for x in oai.files.content(done.output_file_id).text.splitlines()]
        body = line["response"]["body"]
        if endpoint == "/v1/embeddings":
            assert body["object"] == "list" and len(body["data"][0]["embedding"]) > 0
        else:
            assert body["object"] == "response" and body["output"][0]["content"][0]["text"] == "echo: hi"


def test_cancel_an_openai_batch(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    from tests.mocks.script import ScriptedReply

    mocks.push("openai", *[ScriptedReply(text="slow", delay_s=0.5) for _ in range(40)])
    lines = [_chat_line(f"c{i}", "gpt-4.1", f"n{i}") for i in range(40)]
    f = oai.files.create(file=("in.jsonl", io.BytesIO(_jsonl(lines))), purpose="batch")
    batch = oai.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    wait_until(lambda: mocks.requests("openai"), 15, "the first item to reach the upstream")
    cancelled = oai.batches.cancel(batch.id)
    assert cancelled.status in ("cancelling", "cancelled")
    done = wait_until(lambda: _done(oai, batch.id), 30, "the batch to end")
    assert done.status == "cancelled" and done.cancelled_at is not None
    assert done.request_counts is not None and done.request_counts.completed < 40
    out = oai.files.content(done.output_file_id).text.splitlines() if done.output_file_id else []
    err = [json.loads(x) for x in oai.files.content(done.error_file_id).text.splitlines()]
    assert len(out) + len(err) == 40
    assert {e["error"]["code"] for e in err} == {"batch_cancelled"}
    assert len(mocks.requests("openai")) == len(out)  # canceled requests never ran


def test_file_validation_errors(oai: openai.OpenAI, gateway: Gateway) -> None:
    good = _chat_line("a", "gpt-4.1", "x")
    cases = [
        ([good, {**good, "custom_id": "b", "method": "GET"}], "Line 2", "method"),
        ([good, good], "Line 2", "custom_id"),
        ([good, {**good, "custom_id": "b", "body": {"model": "gpt-4.1", "messages": "nope"}}], "Line 2", "messages"),
        ([{**good, "url": "/v1/images/generations"}], "Line 1", "url"),
    ]
    for lines, where, what in cases:
        with pytest.raises(openai.BadRequestError) as exc:
            oai.files.create(file=("in.jsonl", io.BytesIO(_jsonl(lines))), purpose="batch")
        message = exc.value.body["message"]  # type: ignore[index]
        assert where in message and what in message, message
    with pytest.raises(openai.BadRequestError) as bad:
        oai.files.create(file=("in.jsonl", io.BytesIO(b'{"custom_id": "a",\n')), purpose="batch")
    assert "Line 1" in str(bad.value) and "JSON" in str(bad.value)
    with pytest.raises(openai.NotFoundError):
        oai.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        oai.batches.retrieve("batch_nope")
    r = httpx.post(gateway.url + "/v1/files", files={"file": ("x.jsonl", b"{}")}, data={"purpose": "fine-tune"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "purpose"


def test_anthropic_message_batches(claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    requests: list[Any] = [
        {"custom_id": f"m-{fam}", "params": {"model": model, "max_tokens": 64,
                                             "messages": [{"role": "user", "content": f"hi {fam}"}]}}
        for fam, model in UPSTREAM_MODELS.items()
    ]  # fmt: skip
    requests.append({"custom_id": "m-bad", "params": {"model": "no-such-model", "max_tokens": 5, "messages": []}})
    with pytest.raises(anthropic.BadRequestError) as bad:
        incomplete: Any = [{"custom_id": "x", "params": {"model": "claude-sonnet-4-20250514"}}]
        claude.messages.batches.create(requests=incomplete)
    assert "requests[0].params" in str(bad.value)
    requests[-1]["params"]["messages"] = [{"role": "user", "content": "x"}]
    batch = claude.messages.batches.create(requests=requests)
    assert batch.id.startswith("msgbatch_") and batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 4

    def ended() -> Any:
        b = claude.messages.batches.retrieve(batch.id)
        return b if b.processing_status == "ended" else None

    done = wait_until(ended, 30, "the message batch to end")
    assert done.request_counts.succeeded == 3 and done.request_counts.errored == 1 and done.ended_at is not None
    assert done.results_url and done.results_url.endswith(f"/v1/messages/batches/{batch.id}/results")
    results = {r.custom_id: r.result for r in claude.messages.batches.results(batch.id)}
    assert set(results) == {"m-openai", "m-anthropic", "m-gemini", "m-bad"}
    for fam in UPSTREAM_MODELS:
        r = results[f"m-{fam}"]
        assert r.type == "succeeded" and r.message.content[0].text == f"echo: hi {fam}"  # type: ignore[union-attr]
    bad_result = results["m-bad"]
    assert bad_result.type == "errored" and bad_result.error.error.type == "not_found_error"
    assert batch.id in [b.id for b in claude.messages.batches.list(limit=50)]
    assert claude.messages.batches.delete(batch.id).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.batches.retrieve(batch.id)


def test_anthropic_cancel(claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    from tests.mocks.script import ScriptedReply

    mocks.push("anthropic", *[ScriptedReply(text="slow", delay_s=0.5) for _ in range(30)])
    reqs: Any = [
        {"custom_id": f"c{i}", "params": {"model": "claude-sonnet-4-20250514", "max_tokens": 5,
                                           "messages": [{"role": "user", "content": "x"}]}}
        for i in range(30)
    ]  # fmt: skip
    batch = claude.messages.batches.create(requests=reqs)
    wait_until(lambda: mocks.requests("anthropic"), 15, "the first item to run")
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.batches.delete(batch.id)  # still processing
    assert claude.messages.batches.cancel(batch.id).processing_status in ("canceling", "ended")

    def ended() -> Any:
        b = claude.messages.batches.retrieve(batch.id)
        return b if b.processing_status == "ended" else None

    done = wait_until(ended, 30, "the message batch to end")
    assert done.request_counts.canceled > 0 and done.cancel_initiated_at is not None
    types = [r.result.type for r in claude.messages.batches.results(batch.id)]
    assert len(types) == 30 and types.count("canceled") == done.request_counts.canceled
    assert types.count("succeeded") == len(mocks.requests("anthropic"))
