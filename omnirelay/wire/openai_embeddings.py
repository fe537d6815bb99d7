"""OpenAI's Embeddings API (``POST /v1/embeddings``): the request body and the response, as its reference
defines them. ``input`` is a string, a list of strings, a token array or a list of token arrays; that union is
told apart in ``protocols.openai_embeddings``, so it is left raw here."""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class EmbeddingCreateParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    model: str
    input: Any
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


class Embedding(msgspec.Struct, kw_only=True):
    index: int
    embedding: list[float] | str  # a base64 string of little-endian float32 when encoding_format is base64
    object: str = "embedding"


class EmbeddingUsage(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(msgspec.Struct, kw_only=True):
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage | None = None
    object: str = "list"
