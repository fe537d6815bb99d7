"""The Gemini API's Imagen wire format: ``POST models/{model}:predict`` (imagen-3.0/4.0 models).

Reference: https://ai.google.dev/gemini-api/docs/imagen. The body is ``{"instances": [{"prompt"}], "parameters":
{"sampleCount", "aspectRatio", "personGeneration", "imageSize"}}``; the reply ``{"predictions":
[{"bytesBase64Encoded", "mimeType"}]}``, base64 only (no URL form), no token usage (billed per image).
"""

from __future__ import annotations

import msgspec


class _Wire(msgspec.Struct, kw_only=True, omit_defaults=True, rename="camel"):
    pass


class ImagenInstance(_Wire):
    prompt: str


class ImagenParameters(_Wire):
    sample_count: int = 1
    aspect_ratio: str | None = None  # "1:1", "3:4", "4:3", "9:16", "16:9"
    image_size: str | None = None  # "1K" | "2K" (Standard and Ultra models)
    person_generation: str | None = None


class ImagenPredictRequest(_Wire):
    instances: list[ImagenInstance]
    parameters: ImagenParameters


class ImagenPrediction(_Wire):
    bytes_base64_encoded: str | None = None
    mime_type: str | None = None
    rai_filtered_reason: str | None = None  # set (without bytes) on an image the safety filter removed


class ImagenPredictResponse(_Wire):
    predictions: list[ImagenPrediction] = []
