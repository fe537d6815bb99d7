"""``POST /v1/images/generations``: image generation on any upstream that has it, metered like chat.

parse (protocols.openai_images) -> authenticate -> plan the model (the route table, as for chat) -> check the
plan can generate images (a channel whose provider declares the ``images`` capability, on an image model) ->
admit (allow-list, RPM, the credit reservation of the worst case: every image asked for at the dearest rate) ->
call a channel through the dispatcher (retries, fallbacks, breakers as for chat) -> price what came back
(``core.image_gen``: per image or per token) -> settle (a usage record with protocol ``openai_images``, the
exact charge) -> reply in OpenAI's shape.
"""

from __future__ import annotations

import asyncio
import logging
import time

from omnirelay.config import Timeouts
from omnirelay.core.errors import GatewayError
from omnirelay.core.estimate import estimate_request_tokens
from omnirelay.core.ids import new_id
from omnirelay.core.image_gen import ImageRequest, ImageResult, image_cost, image_reservation, is_image_model
from omnirelay.core.records import UsageRecord
from omnirelay.core.types import ChatRequest, Message, TextPart, Usage
from omnirelay.observability.observer import Observability
from omnirelay.pipeline.calls import CallPipeline
from omnirelay.pipeline.context import CallContext
from omnirelay.pipeline.gate import Gate, Plan, authenticated, bearer_token, priced_for
from omnirelay.pipeline.observe import Observation
from omnirelay.protocols.openai_chat import PROTOCOL as OPENAI
from omnirelay.protocols.openai_images import OPERATION, PATHS, PROTOCOL_NAME, parse_image_request, render_images
from omnirelay.providers.base import HttpProvider
from omnirelay.routing.table import Channel
from omnirelay.server.client_watch import ClientWatch
from omnirelay.upstream.executor import HttpExecutor
from omnirelay.web.exchange import Exchange
from omnirelay.web.routes import Endpoint, Mount
from omnirelay.wire.openai_images import ImagesUsage, InputTokensDetails

log = logging.getLogger("omnirelay.images")

EXAMPLE_MODELS = "gpt-image-1, dall-e-3 (provider openai), grok-2-image (preset xai), imagen-4.0-generate-001 (gemini)"


class ImageGenerator:
    def __init__(self, pipeline: CallPipeline, executor: HttpExecutor, gate: Gate, max_body: int) -> None:
        self.pipeline = pipeline
        self.executor = executor
        self.gate = gate
        self.max_body = max_body

    def mount(self, observability: Observability) -> Mount:
        handler = observability.handler(PROTOCOL_NAME, self.max_body, self.handle, OPERATION)
        return Mount("", [Endpoint("POST", path, handler) for path in PATHS], OPENAI.render_error)

    async def handle(self, request: Exchange, body: bytes, observation: Observation) -> None:
        started, t0 = time.time(), time.perf_counter()
        req = parse_image_request(body)
        admission = await authenticated(self.gate, bearer_token(request.headers))
        if not req.model:
            raise GatewayError(
                "invalid_request",
                f"`model` is required: name an image model this gateway routes (e.g. {EXAMPLE_MODELS})",
                param="model",
            )
        # The prompt as a chat request: what routing, the allow-list and the RPM/TPM limits work on.
        chat = ChatRequest(model=req.model, messages=[Message(role="user", content=[TextPart(text=req.prompt)])])
        chat.max_tokens = 0
        prompt_tokens = estimate_request_tokens(chat)
        record = UsageRecord(
            request_id=new_id("req_"),
            created_at=started,
            key_id=admission.key_id,
            protocol=PROTOCOL_NAME,
            model_requested=req.model,
        )
        observation.record = record
        try:
            named = self._plan(chat)
        except GatewayError as err:  # answered, so recorded (as the chat relay records an unknown model)
            record.status, record.error = err.status, err.message
            record.latency_ms = (time.perf_counter() - t0) * 1000.0
            await self.gate.settle(admission, record)
            raise
        reserve = self._worst_case(req, named, prompt_tokens)
        routes = await self.gate.admit(admission, chat, PROTOCOL_NAME, named, reserve=reserve)  # 403/429: no record
        ctx = CallContext(PROTOCOL_NAME, chat, routes, admission, record, t0)
        observation.ctx = ctx
        watch = ClientWatch.of_this_task(request.disconnected)
        try:
            try:
                result = await self._generate(ctx, req)
            except asyncio.CancelledError as cancelled:
                watch.client_left(record, cancelled)
            finally:
                watch.stop()
            record.usage = result.usage if result.usage is not None else Usage()
            record.cost = priced_for(admission, self._cost(record, req, result, prompt_tokens))
            out = render_images(result, req, _usage_of(result))
            headers = {"x-request-id": record.request_id, "x-omnirelay-attempts": str(record.attempts)}
            headers["x-omnirelay-channel"] = f"{record.upstream}/{record.model_used}"
            headers["x-omnirelay-cost"] = f"{record.cost:.10f}".rstrip("0").rstrip(".") or "0"
            headers.update(admission.headers)
            record.latency_ms = (time.perf_counter() - t0) * 1000.0
            await self.gate.settle(admission, record)  # before the reply leaves, as the chat relay does
            await request.respond(200, out, headers=headers)
        except GatewayError as err:
            record.status, record.error = err.status, err.message
            raise
        finally:
            record.latency_ms = record.latency_ms or (time.perf_counter() - t0) * 1000.0
            await self.gate.settle(admission, record)  # a no-op once settled

    def _plan(self, chat: ChatRequest) -> Plan:
        """The models to try; 404 naming the configuration when the model is not routed, 400 when nothing it
        routes to can generate images."""
        try:
            plan = self.pipeline.plan(chat)
        except GatewayError as err:
            if err.status != 404:
                raise
            raise GatewayError(
                "not_found",
                f"No image model {chat.model!r} is configured: list it in the `models:` of an upstream that "
                f"generates images (e.g. {EXAMPLE_MODELS}).",
                code="model_not_found",
                param="model",
            ) from None
        for _name, route in plan:
            if any(self._can_generate(channel, route.public_name) for channel in route.channels):
                return plan
        raise GatewayError(
            "invalid_request",
            f"Model {chat.model!r} cannot generate images: it is not an image model, or its upstream has no image "
            f"generation endpoint. Configure an image model (e.g. {EXAMPLE_MODELS}) and request it by name.",
            code="model_not_image_capable",
            param="model",
        )

    def _can_generate(self, channel: Channel, public_name: str) -> bool:
        provider = self.pipeline.providers.get(channel.upstream.name)
        if not isinstance(provider, HttpProvider) or "images" not in provider.capabilities:
            return False
        return is_image_model(channel.model, self.gate.price(channel.model, public_name))

    def _worst_case(self, req: ImageRequest, plan: Plan, prompt_tokens: int) -> float:
        """USD to reserve: ``req`` at the dearest price of any channel the plan may call."""
        worst = 0.0
        for _name, route in plan:
            for channel in route.channels:
                price = self.gate.price(channel.model, route.public_name)
                if price is not None:
                    worst = max(worst, image_reservation(price, req, prompt_tokens))
        return worst

    async def _generate(self, ctx: CallContext, req: ImageRequest) -> ImageResult:
        async def call(channel: Channel, timeouts: Timeouts) -> ImageResult:
            provider = self.pipeline.providers[channel.upstream.name]
            if not isinstance(provider, HttpProvider) or "images" not in provider.capabilities:
                raise GatewayError(
                    "invalid_request", f"upstream {channel.upstream.name} cannot generate images", param="model"
                )
            return await self.executor.generate_images(provider, req, channel.model, timeouts)

        result, _lease = await self.pipeline.dispatcher.run(ctx.plan, call, ctx.note_attempt, tenant=ctx.tenant)
        ctx.record.ttft_ms = (time.perf_counter() - ctx.t0) * 1000.0
        return result

    def _cost(self, record: UsageRecord, req: ImageRequest, result: ImageResult, prompt_tokens: int) -> float:
        price = self.gate.price(record.model_used, record.model_requested)
        if price is None:
            log.warning("image model %s has no price: recorded at cost 0; add it under `prices:`", record.model_used)
            return 0.0
        return image_cost(price, req, result, prompt_tokens)


def _usage_of(result: ImageResult) -> ImagesUsage | None:
    """OpenAI's ``usage`` object, for an upstream that reported tokens (gpt-image-1)."""
    u = result.usage
    if u is None:
        return None
    details = InputTokensDetails(text_tokens=u.input_tokens)
    return ImagesUsage(
        input_tokens=u.input_tokens,
        output_tokens=u.output_tokens,
        total_tokens=u.total_tokens,
        input_tokens_details=details,
    )
