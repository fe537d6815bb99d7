"""The native batch requests built from provider-built item requests, and the result files read back."""

from __future__ import annotations

import json
from collections.abc import Sequence

from omnirelay.batches.native import (
    AnthropicNative,
    OpenAINative,
    anthropic_results,
    openai_results,
    submitted_before,
)
from omnirelay.providers.base import UpstreamRequest

AUTH = {"authorization": "Bearer sk-x", "content-type": "application/json"}


def test_openai_upload_create_poll() -> None:
    chat = UpstreamRequest(url="https://api.example/v1/chat/completions", headers=AUTH, body=b'{"model":"m"}')
    api = OpenAINative(chat)
    up = api.upload([(0, chat), (7, chat)])
    assert up.url == "https://api.example/v1/files" and up.method == "POST"
    boundary = up.headers["content-type"].split("boundary=")[1]
    assert up.headers["authorization"] == "Bearer sk-x"
    payload = up.body.split(b"\r\n\r\n", 2)[2].split(f"\r\n--{boundary}--".encode())[0]
    lines = [json.loads(x) for x in payload.splitlines()]
    assert lines[1] == {"custom_id": "7", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}
    created = api.create("file-1", "batch_me")
    expected = {"input_file_id": "file-1", "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    assert json.loads(created.body) == {**expected, "metadata": {"omnirelay_batch": "batch_me"}}
    poll = api.poll("batch_up")
    assert (poll.method, poll.url, poll.body) == ("GET", "https://api.example/v1/batches/batch_up", b"")
    assert "content-type" not in poll.headers and api.content("f").url.endswith("/v1/files/f/content")


def test_openai_results() -> None:
    content = (
        b'{"id":"r","custom_id":"0","response":{"status_code":200,"request_id":"q","body":{"id":"x"}},"error":null}\n'
        b'{"id":"r","custom_id":"1","response":{"status_code":429,"request_id":"q","body":{"error":{}}},"error":null}\n'
        b'{"id":"r","custom_id":"2","response":null,"error":{"code":"batch_expired","message":"m"}}\n'
    )
    assert openai_results(content) == {
        0: ("succeeded", 200, b'{"id":"x"}'),
        1: ("errored", 429, b'{"error":{}}'),
        2: ("expired", 0, b""),
    }


def test_anthropic_create_and_results() -> None:
    msg = UpstreamRequest(url="https://api.anthropic.example/v1/messages", headers=AUTH, body=b'{"max_tokens":5}')
    api = AnthropicNative(msg)
    created = api.create([(3, msg)])
    assert created.url.endswith("/v1/messages/batches")
    assert json.loads(created.body) == {"requests": [{"custom_id": "n3", "params": {"max_tokens": 5}}]}
    content = (
        b'{"custom_id":"n0","result":{"type":"succeeded","message":{"id":"m"}}}\n'
        b'{"custom_id":"n1","result":{"type":"errored","error":{"type":"error","error":{"type":"x","message":"y"}}}}\n'
        b'{"custom_id":"n2","result":{"type":"canceled"}}\n'
    )
    found = anthropic_results(content)
    assert found[0] == ("succeeded", 200, b'{"id":"m"}') and found[1][0] == "errored" and found[2][0] == "canceled"


def _page(batches: Sequence[tuple[str, str, int, str | None]], has_more: bool) -> bytes:
    data = [
        {"id": i, "object": "batch", "status": st, "created_at": at, "metadata": {"omnirelay_batch": m} if m else None}
        for i, st, at, m in batches
    ]
    return json.dumps({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                       "last_id": data[-1]["id"] if data else None, "has_more": has_more}).encode()  # fmt: skip


def test_the_batch_list_is_read_for_an_earlier_submission() -> None:
    chat = UpstreamRequest(url="https://api.example/v1/chat/completions", headers=AUTH, body=b"{}")
    api = OpenAINative(chat)
    assert api.listed().url == "https://api.example/v1/batches?limit=100" and api.listed().method == "GET"
    assert api.listed("batch_a&b").url == "https://api.example/v1/batches?limit=100&after=batch_a%26b"
    mine = [("batch_3", "in_progress", 1000, "batch_me"), ("batch_2", "completed", 990, "batch_other")]
    assert submitted_before(_page(mine, has_more=True), "batch_me", 900.0) == ("batch_3", None)
    # One that failed validation ran nothing: submitting again is right.
    failed = [("batch_4", "failed", 1000, "batch_me")]
    assert submitted_before(_page(failed, has_more=False), "batch_me", 900.0) == (None, None)
    # Not on this page: the next one, while the page is newer than the gateway batch and more are left.
    others = [("batch_9", "completed", 1000, None), ("batch_8", "completed", 950, "batch_x")]
    assert submitted_before(_page(others, has_more=True), "batch_me", 900.0) == (None, "batch_8")
    assert submitted_before(_page(others, has_more=True), "batch_me", 960.0) == (None, None)  # older than it
    assert submitted_before(_page(others, has_more=False), "batch_me", 900.0) == (None, None)
    assert submitted_before(_page([], has_more=True), "batch_me", 900.0) == (None, None)
