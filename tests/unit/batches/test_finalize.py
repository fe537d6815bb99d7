"""Result lines in OpenAI's batch output format and Anthropic's results format, and the final status."""

from __future__ import annotations

import json

from omnirelay.batches.finalize import anthropic_results, final_status, result_files
from omnirelay.core.batches import BatchJob, DoneItem, ItemResult


def _job(status: str = "finalizing", api: str = "openai") -> BatchJob:
    return BatchJob(
        id="batch_abc",
        key_id="k",
        api=api,  # type: ignore[arg-type]
        endpoint="/v1/chat/completions",
        input_file_id="file-1",
        completion_window="24h",
        status=status,  # type: ignore[arg-type]
        created_at=1.0,
        expires_at=2.0,
    )


ITEMS = [
    DoneItem(index=0, custom_id="a", result=ItemResult(outcome="succeeded", status_code=200, body=b'{"id":"x"}',
                                                        request_id="batch_abc-0")),
    DoneItem(index=1, custom_id="b", result=ItemResult(outcome="errored", status_code=404,
                                                        body=b'{"error":{"message":"m"}}', request_id="batch_abc-1")),
    DoneItem(index=2, custom_id="c", result=ItemResult(outcome="canceled")),
    DoneItem(index=3, custom_id="d", result=ItemResult(outcome="expired")),
]  # fmt: skip


def test_openai_output_and_error_files() -> None:
    out, err = result_files(_job(), ITEMS, 5.0)
    assert (out.id, out.filename, out.lines, out.key_id) == ("file-batch_abc-output", "batch_abc_output.jsonl", 1, "k")
    (line,) = [json.loads(x) for x in out.content.splitlines()]
    assert line == {
        "id": "batch_req_abc_0",
        "custom_id": "a",
        "response": {"status_code": 200, "request_id": "batch_abc-0", "body": {"id": "x"}},
        "error": None,
    }
    errors = [json.loads(x) for x in err.content.splitlines()]
    assert [e["custom_id"] for e in errors] == ["b", "c", "d"]
    assert errors[0]["response"]["status_code"] == 404 and errors[0]["error"] is None
    assert errors[1] == {"id": "batch_req_abc_2", "custom_id": "c", "response": None,
                         "error": {"code": "batch_cancelled", "message": errors[1]["error"]["message"]}}  # fmt: skip
    assert errors[2]["error"]["code"] == "batch_expired" and err.bytes == len(err.content)


def test_final_status() -> None:
    assert final_status(_job(), ITEMS[:2]) == "completed"
    assert final_status(_job(), ITEMS) == "expired"
    assert final_status(_job("cancelling"), ITEMS) == "cancelled"
    assert result_files(_job(), [], 1.0) == []


def test_anthropic_results() -> None:
    lines = [json.loads(x) for x in anthropic_results(ITEMS).splitlines()]
    assert lines[0] == {"custom_id": "a", "result": {"type": "succeeded", "message": {"id": "x"}}}
    assert lines[1] == {"custom_id": "b", "result": {"type": "errored", "error": {"error": {"message": "m"}}}}
    assert [x["result"] for x in lines[2:]] == [{"type": "canceled"}, {"type": "expired"}]
