"""Image generation in canonical form (``POST /v1/images/generations`` on any upstream), and what it costs.

Pricing follows each provider's bill: a ``Price`` with a ``per_image`` table (dall-e-2/3, grok-2-image, Imagen)
charges each image returned at the rate of the request's quality and size; one without (gpt-image-1) charges the
upstream's token usage (text input at ``input``, image output at ``output``, USD per million tokens). The credit
reservation is the worst case: every image asked for, at the dearest rate the request can hit; for per-token
models the most output tokens an image of that size and quality can cost (OpenAI's published table).
"""

from __future__ import annotations

import msgspec

from omnirelay.core.catalog import Price
from omnirelay.core.pricing import cost_of
from omnirelay.core.types import Usage
from omnirelay.core.usage_bounds import sane_cost

MAX_IMAGES = 10  # OpenAI's limit on ``n``

# Output tokens of one gpt-image-1 image by quality and size (OpenAI's image generation guide).
IMAGE_OUTPUT_TOKENS: dict[str, dict[str, int]] = {
    "low": {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400},
    "medium": {"1024x1024": 1056, "1024x1536": 1584, "1536x1024": 1568},
    "high": {"1024x1024": 4160, "1024x1536": 6240, "1536x1024": 6208},
}

# Names of models that generate images (besides any with a ``per_image`` price).
IMAGE_MODEL_PREFIXES = ("gpt-image-", "dall-e-", "grok-2-image", "imagen-")


class ImageRequest(msgspec.Struct, kw_only=True):
    model: str
    prompt: str
    n: int = 1
    size: str | None = None  # "1024x1024", ... or "auto"; None: the upstream's default
    quality: str | None = None  # standard | hd (dall-e-3), low | medium | high | auto (gpt-image-1)
    response_format: str = "url"  # what the caller wants back: url | b64_json
    response_format_given: bool = False  # whether the caller named one (gpt-image-1 rejects the field)
    style: str | None = None
    background: str | None = None
    output_format: str | None = None
    output_compression: int | None = None
    moderation: str | None = None
    user: str | None = None


class GeneratedImage(msgspec.Struct, kw_only=True):
    b64: str | None = None  # base64 of the image bytes
    url: str | None = None  # where the upstream stored it (dall-e, grok: valid for about an hour)
    revised_prompt: str | None = None
    mime_type: str = "image/png"


class ImageResult(msgspec.Struct, kw_only=True):
    created: int
    images: list[GeneratedImage]
    usage: Usage | None = None  # token usage, when the upstream reports it (gpt-image-1)
    size: str | None = None
    quality: str | None = None
    background: str | None = None
    output_format: str | None = None


def is_image_model(model: str, price: Price | None) -> bool:
    """Whether ``model`` generates images: a per-image price, or a name of the known image model families
    (an ``-image`` model, e.g. gemini-2.5-flash-image)."""
    if price is not None and price.per_image:
        return True
    name = model.rsplit("/", 1)[-1]
    return name.startswith(IMAGE_MODEL_PREFIXES) or "-image" in name


def per_image_rate(table: dict[str, float], req: ImageRequest) -> float:
    """USD per image for ``req``'s quality and size: the most specific entry of ``table`` that matches
    (``quality:size``, ``size``, ``quality``, ``*``); the dearest entry when none does (never undercharged)."""
    quality = req.quality if req.quality not in (None, "auto") else "standard"
    size = req.size if req.size not in (None, "auto") else "1024x1024"
    for key in (f"{quality}:{size}", size, quality, "*"):
        if key in table:
            return table[key]
    return max(table.values(), default=0.0)


def worst_output_tokens(req: ImageRequest) -> int:
    """The most image output tokens one image of ``req`` can cost on a per-token model."""
    qualities = [req.quality] if req.quality in IMAGE_OUTPUT_TOKENS else list(IMAGE_OUTPUT_TOKENS)
    worst = 0
    for quality in qualities:
        sizes = IMAGE_OUTPUT_TOKENS[str(quality)]
        tokens = sizes.get(req.size or "", max(sizes.values()))
        worst = max(worst, tokens)
    return worst


def image_reservation(price: Price, req: ImageRequest, prompt_tokens: int) -> float:
    """USD to hold against the caller's credit: ``req`` at its worst case on a model priced ``price``."""
    if price.per_image:
        return req.n * max(per_image_rate(price.per_image, req), 0.0)
    usage = Usage(input_tokens=prompt_tokens, output_tokens=req.n * worst_output_tokens(req))
    return cost_of(usage, price)


def image_cost(price: Price, req: ImageRequest, result: ImageResult, prompt_tokens: int) -> float:
    """USD for ``result``: per image returned, or the upstream's token usage (without one, the estimate the
    reservation made for the images returned: never less than the upstream could bill)."""
    if price.per_image:
        return sane_cost(round(len(result.images) * per_image_rate(price.per_image, req), 10))
    usage = result.usage
    if usage is None:
        usage = Usage(input_tokens=prompt_tokens, output_tokens=len(result.images) * worst_output_tokens(req))
    return cost_of(usage, price)


def data_url(image: GeneratedImage) -> str:
    """An image the upstream returned only as base64, as the URL a ``response_format: url`` caller asked for."""
    return f"data:{image.mime_type};base64,{image.b64 or ''}"
