"""Image generation on the Gemini API with Imagen (``POST models/{model}:predict``): the OpenAI-shaped request
as Imagen's ``instances``/``parameters`` and its ``predictions`` read back. Pure translation, used by the Gemini
provider.

``size`` becomes the nearest ``aspectRatio`` Imagen offers (it has no pixel sizes); ``quality``, ``style`` and
the gpt-image-1 options have no Imagen counterpart and are not sent. At most 4 images per request (Imagen's
``sampleCount`` limit).
"""

from __future__ import annotations

import time

import msgspec

from omnirelay.core.errors import GatewayError, invalid
from omnirelay.core.image_gen import GeneratedImage, ImageRequest, ImageResult
from omnirelay.wire import imagen as wire

MAX_SAMPLES = 4
ASPECT_RATIOS: dict[str, float] = {"1:1": 1.0, "3:4": 0.75, "4:3": 4 / 3, "9:16": 9 / 16, "16:9": 16 / 9}

_encoder = msgspec.json.Encoder()
_response_decoder = msgspec.json.Decoder(wire.ImagenPredictResponse)


def aspect_ratio(size: str | None) -> str | None:
    """The Imagen aspect ratio nearest to ``size`` ("1792x1024" -> "16:9"); None for no size or "auto"."""
    if size is None or size == "auto":
        return None
    width, sep, height = size.partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or int(width) == 0 or int(height) == 0:
        raise invalid(f"`size` must be WIDTHxHEIGHT (e.g. 1024x1024) or auto, not {size!r}", param="size")
    ratio = int(width) / int(height)
    return min(ASPECT_RATIOS, key=lambda name: abs(ASPECT_RATIOS[name] - ratio))


def imagen_body(req: ImageRequest) -> bytes:
    if req.n > MAX_SAMPLES:
        raise invalid(f"`n` must be at most {MAX_SAMPLES} for Imagen models, not {req.n}", param="n")
    params = wire.ImagenParameters(sample_count=req.n, aspect_ratio=aspect_ratio(req.size))
    return _encoder.encode(
        wire.ImagenPredictRequest(instances=[wire.ImagenInstance(prompt=req.prompt)], parameters=params)
    )


def parse_imagen(body: bytes, upstream: str) -> ImageResult:
    try:
        resp = _response_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise GatewayError("upstream", f"upstream {upstream} sent a malformed Imagen reply: {exc}") from None
    images = [
        GeneratedImage(b64=p.bytes_base64_encoded, mime_type=p.mime_type or "image/png")
        for p in resp.predictions
        if p.bytes_base64_encoded
    ]
    if not images:
        reasons = sorted({p.rai_filtered_reason for p in resp.predictions if p.rai_filtered_reason})
        why = f": {'; '.join(reasons)}" if reasons else ""
        raise GatewayError(
            "invalid_request",
            f"Imagen generated no image (filtered by its safety system{why})",
            code="content_policy_violation",
        )
    return ImageResult(created=int(time.time()), images=images)
