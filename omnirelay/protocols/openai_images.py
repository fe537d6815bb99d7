"""The OpenAI Images API inbound (``POST /v1/images/generations``): the body as a canonical ``ImageRequest``
and an ``ImageResult`` as OpenAI's reply. Not a chat protocol (so not in ``PROTOCOL_MODULES``): the endpoint is
``server/images.py``; errors are rendered as openai_chat renders them.

Without ``response_format`` each image comes back as the upstream returned it (``b64_json`` from gpt-image-1
and Imagen, ``url`` from dall-e and grok by default), as OpenAI itself answers. ``response_format: url`` for an
image the upstream returned only as base64 (gpt-image-1 always does; Imagen
too) is answered with a ``data:image/png;base64,...`` URL, which every client that loads a URL can read; the
gateway never stores images to serve them. ``b64_json`` for an image the upstream returned only as a URL is a
502: the gateway does not fetch upstream URLs on the caller's behalf.
"""

from __future__ import annotations

import msgspec

from omnirelay.core.errors import GatewayError, invalid
from omnirelay.core.image_gen import MAX_IMAGES, ImageRequest, ImageResult, data_url
from omnirelay.protocols.base import decode_openai_body
from omnirelay.wire import openai_images as wire

PATHS = ("/v1/images/generations", "/images/generations")
PROTOCOL_NAME = "openai_images"
# The OpenTelemetry GenAI operation name (gen_ai.operation.name): its well-known value for generating
# non-text content.
OPERATION = "generate_content"
RESPONSE_FORMATS = ("url", "b64_json")

_decoder = msgspec.json.Decoder(wire.ImageGenerationRequest)
_encoder = msgspec.json.Encoder()


def parse_image_request(body: bytes) -> ImageRequest:
    """The body as an ``ImageRequest``; 400 naming the field on bad input. ``model`` may be missing (the
    endpoint then names the configuration that is missing)."""
    raw = decode_openai_body(_decoder.decode, body)
    if not raw.prompt.strip():
        raise invalid("`prompt` must not be empty", param="prompt")
    n = 1 if raw.n is None else raw.n
    if not 1 <= n <= MAX_IMAGES:
        raise invalid(f"`n` must be between 1 and {MAX_IMAGES}, not {n}", param="n")
    if raw.response_format is not None and raw.response_format not in RESPONSE_FORMATS:
        raise invalid(
            f"`response_format` must be one of {', '.join(RESPONSE_FORMATS)}, not {raw.response_format!r}",
            param="response_format",
        )
    return ImageRequest(
        model=raw.model or "",
        prompt=raw.prompt,
        n=n,
        size=raw.size,
        quality=raw.quality,
        response_format=raw.response_format or "url",
        response_format_given=raw.response_format is not None,
        style=raw.style,
        background=raw.background,
        output_format=raw.output_format,
        output_compression=raw.output_compression,
        moderation=raw.moderation,
        user=raw.user,
    )


def render_images(result: ImageResult, req: ImageRequest, usage: wire.ImagesUsage | None) -> bytes:
    """The OpenAI images reply, every image in the format the caller asked for (see the module docstring)."""
    data: list[wire.ImageObject] = []
    for i, image in enumerate(result.images):
        if not req.response_format_given:  # as the upstream returned it (gpt-image-1, Imagen: base64)
            data.append(wire.ImageObject(b64_json=image.b64, url=image.url, revised_prompt=image.revised_prompt))
        elif req.response_format == "b64_json":
            if image.b64 is None:
                raise GatewayError("upstream", f"the upstream returned image {i} only as a URL, not as b64_json")
            data.append(wire.ImageObject(b64_json=image.b64, revised_prompt=image.revised_prompt))
        else:
            url = image.url if image.url is not None else data_url(image)
            data.append(wire.ImageObject(url=url, revised_prompt=image.revised_prompt))
    resp = wire.ImagesResponse(
        created=result.created,
        data=data,
        usage=usage,
        background=result.background,
        output_format=result.output_format,
        size=result.size,
        quality=result.quality,
    )
    return _encoder.encode(resp)
