"""OpenAI's Embeddings API inbound: the ``POST /v1/embeddings`` body -> the canonical ``EmbeddingRequest``
(400 naming the field on bad input, OpenAI's limits: at most 2048 inputs, no empty string, ``dimensions`` at
least 1), and the canonical ``EmbeddingResponse`` -> OpenAI's response, each vector as floats or base64 as
asked. Errors render in OpenAI's shape. No I/O; the endpoint is ``server.embeddings``."""

from __future__ import annotations

from typing import Any

import msgspec

from omnirelay.core.embeddings import EmbeddingRequest, EmbeddingResponse, encode_base64
from omnirelay.core.errors import invalid
from omnirelay.protocols.base import decode_openai_body
from omnirelay.protocols.openai_chat import PROTOCOL as OPENAI_CHAT
from omnirelay.wire import openai_embeddings as wire

PROTOCOL_NAME = "openai_embeddings"
OPERATION = "embeddings"  # the OpenTelemetry GenAI operation name (gen_ai.operation.name)
EMBEDDINGS_PATHS = ("/v1/embeddings", "/embeddings")
MAX_INPUTS = 2048  # OpenAI's limit on the inputs of one request
MAX_TOKEN_ID = 2**31 - 1

_decoder = msgspec.json.Decoder(wire.EmbeddingCreateParams)
_encoder = msgspec.json.Encoder()
render_error = OPENAI_CHAT.render_error


def _is_token(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_TOKEN_ID


def _inputs(value: Any) -> tuple[list[str], list[list[int]]]:
    """(texts, token arrays) of ``input``: exactly one of them non-empty."""
    if isinstance(value, str):
        value = [value]
    elif not isinstance(value, list) or not value:
        raise invalid("`input` must be a non-empty string, array of strings, or array of token arrays", "input")
    elif all(_is_token(v) for v in value):
        value = [value]
    if len(value) > MAX_INPUTS:
        raise invalid(f"`input` may hold at most {MAX_INPUTS} items, got {len(value)}", "input")
    if isinstance(value[0], str):
        for i, text in enumerate(value):
            if not isinstance(text, str):
                raise invalid(f"`input[{i}]` must be a string like the items before it", f"input[{i}]")
            if not text:
                raise invalid(f"`input[{i}]` must not be an empty string", f"input[{i}]")
        return value, []
    for i, tokens in enumerate(value):
        if not isinstance(tokens, list) or not tokens or not all(_is_token(t) for t in tokens):
            raise invalid(
                f"`input[{i}]` must be a non-empty array of token ids (and every item of one kind)", f"input[{i}]"
            )
    return [], value


def parse_request(body: bytes) -> EmbeddingRequest:
    params = decode_openai_body(_decoder.decode, body)
    if not params.model:
        raise invalid("`model` is required", "model")
    if params.dimensions is not None and params.dimensions < 1:
        raise invalid("`dimensions` must be at least 1", "dimensions")
    texts, tokens = _inputs(params.input)
    return EmbeddingRequest(
        model=params.model,
        texts=texts,
        tokens=tokens,
        dimensions=params.dimensions,
        encoding_format=params.encoding_format,
        user=params.user,
    )


def render_response(resp: EmbeddingResponse, req: EmbeddingRequest) -> bytes:
    as_base64 = req.encoding_format == "base64"
    data = [wire.Embedding(index=i, embedding=encode_base64(v) if as_base64 else v) for i, v in enumerate(resp.vectors)]
    usage = wire.EmbeddingUsage(prompt_tokens=resp.input_tokens, total_tokens=resp.input_tokens)
    return _encoder.encode(wire.CreateEmbeddingResponse(data=data, model=resp.model, usage=usage))
