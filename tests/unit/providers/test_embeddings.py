"""The providers' embeddings requests and replies: OpenAI-compatible presets and Gemini."""

from __future__ import annotations

import msgspec
import pytest

from omnirelay.config import UpstreamConfig
from omnirelay.core.embeddings import EmbeddingRequest, encode_base64
from omnirelay.core.errors import GatewayError
from omnirelay.providers.gemini import GeminiProvider
from omnirelay.providers.openai import OpenAIProvider


def _openai(preset: str) -> OpenAIProvider:
    return OpenAIProvider(UpstreamConfig(name=preset, provider="openai", preset=preset, api_key="sk-test"))


def _gemini() -> GeminiProvider:
    return GeminiProvider(UpstreamConfig(name="gemini", provider="gemini", api_key="g-test"))


def test_openai_asks_for_base64_and_mistral_for_its_own_fields() -> None:
    req = EmbeddingRequest(model="e", texts=["a"], dimensions=8, user="u")
    sent = _openai("openai").build_embeddings(req, "text-embedding-3-small")
    assert sent.url == "https://api.openai.com/v1/embeddings" and sent.headers["authorization"] == "Bearer sk-test"
    assert msgspec.json.decode(sent.body) == {
        "model": "text-embedding-3-small",
        "input": ["a"],
        "encoding_format": "base64",
        "dimensions": 8,
        "user": "u",
    }
    mistral = msgspec.json.decode(_openai("mistral").build_embeddings(req, "codestral-embed").body)
    assert mistral == {"model": "codestral-embed", "input": ["a"], "output_dimension": 8}


@pytest.mark.parametrize("preset", ["deepseek", "xai"])
def test_presets_without_embeddings_refuse(preset: str) -> None:
    provider = _openai(preset)
    assert not provider.supports("embeddings") and provider.supports("chat")
    with pytest.raises(GatewayError) as err:
        provider.build_embeddings(EmbeddingRequest(model="e", texts=["a"]), "m")
    assert err.value.status == 400


def test_openai_reply_in_index_order_base64_or_floats_cut_to_dimensions() -> None:
    req = EmbeddingRequest(model="e", texts=["a", "b"], dimensions=2)
    body = msgspec.json.encode(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": 1, "embedding": [0.0, 0.6, 0.8]},
                {"object": "embedding", "index": 0, "embedding": encode_base64([1.0, 0.0])},
            ],
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 4, "total_tokens": 4},
        }
    )
    resp = _openai("openai").parse_embeddings(body, req, "m")
    assert resp.vectors[0] == [1.0, 0.0]
    assert resp.vectors[1] == pytest.approx([0.0, 1.0])  # [0.0, 0.6] renormalised
    assert (resp.input_tokens, resp.exact_usage, resp.model) == (4, True, "text-embedding-3-small")


def test_openai_reply_without_usage_is_estimated_and_a_short_reply_is_an_error() -> None:
    req = EmbeddingRequest(model="e", texts=["hello world"])
    resp = _openai("llamacpp").parse_embeddings(b'{"data": [{"embedding": [1.0]}]}', req, "m")
    assert (resp.input_tokens, resp.exact_usage) == (3, False)
    with pytest.raises(GatewayError) as err:
        _openai("openai").parse_embeddings(b'{"data": []}', req, "m")
    assert err.value.kind == "upstream"


def test_gemini_one_input_is_embed_content_several_batch_embed_contents() -> None:
    provider = _gemini()
    one = provider.build_embeddings(EmbeddingRequest(model="e", texts=["a"]), "gemini-embedding-001")
    assert one.url.endswith("/v1beta/models/gemini-embedding-001:embedContent")
    assert one.headers["x-goog-api-key"] == "g-test" and "key=" not in one.url
    assert msgspec.json.decode(one.body) == {
        "content": {"parts": [{"text": "a"}]},
        "model": "models/gemini-embedding-001",
    }
    many = provider.build_embeddings(
        EmbeddingRequest(model="e", texts=["a", "b"], dimensions=4), "gemini-embedding-001"
    )
    assert many.url.endswith(":batchEmbedContents")
    requests = msgspec.json.decode(many.body)["requests"]
    assert [r["outputDimensionality"] for r in requests] == [4, 4]
    assert [r["model"] for r in requests] == ["models/gemini-embedding-001"] * 2


def test_gemini_reply_renormalised_when_shortened() -> None:
    req = EmbeddingRequest(model="e", texts=["a", "b"], dimensions=2)
    body = b'{"embeddings": [{"values": [0.3, 0.4]}, {"values": [0.0, 2.0]}]}'
    resp = _gemini().parse_embeddings(body, req, "gemini-embedding-001")
    assert resp.vectors[0] == pytest.approx([0.6, 0.8]) and resp.vectors[1] == pytest.approx([0.0, 1.0])
    assert not resp.exact_usage
    with pytest.raises(GatewayError):
        _gemini().parse_embeddings(b'{"embeddings": [{"values": [1.0]}]}', req, "gemini-embedding-001")
