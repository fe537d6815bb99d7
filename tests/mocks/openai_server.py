"""A mock OpenAI Chat Completions server speaking the real wire format (and DeepSeek's usage dialect for
``deepseek-*`` models), scripted with ScriptedReply."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import random
import secrets
import struct
import time
from typing import Any

import msgspec
from aiohttp import web

from tests.mocks.batch_api import OpenAIBatches
from tests.mocks.images import png_b64
from tests.mocks.openai_responses_mock import ResponseRender
from tests.mocks.script import ScriptedReply, split
from tests.mocks.server import MockState, last_user_text

_FINISH = {"stop": "stop", "stop_sequence": "stop", "length": "length", "tool_calls": "tool_calls"}

MODELS = ["gpt-4.1", "gpt-4.1-mini", "gpt-4o", "o3", "o4-mini", "deepseek-chat", "deepseek-reasoner", "grok-3-mini"]


def _error_body(status: int, message: str, model: str) -> tuple[dict[str, Any], dict[str, str]]:
    """OpenAI's documented error bodies per status."""
    err: dict[str, Any] = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    headers: dict[str, str] = {}
    if status == 401:
        err["code"] = "invalid_api_key"
    elif status == 403:
        err["code"] = "unsupported_country_region_territory"
        err["type"] = "request_forbidden"
    elif status == 404:
        err["message"] = f"The model `{model}` does not exist or you do not have access to it."
        err["code"] = "model_not_found"
    elif status == 429:
        if "quota" in message:
            err.update(type="insufficient_quota", code="insufficient_quota")
        else:
            err.update(type="requests", code="rate_limit_exceeded")
            headers.update({"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "0"})
    elif status >= 500:
        err.update(type="server_error")
    return {"error": err}, headers


def _usage(reply: ScriptedReply, model: str) -> dict[str, Any]:
    if reply.raw_usage is not None:
        return reply.raw_usage
    u = reply.usage
    usage: dict[str, Any] = {
        "prompt_tokens": u.input,
        "completion_tokens": u.output,
        "total_tokens": u.input + u.output,
        "prompt_tokens_details": {"cached_tokens": u.cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": u.reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    if model.startswith("deepseek"):
        # DeepSeek's own cache fields sit next to the OpenAI ones.
        usage["prompt_cache_hit_tokens"] = u.cached
        usage["prompt_cache_miss_tokens"] = u.input - u.cached
    return usage


def _finish(reply: ScriptedReply) -> str:
    if reply.tool_calls and reply.finish == "stop":
        return "tool_calls"
    return _FINISH[reply.finish]


def _message(reply: ScriptedReply) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "role": "assistant",
        "content": reply.text if reply.text or not reply.tool_calls else None,
    }
    if reply.reasoning is not None:
        msg["reasoning_content"] = reply.reasoning
    if reply.tool_calls:
        msg["tool_calls"] = [
            {"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}
            for t in reply.tool_calls
        ]
    msg["refusal"] = None
    msg["annotations"] = []
    return msg


def _frame(obj: Any) -> bytes:
    return b"data: " + msgspec.json.encode(obj) + b"\n\n"


def _chunks(reply: ScriptedReply, base: dict[str, Any], n: int, include_usage: bool, model: str) -> list[bytes]:
    """The SSE frames of a streamed reply, in the order OpenAI sends them."""

    def chunk(choices: list[dict[str, Any]], usage: Any = None) -> bytes:
        body = {**base, "choices": choices}
        if include_usage:
            body["usage"] = usage
        return _frame(body)

    def delta(i: int, d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"index": i, "delta": d, "logprobs": None, "finish_reason": finish}

    frames: list[bytes] = []
    tools_first = bool(reply.tool_calls) and not reply.text and not reply.reasoning
    for i in range(n):
        if not tools_first:
            frames.append(chunk([delta(i, {"role": "assistant", "content": "", "refusal": None})]))
        for piece in split(reply.reasoning or "", reply.chunks):
            frames.append(chunk([delta(i, {"content": None, "reasoning_content": piece})]))
        for piece in split(reply.text, reply.chunks):
            frames.append(chunk([delta(i, {"content": piece})]))
        for k, call in enumerate(reply.tool_calls):
            first = {"index": k, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
            if tools_first and k == 0:
                # A turn that is only tool calls opens with the role, content null, and the first call.
                opening = {"role": "assistant", "content": None, "tool_calls": [first], "refusal": None}
                frames.append(chunk([delta(i, opening)]))
            else:
                frames.append(chunk([delta(i, {"tool_calls": [first]})]))
            for piece in split(call.arguments, reply.chunks):
                frames.append(chunk([delta(i, {"tool_calls": [{"index": k, "function": {"arguments": piece}}]})]))
        frames.append(chunk([delta(i, {}, _finish(reply))]))
    if include_usage:
        frames.append(chunk([], _usage(reply, model)))
    frames.append(b"data: [DONE]\n\n")
    return frames


def last_input_text(items: list[Any]) -> str:
    """The text of the last user message among Responses input items."""
    for item in reversed(items):
        if item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            return "".join(p.get("text", "") for p in content or () if p.get("type") == "input_text")
    return ""


def _no_key() -> web.Response:
    return web.json_response(
        {
            "error": {
                "message": "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        },
        status=401,
    )


def _invalid(message: str, param: str | None = None, code: str | None = None) -> web.Response:
    err = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return web.json_response({"error": err}, status=400)


# Sizes each image model accepts, and gpt-image-1's output tokens per image by quality and size (OpenAI's table).
IMAGE_SIZES = {
    "dall-e-2": ("256x256", "512x512", "1024x1024"),
    "dall-e-3": ("1024x1024", "1792x1024", "1024x1792"),
    "gpt-image-1": ("1024x1024", "1536x1024", "1024x1536", "auto"),
}
GPT_IMAGE_TOKENS = {
    "low": {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400},
    "medium": {"1024x1024": 1056, "1024x1536": 1584, "1536x1024": 1568},
    "high": {"1024x1024": 4160, "1024x1536": 6240, "1536x1024": 6208},
}


def _image_reply(body: dict[str, Any]) -> web.Response:
    """``POST /v1/images/generations`` as OpenAI (gpt-image-1, dall-e-2/3) and xAI (grok-2-image) answer it."""
    model = str(body.get("model") or "dall-e-2")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        return _invalid("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
    n = int(body.get("n") or 1)
    if model.startswith("grok-"):
        for field in ("size", "quality", "style"):
            if field in body:
                return _invalid(f"Argument not supported: {field}", field)
        fmt = body.get("response_format") or "url"
        data = [_image_object(fmt, prompt, i, 1024, 768, revised=True) for i in range(n)]
        return web.json_response({"data": data})
    family = "gpt-image-1" if model.startswith("gpt-image") else model
    sizes = IMAGE_SIZES.get(family)
    if sizes is None:
        return _invalid(f"Invalid value for 'model' = {model}.", "model", "invalid_value")
    size = str(body.get("size") or ("1024x1024" if family != "gpt-image-1" else "auto"))
    if size not in sizes:
        return _invalid(
            f"Invalid value: '{size}'. Supported values are: {', '.join(repr(s) for s in sizes)}.",
            "size",
            "invalid_value",
        )
    if family == "dall-e-3" and n != 1:
        return _invalid("You must provide n=1 for this model.")
    created = int(time.time())
    if family != "gpt-image-1":
        fmt = body.get("response_format") or "url"
        width, height = (int(v) for v in size.split("x"))
        revised = family == "dall-e-3"
        return web.json_response(
            {"created": created, "data": [_image_object(fmt, prompt, i, width, height, revised) for i in range(n)]}
        )
    if "response_format" in body:
        return _invalid("Unknown parameter: 'response_format'.", "response_format", "unknown_parameter")
    quality = str(body.get("quality") or "auto")
    shown_quality = "high" if quality == "auto" else quality
    shown_size = "1024x1024" if size == "auto" else size
    width, height = (int(v) for v in shown_size.split("x"))
    text_tokens = len(prompt.split()) + 6
    out_tokens = n * GPT_IMAGE_TOKENS[shown_quality][shown_size]
    return web.json_response(
        {
            "created": created,
            "background": body.get("background") or "opaque",
            "data": [{"b64_json": png_b64(prompt, i, width, height)} for i in range(n)],
            "output_format": body.get("output_format") or "png",
            "quality": shown_quality,
            "size": shown_size,
            "usage": {
                "input_tokens": text_tokens,
                "input_tokens_details": {"image_tokens": 0, "text_tokens": text_tokens},
                "output_tokens": out_tokens,
                "total_tokens": text_tokens + out_tokens,
            },
        }
    )


def _image_object(fmt: str, prompt: str, i: int, width: int, height: int, revised: bool) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    if fmt == "b64_json":
        obj["b64_json"] = png_b64(prompt, i, width, height)
    else:
        obj["url"] = f"https://images.mock.invalid/img-{secrets.token_hex(8)}.png?se=2030-01-01&sig=mock"
    if revised:
        obj["revised_prompt"] = f"A detailed rendering of {prompt}"
    return obj


# Embedding models the mock serves, and the length of their vectors (OpenAI's, Mistral's, an Ollama model's).
EMBEDDING_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
    "mistral-embed": 1024,
    "nomic-embed-text": 768,
}
# Mistral's API rejects fields it does not define (``extra_forbidden``).
MISTRAL_EMBEDDING_FIELDS = frozenset({"model", "input", "output_dimension", "output_dtype", "encoding_format"})


def mock_token_count(item: str | list[int]) -> int:
    """The tokens the mock bills for one input: token arrays as they are, text one token per word (or part)."""
    if isinstance(item, list):
        return len(item)
    return sum(max(1, -(-len(word) // 6)) for word in item.split()) or 1


def mock_vector(item: str | list[int], dims: int) -> list[float]:
    """A unit vector summing one pseudo-random dense vector per word (seeded by the word), so texts that share
    words are close and every prefix of the vector carries signal (as a real model's does)."""
    words = item.lower().split() if isinstance(item, str) else [str(t) for t in item]
    vec = [0.0] * dims
    for word in words:
        rng = random.Random(hashlib.sha256(word.strip(".,!?").encode()).digest())
        for k in range(dims):
            vec[k] += rng.gauss(0.0, 1.0)
    norm = math.sqrt(sum(x * x for x in vec)) or 1.0
    return [x / norm for x in vec]


def _embedding_error(message: str, param: str | None, status: int = 400) -> web.Response:
    err = {"message": message, "type": "invalid_request_error", "param": param, "code": None}
    return web.json_response({"error": err}, status=status)


def _embeddings_reply(body: dict[str, Any]) -> web.Response:
    model = body.get("model", "")
    if model not in EMBEDDING_DIMENSIONS:
        err, _ = _error_body(404, "", model)
        return web.json_response(err, status=404)
    if model.startswith("mistral"):
        extra = sorted(set(body) - MISTRAL_EMBEDDING_FIELDS)
        if extra:
            detail = [
                {"type": "extra_forbidden", "loc": ["body", k], "msg": "Extra inputs are not permitted"} for k in extra
            ]
            return web.json_response(
                {"object": "error", "message": {"detail": detail}, "type": "invalid_request_error"}, status=422
            )
    raw: Any = body.get("input")
    inputs: list[Any] = (
        [raw] if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)) else raw
    )
    if not inputs or any(item in ("", []) for item in inputs):
        return _embedding_error(
            "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
            None,
        )
    dims = EMBEDDING_DIMENSIONS[model]
    wanted = body.get("dimensions") if "dimensions" in body else body.get("output_dimension")
    if wanted is not None:
        if model in ("text-embedding-ada-002", "mistral-embed"):
            return _embedding_error("This model does not support specifying dimensions.", "dimensions")
        dims = int(wanted)
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for i, item in enumerate(inputs):
        vec = mock_vector(item, dims)
        embedding: Any = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode() if as_base64 else vec
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    tokens = sum(mock_token_count(item) for item in inputs)
    usage: dict[str, Any] = {"prompt_tokens": tokens, "total_tokens": tokens}
    out: dict[str, Any] = {"object": "list", "data": data, "model": model, "usage": usage}
    if model.startswith("mistral"):
        out["id"] = secrets.token_hex(16)
        usage["completion_tokens"] = 0
    return web.json_response(out, headers={"x-request-id": "req_" + secrets.token_hex(16)})


async def _send_sse(
    request: web.Request, frames: list[bytes], reply: ScriptedReply, request_id: str
) -> web.StreamResponse:
    """Stream ``frames`` as OpenAI does (chunked ``text/event-stream``); a reply scripted to be cut off drops the
    connection after ``truncate_after_chunks`` frames, without the terminating chunk."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8", "x-request-id": request_id})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for sent, frame in enumerate(frames):
        if reply.truncate_after_chunks is not None and sent >= reply.truncate_after_chunks:
            transport = request.transport
            if transport is not None:
                transport.abort()
            return resp
        if sent and reply.chunk_interval_s:
            await asyncio.sleep(reply.chunk_interval_s)  # slow on purpose: the test watches pieces arrive
        await resp.write(frame)
    await resp.write_eof()
    return resp


def make_app(state: MockState) -> web.Application:
    async def images(request: web.Request) -> web.Response:
        body = await state.record(request)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return _no_key()
        reply = state.next_reply("")
        if reply.error_status is not None:
            err, headers = _error_body(reply.error_status, reply.error_message, str(body.get("model", "")))
            if reply.retry_after is not None:
                headers["retry-after"] = str(int(reply.retry_after))
            return web.json_response(err, status=reply.error_status, headers=headers)
        if reply.malformed:
            return web.Response(body=b'{"created": 1, "data": [{"b64_', content_type="application/json")
        return _image_reply(body if isinstance(body, dict) else {})

    async def embeddings(request: web.Request) -> web.Response:
        body = await state.record(request)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            err, _ = _error_body(401, "You didn't provide an API key.", "")
            return web.json_response(err, status=401)
        reply = state.next_reply("")
        if reply.error_status is not None:
            err, headers = _error_body(reply.error_status, reply.error_message, body.get("model", ""))
            return web.json_response(err, status=reply.error_status, headers=headers)
        return _embeddings_reply(body)

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await state.record(request)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return _no_key()
        model: str = body.get("model", "")
        reply = state.next_reply("echo: " + last_user_text(body.get("messages", [])))
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)  # slow on purpose: the test scripted a slow upstream
        request_id = "req_" + secrets.token_hex(16)
        if reply.error_status is not None:
            err, headers = _error_body(reply.error_status, reply.error_message, model)
            headers["x-request-id"] = request_id
            if reply.retry_after is not None:
                headers["retry-after"] = str(int(reply.retry_after))
            return web.json_response(err, status=reply.error_status, headers=headers)
        n = int(body.get("n") or 1)
        base = {
            "id": "chatcmpl-" + secrets.token_hex(12),
            "object": "chat.completion" if not body.get("stream") else "chat.completion.chunk",
            "created": int(time.time()),
            "model": reply.model or model,
            "service_tier": "default",
            "system_fingerprint": "fp_mock",
        }
        if not body.get("stream"):
            if reply.malformed:
                return web.Response(
                    body=b'{"id": "chatcmpl-broken", "choices": [{"index": 0, "mess',
                    content_type="application/json",
                    headers={"x-request-id": request_id},
                )
            choices = [
                {"index": i, "message": _message(reply), "logprobs": None, "finish_reason": _finish(reply)}
                for i in range(n)
            ]
            return web.json_response({**base, "choices": choices, "usage": _usage(reply, model)})

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        frames = _chunks(reply, base, n, include_usage, model)
        if reply.malformed:
            frames.insert(1, b'data: {"id": "chatcmpl-broken", "choices": [{"delta": {"content": "oo\n\n')
        return await _send_sse(request, frames, reply, request_id)

    async def responses(request: web.Request) -> web.StreamResponse:
        body = await state.record(request)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            err, _ = _error_body(401, "You didn't provide an API key.", "")
            return web.json_response(err, status=401)
        model: str = body.get("model", "")
        items = body.get("input") or []
        text = items if isinstance(items, str) else last_input_text(items)
        reply = state.next_reply("echo: " + text)
        request_id = "req_" + secrets.token_hex(16)
        if reply.error_status is not None:
            err, headers = _error_body(reply.error_status, reply.error_message, model)
            headers["x-request-id"] = request_id
            if reply.retry_after is not None:
                headers["retry-after"] = str(int(reply.retry_after))
            return web.json_response(err, status=reply.error_status, headers=headers)
        render = ResponseRender(reply, body)
        if not body.get("stream"):
            return web.json_response(render.object(), headers={"x-request-id": request_id})
        frames = render.frames()
        return await _send_sse(request, frames, reply, request_id)

    async def models(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            err, _ = _error_body(401, "You didn't provide an API key.", "")
            return web.json_response(err, status=401)
        created = int(time.time())
        data = [{"id": m, "object": "model", "created": created, "owned_by": "system"} for m in MODELS]
        return web.json_response({"object": "list", "data": data})

    app = web.Application()
    for prefix in ("/v1", ""):
        app.router.add_post(prefix + "/chat/completions", chat)
        app.router.add_post(prefix + "/responses", responses)
        app.router.add_post(prefix + "/images/generations", images)

        app.router.add_post(prefix + "/embeddings", embeddings)
        app.router.add_get(prefix + "/models", models)
    OpenAIBatches(state).routes(app)
    return app
