"""Server-side tools on any model: ``web_search``, ``fetch`` and ``python``, run by the gateway itself.

A request names them with ``omnirelay: {"tools": [...]}``, with a function tool of one of those names and no
parameters (OpenAI side), or with an Anthropic server tool (``{"type": "web_search_20250305", ...}``,
``web_fetch_*``, ``code_execution_*``) when the model is not served by Anthropic alone (or the config says
``anthropic_server_tools: gateway``). The call pipeline then sends the request to this hidden engine instead of the
model's own channels (``tool_loop_route``, registered with ``CallPipeline.intercept``).

The loop: call the model with the server tools declared (real JSON schemas) beside the client's own tools.
When the model calls only server tools, run them, append the results, call again, up to the round cap. When it
calls a client tool, stop and return that call unchanged (``tool_calls``): the client runs it and comes back,
and the loop resumes on the next request. Each server call is reported as a ``ServerToolUse`` (Anthropic
``server_tool_use`` + result blocks) and, for clients without such blocks (OpenAI side), as reasoning text.
Usage and cost are the exact sum of every model call, each priced on its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from omnirelay.compound.caller import Tally, sub_request, with_system
from omnirelay.compound.engine import CompoundEngine, out_of_budget
from omnirelay.compound.modes import SERVER_TOOLS, TOOLS_MODE, upstream_name
from omnirelay.compound.options import Effective
from omnirelay.config import BreakerConfig, RetryConfig
from omnirelay.core.assemble import MessageAssembler
from omnirelay.core.errors import GatewayError, invalid
from omnirelay.core.events import (
    ChoiceEnd,
    ReasoningDelta,
    ServerToolUse,
    StreamEvent,
    TextDelta,
    ToolCallArgs,
    ToolCallStart,
    UsageReport,
)
from omnirelay.core.ids import new_id
from omnirelay.core.types import (
    ChatRequest,
    Message,
    SearchResultRef,
    ServerToolCall,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
)
from omnirelay.routing.breaker import Breaker
from omnirelay.routing.table import Channel, Route
from omnirelay.tools.fetch import FetchRefused, fetch
from omnirelay.tools.python_sandbox import SandboxUnavailable, python_refusal, run_python
from omnirelay.tools.search import Document, SearchBackend, backend_config, make_backend
from omnirelay.tools.search.http import SearchError

if TYPE_CHECKING:
    from omnirelay.pipeline.calls import CallPipeline

MODE = TOOLS_MODE
# Anthropic server tool types (versioned: web_search_20250305, web_fetch_20250910, code_execution_20250825...)
ANTHROPIC_TYPES = (("web_search_", "web_search"), ("web_fetch_", "fetch"), ("code_execution_", "python"))
RESULTS_PER_SEARCH = 5
LAST_ROUND_NOTE = (
    "You have used every server-side tool round available for this request. Do not call web_search, fetch or "
    "python again: answer now from the results you already have."
)

TOOL_DEFS: dict[str, Tool] = {
    "web_search": Tool(
        name="web_search",
        description="Search the web (or the gateway's document corpus). Returns the top results: title, URL, "
        "date when known, and a snippet. Use fetch to read a result in full.",
        parameters={
            "type": "object",
            "properties": {"query": {"type": "string", "description": "The search query."}},
            "required": ["query"],
            "additionalProperties": False,
        },
    ),
    "fetch": Tool(
        name="fetch",
        description="Read a web page (http or https URL, or a corpus:// URL from web_search) and return its "
        "text. Private and local network addresses are refused.",
        parameters={
            "type": "object",
            "properties": {"url": {"type": "string", "description": "The URL to read."}},
            "required": ["url"],
            "additionalProperties": False,
        },
    ),
    "python": Tool(
        name="python",
        description="Run a Python 3 program in a sandbox (no network, limited CPU time and memory, an empty "
        "working directory with limited space) and return what it printed. Print every result you need.",
        parameters={
            "type": "object",
            "properties": {"code": {"type": "string", "description": "The complete program to run."}},
            "required": ["code"],
            "additionalProperties": False,
        },
    ),
}


class ToolSpec(msgspec.Struct, kw_only=True):
    """What a request asks of the loop: the server tools (in order), the client's own tools, and the request's
    passthrough fields without the server tools."""

    server: list[str]
    client: list[Tool]
    extra: dict[str, Any]


def _anthropic_kind(entry: Any) -> str | None:
    kind = entry.get("type") if isinstance(entry, dict) else None
    if isinstance(kind, str):
        for prefix, name in ANTHROPIC_TYPES:
            if kind.startswith(prefix):
                return name
    return None


def tool_spec(req: ChatRequest, include_anthropic: bool) -> ToolSpec:
    server: list[str] = []
    raw = req.options.get("tools") if req.options else None
    if isinstance(raw, list):
        server.extend(t for t in raw if isinstance(t, str))
    client: list[Tool] = []
    for tool in req.tools:
        if tool.name in SERVER_TOOLS and not tool.parameters:
            server.append(tool.name)  # a placeholder naming the gateway's tool, not a tool of the client's
        else:
            client.append(tool)
    extra = req.extra
    typed = extra.get("tools") if include_anthropic and req.inbound_protocol == "anthropic" else None
    if isinstance(typed, list):
        kept = []
        for entry in typed:
            kind = _anthropic_kind(entry)
            if kind is None:
                kept.append(entry)  # another Anthropic-defined tool (bash, text_editor...): left as it was
            else:
                server.append(kind)
        extra = {k: v for k, v in extra.items() if k != "tools"}
        if kept:
            extra["tools"] = kept
    server = list(dict.fromkeys(server))
    for tool in client:
        if tool.name in server:
            raise invalid(
                f"the tool name {tool.name!r} is both a client tool and a server-side tool of this request",
                param="tools",
            )
    return ToolSpec(server=server, client=client, extra=extra)


def loop_route(pipeline: CallPipeline, req: ChatRequest) -> Route | None:
    """``pipeline_caller.tool_loop_route`` once its cheap test passed: the route to the tool loop when
    ``req`` names server tools the gateway should run; None otherwise (the request then routes as usual)."""
    engine = pipeline.providers.get(upstream_name(MODE))
    if not isinstance(engine, ToolLoopEngine):
        return None
    try:
        route = pipeline.resolve(req)
    except GatewayError:
        return None  # the usual planning reports it (or moves on to the request's fallbacks)
    native = engine.settings.anthropic_server_tools == "upstream" and all(
        c.upstream.provider == "anthropic" for c in route.channels
    )
    server = tool_spec(req, include_anthropic=not native).server
    if not server:
        return None
    if "python" in server:
        refusal = python_refusal(engine.settings.python)
        if refusal is not None:
            raise invalid(refusal, param="tools")
    return engine.route_for(req.model)


class ToolLoopEngine(CompoundEngine):
    mode: ClassVar[str] = MODE

    _backends: dict[str, SearchBackend] | None = None
    _routes: dict[str, Route] | None = None

    def route_for(self, model: str) -> Route:
        """One channel to this engine for ``model``; one attempt (the model calls retry themselves, and running
        tools again could repeat their effects), no breaker."""
        routes = self._routes if self._routes is not None else {}
        self._routes = routes
        found = routes.get(model)
        if found is None:
            name = f"{self.upstream.name}/{model}"
            channel = Channel(
                upstream=self.upstream, model=model, name=name, breaker=Breaker(name, BreakerConfig(enabled=False))
            )
            found = Route(public_name=model, channels=(channel,), retry=RetryConfig(max_attempts=1))
            if len(routes) < 10_000:  # bounded: callers control the names
                routes[model] = found
        return found

    def backend(self, name: str) -> SearchBackend:
        backends = self._backends if self._backends is not None else {}
        self._backends = backends
        found = backends.get(name)
        if found is None:
            cfg = backend_config(name, self.settings.search_backends)
            found = backends[name] = make_backend(cfg, self.settings.data_dir)
        return found

    async def aclose(self) -> None:
        for b in (self._backends or {}).values():
            await b.aclose()

    async def run(self, req: ChatRequest, base: str, opts: Effective, tally: Tally) -> AsyncIterator[StreamEvent]:
        spec = tool_spec(req, include_anthropic=True)
        backend = self.backend(opts.search) if {"web_search", "fetch"} & set(spec.server) else None
        tools = [*spec.client, *(TOOL_DEFS[name] for name in spec.server)]
        rounds = opts.max_rounds if "max_rounds" in req.options else self.settings.max_tool_steps
        deadline = time.monotonic() + opts.max_time
        # Clients without server tool blocks (OpenAI side) see each tool run as reasoning text.
        narrate = req.inbound_protocol != "anthropic"
        options = {"fallbacks": req.options["fallbacks"]} if "fallbacks" in req.options else {}
        messages = list(req.messages)
        wrote_text = False
        for turn_no in range(1, rounds + 1):
            last = turn_no == rounds
            changes: dict[str, object] = {"stream": True, "tools": tools, "extra": dict(spec.extra)}
            changes["options"] = options
            changes["messages"] = with_system(messages, LAST_ROUND_NOTE) if last else messages
            if last and not spec.client:
                changes["tool_choice"] = ToolChoice(mode="none")
            turn = MessageAssembler()
            async for event in self.caller.stream(sub_request(req, base, **changes)):
                if isinstance(event, UsageReport):
                    tally.add(event.usage, event.cost)
                    yield tally.report()
                elif isinstance(event, ServerToolUse):
                    yield event
                elif isinstance(event, TextDelta | ReasoningDelta | ToolCallStart | ToolCallArgs | ChoiceEnd):
                    if isinstance(event, TextDelta) and not turn.text and wrote_text and event.text:
                        yield TextDelta(text="\n\n")  # keep the turns' texts apart
                    turn.add(event)
                    if isinstance(event, TextDelta | ReasoningDelta):
                        yield event
            wrote_text = wrote_text or any(turn.text)
            calls = turn.tool_calls()
            client_calls = [c for c in calls if c.name not in spec.server]
            server_calls = [c for c in calls if c.name in spec.server]
            if client_calls:
                # The client's own tool: returned as the model wrote it (server calls of the same turn are
                # dropped; the model can ask again once the client answers).
                for index, call in enumerate(client_calls):
                    yield ToolCallStart(index=index, id=call.id, name=call.name)
                    yield ToolCallArgs(index=index, arguments=call.arguments)
                yield ChoiceEnd(finish_reason="tool_calls")
                return
            if not server_calls:
                finish = turn.finish_reason
                yield ChoiceEnd(finish_reason=finish if finish != "tool_calls" else "stop")
                return
            cap = f"the round cap ({rounds})" if last else out_of_budget(opts, tally)
            if cap is None and time.monotonic() >= deadline:
                cap = f"the time cap ({opts.max_time:g}s)"
            if cap is not None:
                if narrate:
                    yield ReasoningDelta(text=f"Stopped at {cap} with tool calls still pending (truncated).\n")
                yield ChoiceEnd(finish_reason="length")
                return
            messages = [*messages, turn.message(server_calls)]
            ran = await asyncio.gather(*(self._execute(call, backend) for call in server_calls))
            for call, (record, result, failed) in zip(server_calls, ran, strict=True):
                if narrate:
                    yield ReasoningDelta(text=_narration(record, result))
                yield ServerToolUse(call=record)
                messages.append(
                    Message(
                        role="tool",
                        tool_call_id=call.id,
                        name=call.name,
                        content=[TextPart(text=result)],
                        is_error=failed,
                    )
                )

    async def _execute(self, call: ToolCall, backend: SearchBackend | None) -> tuple[ServerToolCall, str, bool]:
        """Run one server tool call: what to show the client, the result text for the model, and whether the
        call failed. A tool failure is the model's to handle (an error result), never the request's."""
        record = ServerToolCall(id=new_id("srvtoolu_"), name=call.name)
        try:
            args = msgspec.json.decode(call.arguments or "{}")
        except msgspec.DecodeError:
            args = None
        field = {"web_search": "query", "fetch": "url", "python": "code"}[call.name]
        value = args.get(field) if isinstance(args, dict) else None
        if not isinstance(value, str) or not value.strip():
            record.error = f"{call.name} needs a non-empty string {field!r} argument"
            return record, f"error: {record.error}", True
        record.input = {field: value}
        if call.name == "web_search":
            return await self._search(record, value, backend)
        if call.name == "fetch":
            return await self._fetch(record, value, backend)
        return await self._python(record, value)

    async def _search(
        self, record: ServerToolCall, query: str, backend: SearchBackend | None
    ) -> tuple[ServerToolCall, str, bool]:
        assert backend is not None  # chosen whenever web_search is named
        try:
            results = await backend.search(query, RESULTS_PER_SEARCH)
        except SearchError as exc:
            record.error = str(exc)
            return record, f"error: search failed: {exc}", True
        record.results = [SearchResultRef(url=r.url, title=r.title, page_age=r.date) for r in results]
        if not results:
            return record, "No results.", False
        lines = [
            f"[{n}] {r.title or r.url}\nURL: {r.url}{chr(10) + 'Date: ' + r.date if r.date else ''}\n{r.snippet}"
            for n, r in enumerate(results, 1)
        ]
        return record, "\n\n".join(lines), False

    async def _fetch(
        self, record: ServerToolCall, url: str, backend: SearchBackend | None
    ) -> tuple[ServerToolCall, str, bool]:
        doc: Document | None = None
        try:
            if backend is not None and url.startswith("corpus://"):
                doc = await backend.read(url)
            if doc is None:
                doc = await fetch(url, self.settings.fetch)
        except FetchRefused as exc:
            record.error = str(exc)
            return record, f"error: fetch refused: {exc}", True
        text = doc.text[: self.settings.fetch.max_chars]
        record.results = [SearchResultRef(url=doc.url, title=doc.title, page_age=doc.date)]
        record.output = text
        dated = f"\nDate: {doc.date}" if doc.date else ""
        return record, f"{doc.title}\nURL: {doc.url}{dated}\n\n{text}", False

    async def _python(self, record: ServerToolCall, code: str) -> tuple[ServerToolCall, str, bool]:
        try:
            result = await run_python(code, self.settings.python)
        except SandboxUnavailable as exc:  # checked when the request came in; the host changed since
            record.error = f"the python tool is unavailable: {exc}"
            record.return_code = 1
            return record, f"error: {record.error}", True
        record.output = result.stdout
        record.stderr = result.stderr
        record.return_code = result.exit_code if result.exit_code is not None else 137  # killed
        return record, result.as_text(), record.return_code != 0


def _narration(record: ServerToolCall, result: str) -> str:
    """One line of progress for a client that has no server tool blocks."""
    if record.name == "web_search":
        what = f"web_search {record.input.get('query', '')!r}"
        outcome = f"{len(record.results)} result(s)" if record.error is None else f"failed: {record.error}"
    elif record.name == "fetch":
        what = f"fetch {record.input.get('url', '')}"
        outcome = f"{len(record.output)} characters read" if record.error is None else f"refused: {record.error}"
    else:
        what = "python"
        shown = result if len(result) <= 500 else result[:500] + " ..."
        outcome = f"output:\n{shown}" if record.error is None else f"failed: {record.error}"
    return f"[{what}] {outcome}\n"
