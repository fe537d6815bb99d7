"""What a provider module implements. Providers translate core <-> one upstream wire format; they do no I/O.

An HTTP provider builds the request bytes and parses the reply bytes; the executor in
``omnirelay.upstream.executor`` does the network part (pooling, timeouts, cancellation) once for all of them.
An engine provider (the embedded local model) runs in-process and so implements ``complete``/``stream``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import msgspec

from omnirelay.core.embeddings import EmbeddingRequest, EmbeddingResponse
from omnirelay.core.errors import GatewayError
from omnirelay.core.events import StreamEvent
from omnirelay.core.image_gen import ImageRequest, ImageResult
from omnirelay.core.types import ChatRequest, ChatResponse

if TYPE_CHECKING:
    from omnirelay.config import UpstreamConfig


# The endpoints a provider may implement; each provider class declares the ones it does (``capabilities``), so a
# new endpoint is taught to the providers that have it instead of every provider learning every endpoint.
Capability = Literal["chat", "embeddings", "images", "count_tokens", "batches"]
CHAT: frozenset[Capability] = frozenset({"chat"})
COUNT_TOKENS: frozenset[Capability] = frozenset({"count_tokens"})
IMAGES: frozenset[Capability] = frozenset({"images"})

EMBEDDINGS: frozenset[Capability] = frozenset({"embeddings"})


def cannot_embed(upstream: str, model: str) -> GatewayError:
    """The 400 for an embeddings request to a model whose upstream has no embeddings endpoint."""
    return GatewayError(
        "invalid_request",
        f"model {model} (upstream {upstream}) does not support embeddings",
        param="model",
        code="model_not_supported",
        retryable=False,
    )


class UpstreamRequest(msgspec.Struct, kw_only=True):
    url: str
    headers: dict[str, str]
    body: bytes
    method: str = "POST"


class StreamParser(ABC):
    """Turns the upstream's streamed body into canonical events, chunk by chunk, whatever the chunk borders."""

    @abstractmethod
    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """Consume raw bytes; return the events completed by them. Raises GatewayError on malformed data."""

    @abstractmethod
    def close(self) -> list[StreamEvent]:
        """The body ended. Return any last events; raise GatewayError('upstream') if the stream was cut short
        (no terminal event seen)."""


class HttpProvider(ABC):
    """Pure translation for an upstream reached over HTTP."""

    # Wire family: unmodelled request fields (ChatRequest.extra) pass through when it equals inbound_protocol.
    family: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]] = CHAT

    def __init__(self, upstream: UpstreamConfig) -> None:
        self.upstream = upstream

    @abstractmethod
    def build_request(self, req: ChatRequest, model: str) -> UpstreamRequest:
        """The HTTP request for ``req`` sent to ``model`` (the upstream's own model name). Raises
        GatewayError('invalid_request') for what this upstream cannot express."""

    @abstractmethod
    def parse_response(self, body: bytes, req: ChatRequest) -> ChatResponse:
        """A successful non-streaming reply. Raises GatewayError('upstream') on malformed bodies."""

    @abstractmethod
    def stream_parser(self, req: ChatRequest) -> StreamParser:
        """A parser for one streamed reply."""

    def run_parser(self, req: ChatRequest) -> StreamParser | None:
        """``stream_parser``'s events, with runs of text deltas as ``TextRun`` events where this parser reads
        several at once, for a caller that renders runs itself (the relay); None (the default): no runs."""
        return None

    def frame_relay(self, req: ChatRequest, stream_format: str) -> StreamParser | None:
        """A parser that hands this upstream's stream frames on unchanged (``RawFrames``, providers/passthrough.py)
        when its stream for ``req`` is in ``stream_format``, the inbound protocol's; None (the default): no
        pass-through, parse as usual."""
        return None

    @abstractmethod
    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        """An error reply (status >= 400) as a GatewayError; use core.errors.upstream_status_error for the
        status mapping and take Retry-After from the headers."""

    # -- count_tokens: only providers declaring the capability implement these ------------------------

    def build_count_tokens(self, req: ChatRequest, model: str) -> UpstreamRequest:
        """The upstream's own token-count request for ``req``'s prompt sent to ``model``."""
        raise GatewayError("invalid_request", f"upstream {self.upstream.name} cannot count tokens", status=400)

    def parse_count_tokens(self, body: bytes) -> int:
        """The input-token count in a successful token-count reply. Raises GatewayError('upstream')."""
        raise GatewayError("upstream", f"upstream {self.upstream.name} cannot count tokens")

    # -- images: only providers declaring the capability implement these ------------------------------

    def build_image_request(self, req: ImageRequest, model: str) -> UpstreamRequest:
        """The upstream's image generation request for ``req`` sent to ``model``."""
        raise GatewayError("invalid_request", f"upstream {self.upstream.name} cannot generate images", status=400)

    def parse_image_response(self, body: bytes, req: ImageRequest) -> ImageResult:
        """The images of a successful image generation reply. Raises GatewayError('upstream')."""
        raise GatewayError("upstream", f"upstream {self.upstream.name} cannot generate images")

    # -- embeddings: only providers declaring the capability implement these --------------------------

    def supports(self, capability: Capability) -> bool:
        """Whether this upstream serves ``capability`` (a provider may narrow its class's by configuration)."""
        return capability in self.capabilities

    def build_embeddings(self, req: EmbeddingRequest, model: str) -> UpstreamRequest:
        """The upstream's embeddings request for ``req`` sent to ``model``."""
        raise cannot_embed(self.upstream.name, model)

    def parse_embeddings(self, body: bytes, req: EmbeddingRequest, model: str) -> EmbeddingResponse:
        """The vectors (in input order) and token count of a successful embeddings reply. Raises
        GatewayError('upstream') on malformed bodies."""
        raise cannot_embed(self.upstream.name, model)


class EngineProvider(ABC):
    """An in-process model."""

    family: ClassVar[str] = "engine"
    capabilities: ClassVar[frozenset[Capability]] = CHAT

    def __init__(self, upstream: UpstreamConfig) -> None:
        self.upstream = upstream

    @abstractmethod
    async def complete(self, req: ChatRequest, model: str) -> ChatResponse: ...

    @abstractmethod
    def stream(self, req: ChatRequest, model: str) -> AsyncIterator[StreamEvent]: ...

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities

    async def embed(self, req: EmbeddingRequest, model: str) -> EmbeddingResponse:
        """The vectors of ``req``'s inputs (an engine with the ``embeddings`` capability)."""
        raise cannot_embed(self.upstream.name, model)

    async def aclose(self) -> None:
        """Release what the engine holds (threads, model memory)."""


Provider = HttpProvider | EngineProvider


def openai_error_fields(status: int, body: bytes) -> tuple[str, str | None, str | None, str | None]:
    """message, type, code, param of an OpenAI-shaped error body, whatever the server's dialect (vLLM, Ollama,
    and the like put it differently) (or a summary of a
    non-JSON body)."""
    try:
        data: Any = msgspec.json.decode(body)
    except msgspec.DecodeError:
        text = body.decode("utf-8", errors="replace").strip()
        if not text or text.startswith("<"):
            return f"HTTP {status} with a non-JSON body ({len(body)} bytes)", None, None, None
        return " ".join(text.split())[:300], None, None, None
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, str):
            return err[:500], None, None, None
        if isinstance(err, dict):
            message = err.get("message") or err.get("detail") or err.get("msg")
            if not isinstance(message, str):
                message = msgspec.json.encode(message).decode()[:500] if message else f"HTTP {status}"
            etype, code, param = err.get("type"), err.get("code"), err.get("param")
            return (
                message,
                etype if isinstance(etype, str) else None,
                code if isinstance(code, str) else None,
                param if isinstance(param, str) else None,
            )
    return f"HTTP {status}", None, None, None
