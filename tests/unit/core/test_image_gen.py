"""Image generation pricing: per-image tables by quality and size, per-token worst cases and charges."""

from __future__ import annotations

import pytest

from omnirelay.core.catalog import DALL_E_3, Price
from omnirelay.core.image_gen import (
    GeneratedImage,
    ImageRequest,
    ImageResult,
    data_url,
    image_cost,
    image_reservation,
    is_image_model,
    per_image_rate,
    worst_output_tokens,
)
from omnirelay.core.pricing import price_for
from omnirelay.core.types import Usage

GPT_IMAGE = Price(input=5.0, output=40.0)


def _req(**kw: object) -> ImageRequest:
    return ImageRequest(model="m", prompt="p", **kw)  # type: ignore[arg-type]


def _result(count: int, usage: Usage | None = None) -> ImageResult:
    return ImageResult(created=1, images=[GeneratedImage(b64="AA==") for _ in range(count)], usage=usage)


def test_per_image_rate_most_specific_entry_wins() -> None:
    assert per_image_rate(DALL_E_3, _req()) == 0.04  # standard 1024x1024 by default
    assert per_image_rate(DALL_E_3, _req(quality="hd", size="1024x1792")) == 0.12
    assert per_image_rate(DALL_E_3, _req(quality="auto", size="1792x1024")) == 0.08
    assert per_image_rate({"512x512": 0.018, "*": 0.5}, _req(size="512x512")) == 0.018
    assert per_image_rate({"hd": 0.3, "*": 0.1}, _req(quality="hd", size="9x9")) == 0.3
    assert per_image_rate({"*": 0.07}, _req(size="1536x1024")) == 0.07


def test_unknown_size_is_charged_at_the_dearest_entry() -> None:
    assert per_image_rate(DALL_E_3, _req(quality="ultra", size="4096x4096")) == 0.12


def test_worst_output_tokens_by_quality_and_size() -> None:
    assert worst_output_tokens(_req(quality="low", size="1024x1024")) == 272
    assert worst_output_tokens(_req(quality="medium", size="1536x1024")) == 1568
    assert worst_output_tokens(_req(quality="high")) == 6240  # no size: the largest
    assert worst_output_tokens(_req(size="1024x1024")) == 4160  # auto quality: high at worst


def test_reservation_is_every_image_at_its_worst() -> None:
    assert image_reservation(Price(input=0, output=0, per_image=DALL_E_3), _req(n=1, quality="hd"), 50) == 0.08
    assert image_reservation(Price(input=0, output=0, per_image={"*": 0.07}), _req(n=3), 0) == pytest.approx(0.21)
    worst = image_reservation(GPT_IMAGE, _req(n=2, quality="high", size="1024x1024"), 100)
    assert worst == pytest.approx((100 * 5.0 + 2 * 4160 * 40.0) / 1e6)


def test_cost_per_image_counts_the_images_returned() -> None:
    price = Price(input=0, output=0, per_image={"*": 0.04})
    assert image_cost(price, _req(n=4), _result(3), 10) == pytest.approx(0.12)  # one filtered out: not charged


def test_cost_per_token_uses_the_upstream_usage_else_the_worst_case() -> None:
    usage = Usage(input_tokens=12, output_tokens=1056)
    assert image_cost(GPT_IMAGE, _req(), _result(1, usage), 99) == pytest.approx((12 * 5 + 1056 * 40) / 1e6)
    no_usage = image_cost(GPT_IMAGE, _req(quality="low", size="1024x1024"), _result(2), 10)
    assert no_usage == pytest.approx((10 * 5 + 2 * 272 * 40) / 1e6)


def test_image_models() -> None:
    for name in ("gpt-image-1", "dall-e-3", "grok-2-image-1212", "imagen-4.0-generate-001", "gemini-2.5-flash-image"):
        assert is_image_model(name, price_for(name, {}))
    assert not is_image_model("gpt-4.1", price_for("gpt-4.1", {}))
    assert is_image_model("my-painter", Price(input=0, output=0, per_image={"*": 0.01}))
    assert price_for("grok-2-image-1212", {}) == price_for("grok-2-image", {})


def test_data_url() -> None:
    assert data_url(GeneratedImage(b64="AAEC", mime_type="image/webp")) == "data:image/webp;base64,AAEC"
