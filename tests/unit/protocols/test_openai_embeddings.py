"""The OpenAI Embeddings request body -> ``EmbeddingRequest``, and the response rendering."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from omnirelay.core.embeddings import EmbeddingRequest, EmbeddingResponse, decode_base64
from omnirelay.core.errors import GatewayError
from omnirelay.protocols.openai_embeddings import parse_request, render_response


def _parse(**body: Any) -> EmbeddingRequest:
    return parse_request(msgspec.json.encode({"model": "m", **body}))


def test_every_input_shape() -> None:
    assert _parse(input="a").texts == ["a"]
    assert _parse(input=["a", "b"]).texts == ["a", "b"]
    assert _parse(input=[1, 2, 3]).tokens == [[1, 2, 3]]
    assert _parse(input=[[1, 2], [3]]).tokens == [[1, 2], [3]]
    req = _parse(input="a", dimensions=8, encoding_format="base64", user="u")
    assert (req.dimensions, req.encoding_format, req.user, req.count) == (8, "base64", "u", 1)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": ""}, "input[0]"),
        ({"input": []}, "input"),
        ({"input": ["a", 1]}, "input[1]"),
        ({"input": [[1], []]}, "input[1]"),
        ({"input": [[1], [-1]]}, "input[1]"),
        ({"input": {"text": "a"}}, "input"),
        ({"input": ["a"] * 2049}, "input"),
        ({"input": "a", "dimensions": 0}, "dimensions"),
        ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
    ],
)
def test_bad_bodies_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as err:
        _parse(**body)
    assert err.value.status == 400 and err.value.param == param


def test_missing_model_and_bad_json() -> None:
    with pytest.raises(GatewayError) as err:
        parse_request(b'{"input": "a"}')
    assert err.value.param == "model"
    with pytest.raises(GatewayError) as err:
        parse_request(b'{"model": ')
    assert err.value.status == 400


def test_render_floats_and_base64() -> None:
    resp = EmbeddingResponse(model="m", vectors=[[0.5, -0.25], [1.0, 0.0]], input_tokens=7)
    floats = msgspec.json.decode(render_response(resp, EmbeddingRequest(model="m", texts=["a", "b"])))
    assert floats == {
        "object": "list",
        "model": "m",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, -0.25]},
            {"object": "embedding", "index": 1, "embedding": [1.0, 0.0]},
        ],
        "usage": {"prompt_tokens": 7, "total_tokens": 7},
    }
    b64 = msgspec.json.decode(render_response(resp, EmbeddingRequest(model="m", texts=["a"], encoding_format="base64")))
    assert decode_base64(b64["data"][0]["embedding"]) == [0.5, -0.25]
