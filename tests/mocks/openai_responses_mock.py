"""The OpenAI Responses API (``POST /v1/responses``) of the OpenAI mock, after the API reference: the response
object, and its SSE stream (``event: <type>`` + ``data:`` frames, each event with ``type`` and
``sequence_number``, no ``[DONE]``), rendered from a ScriptedReply. A reasoning model's summary comes back when
the request asks for one (``reasoning.summary``), its ``encrypted_content`` when the request includes
``reasoning.encrypted_content``."""

from __future__ import annotations

import secrets
import time
from typing import Any

import msgspec

from tests.mocks.script import ScriptedReply, split


def _usage(reply: ScriptedReply) -> dict[str, Any]:
    if reply.raw_usage is not None:
        return reply.raw_usage
    u = reply.usage
    return {
        "input_tokens": u.input,
        "input_tokens_details": {"cached_tokens": u.cached},
        "output_tokens": u.output,
        "output_tokens_details": {"reasoning_tokens": u.reasoning},
        "total_tokens": u.input + u.output,
    }


class ResponseRender:
    """One reply as the response object and as the stream events of it."""

    def __init__(self, reply: ScriptedReply, body: dict[str, Any]) -> None:
        self.reply = reply
        self.body = body
        self.seq = 0
        suffix = secrets.token_hex(12)
        self.rid = "resp_" + suffix
        self.rs_id, self.msg_id = "rs_" + suffix, "msg_" + suffix
        reasoning = body.get("reasoning") or {}
        self.summary = reply.reasoning is not None and bool(reasoning.get("summary"))
        self.encrypted = reply.reasoning is not None and "reasoning.encrypted_content" in (body.get("include") or ())

    # -- the object --------------------------------------------------------------------------------------------

    def reasoning_item(self, done: bool) -> dict[str, Any]:
        item: dict[str, Any] = {"id": self.rs_id, "type": "reasoning", "summary": []}
        if done and self.summary:
            item["summary"] = [{"type": "summary_text", "text": self.reply.reasoning}]
        if done and self.encrypted:
            item["encrypted_content"] = self.reply.reasoning_signature
        return item

    def message_item(self, done: bool) -> dict[str, Any]:
        content = [{"type": "output_text", "text": self.reply.text, "annotations": [], "logprobs": []}]
        status = "completed" if self.reply.finish != "length" else "incomplete"
        return {
            "id": self.msg_id,
            "type": "message",
            "status": status if done else "in_progress",
            "role": "assistant",
            "content": content if done else [],
        }

    def call_item(self, k: int, done: bool) -> dict[str, Any]:
        call = self.reply.tool_calls[k]
        return {
            "id": f"fc_{k}_{self.rid[5:]}",
            "type": "function_call",
            "status": "completed" if done else "in_progress",
            "call_id": call.id,
            "name": call.name,
            "arguments": call.arguments if done else "",
        }

    def output(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.reply.reasoning is not None:
            out.append(self.reasoning_item(done=True))
        if self.reply.text:
            out.append(self.message_item(done=True))
        out.extend(self.call_item(k, done=True) for k in range(len(self.reply.tool_calls)))
        return out

    def response(self, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
        body = self.body
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        error = {"code": "server_error", "message": self.reply.error_message} if status == "failed" else None
        return {
            "id": self.rid,
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "background": False,
            "error": error,
            "incomplete_details": incomplete,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": self.reply.model or body.get("model", ""),
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"), "summary": None},
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "top_p": body.get("top_p", 1.0),
            "truncation": body.get("truncation", "disabled"),
            "usage": usage,
            "user": body.get("user"),
            "metadata": body.get("metadata") or {},
        }

    def final_status(self) -> str:
        return "incomplete" if self.reply.finish == "length" else "completed"

    def object(self) -> dict[str, Any]:
        return self.response(self.final_status(), self.output(), _usage(self.reply))

    # -- the stream --------------------------------------------------------------------------------------------

    def event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + msgspec.json.encode(data) + b"\n\n"

    def _reasoning_events(self, index: int) -> list[bytes]:
        ids = {"item_id": self.rs_id, "output_index": index}
        frames = [self.event("response.output_item.added", output_index=index, item=self.reasoning_item(False))]
        if self.summary:
            text = self.reply.reasoning or ""
            empty = {"type": "summary_text", "text": ""}
            frames.append(self.event("response.reasoning_summary_part.added", **ids, summary_index=0, part=empty))
            for piece in split(text, self.reply.chunks):
                frames.append(self.event("response.reasoning_summary_text.delta", **ids, summary_index=0, delta=piece))
            frames.append(self.event("response.reasoning_summary_text.done", **ids, summary_index=0, text=text))
            part = {"type": "summary_text", "text": text}
            frames.append(self.event("response.reasoning_summary_part.done", **ids, summary_index=0, part=part))
        frames.append(self.event("response.output_item.done", output_index=index, item=self.reasoning_item(True)))
        return frames

    def _message_events(self, index: int) -> list[bytes]:
        ids = {"item_id": self.msg_id, "output_index": index, "content_index": 0}
        text = self.reply.text
        frames = [self.event("response.output_item.added", output_index=index, item=self.message_item(False))]
        empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        frames.append(self.event("response.content_part.added", **ids, part=empty))
        for piece in split(text, self.reply.chunks):
            frames.append(self.event("response.output_text.delta", **ids, delta=piece, logprobs=[]))
        frames.append(self.event("response.output_text.done", **ids, text=text, logprobs=[]))
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        frames.append(self.event("response.content_part.done", **ids, part=part))
        frames.append(self.event("response.output_item.done", output_index=index, item=self.message_item(True)))
        return frames

    def _call_events(self, k: int, index: int) -> list[bytes]:
        item = self.call_item(k, done=False)
        ids = {"item_id": item["id"], "output_index": index}
        arguments = self.reply.tool_calls[k].arguments
        frames = [self.event("response.output_item.added", output_index=index, item=item)]
        for piece in split(arguments, self.reply.chunks):
            frames.append(self.event("response.function_call_arguments.delta", **ids, delta=piece))
        frames.append(self.event("response.function_call_arguments.done", **ids, arguments=arguments))
        frames.append(self.event("response.output_item.done", output_index=index, item=self.call_item(k, True)))
        return frames

    def frames(self) -> list[bytes]:
        opening = self.response("in_progress", [], None)
        frames = [self.event("response.created", response=opening)]
        frames.append(self.event("response.in_progress", response=opening))
        index = 0
        if self.reply.reasoning is not None:
            frames += self._reasoning_events(index)
            index += 1
        if self.reply.text:
            frames += self._message_events(index)
            index += 1
        for k in range(len(self.reply.tool_calls)):
            frames += self._call_events(k, index)
            index += 1
        if self.reply.midstream_failure:
            # The documented in-stream failure: the response ends failed, with its error, and no usage.
            frames.append(self.event("response.failed", response=self.response("failed", [], None)))
            return frames
        final = self.final_status()
        frames.append(self.event(f"response.{final}", response=self.response(final, self.output(), _usage(self.reply))))
        return frames
