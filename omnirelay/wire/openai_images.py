"""The OpenAI Images API wire format (``POST /v1/images/generations``), as msgspec Structs.

Reference: https://platform.openai.com/docs/api-reference/images/create. dall-e-2/dall-e-3 honour
``response_format`` (``url`` or ``b64_json``) and dall-e-3 returns a ``revised_prompt`` per image; gpt-image-1
always returns ``b64_json``, rejects ``response_format``, and reports token ``usage``. xAI's
``POST /v1/images/generations`` (grok-2-image) takes the same body without ``size``/``quality``/``style``.
"""

from __future__ import annotations

import msgspec


class ImageGenerationRequest(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    prompt: str
    model: str | None = None
    n: int | None = None
    size: str | None = None
    quality: str | None = None
    response_format: str | None = None
    style: str | None = None  # dall-e-3: vivid | natural
    background: str | None = None  # gpt-image-1: transparent | opaque | auto
    output_format: str | None = None  # gpt-image-1: png | jpeg | webp
    output_compression: int | None = None  # gpt-image-1, jpeg/webp: 0-100
    moderation: str | None = None  # gpt-image-1: low | auto
    user: str | None = None


class ImageObject(msgspec.Struct, kw_only=True, omit_defaults=True):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class InputTokensDetails(msgspec.Struct, kw_only=True):
    text_tokens: int = 0
    image_tokens: int = 0


class ImagesUsage(msgspec.Struct, kw_only=True):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_tokens_details: InputTokensDetails = msgspec.field(default_factory=InputTokensDetails)


class ImagesResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    created: int = 0  # xAI's reply has none
    data: list[ImageObject] = []
    usage: ImagesUsage | None = None
    background: str | None = None
    output_format: str | None = None
    size: str | None = None
    quality: str | None = None
