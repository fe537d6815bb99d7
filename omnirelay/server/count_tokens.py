"""``POST /v1/messages/count_tokens``: the input tokens an Anthropic Messages request would use.

The body is a Messages request without ``max_tokens``; its model resolves through the route table like a call's,
and the caller's key is checked like any request's (401 without one on a closed gateway, 403 for a model its
allow-list does not cover). The first channel of the model's route counts: an upstream that can count natively
(Anthropic's own ``/v1/messages/count_tokens``) does; otherwise, or if it fails with a 5xx or a timeout, the
count is local (``core.token_count``: the model's own tokenizer for OpenAI models, a documented estimate for
the others). Counting uses no model, so it is not charged to the key's credit, counts against none of its rate
limits, and leaves no usage record.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec

from omnirelay.core.errors import GatewayError
from omnirelay.core.token_count import count_request_tokens
from omnirelay.core.types import ChatRequest
from omnirelay.pipeline.calls import CallPipeline
from omnirelay.pipeline.gate import Gate, authenticated, bearer_token
from omnirelay.protocols.anthropic_messages import PROTOCOL as ANTHROPIC
from omnirelay.providers.base import HttpProvider
from omnirelay.routing.table import Channel
from omnirelay.upstream.executor import HttpExecutor
from omnirelay.web.exchange import Exchange

log = logging.getLogger("omnirelay.count_tokens")

_FIELDS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ENCODER = msgspec.json.Encoder()
_ANY_MAX_TOKENS = msgspec.Raw(b"1")  # the Messages parser requires one; counting does not use it


class CountTokensResponse(msgspec.Struct):
    input_tokens: int


def parse_count_request(body: bytes) -> ChatRequest:
    """The count request as the canonical request the Messages endpoint would make of it."""
    try:
        fields = _FIELDS.decode(body)
    except msgspec.DecodeError:
        fields = None  # the Messages parser gives the error its usual wording
    except msgspec.ValidationError:
        raise GatewayError("invalid_request", "The request body must be a JSON object") from None
    if fields is not None:
        fields.setdefault("max_tokens", _ANY_MAX_TOKENS)
        fields.pop("stream", None)
        body = _ENCODER.encode(fields)
    return ANTHROPIC.parse_request(body, {})


class TokenCounter:
    def __init__(self, pipeline: CallPipeline, executor: HttpExecutor, gate: Gate, max_body: int) -> None:
        self.pipeline = pipeline
        self.executor = executor
        self.gate = gate
        self.max_body = max_body

    async def handle(self, request: Exchange) -> None:
        body = await request.body(self.max_body)
        req = parse_count_request(body)
        admission = await authenticated(self.gate, bearer_token(request.headers))
        routes = self.gate.permitted(admission, req, self.pipeline.plan(req))
        channel = routes[0].order()[0]
        count = await self._native(channel, req)
        if count is None:
            # Off the event loop: about 1 M tokens a second, and the first count loads the encoding (about 1.4 s).
            count = (await asyncio.to_thread(count_request_tokens, req, channel.model)).input_tokens
        await request.respond(200, _ENCODER.encode(CountTokensResponse(input_tokens=count)))

    async def _native(self, channel: Channel, req: ChatRequest) -> int | None:
        """The upstream's own count, or None when it has none (or failed on its side: the local count stands in)."""
        provider = self.pipeline.providers[channel.upstream.name]
        if not isinstance(provider, HttpProvider) or "count_tokens" not in provider.capabilities:
            return None
        try:
            return await self.executor.count_tokens(provider, req, channel.model, channel.effective_timeouts)
        except GatewayError as err:
            if err.status < 500:
                raise
            log.info("upstream %s could not count tokens (%s): counted locally", channel.upstream.name, err.message)
            return None
