"""The endpoints a batch request may target, each read and rendered by its inbound protocol module (the same code
as the live endpoint, so a batch line is valid exactly when the same body POSTed there would be)."""

from __future__ import annotations

from omnirelay.core.embeddings import EmbeddingRequest, admission_request
from omnirelay.core.errors import GatewayError
from omnirelay.core.types import ChatRequest
from omnirelay.protocols import anthropic_messages, openai_chat, openai_embeddings, openai_responses
from omnirelay.protocols.base import InboundProtocol

EMBEDDINGS = "/v1/embeddings"
MESSAGES = "/v1/messages"
CHAT_PROTOCOLS: dict[str, InboundProtocol] = {
    "/v1/chat/completions": openai_chat.PROTOCOL,
    "/v1/responses": openai_responses.PROTOCOL,
    MESSAGES: anthropic_messages.PROTOCOL,
}
OPENAI_ENDPOINTS = ("/v1/chat/completions", "/v1/responses", EMBEDDINGS)


class ParsedItem:
    """A batch request decoded: ``chat`` is what the gate and router see (an embedding request's chat-shaped
    stand-in, ``core.embeddings.admission_request``); ``embedding`` is set for ``/v1/embeddings``."""

    __slots__ = ("chat", "embedding")

    def __init__(self, chat: ChatRequest, embedding: EmbeddingRequest | None = None) -> None:
        self.chat = chat
        self.embedding = embedding


def parse_item(endpoint: str, body: bytes) -> ParsedItem:
    """Decode ``body`` as ``endpoint`` takes it; GatewayError (400 naming the field) when it does not."""
    if endpoint == EMBEDDINGS:
        req = openai_embeddings.parse_request(body)
        return ParsedItem(admission_request(req), req)
    chat = CHAT_PROTOCOLS[endpoint].parse_request(body, {})
    chat.stream = False  # a batch result is a complete reply
    return ParsedItem(chat)


def render_error(endpoint: str, err: GatewayError) -> bytes:
    if endpoint == EMBEDDINGS:
        return openai_embeddings.render_error(err)
    return CHAT_PROTOCOLS[endpoint].render_error(err)
