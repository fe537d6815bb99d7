"""The OpenAI-compatible ``/embeddings`` request and reply, for ``providers.openai`` (OpenAI, Mistral, vLLM,
Ollama, llama.cpp server and other OpenAI-compatible servers). Pure translation, no I/O.

Vectors are asked for as base64 where the server is known to send it (OpenAI: a third of the bytes of JSON
floats, exact float32) and as floats elsewhere; either form is read back. A server that ignores ``dimensions``
gets its vectors cut and renormalised here, so the caller always sees the length it asked for.
"""

from __future__ import annotations

from typing import Any

import msgspec

from omnirelay.core.embeddings import (
    EmbeddingRequest,
    EmbeddingResponse,
    decode_base64,
    estimate_input_tokens,
    fit_dimensions,
)
from omnirelay.core.errors import GatewayError


class _Item(msgspec.Struct):
    embedding: list[float] | str
    index: int = -1


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    total_tokens: int | None = None


class _Reply(msgspec.Struct):
    data: list[_Item]
    model: str | None = None
    usage: _Usage | None = None


_decoder = msgspec.json.Decoder(_Reply)
_encoder = msgspec.json.Encoder()


def embeddings_body(
    req: EmbeddingRequest, model: str, base64: bool, dimensions_field: str | None, send_user: bool
) -> bytes:
    inputs: Any = req.texts if req.texts else req.tokens
    body: dict[str, Any] = {"model": model, "input": inputs}
    if base64:
        body["encoding_format"] = "base64"
    if req.dimensions is not None and dimensions_field:
        body[dimensions_field] = req.dimensions
    if req.user is not None and send_user:
        body["user"] = req.user
    return _encoder.encode(body)


def parse_embeddings_reply(body: bytes, req: EmbeddingRequest) -> EmbeddingResponse:
    try:
        reply = _decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise GatewayError("upstream", "upstream returned a malformed embeddings reply") from None
    if len(reply.data) != req.count:
        raise GatewayError(
            "upstream", f"upstream returned {len(reply.data)} embeddings for {req.count} inputs", retryable=False
        )
    items = sorted(reply.data, key=lambda item: item.index) if any(i.index >= 0 for i in reply.data) else reply.data
    vectors = [decode_base64(i.embedding) if isinstance(i.embedding, str) else i.embedding for i in items]
    tokens = reply.usage.prompt_tokens if reply.usage is not None else None
    return EmbeddingResponse(
        model=reply.model or req.model,
        vectors=fit_dimensions(vectors, req.dimensions),
        input_tokens=tokens if tokens is not None else estimate_input_tokens(req),
        exact_usage=tokens is not None,
    )
