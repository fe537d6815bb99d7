"""``deepsearch:<model>``: a research agent over a search backend.

Round 1 plans queries; every round searches, reads the new results (the local corpus serves its own documents,
anything else goes through the SSRF-guarded ``fetch``), numbers each source read, and asks the model for
findings with their sources, conflicts and the gaps still open, as next queries. Rounds stop when no gaps are
left or at a cap (rounds, sources, cost, tokens, wall time). The report (short direct answer, details, key
citations) is streamed through ``CitationFilter``: only sources actually read can be cited, whatever the model
writes. Progress (queries, sources read) streams as reasoning; each search is also reported as a server tool
use with its results (``server_tool_use`` / ``web_search_tool_result`` on /v1/messages).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from typing import ClassVar

from omnirelay.compound.caller import Tally, last_user_text, sub_request, with_user_note
from omnirelay.compound.citations import CitationFilter
from omnirelay.compound.engine import CompoundEngine, out_of_budget, require_text
from omnirelay.compound.options import Effective
from omnirelay.core.events import (
    ChoiceEnd,
    CitationDelta,
    ReasoningDelta,
    ServerToolUse,
    StreamEvent,
    TextDelta,
    UsageReport,
)
from omnirelay.core.ids import new_id
from omnirelay.core.types import ChatRequest, SearchResultRef, ServerToolCall
from omnirelay.tools.fetch import FetchRefused, fetch
from omnirelay.tools.search import Document, SearchBackend, SearchResult, backend_config, make_backend
from omnirelay.tools.search.http import SearchError

log = logging.getLogger("omnirelay.compound.deepsearch")

RESULTS_PER_QUERY = 5
QUERIES_PER_ROUND = 3
READS_PER_ROUND = 4
SOURCE_CHARS = 3000

PLAN_PROMPT = (
    "\n\n---\nYou are planning web research to answer the request above. Write up to {k} short search queries "
    "that together cover everything needed, one per line, each starting with '- '. Write nothing else."
)
NOTES_PROMPT = (
    "\n\n---\nResearch so far for the request above.\n\nNotes from earlier rounds:\n{notes}\n\nNew sources, "
    "numbered:\n{sources}\n\nWrite three sections.\nFINDINGS: bullet points of facts relevant to the request, "
    "each ending with the number(s) of the source(s) that state it, like [2]; include a source's date when it "
    "matters.\nCONFLICTS: where sources disagree, which one should win (newer or more authoritative) and why; "
    "or 'none'.\nNEXT QUERIES: up to {k} search queries, one per line starting with '- ', for what is still "
    "missing or needs confirming; or 'none' if the request can be fully answered."
)
REPORT_PROMPT = (
    "\n\n---\nWrite the final research report for the request above from these notes and sources only.\n\n"
    "Notes:\n{notes}\n\nSources you may cite (cite only these numbers, as [n] right after the claim):\n"
    "{catalogue}\n\nFormat: first a short direct answer (one or two sentences), then 'Details:' with the "
    "supporting explanation, then 'Key citations:' naming the most important sources as [n]. Where sources "
    "conflict, say so explicitly and say which one you followed and why (newer or more authoritative wins). "
    "Do not list URLs; do not cite anything that is not in the list."
)

_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+(.+?)\s*$")


def _bullets(text: str, limit: int) -> list[str]:
    out: list[str] = []
    for line in text.splitlines():
        m = _BULLET.match(line)
        if m:
            q = m.group(1).strip().strip("\"'`")
            if q and q.lower() != "none" and q not in out:
                out.append(q)
    return out[:limit]


def _section(text: str, name: str) -> str:
    m = re.search(rf"{name}\s*:?(.*?)(?:\n[A-Z ]{{5,}}:|\Z)", text, re.DOTALL)
    return m.group(1) if m else ""


class DeepSearchEngine(CompoundEngine):
    mode: ClassVar[str] = "deepsearch"

    _backends: dict[str, SearchBackend] | None = None

    def backend(self, name: str) -> SearchBackend:
        if self._backends is None:
            self._backends = {}
        found = self._backends.get(name)
        if found is None:
            cfg = backend_config(name, self.settings.search_backends)
            found = self._backends[name] = make_backend(cfg, self.settings.data_dir)
        return found

    async def aclose(self) -> None:
        for b in (self._backends or {}).values():
            await b.aclose()

    async def _read(self, backend: SearchBackend, result: SearchResult) -> Document:
        doc = await backend.read(result.url)
        if doc is None:
            doc = await fetch(result.url, self.settings.fetch)
        if not doc.date and result.date:
            doc.date = result.date
        if not doc.title or doc.title == doc.url:
            doc.title = result.title or doc.url
        return doc

    async def run(self, req: ChatRequest, base: str, opts: Effective, tally: Tally) -> AsyncIterator[StreamEvent]:
        backend = self.backend(opts.search)
        deadline = time.monotonic() + opts.max_time
        question = last_user_text(req.messages)
        plain: dict[str, object] = {
            "tools": [],
            "tool_choice": None,
            "parallel_tool_calls": None,
            "response_format": None,
        }
        sources: dict[int, Document] = {}
        seen_urls: set[str] = set()
        notes: list[str] = []
        cap: str | None = None
        yield ReasoningDelta(text=f"Researching with {backend.name} search (up to {opts.max_rounds} rounds).\n")
        plan = await self.caller.complete(
            sub_request(
                req, base, messages=with_user_note(req.messages, PLAN_PROMPT.format(k=QUERIES_PER_ROUND)), **plain
            )
        )
        tally.add_response(plan)
        yield tally.report()
        queries = _bullets(require_text(plan, "planning"), QUERIES_PER_ROUND) or [question]
        for round_no in range(1, opts.max_rounds + 1):
            yield ReasoningDelta(text=f"Round {round_no}.\n")
            fresh: list[tuple[int, Document]] = []
            for query in queries:
                if time.monotonic() >= deadline:
                    cap = f"the time cap ({opts.max_time:g}s)"
                    break
                yield ReasoningDelta(text=f"Searching: {query}\n")
                try:
                    results = await backend.search(query, RESULTS_PER_QUERY)
                except SearchError as exc:
                    yield ReasoningDelta(text=f"Search failed: {exc}\n")
                    continue
                call = ServerToolCall(
                    id=new_id("srvtoolu_"),
                    name="web_search",
                    input={"query": query},
                    results=[SearchResultRef(url=r.url, title=r.title, page_age=r.date) for r in results],
                )
                yield ServerToolUse(call=call)
                for result in results:
                    if len(fresh) >= READS_PER_ROUND or len(sources) >= opts.max_sources:
                        break
                    if result.url in seen_urls:
                        continue
                    seen_urls.add(result.url)
                    try:
                        doc = await self._read(backend, result)
                    except FetchRefused as exc:
                        yield ReasoningDelta(text=f"Could not read {result.url}: {exc}\n")
                        continue
                    number = len(sources) + 1
                    sources[number] = doc
                    fresh.append((number, doc))
                    dated = f", {doc.date}" if doc.date else ""
                    yield ReasoningDelta(text=f"Read [{number}] {doc.title}{dated} ({doc.url})\n")
            if not fresh:
                yield ReasoningDelta(text="No new sources found.\n")
                break
            listing = "\n\n".join(
                f"[{n}] {d.title} ({d.url}{', dated ' + d.date if d.date else ''})\n{d.text[:SOURCE_CHARS]}"
                for n, d in fresh
            )
            prompt = NOTES_PROMPT.format(notes="\n".join(notes) or "(none yet)", sources=listing, k=QUERIES_PER_ROUND)
            noted = await self.caller.complete(
                sub_request(req, base, messages=with_user_note(req.messages, prompt), **plain)
            )
            tally.add_response(noted)
            yield tally.report()
            text = require_text(noted, "note taking")
            notes.append(text.split("NEXT QUERIES", 1)[0].strip())
            conflicts = _section(text, "CONFLICTS").strip()
            if conflicts and conflicts.lower().strip(" .-") != "none":
                yield ReasoningDelta(text=f"Conflict noted: {' '.join(conflicts.split())[:300]}\n")
            queries = _bullets(_section(text, "NEXT QUERIES"), QUERIES_PER_ROUND)
            cap = cap or out_of_budget(opts, tally)
            if time.monotonic() >= deadline:
                cap = cap or f"the time cap ({opts.max_time:g}s)"
            if cap is not None or not queries:
                break
            if len(sources) >= opts.max_sources:
                cap = f"the source cap ({opts.max_sources})"
                break
        if cap is not None:
            yield ReasoningDelta(text=f"Stopped at {cap}; writing the report from what was found (truncated).\n")
        async for event in self._report(req, base, notes, sources, tally, plain, truncated=cap is not None):
            yield event

    async def _report(
        self,
        req: ChatRequest,
        base: str,
        notes: list[str],
        sources: dict[int, Document],
        tally: Tally,
        plain: dict[str, object],
        truncated: bool,
    ) -> AsyncIterator[StreamEvent]:
        catalogue = "\n".join(f"[{n}] {d.title}{' (' + d.date + ')' if d.date else ''}" for n, d in sources.items())
        prompt = REPORT_PROMPT.format(notes="\n\n".join(notes) or "(nothing found)", catalogue=catalogue or "(none)")
        sub = sub_request(req, base, stream=True, messages=with_user_note(req.messages, prompt), **plain)
        cites = CitationFilter(sources)
        finish = "stop"
        async for event in self.caller.stream(sub):
            if isinstance(event, TextDelta):
                text, found = cites.feed(event.text)
                if text:
                    yield TextDelta(text=text)
                for c in found:
                    yield CitationDelta(citation=c)
            elif isinstance(event, UsageReport):
                tally.add(event.usage, event.cost)
                yield tally.report()
            elif isinstance(event, ChoiceEnd):
                finish = event.finish_reason
        text, found = cites.close()
        if text:
            yield TextDelta(text=text)
        for c in found:
            yield CitationDelta(citation=c)
        if cites.dropped:  # reasoning after the answer began would split the answer's blocks: log only
            log.info("deepsearch: removed %d citation(s) of sources that were not read", cites.dropped)
        listing = cites.source_list()
        if listing:
            yield TextDelta(text=listing)
        yield ChoiceEnd(finish_reason="length" if truncated else ("length" if finish == "length" else "stop"))
