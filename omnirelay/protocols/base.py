"""What an inbound protocol module implements: its wire format <-> the canonical core. No I/O."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, TypeVar

import msgspec

from omnirelay.core.errors import GatewayError, invalid
from omnirelay.core.events import StreamEvent
from omnirelay.core.types import ChatRequest, ChatResponse


class StreamEncoder(ABC):
    """Renders canonical events as the caller's SSE frames. Keeps whatever state the format needs
    (open content blocks, tool-call indices, usage seen so far)."""

    @abstractmethod
    def encode(self, event: StreamEvent) -> bytes:
        """SSE bytes for one event (possibly empty: some events only update state)."""

    @abstractmethod
    def finish(self, cost: float | None = None) -> bytes:
        """The closing frames after the last event (final usage, stop reason, terminator)."""

    @abstractmethod
    def error(self, err: GatewayError) -> bytes:
        """A well-formed error frame that ends the stream mid-way, followed by the format's terminator."""

    def result(self) -> bytes | None:
        """After ``finish``: the complete answer as the non-streaming body would have it, for protocols whose
        ``RequestHooks`` keep it (None: this format has no use for it)."""
        return None


class RequestHooks(ABC):
    """Work a protocol does around the call, for state that outlives a request (the Responses API's stored
    responses). Protocols without hooks cost the relay one attribute check, nothing more.

    ``state`` is the gate the relay admits with: hooks look up the backend they need on it by attribute and
    behave as if nothing were stored when it has none."""

    @abstractmethod
    async def prepare(self, req: ChatRequest, key_id: str | None, state: object) -> object | None:
        """Before planning: may extend ``req`` (an earlier conversation) or refuse it (GatewayError). Returns
        what ``finished`` needs, or None when nothing is to be done after the call."""

    @abstractmethod
    async def finished(self, pending: object, response: bytes) -> None:
        """After a complete answer, before it reaches the client: ``response`` is the body (or, streaming, the
        encoder's ``result()``)."""


class InboundProtocol(ABC):
    name: ClassVar[str]  # "openai" or "anthropic": also the family used for passthrough extras
    # The endpoint paths this protocol answers on (POST); the app mounts them with ``render_error`` as the
    # error format of every reply there and of unknown paths below them.
    paths: ClassVar[tuple[str, ...]]
    # Set by protocols that keep state across requests (see RequestHooks).
    hooks: RequestHooks | None = None
    # The wire format of this protocol's streams (``wire.<family>.STREAM_FORMAT``) when its encoder can take an
    # upstream stream in that same format as ``RawFrames`` besides canonical events (sending their bytes as they
    # are when they fit what it has sent so far): the relay then asks the pipeline for a pass-through stream
    # (providers/passthrough.py). None: always canonical.
    stream_format: ClassVar[str | None] = None

    @abstractmethod
    def parse_request(self, body: bytes, headers: Mapping[str, str]) -> ChatRequest:
        """Decode and validate; raise GatewayError('invalid_request', param=<field path>) on bad input."""

    @abstractmethod
    def render_response(self, resp: ChatResponse, req: ChatRequest) -> bytes:
        """A non-streaming reply body (JSON). Includes ``resp.cost`` where the format has room for it."""

    @abstractmethod
    def stream_encoder(self, req: ChatRequest) -> StreamEncoder: ...

    @abstractmethod
    def render_error(self, err: GatewayError) -> bytes:
        """A JSON error body in this protocol's shape."""


# Free-form request values (tool schemas, passthrough fields, omnirelay options) nesting deeper than this are
# refused. msgspec itself gives up near 1,000 levels (RecursionError, which parse_request turns into a 400);
# code that walks such values recurses in Python (Gemini's schema clean-up, for one) and would fail well
# before that. Real tool schemas nest a few dozen levels at most.
MAX_NESTING = 100


def check_nesting(req: ChatRequest) -> None:
    """400 naming the field if a free-form value of ``req`` nests deeper than MAX_NESTING."""
    for param, value in _free_form(req):
        if _nests_deeper(value, MAX_NESTING):
            raise invalid(f"{param} nests arrays and objects deeper than {MAX_NESTING} levels", param=param)


def _free_form(req: ChatRequest) -> Iterator[tuple[str, Any]]:
    yield from req.extra.items()
    if req.options:
        yield "omnirelay", req.options
    for i, tool in enumerate(req.tools):
        yield f"tools[{i}].parameters", tool.parameters
    if req.response_format is not None and req.response_format.schema is not None:
        yield "response_format.schema", req.response_format.schema


def _nests_deeper(value: Any, limit: int) -> bool:
    """Level by level, not recursively (deep recursion is what this guards against)."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[Any] = []
        for container in level:
            for item in container.values() if isinstance(container, dict) else container:
                if isinstance(item, dict | list):
                    below.append(item)
        level = below
    return False


T = TypeVar("T")

# A base64 data URL: media type, parameters, payload.
DATA_URL = re.compile(r"^data:([^;,]+)?((?:;[^;,]+)*);base64,(.*)$", re.DOTALL)
_PATH_IN_ERROR = re.compile(r" - at `\$\.?(.*)`$")
_MISSING_FIELD = re.compile(r"missing required field `([^`]+)`")


def openai_validation_error(exc: msgspec.ValidationError) -> GatewayError:
    """msgspec names the failing path (``$.messages[2].content``, or a missing field); OpenAI's ``param`` is that
    path."""
    text = str(exc)
    match = _PATH_IN_ERROR.search(text)
    path = match.group(1) if match else ""
    missing = _MISSING_FIELD.search(text)
    if missing:
        path = f"{path}.{missing.group(1)}" if path else missing.group(1)
    message = _PATH_IN_ERROR.sub("", text)
    if path:
        message = f"{message} at '{path}'"
    return invalid(message, param=path or None)


def decode_openai_body(decode: Callable[[bytes], T], body: bytes) -> T:
    """``decode(body)`` for an OpenAI-format endpoint, every decoding failure a 400 naming the problem: a field
    that does not validate (``param`` its path), a body that is not JSON (also what an unmodelled field with
    invalid UTF-8 fails with when only ``_extras`` decodes it), or nesting past msgspec's depth."""
    try:
        return decode(body)
    except msgspec.ValidationError as exc:
        raise openai_validation_error(exc) from None
    except msgspec.DecodeError as exc:
        raise invalid(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise invalid("the request body nests arrays and objects too deeply") from None
