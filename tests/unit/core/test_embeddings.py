"""The vector arithmetic and the gate's view of an embedding request (``core.embeddings``)."""

from __future__ import annotations

import base64
import math
import struct

import pytest

from omnirelay.core.embeddings import (
    EmbeddingRequest,
    admission_request,
    decode_base64,
    encode_base64,
    estimate_input_tokens,
    fit_dimensions,
    l2_normalized,
)
from omnirelay.core.errors import GatewayError
from omnirelay.core.estimate import estimate_request_tokens


def _norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


def test_l2_normalized_is_unit_and_keeps_the_zero_vector() -> None:
    assert l2_normalized([3.0, 4.0]) == pytest.approx([0.6, 0.8])
    assert l2_normalized([0.0, 0.0]) == [0.0, 0.0]


def test_fit_dimensions_cuts_and_renormalises_only_longer_vectors() -> None:
    vectors = [[0.5, 0.5, 0.5, 0.5], [1.0, 0.0]]
    cut = fit_dimensions(vectors, 2)
    assert cut[0] == pytest.approx([math.sqrt(0.5), math.sqrt(0.5)]) and _norm(cut[0]) == pytest.approx(1.0)
    assert cut[1] == [1.0, 0.0]
    assert fit_dimensions(vectors, None) is vectors


def test_base64_is_little_endian_float32_and_round_trips() -> None:
    vector = [0.25, -1.5, 3.0e-8, 1.0]
    encoded = encode_base64(vector)
    assert base64.b64decode(encoded) == struct.pack("<4f", *vector)
    assert decode_base64(encoded) == pytest.approx(vector, rel=1e-7)


@pytest.mark.parametrize("bad", ["not base64!", base64.b64encode(b"abc").decode()])
def test_undecodable_base64_is_an_upstream_error(bad: str) -> None:
    with pytest.raises(GatewayError) as err:
        decode_base64(bad)
    assert err.value.kind == "upstream"


def test_the_gate_sees_the_inputs_and_no_output() -> None:
    texts = EmbeddingRequest(model="m", texts=["hello world", "x" * 40])
    gate_req = admission_request(texts)
    assert gate_req.model == "m" and gate_req.max_tokens == 0 and len(gate_req.messages) == 2
    assert estimate_input_tokens(texts) == 3 + 10
    tokens = EmbeddingRequest(model="m", tokens=[[1] * 100, [2] * 7])
    assert estimate_input_tokens(tokens) == 107
    # The token arrays count as their length (plus the per-message overhead every estimate adds).
    assert estimate_request_tokens(admission_request(tokens)) == 107 + 2 * 4
