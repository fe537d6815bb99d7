"""Batches passed on to an upstream's own batch API (upstream option ``native_batches: true``), the requests
built and the replies read here, with no I/O (``native_runner.py`` sends them): OpenAI's Files + Batch API
(upload the JSONL, create, poll, download the output and error files) and Anthropic's Message Batches API
(create with the requests inline, poll, read ``results_url``).

Each request's upstream body is what the provider builds for an interactive call of the same request
(``HttpProvider.build_request``), and each result is read by the provider's own ``parse_response`` or
``parse_error``, so translation is the same as for an interactive call; what a native batch gives up is the
gateway's retries and fallbacks (the upstream runs each request once).
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

import msgspec

from omnirelay.core.types import ChatRequest
from omnirelay.providers.base import HttpProvider, UpstreamRequest

NATIVE_OPTION = "native_batches"  # in an upstream's ``options``
POLL_OPTION = "native_batch_poll_s"  # how often the upstream's batch is polled (default DEFAULT_POLL_S)
DEFAULT_POLL_S = 30.0
OPENAI_SUFFIXES = ("/chat/completions", "/responses")
# The metadata key of an OpenAI batch that names the gateway's batch it runs: how a submission whose answer was
# lost (a crash, a timeout) is found again instead of submitted twice.
BATCH_METADATA = "omnirelay_batch"
LIST_PAGE = 100  # OpenAI's largest page of the batch list
_encoder = msgspec.json.Encoder()


def native_capable(provider: object) -> bool:
    """Whether batches whose every request goes to ``provider`` may be passed to its own batch API."""
    return (
        isinstance(provider, HttpProvider)
        and bool(provider.upstream.options.get(NATIVE_OPTION))
        and provider.family in ("openai", "anthropic")
    )


def poll_interval(provider: HttpProvider) -> float:
    value = provider.upstream.options.get(POLL_OPTION, DEFAULT_POLL_S)
    return float(value) if isinstance(value, int | float) and value > 0 else DEFAULT_POLL_S


def _get(url: str, template: UpstreamRequest) -> UpstreamRequest:
    headers = {k: v for k, v in template.headers.items() if k.lower() != "content-type"}
    return UpstreamRequest(url=url, headers=headers, body=b"", method="GET")


def _json(url: str, template: UpstreamRequest, body: Any) -> UpstreamRequest:
    return UpstreamRequest(url=url, headers=dict(template.headers), body=_encoder.encode(body))


class OpenAINative:
    """OpenAI's Batch API, from the requests the provider built for each item (their URLs name the base)."""

    def __init__(self, first: UpstreamRequest) -> None:
        self.template = first
        suffix = next((s for s in OPENAI_SUFFIXES if first.url.endswith(s)), None)
        if suffix is None:
            raise ValueError(f"cannot batch requests to {first.url}")
        self.base = first.url[: -len(suffix)]
        self.line_url = "/v1" + suffix

    def upload(self, items: list[tuple[int, UpstreamRequest]]) -> UpstreamRequest:
        lines = b"".join(
            b'{"custom_id":"%d","method":"POST","url":%s,"body":%s}\n' % (i, _encoder.encode(self.line_url), u.body)
            for i, u in items
        )
        boundary = "omnirelay" + secrets.token_hex(12)
        form = (
            (
                f'--{boundary}\r\ncontent-disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
                f'--{boundary}\r\ncontent-disposition: form-data; name="file"; filename="batch.jsonl"\r\n'
                "content-type: application/jsonl\r\n\r\n"
            ).encode()
            + lines
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers = {k: v for k, v in self.template.headers.items() if k.lower() != "content-type"}
        headers["content-type"] = f"multipart/form-data; boundary={boundary}"
        return UpstreamRequest(url=self.base + "/files", headers=headers, body=form)

    def create(self, file_id: str, batch_id: str) -> UpstreamRequest:
        body = {
            "input_file_id": file_id,
            "endpoint": self.line_url,
            "completion_window": "24h",
            "metadata": {BATCH_METADATA: batch_id},
        }
        return _json(self.base + "/batches", self.template, body)

    def poll(self, native_id: str) -> UpstreamRequest:
        return _get(f"{self.base}/batches/{native_id}", self.template)

    def cancel(self, native_id: str) -> UpstreamRequest:
        return _json(f"{self.base}/batches/{native_id}/cancel", self.template, {})

    def content(self, file_id: str) -> UpstreamRequest:
        return _get(f"{self.base}/files/{file_id}/content", self.template)

    def listed(self, after: str | None = None) -> UpstreamRequest:
        """A page of the organisation's batches, newest first (``after``: the last id of the page before)."""
        query = f"?limit={LIST_PAGE}" + (f"&after={quote(after, safe='')}" if after else "")
        return _get(f"{self.base}/batches{query}", self.template)


class UploadedFile(msgspec.Struct):
    id: str


class OpenAIBatchState(msgspec.Struct):
    id: str
    status: str
    output_file_id: str | None = None
    error_file_id: str | None = None


class ListedBatch(msgspec.Struct):
    id: str
    status: str
    created_at: float = 0.0
    metadata: dict[str, str] | None = None


class OpenAIBatchPage(msgspec.Struct):
    data: list[ListedBatch]
    has_more: bool = False
    last_id: str | None = None


def submitted_before(page: bytes, batch_id: str, since: float) -> tuple[str | None, str | None]:
    """Whether a page of OpenAI's batch list (``OpenAINative.listed``) holds the upstream batch created for the
    gateway's ``batch_id`` (its ``metadata.omnirelay_batch``; one that failed validation does not count): its
    id, else None; and the cursor of the next page, None when no older page can hold it (none is left, or the
    page reached batches created before ``since``, the gateway batch's creation)."""
    listed = msgspec.json.decode(page, type=OpenAIBatchPage)
    for batch in listed.data:
        if batch.metadata and batch.metadata.get(BATCH_METADATA) == batch_id and batch.status != "failed":
            return batch.id, None
    if not listed.has_more or not listed.data or listed.data[-1].created_at < since:
        return None, None
    return None, listed.last_id or listed.data[-1].id


class OpenAIResponsePart(msgspec.Struct):
    status_code: int
    body: msgspec.Raw


class OpenAIResultLine(msgspec.Struct):
    custom_id: str
    response: OpenAIResponsePart | None = None


OPENAI_ENDED = ("completed", "failed", "expired", "cancelled")

# What one item came back as: "succeeded" or "errored" with the HTTP status and the body the provider reads,
# or "canceled" / "expired" with nothing.
NativeResult = tuple[str, int, bytes]


def openai_results(content: bytes) -> dict[int, NativeResult]:
    out: dict[int, NativeResult] = {}
    decoder = msgspec.json.Decoder(OpenAIResultLine)
    for raw in content.splitlines():
        if not raw.strip():
            continue
        line = decoder.decode(raw)
        if not line.custom_id.isdigit():
            continue
        r = line.response
        if r is None:
            out[int(line.custom_id)] = ("expired", 0, b"")
        else:
            outcome = "succeeded" if r.status_code == 200 else "errored"
            out[int(line.custom_id)] = (outcome, r.status_code, bytes(r.body))
    return out


class AnthropicNative:
    def __init__(self, first: UpstreamRequest) -> None:
        self.template = first
        self.base = first.url  # .../v1/messages

    def create(self, items: list[tuple[int, UpstreamRequest]]) -> UpstreamRequest:
        requests = b",".join(b'{"custom_id":"n%d","params":%s}' % (i, u.body) for i, u in items)
        url = self.base + "/batches"
        return UpstreamRequest(url=url, headers=dict(self.template.headers), body=b'{"requests":[' + requests + b"]}")

    def poll(self, native_id: str) -> UpstreamRequest:
        return _get(f"{self.base}/batches/{native_id}", self.template)

    def cancel(self, native_id: str) -> UpstreamRequest:
        return _json(f"{self.base}/batches/{native_id}/cancel", self.template, {})

    def results(self, url: str) -> UpstreamRequest:
        return _get(url, self.template)


class AnthropicBatchState(msgspec.Struct):
    id: str
    processing_status: str
    results_url: str | None = None


_NULL = msgspec.Raw(b"null")


class AnthropicResult(msgspec.Struct):
    type: str
    message: msgspec.Raw = _NULL  # (msgspec takes no ``Raw | None``)
    error: msgspec.Raw = _NULL


class AnthropicResultLine(msgspec.Struct):
    custom_id: str
    result: AnthropicResult


def anthropic_results(content: bytes) -> dict[int, NativeResult]:
    out: dict[int, NativeResult] = {}
    decoder = msgspec.json.Decoder(AnthropicResultLine)
    for raw in content.splitlines():
        if not raw.strip():
            continue
        line = decoder.decode(raw)
        index = line.custom_id.removeprefix("n")
        if not index.isdigit():
            continue
        r = line.result
        if r.type == "succeeded":
            out[int(index)] = ("succeeded", 200, bytes(r.message))
        elif r.type == "errored":
            out[int(index)] = ("errored", 400, bytes(r.error))
        else:
            out[int(index)] = ("canceled" if r.type == "canceled" else "expired", 0, b"")
    return out


def built(provider: HttpProvider, req: ChatRequest, model: str) -> UpstreamRequest:
    """The upstream request of one item, as for an interactive call but never streamed."""
    req.stream = False
    return provider.build_request(req, model)
