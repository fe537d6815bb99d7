"""Built-in model knowledge: aliases, context sizes and list prices (USD per million tokens).

Source: ../shared/REFERENCE.md. Every entry can be overridden or extended in the configuration file.
Reasoning tokens are billed as output everywhere; batch requests get ``batch_discount``.
"""

from __future__ import annotations

import msgspec


class Price(msgspec.Struct, kw_only=True, omit_defaults=True):
    input: float
    output: float
    cached_input: float | None = None  # None: cached reads cost the full input price
    cache_write: float | None = None  # None: cache writes cost the full input price
    batch_discount: float = 0.5  # fraction of the price charged for batch requests
    # Image generation billed per image (dall-e, grok-2-image, Imagen): USD per image by "<quality>:<size>",
    # "<size>", "<quality>" or "*" (see core.image_gen.per_image_rate). None: billed per token (gpt-image-1).
    per_image: dict[str, float] | None = None


class ModelInfo(msgspec.Struct, kw_only=True):
    provider: str  # the provider family that serves it natively
    context: int | None = None
    price: Price | None = None
    # The most output one call can produce (reasoning included): the credit reservation of a request without
    # max_tokens. None: unknown (the reservation then assumes ``state.reserve_output_tokens``).
    max_output: int | None = None


def _anthropic(inp: float, out: float) -> Price:
    # Anthropic's published cache multipliers: reads 0.1x input, 5-minute writes 1.25x input.
    return Price(input=inp, output=out, cached_input=round(inp * 0.1, 6), cache_write=round(inp * 1.25, 6))


def _per_image(table: dict[str, float]) -> Price:
    return Price(input=0.0, output=0.0, per_image=table)


DALL_E_3 = {
    "standard:1024x1024": 0.04,
    "standard:1024x1792": 0.08,
    "standard:1792x1024": 0.08,
    "hd:1024x1024": 0.08,
    "hd:1024x1792": 0.12,
    "hd:1792x1024": 0.12,
}


def _embedding(inp: float) -> Price:
    return Price(input=inp, output=0.0)


MODELS: dict[str, ModelInfo] = {
    "gpt-4.1": ModelInfo(
        provider="openai", context=1_047_576, price=Price(input=2.0, cached_input=0.5, output=8.0), max_output=32_768
    ),
    "gpt-4.1-mini": ModelInfo(
        provider="openai", context=1_047_576, price=Price(input=0.4, cached_input=0.1, output=1.6), max_output=32_768
    ),
    "gpt-4.1-nano": ModelInfo(
        provider="openai", context=1_047_576, price=Price(input=0.1, cached_input=0.025, output=0.4), max_output=32_768
    ),
    "gpt-4o": ModelInfo(
        provider="openai", context=128_000, price=Price(input=2.5, cached_input=1.25, output=10.0), max_output=16_384
    ),
    "gpt-4o-mini": ModelInfo(
        provider="openai", context=128_000, price=Price(input=0.15, cached_input=0.075, output=0.6), max_output=16_384
    ),
    "gpt-4.5-preview": ModelInfo(
        provider="openai", price=Price(input=75.0, cached_input=37.5, output=150.0), max_output=16_384
    ),
    "gpt-4": ModelInfo(provider="openai", context=8192, price=Price(input=30.0, output=60.0), max_output=8_192),
    "o3": ModelInfo(
        provider="openai", context=200_000, price=Price(input=2.0, cached_input=0.5, output=8.0), max_output=100_000
    ),
    "o3-mini": ModelInfo(
        provider="openai", context=200_000, price=Price(input=1.1, cached_input=0.55, output=4.4), max_output=100_000
    ),
    "o4-mini": ModelInfo(
        provider="openai", context=200_000, price=Price(input=1.1, cached_input=0.275, output=4.4), max_output=100_000
    ),
    "claude-opus-4-20250514": ModelInfo(
        provider="anthropic", context=200_000, price=_anthropic(15.0, 75.0), max_output=32_000
    ),
    "claude-sonnet-4-20250514": ModelInfo(
        provider="anthropic", context=200_000, price=_anthropic(3.0, 15.0), max_output=64_000
    ),
    "claude-3-7-sonnet-20250219": ModelInfo(
        provider="anthropic", context=200_000, price=_anthropic(3.0, 15.0), max_output=64_000
    ),
    "deepseek-reasoner": ModelInfo(
        provider="deepseek", context=128_000, price=Price(input=0.55, cached_input=0.14, output=2.19), max_output=64_000
    ),
    "deepseek-chat": ModelInfo(provider="deepseek", context=128_000, max_output=8_192),
    "grok-3": ModelInfo(provider="xai", context=1_000_000),
    "grok-3-mini": ModelInfo(provider="xai", context=1_000_000),
    "grok-4-0629": ModelInfo(provider="xai", context=256_000),
    "grok-4-code-0629": ModelInfo(provider="xai", context=256_000),
    "mistral-medium-latest": ModelInfo(provider="mistral", context=128_000),
    "gemini-2.5-pro": ModelInfo(provider="gemini", context=1_048_576, max_output=65_536),
    "gemini-2.5-flash": ModelInfo(provider="gemini", context=1_048_576, max_output=65_536),
    # Image generation (POST /v1/images/generations). gpt-image-1 bills text input and image output per token.
    "gpt-image-1": ModelInfo(provider="openai", price=Price(input=5.0, cached_input=1.25, output=40.0)),
    "gpt-image-1-mini": ModelInfo(provider="openai", price=Price(input=2.0, cached_input=0.2, output=8.0)),
    "dall-e-3": ModelInfo(provider="openai", price=_per_image(DALL_E_3)),
    "dall-e-2": ModelInfo(provider="openai", price=_per_image({"256x256": 0.016, "512x512": 0.018, "1024x1024": 0.02})),
    "grok-2-image": ModelInfo(provider="xai", price=_per_image({"*": 0.07})),
    "imagen-3.0-generate-002": ModelInfo(provider="gemini", price=_per_image({"*": 0.03})),
    "imagen-4.0-generate-001": ModelInfo(provider="gemini", price=_per_image({"*": 0.04})),
    "imagen-4.0-ultra-generate-001": ModelInfo(provider="gemini", price=_per_image({"*": 0.06})),
    "imagen-4.0-fast-generate-001": ModelInfo(provider="gemini", price=_per_image({"*": 0.02})),
    "smollm2-135m-instruct": ModelInfo(
        provider="local", context=8192, price=Price(input=0.0, output=0.0), max_output=8_192
    ),
    # Embedding models: input tokens only (the providers' public price pages; not in REFERENCE.md).
    "text-embedding-3-small": ModelInfo(provider="openai", context=8192, price=_embedding(0.02), max_output=0),
    "text-embedding-3-large": ModelInfo(provider="openai", context=8192, price=_embedding(0.13), max_output=0),
    "text-embedding-ada-002": ModelInfo(provider="openai", context=8192, price=_embedding(0.10), max_output=0),
    "gemini-embedding-001": ModelInfo(provider="gemini", context=2048, price=_embedding(0.15), max_output=0),
    "mistral-embed": ModelInfo(provider="mistral", context=8192, price=_embedding(0.10), max_output=0),
    "all-minilm-l6-v2": ModelInfo(provider="local", context=256, price=_embedding(0.0), max_output=0),
}

# Other spellings of the same model: cloud-platform ids and aggregator variants.
ALIASES: dict[str, str] = {
    "anthropic.claude-3-7-sonnet-20250219-v1:0": "claude-3-7-sonnet-20250219",
    "us.anthropic.claude-3-7-sonnet-20250219-v1:0": "claude-3-7-sonnet-20250219",
    "claude-3-7-sonnet@20250219": "claude-3-7-sonnet-20250219",
    "claude-3-7-sonnet-latest": "claude-3-7-sonnet-20250219",
    "anthropic.claude-sonnet-4-20250514-v1:0": "claude-sonnet-4-20250514",
    "claude-sonnet-4@20250514": "claude-sonnet-4-20250514",
    "claude-sonnet-4-0": "claude-sonnet-4-20250514",
    "anthropic.claude-opus-4-20250514-v1:0": "claude-opus-4-20250514",
    "claude-opus-4@20250514": "claude-opus-4-20250514",
    "claude-opus-4-0": "claude-opus-4-20250514",
    "deepseek-r1": "deepseek-reasoner",
    "deepseek-r1-0528": "deepseek-reasoner",
    "smollm2": "smollm2-135m-instruct",
    "local": "smollm2-135m-instruct",
}

# The "-thinking" variant id some aggregators use: the base model with extended thinking switched on.
THINKING_SUFFIX = "-thinking"
