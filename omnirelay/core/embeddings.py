"""Canonical embedding requests and responses, and the vector arithmetic every embedding path shares: L2
normalisation, ``dimensions`` truncation (then renormalised, as OpenAI does for text-embedding-3), and the
base64 form of a vector (little-endian float32, what OpenAI's ``encoding_format=base64`` returns and its SDKs
decode). No I/O.

An embedding call is admitted by the same gate as a chat call: ``admission_request`` is the chat-shaped
request the gate sees (one user message per input, no output), so the allow-list, RPM/TPM and the credit
reservation need no second implementation; the exact charge then comes from the upstream's token count.
"""

from __future__ import annotations

import base64
import math
import sys
from array import array
from typing import Literal

import msgspec

from omnirelay.core.errors import GatewayError
from omnirelay.core.estimate import CHARS_PER_TOKEN, estimate_tokens_of
from omnirelay.core.types import ChatRequest, Message, TextPart

EncodingFormat = Literal["float", "base64"]


class EmbeddingRequest(msgspec.Struct, kw_only=True):
    model: str
    # Either texts or token arrays (OpenAI accepts token ids for its own tokenizer), never a mix.
    texts: list[str] = []
    tokens: list[list[int]] = []
    dimensions: int | None = None
    encoding_format: EncodingFormat = "float"
    user: str | None = None

    @property
    def count(self) -> int:
        return len(self.texts) if self.texts else len(self.tokens)


class EmbeddingResponse(msgspec.Struct, kw_only=True):
    model: str
    vectors: list[list[float]]
    input_tokens: int
    # Whether ``input_tokens`` is the upstream's own count (False: estimated, for upstreams that report none).
    exact_usage: bool = True


def estimate_input_tokens(req: EmbeddingRequest) -> int:
    """The input tokens of ``req`` when the upstream reports none: exact for token arrays, else estimated."""
    if req.tokens:
        return sum(len(t) for t in req.tokens)
    return sum(estimate_tokens_of(t) for t in req.texts)


def admission_request(req: EmbeddingRequest) -> ChatRequest:
    """The chat-shaped request the gate admits ``req`` as: its inputs as user messages and no output
    (``max_tokens=0``), so the reservation is its input at the model's input price."""
    # Token ids stand in as text the estimate counts as that many tokens.
    texts = req.texts or [" " * (len(t) * CHARS_PER_TOKEN) for t in req.tokens]
    messages = [Message(role="user", content=[TextPart(text=t)]) for t in texts]
    return ChatRequest(model=req.model, messages=messages, max_tokens=0, user=req.user)


def l2_normalized(vector: list[float]) -> list[float]:
    norm = math.sqrt(math.fsum(x * x for x in vector))
    if norm == 0.0:
        return vector
    return [x / norm for x in vector]


def fit_dimensions(vectors: list[list[float]], dimensions: int | None) -> list[list[float]]:
    """``vectors`` cut to ``dimensions`` and renormalised (a no-op for vectors already that short): for
    upstreams that ignore ``dimensions`` and for the local model. Matryoshka-trained models keep their meaning
    in the leading components, so the cut vector is the shorter embedding."""
    if dimensions is None:
        return vectors
    return [l2_normalized(v[:dimensions]) if len(v) > dimensions else v for v in vectors]


def encode_base64(vector: list[float]) -> str:
    packed = array("f", vector)
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def decode_base64(data: str) -> list[float]:
    """A base64 vector as OpenAI sends it. Raises GatewayError('upstream') on anything else."""
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        raise GatewayError("upstream", "upstream returned an embedding that is not valid base64") from None
    if len(raw) % 4:
        raise GatewayError("upstream", "upstream returned a base64 embedding that is not float32 values")
    packed = array("f")
    packed.frombytes(raw)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tolist()
