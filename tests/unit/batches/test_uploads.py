"""The batch input file checks and the multipart form reader."""

from __future__ import annotations

import json
from typing import Any

import pytest

from omnirelay.batches.uploads import parse_form, read_batch_input
from omnirelay.core.errors import GatewayError


def _line(custom_id: str = "a", **over: Any) -> bytes:
    line: dict[str, Any] = {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]},
    }
    line.update(over)
    return json.dumps(line).encode()


def _error(content: bytes, max_requests: int = 100) -> GatewayError:
    with pytest.raises(GatewayError) as exc:
        read_batch_input(content, max_requests)
    assert exc.value.status == 400
    return exc.value


def test_reads_every_line_and_skips_blank_ones() -> None:
    rows = read_batch_input(_line("a") + b"\n\n" + _line("b") + b"\n", 10)
    assert [(r.custom_id, r.url) for r in rows] == [("a", "/v1/chat/completions"), ("b", "/v1/chat/completions")]
    assert json.loads(rows[0].body)["model"] == "gpt-4.1"


@pytest.mark.parametrize(
    ("second", "needle"),
    [
        (b'{"custom_id": "b"', "not valid JSON"),
        (_line("a"), "used by an earlier line"),
        (_line("b", method="GET"), "method must be POST"),
        (_line("b", url="/v1/embeddings"), "differs from the earlier lines"),
        (_line("b", url="/v1/audio"), "url must be one of"),
        (_line("b", body=[1]), "body must be a JSON object"),
        (_line("b", body={"model": "gpt-4.1", "messages": [{"role": "wizard", "content": "x"}]}), "messages"),
        (_line(""), "custom_id must be"),
        (json.dumps({"custom_id": "b", "method": "POST"}).encode(), "url"),
    ],
)
def test_a_bad_line_is_named(second: bytes, needle: str) -> None:
    err = _error(_line("a") + b"\n" + second)
    assert err.message.startswith("Line 2 of the batch input file") and needle in err.message, err.message
    assert err.param == "line 2"


def test_limits() -> None:
    assert "at most 2 requests" in _error(b"\n".join(_line(str(i)) for i in range(3)), max_requests=2).message
    assert "no requests" in _error(b"\n\n").message


def test_embedding_lines_are_checked_by_the_embeddings_protocol() -> None:
    ok = _line("e", url="/v1/embeddings", body={"model": "m", "input": ["x", "y"]})
    assert read_batch_input(ok, 5)[0].url == "/v1/embeddings"
    bad = _line("e", url="/v1/embeddings", body={"model": "m", "input": {"x": 1}})
    assert "Line 1" in _error(bad).message


def test_multipart_form() -> None:
    body = (
        b'--XyZ\r\ncontent-disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        b'--XyZ\r\ncontent-disposition: form-data; name="file"; filename="in.jsonl"\r\n'
        b"content-type: application/jsonl\r\n\r\n" + _line() + b"\n\r\n--XyZ--\r\n"
    )
    parts = parse_form("multipart/form-data; boundary=XyZ", body)
    assert parts["purpose"].data == b"batch"
    assert parts["file"].filename == "in.jsonl" and parts["file"].data == _line() + b"\n"
    with pytest.raises(GatewayError):
        parse_form("application/json", b"{}")
