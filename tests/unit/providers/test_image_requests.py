"""The image-generation requests the providers build and the replies they read (pure translation)."""

from __future__ import annotations

import json

import pytest

from omnirelay.config import UpstreamConfig
from omnirelay.core.errors import GatewayError
from omnirelay.core.image_gen import ImageRequest
from omnirelay.protocols.openai_images import parse_image_request
from omnirelay.providers.gemini import GeminiProvider
from omnirelay.providers.imagen import aspect_ratio, parse_imagen
from omnirelay.providers.openai import OpenAIProvider
from omnirelay.providers.openai_images import parse_images


def _req(**kw: object) -> ImageRequest:
    return ImageRequest(model="m", prompt="a cat", **kw)  # type: ignore[arg-type]


def _openai(preset: str) -> OpenAIProvider:
    up = UpstreamConfig(name="u", provider="openai", preset=preset, base_url="http://x/v1", api_key="sk-k")
    return OpenAIProvider(up)


def test_gpt_image_body_never_has_response_format() -> None:
    req = _req(response_format="url", response_format_given=True, size="1024x1536", background="transparent")
    ureq = _openai("openai").build_image_request(req, "gpt-image-1")
    assert ureq.url == "http://x/v1/images/generations"
    assert ureq.headers["authorization"] == "Bearer sk-k"
    body = json.loads(ureq.body)
    assert body == {"model": "gpt-image-1", "prompt": "a cat", "n": 1, "size": "1024x1536", "background": "transparent"}


def test_dall_e_refuses_gpt_image_options_and_xai_drops_size() -> None:
    with pytest.raises(GatewayError) as e:
        _openai("openai").build_image_request(_req(output_format="webp"), "dall-e-3")
    assert e.value.param == "output_format" and e.value.status == 400
    body = json.loads(_openai("xai").build_image_request(_req(size="1024x1024", quality="hd"), "grok-2-image").body)
    assert body == {"model": "grok-2-image", "prompt": "a cat", "n": 1}


def test_presets_without_images_say_so() -> None:
    with pytest.raises(GatewayError) as e:
        _openai("deepseek").build_image_request(_req(), "dall-e-3")
    assert "preset deepseek" in e.value.message and e.value.status == 400


def test_parse_images_reads_usage_and_output_format() -> None:
    body = (
        b'{"created": 7, "data": [{"b64_json": "AA=="}], "output_format": "webp",'
        b' "usage": {"input_tokens": 3, "output_tokens": 272, "total_tokens": 275}}'
    )
    result = parse_images(body, "u")
    assert result.created == 7 and result.images[0].mime_type == "image/webp"
    assert result.usage is not None and (result.usage.input_tokens, result.usage.output_tokens) == (3, 272)
    with pytest.raises(GatewayError) as e:
        parse_images(b'{"created": 1, "data": [{}]}', "u")
    assert e.value.status == 502


def test_imagen_request_and_reply() -> None:
    gemini = GeminiProvider(UpstreamConfig(name="g", provider="gemini", base_url="http://g", api_key="gk"))
    ureq = gemini.build_image_request(_req(n=2, size="1024x1792"), "imagen-3.0-generate-002")
    assert ureq.url == "http://g/v1beta/models/imagen-3.0-generate-002:predict"
    assert ureq.headers["x-goog-api-key"] == "gk" and "gk" not in ureq.url
    assert json.loads(ureq.body) == {
        "instances": [{"prompt": "a cat"}],
        "parameters": {"sampleCount": 2, "aspectRatio": "9:16"},
    }
    with pytest.raises(GatewayError):
        gemini.build_image_request(_req(), "gemini-2.5-pro")
    result = parse_imagen(
        b'{"predictions": [{"bytesBase64Encoded": "AA==", "mimeType": "image/png"}, {"raiFilteredReason": "x"}]}', "g"
    )
    assert len(result.images) == 1
    with pytest.raises(GatewayError) as e:
        parse_imagen(b'{"predictions": [{"raiFilteredReason": "unsafe"}]}', "g")
    assert "unsafe" in e.value.message and e.value.status == 400


def test_aspect_ratio() -> None:
    assert [aspect_ratio(s) for s in ("1024x1024", "1792x1024", "1024x1792", "1536x1024", "auto")] == [
        "1:1",
        "16:9",
        "9:16",
        "4:3",
        None,
    ]
    with pytest.raises(GatewayError) as e:
        aspect_ratio("big")
    assert e.value.param == "size"


def test_parse_image_request_names_the_field() -> None:
    assert parse_image_request(b'{"prompt": "x", "model": "dall-e-3"}').response_format_given is False
    for body, param in (
        (b'{"prompt": "x", "n": 11}', "n"),
        (b'{"prompt": "  "}', "prompt"),
        (b'{"prompt": "x", "response_format": "png"}', "response_format"),
        (b'{"prompt": 3}', "prompt"),
    ):
        with pytest.raises(GatewayError) as e:
            parse_image_request(body)
        assert e.value.param == param and e.value.status == 400
