"""Mock of the Gemini API (generativelanguage v1beta) speaking its real wire format.

* ``POST /v1beta/models/{model}:generateContent``: pretty-printed JSON, as Google sends it.
* ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse``: ``data: {...}\\r\\n\\r\\n`` frames, each a full
  GenerateContentResponse; without ``alt=sse`` the real API answers one JSON array, and so does the mock.
* Auth: ``x-goog-api-key`` (or ``?key=``); none -> 403 PERMISSION_DENIED ("unregistered callers"); a key
  starting with ``bad`` -> 400 INVALID_ARGUMENT / API_KEY_INVALID, as Google answers a wrong key.

Thought parts are returned only when the request set ``thinkingConfig.includeThoughts``, like the real API;
the thought signature rides on the first non-thought part.

* ``POST /v1beta/models/{model}:embedContent`` and ``:batchEmbedContents`` (each request naming
  ``models/{model}``, as the URL does): ``{"embedding": {"values": [...]}}`` and ``{"embeddings": [...]}``, no
  token count (the Gemini API reports none); ``outputDimensionality`` shortens the vector, which then is not
  normalised (only full-length ones are). Function calls arrive whole, in one chunk.

Gemini 3 models (``gemini-3*``) always think: the first ``functionCall`` part of each reply carries a
``thoughtSignature`` whether or not thoughts were asked for, and a request whose current turn (the model turns
after the last user turn with text) replays a step's first function call without its signature is refused
with 400 INVALID_ARGUMENT, as the real API does.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

from aiohttp import web

from tests.mocks.images import png_b64
from tests.mocks.openai_server import mock_vector
from tests.mocks.script import ScriptedReply, ScriptedToolCall, split
from tests.mocks.server import MockState, last_user_text

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

FINISH = {"stop": "STOP", "stop_sequence": "STOP", "tool_calls": "STOP", "length": "MAX_TOKENS"}

JSON_TYPE = "application/json; charset=UTF-8"


def error_response(status: int, message: str, details: list[dict[str, Any]] | None = None) -> web.Response:
    error: dict[str, Any] = {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}
    if details:
        error["details"] = details
    return web.Response(
        status=status,
        text=json.dumps({"error": error}, indent=2) + "\n",
        headers={"Content-Type": JSON_TYPE},
    )


def _usage(reply: ScriptedReply, final: bool) -> dict[str, Any]:
    u = reply.usage
    meta: dict[str, Any] = {"promptTokenCount": u.input}
    if final:
        meta["candidatesTokenCount"] = u.output - u.reasoning
        meta["totalTokenCount"] = u.input + u.output
    else:
        meta["totalTokenCount"] = u.input
    if u.cached:
        meta["cachedContentTokenCount"] = u.cached
    if u.reasoning and final:
        meta["thoughtsTokenCount"] = u.reasoning
    meta["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": u.input}]
    return meta


def _call_part(call: ScriptedToolCall) -> dict[str, Any]:
    fc: dict[str, Any] = {"name": call.name, "args": json.loads(call.arguments or "{}")}
    if call.id:
        fc["id"] = call.id
    return {"functionCall": fc}


class _Render:
    """One scripted reply rendered for one request."""

    def __init__(self, reply: ScriptedReply, model: str, body: dict[str, Any]) -> None:
        self.reply = reply
        self.model = reply.model or model
        gen = body.get("generationConfig") or {}
        self.thoughts = bool((gen.get("thinkingConfig") or {}).get("includeThoughts")) and bool(reply.reasoning)
        self.n = int(gen.get("candidateCount") or 1)
        self.gemini_3 = model.startswith("gemini-3")
        self.response_id = secrets.token_urlsafe(16)[:22]

    def _envelope(self, parts: list[dict[str, Any]], final: bool) -> dict[str, Any]:
        # Every candidate gets the same scripted content; Google sends all of them in each chunk.
        candidates = []
        for i in range(self.n):
            cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
            if final:
                cand["finishReason"] = FINISH[self.reply.finish]
            cand["index"] = i
            candidates.append(cand)
        return {
            "candidates": candidates,
            "usageMetadata": _usage(self.reply, final),
            "modelVersion": self.model,
            "responseId": self.response_id,
        }

    def _sign(self, parts: list[dict[str, Any]]) -> None:
        if self.gemini_3:
            first_call = next((p for p in parts if "functionCall" in p), None)
            if first_call is not None:
                first_call["thoughtSignature"] = self.reply.reasoning_signature
                return
        if self.thoughts and parts:
            parts[0]["thoughtSignature"] = self.reply.reasoning_signature

    def full(self) -> dict[str, Any]:
        parts: list[dict[str, Any]] = []
        answer: list[dict[str, Any]] = []
        if self.thoughts:
            parts.append({"text": self.reply.reasoning, "thought": True})
        if self.reply.text:
            answer.append({"text": self.reply.text})
        answer.extend(_call_part(c) for c in self.reply.tool_calls)
        self._sign(answer)
        return self._envelope(parts + answer, final=True)

    def chunks(self) -> list[dict[str, Any]]:
        pieces: list[list[dict[str, Any]]] = []
        if self.thoughts and self.reply.reasoning:
            pieces.extend([{"text": t, "thought": True}] for t in split(self.reply.reasoning, self.reply.chunks))
        answer: list[list[dict[str, Any]]] = [[{"text": t}] for t in split(self.reply.text, self.reply.chunks)]
        if self.reply.tool_calls:
            answer.append([_call_part(c) for c in self.reply.tool_calls])
        if answer:
            self._sign(answer[0])
        pieces.extend(answer)
        if not pieces:
            pieces.append([{"text": ""}])
        last = len(pieces) - 1
        return [self._envelope(p, final=i == last) for i, p in enumerate(pieces)]


def _missing_signature(contents: list[Any]) -> str | None:
    """Gemini 3's check: in the current turn, each model step's first functionCall needs its signature."""
    start = 0
    for k, content in enumerate(contents):
        parts = content.get("parts") or []
        if content.get("role", "user") == "user" and any("text" in p for p in parts):
            start = k + 1
    for k in range(start, len(contents)):
        content = contents[k]
        if content.get("role") != "model":
            continue
        for j, part in enumerate(content.get("parts") or []):
            if "functionCall" in part:
                if not part.get("thoughtSignature"):
                    name = part["functionCall"].get("name", "")
                    return (
                        f"Function call `{name}` in the {k}. content block is missing a `thought_signature`. "
                        f"Learn more: https://ai.google.dev/gemini-api/docs/thought-signatures (part {j})"
                    )
                break
    return None


# Imagen's output size per aspect ratio (the Gemini API's Imagen guide).
IMAGEN_SIZES = {"1:1": (1024, 1024), "3:4": (896, 1280), "4:3": (1280, 896), "9:16": (768, 1408), "16:9": (1408, 768)}


def _key_error(request: web.Request) -> web.Response | None:
    key = request.headers.get("x-goog-api-key") or request.query.get("key")
    if not key:
        return error_response(
            403,
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.",
        )
    if key.startswith("bad"):
        return error_response(
            400,
            "API key not valid. Please pass a valid API key.",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            ],
        )
    return None


def _predict(state: MockState, model: str, body: Any) -> web.Response:
    """``models/{imagen model}:predict``: ``{"predictions": [{"mimeType", "bytesBase64Encoded"}]}``."""
    if not model.startswith("imagen-"):
        return error_response(
            404, f"models/{model} is not found for API version v1beta, or is not supported for predict."
        )
    instances = body.get("instances") if isinstance(body, dict) else None
    if not instances or not isinstance(instances[0], dict) or not instances[0].get("prompt"):
        return error_response(400, "Missing prompt in instances.")
    params = body.get("parameters") or {}
    count = params.get("sampleCount", 4)
    if not isinstance(count, int) or not 1 <= count <= 4:
        return error_response(400, f"Number of images to generate must be between 1 and 4, got {count}.")
    ratio = params.get("aspectRatio", "1:1")
    if ratio not in IMAGEN_SIZES:
        return error_response(400, f"Unsupported aspect ratio: {ratio}.")
    reply = state.next_reply("")
    if reply.error_status is not None:
        return error_response(reply.error_status, reply.error_message)
    width, height = IMAGEN_SIZES[ratio]
    prompt = instances[0]["prompt"]
    predictions = [
        {"mimeType": "image/png", "bytesBase64Encoded": png_b64(prompt, i, width, height)} for i in range(count)
    ]
    return web.Response(
        text=json.dumps({"predictions": predictions}, indent=2) + "\n", headers={"Content-Type": JSON_TYPE}
    )


# Embedding models and their full vector length; only full-length vectors come back normalised (as documented).
EMBEDDING_DIMENSIONS = {"gemini-embedding-001": 3072, "text-embedding-004": 768}


def _embed_one(request: Any, model: str, where: str) -> dict[str, Any] | web.Response:
    """One EmbedContentRequest's ContentEmbedding, or the 400 Google answers it with."""
    if not isinstance(request, dict) or not (request.get("content") or {}).get("parts"):
        return error_response(400, f"* {where}content: contents is not specified\n")
    if where and request.get("model") != f"models/{model}":
        return error_response(400, f"Model in {where.rstrip('.')} does not match the model in the URL.")
    text = " ".join(p.get("text", "") for p in request["content"]["parts"])
    full = EMBEDDING_DIMENSIONS[model]
    wanted = request.get("outputDimensionality")
    vector = mock_vector(text, full)
    return {"values": vector[: int(wanted)] if wanted else vector}


def _embeddings(body: Any, model: str, method: str) -> web.Response:
    if model not in EMBEDDING_DIMENSIONS:
        return error_response(
            404, f"models/{model} is not found for API version v1beta, or is not supported for {method}."
        )
    if method == "embedContent":
        found = _embed_one(body, model, "")
        if isinstance(found, web.Response):
            return found
        out: dict[str, Any] = {"embedding": found}
    else:
        requests = body.get("requests") if isinstance(body, dict) else None
        if not requests:
            return error_response(400, "* BatchEmbedContentsRequest.requests: requests is not specified\n")
        embeddings = []
        for i, one in enumerate(requests):
            found = _embed_one(one, model, f"requests[{i}].")
            if isinstance(found, web.Response):
                return found
            embeddings.append(found)
        out = {"embeddings": embeddings}
    return web.Response(text=json.dumps(out, indent=2) + "\n", headers={"Content-Type": JSON_TYPE})


def make_app(state: MockState) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await state.record(request)
        target = request.match_info["target"]
        model, _, method = target.partition(":")
        if method not in ("generateContent", "streamGenerateContent", "predict", "embedContent", "batchEmbedContents"):
            return error_response(404, f"Method not found: {method}")
        refused = _key_error(request)
        if refused is not None:
            return refused
        if method == "predict":
            return _predict(state, model, body)
        if method in ("embedContent", "batchEmbedContents"):
            return _embeddings(body, model, method)
        if not isinstance(body, dict) or not body.get("contents"):
            return error_response(400, "* GenerateContentRequest.contents: contents is not specified\n")
        if model.startswith("gemini-3"):
            missing = _missing_signature(body["contents"])
            if missing is not None:
                return error_response(400, missing)
        reply = state.next_reply("echo: " + last_user_text(body.get("contents", [])))
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)  # slow on purpose: the test scripted a slow upstream
        if reply.error_status is not None:
            details: list[dict[str, Any]] = []
            headers: dict[str, str] = {}
            if reply.retry_after is not None:
                headers["Retry-After"] = f"{reply.retry_after:g}"
                if reply.error_status == 429:
                    details.append(
                        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{reply.retry_after:g}s"}
                    )
            failure = error_response(reply.error_status, reply.error_message, details)
            failure.headers.update(headers)
            return failure
        render = _Render(reply, model, body)
        if method == "generateContent":
            if reply.malformed:
                return web.Response(
                    status=200, text='{"candidates": [{"content": ', headers={"Content-Type": JSON_TYPE}
                )
            return web.Response(text=json.dumps(render.full(), indent=2) + "\n", headers={"Content-Type": JSON_TYPE})
        if request.query.get("alt") != "sse":
            return web.Response(text=json.dumps(render.chunks(), indent=2) + "\n", headers={"Content-Type": JSON_TYPE})
        resp = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        frames = (
            [b'data: {"candidates": [{"content": \r\n\r\n']
            if reply.malformed
            else [b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in render.chunks()]
        )
        for i, frame in enumerate(frames):
            if reply.truncate_after_chunks is not None and i >= reply.truncate_after_chunks:
                # Drop the connection without the chunked-encoding terminator: an abrupt upstream failure.
                if request.transport is not None:
                    request.transport.abort()
                return resp
            await resp.write(frame)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1beta/models/{target}", handle)
    return app
