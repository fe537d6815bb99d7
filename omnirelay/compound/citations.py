"""Citation markers in a streamed report: ``[n]`` (or ``[n, m]``) kept only when ``n`` is a source that was
actually fetched, renumbered by first appearance (so the report cites 1..k), anything else removed. Enforced
here, in code, whatever the model wrote. Each kept marker yields a Citation whose span runs from the start of its
sentence (or the end of the previous citation) to the end of the marker."""

from __future__ import annotations

import re

from omnirelay.core.types import Citation
from omnirelay.tools.search.base import Document

_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_PARTIAL = re.compile(r"\[[\d,\s]*$")  # a marker that may still be completed by the next piece
_BOUNDARY = re.compile(r"(?:[.!?]\s|\n)")


class CitationFilter:
    def __init__(self, sources: dict[int, Document]) -> None:
        self.sources = sources  # source number as the model saw it -> the fetched document
        self.renumber: dict[int, int] = {}  # model's number -> number in the report
        self.order: list[int] = []  # model's numbers in order of first citation
        self.emitted = ""  # the report text so far (what offsets count in)
        self.pending = ""
        self.span_floor = 0  # a citation span starts no earlier than the previous one's end
        self.dropped = 0  # markers removed because they named no fetched source

    def feed(self, text: str) -> tuple[str, list[Citation]]:
        self.pending += text
        partial = _PARTIAL.search(self.pending)
        if partial is not None and len(self.pending) - partial.start() <= 24:
            ready, self.pending = self.pending[: partial.start()], self.pending[partial.start() :]
        else:
            ready, self.pending = self.pending, ""
        return self._process(ready)

    def close(self) -> tuple[str, list[Citation]]:
        rest, self.pending = self.pending, ""
        return self._process(rest)

    def _process(self, text: str) -> tuple[str, list[Citation]]:
        out: list[str] = []
        cites: list[Citation] = []
        at = 0
        for m in _MARKER.finditer(text):
            out.append(text[at : m.start()])
            at = m.end()
            prefix = self.emitted + "".join(out)
            kept: list[int] = []
            for raw in m.group(1).split(","):
                n = int(raw.strip())
                if n in self.sources:
                    kept.append(n)
                else:
                    self.dropped += 1
            if not kept:
                # Drop the marker and the space before it ("claim [9]." -> "claim.").
                if out and out[-1].endswith(" "):
                    out[-1] = out[-1][:-1]
                continue
            start = self._sentence_start(prefix)
            for n in dict.fromkeys(kept):
                if n not in self.renumber:
                    self.renumber[n] = len(self.renumber) + 1
                    self.order.append(n)
                marker = f"[{self.renumber[n]}]"
                out.append(marker)
                end = len(prefix) + len(marker)
                doc = self.sources[n]
                cites.append(
                    Citation(
                        url=doc.url,
                        title=doc.title,
                        start_index=start,
                        end_index=end,
                        cited_text=(prefix + marker)[start:end],
                    )
                )
                prefix += marker
                start = end
                self.span_floor = end
        out.append(text[at:])
        result = "".join(out)
        self.emitted += result
        return result, cites

    def _sentence_start(self, prefix: str) -> int:
        start = self.span_floor
        for m in _BOUNDARY.finditer(prefix, self.span_floor):
            start = m.end()
        while start < len(prefix) and prefix[start] == " ":
            start += 1
        return min(start, len(prefix))

    def source_list(self) -> str:
        """The report's closing list of the sources it cited, in report numbering."""
        if not self.order:
            return ""
        lines = []
        for n in self.order:
            doc = self.sources[n]
            dated = f" ({doc.date})" if doc.date else ""
            lines.append(f"[{self.renumber[n]}] {doc.title}{dated}: {doc.url}")
        return "\n\nSources:\n" + "\n".join(lines)
