"""Image generation on OpenAI-compatible upstreams (``POST {base}/images/generations``): the request body for
OpenAI's models (gpt-image-1 and dall-e-2/3 take different fields) and xAI's grok-2-image, and the reply read
back. Pure translation, used by the OpenAI provider."""

from __future__ import annotations

import time

import msgspec

from omnirelay.core.errors import GatewayError, invalid
from omnirelay.core.image_gen import GeneratedImage, ImageRequest, ImageResult
from omnirelay.core.types import Usage
from omnirelay.wire import openai_images as wire

_encoder = msgspec.json.Encoder()
_response_decoder = msgspec.json.Decoder(wire.ImagesResponse)
_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def is_gpt_image(model: str) -> bool:
    return model.startswith("gpt-image")


def image_body(req: ImageRequest, model: str, xai: bool) -> bytes:
    """The request body for ``model``: only the fields that model accepts (gpt-image-1 refuses
    ``response_format``, dall-e the gpt-image-1 options, xAI ``size``/``quality``/``style``)."""
    body: dict[str, object] = {"model": model, "prompt": req.prompt, "n": req.n}
    if req.user is not None:
        body["user"] = req.user
    if xai:
        if req.response_format_given:
            body["response_format"] = req.response_format
        return _encoder.encode(body)
    for field, value in (("size", req.size), ("quality", req.quality)):
        if value is not None:
            body[field] = value
    if is_gpt_image(model):
        options: tuple[tuple[str, object], ...] = (
            ("background", req.background),
            ("output_format", req.output_format),
            ("output_compression", req.output_compression),
            ("moderation", req.moderation),
        )
        for field, option in options:
            if option is not None:
                body[field] = option
    else:
        for name, value in (("background", req.background), ("output_format", req.output_format)):
            if value is not None:
                raise invalid(f"`{name}` is supported only by the gpt-image models, not {model}", param=name)
        if req.response_format_given:
            body["response_format"] = req.response_format
        if req.style is not None:
            body["style"] = req.style
    return _encoder.encode(body)


def parse_images(body: bytes, upstream: str) -> ImageResult:
    try:
        resp = _response_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise GatewayError("upstream", f"upstream {upstream} sent a malformed images reply: {exc}") from None
    mime = _MIME.get(resp.output_format or "png", "image/png")
    images = [
        GeneratedImage(b64=d.b64_json, url=d.url, revised_prompt=d.revised_prompt, mime_type=mime) for d in resp.data
    ]
    if any(image.b64 is None and image.url is None for image in images):
        raise GatewayError("upstream", f"upstream {upstream} sent an image with neither b64_json nor url")
    usage = None
    if resp.usage is not None:
        usage = Usage(input_tokens=resp.usage.input_tokens, output_tokens=resp.usage.output_tokens)
    return ImageResult(
        created=resp.created or int(time.time()),
        images=images,
        usage=usage,
        size=resp.size,
        quality=resp.quality,
        background=resp.background,
        output_format=resp.output_format,
    )
