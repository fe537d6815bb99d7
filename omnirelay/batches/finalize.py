"""Ending a batch: its final status and, for the OpenAI shape, the output and error files in OpenAI's JSONL result
format (``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``; requests that never
ran carry ``error.code`` ``batch_expired`` or ``batch_cancelled`` and no response). The Anthropic shape reads
its results from the items directly (``anthropic_results``). File ids are derived from the batch id, so a
finalization taken over after a crash writes the same files (kept once)."""

from __future__ import annotations

import msgspec

from omnirelay.core.batches import BatchJob, BatchStatus, BatchStore, DoneItem, StoredFile

_encoder = msgspec.json.Encoder()


class ResponsePart(msgspec.Struct):
    status_code: int
    request_id: str
    body: msgspec.Raw


class ErrorPart(msgspec.Struct):
    code: str
    message: str


class OutputLine(msgspec.Struct):
    id: str
    custom_id: str
    response: ResponsePart | None
    error: ErrorPart | None


_NOT_RUN = {
    "expired": ErrorPart(
        code="batch_expired", message="This request could not be executed before the completion window expired."
    ),
    "canceled": ErrorPart(code="batch_cancelled", message="This request was not executed: the batch was cancelled."),
}


def output_line(job: BatchJob, item: DoneItem) -> bytes:
    r = item.result
    line_id = f"batch_req_{job.id.removeprefix('batch_')}_{item.index}"
    if r.outcome in _NOT_RUN:
        return _encoder.encode(OutputLine(line_id, item.custom_id, None, _NOT_RUN[r.outcome]))
    body = msgspec.Raw(r.body or b"{}")
    return _encoder.encode(OutputLine(line_id, item.custom_id, ResponsePart(r.status_code, r.request_id, body), None))


def final_status(job: BatchJob, items: list[DoneItem]) -> BatchStatus:
    if job.status == "cancelling":
        return "cancelled"
    if any(i.result.outcome == "expired" for i in items):
        return "expired"
    return "completed"


def result_files(job: BatchJob, items: list[DoneItem], now: float) -> list[StoredFile]:
    """The output file (succeeded requests) and the error file (the rest), each only when it has a line."""
    good = [output_line(job, i) for i in items if i.result.outcome == "succeeded"]
    bad = [output_line(job, i) for i in items if i.result.outcome != "succeeded"]
    files = []
    for lines, kind in ((good, "output"), (bad, "error")):
        if lines:
            content = b"\n".join(lines) + b"\n"
            files.append(
                StoredFile(
                    id=f"file-{job.id}-{kind}",
                    key_id=job.key_id,
                    purpose="batch_output",
                    filename=f"{job.id}_{kind}.jsonl",
                    bytes=len(content),
                    lines=len(lines),
                    created_at=now,
                    content=content,
                )
            )
    return files


async def finalize_batch(batches: BatchStore, job: BatchJob, now: float) -> None:
    items = await batches.done_items(job.id)
    files = result_files(job, items, now) if job.api == "openai" else []
    await batches.finalize(job, final_status(job, items), files, now)


class AnthropicSucceeded(msgspec.Struct, tag_field="type", tag="succeeded"):
    message: msgspec.Raw


class AnthropicErrored(msgspec.Struct, tag_field="type", tag="errored"):
    error: msgspec.Raw


class AnthropicNotRun(msgspec.Struct):
    type: str


class AnthropicResultLine(msgspec.Struct):
    custom_id: str
    result: AnthropicSucceeded | AnthropicErrored | AnthropicNotRun


def anthropic_results(items: list[DoneItem]) -> bytes:
    """``GET /v1/messages/batches/{id}/results``: one line per request, ``result.type`` succeeded (the Message),
    errored (the error body as the Messages API returns it), canceled or expired."""
    lines = []
    for item in items:
        r = item.result
        result: AnthropicSucceeded | AnthropicErrored | AnthropicNotRun
        if r.outcome == "succeeded":
            result = AnthropicSucceeded(msgspec.Raw(r.body))
        elif r.outcome == "errored":
            result = AnthropicErrored(msgspec.Raw(r.body or b"{}"))
        else:
            result = AnthropicNotRun(r.outcome)
        lines.append(_encoder.encode(AnthropicResultLine(item.custom_id, result)))
    return b"".join(line + b"\n" for line in lines)
