"""Scoring rules of ``eval deepsearch``: answer matching and citation metrics.

A reply's direct answer is its text before ``Details:`` / ``Sources:`` (both systems are asked for that
layout), first paragraph only. It is correct when, after normalisation (lower case, thousands separators and
punctuation removed, whitespace collapsed), it contains the gold answer as whole words and does not contain the
outdated value (an answer that hedges between the old and the new value is not an answer).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from msgspec import Struct

ANSWER_RULE = (
    "direct answer = text before `Details:`/`Sources:`, first paragraph; correct if its normalised form "
    "(lower case, thousands separators and punctuation removed) contains the gold answer as whole words and not "
    "the outdated value"
)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_NON_WORD = re.compile(r"[^0-9a-z]+")
_CUT = re.compile(r"(?:^|\n)\s*(?:\*\*)?(?:details|sources)(?:\*\*)?\s*:", re.IGNORECASE)
MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_SOURCE_LINE = re.compile(r"^\[(\d+)\][^\n]*:\s*(\S+://\S+)\s*$", re.MULTILINE)
_READ_LINE = re.compile(r"^Read \[\d+\] .*\((\S+://\S+)\)\s*$", re.MULTILINE)


def normalise(text: str) -> str:
    return " ".join(_NON_WORD.sub(" ", _THOUSANDS.sub("", text.lower())).split())


def direct_answer(reply: str) -> str:
    head = _CUT.split(reply, maxsplit=1)[0].strip()
    return head.split("\n\n", 1)[0].strip()


def contains_words(text: str, phrase: str) -> bool:
    p = normalise(phrase)
    return bool(p) and f" {p} " in f" {normalise(text)} "


def answer_correct(reply: str, gold: str, outdated: str) -> bool:
    head = direct_answer(reply)
    return contains_words(head, gold) and not contains_words(head, outdated)


def markers(text: str) -> list[int]:
    """Every source number cited as ``[n]`` or ``[n, m]``, in order, repeats kept."""
    return [int(n) for m in MARKER.finditer(text) for n in m.group(1).split(",")]


class CitationScore(Struct, kw_only=True):
    cited: list[str]  # distinct URLs cited that exist among the sources the system had
    fabricated: int  # distinct citations naming no source the system fetched or was given
    gold_cited: int  # distinct gold URLs among ``cited``
    gold_total: int

    @property
    def recall(self) -> float:
        return self.gold_cited / self.gold_total if self.gold_total else 0.0

    @property
    def citations(self) -> int:
        return len(self.cited) + self.fabricated


def score_citations(valid: Iterable[str], fabricated: Iterable[object], gold: Sequence[str]) -> CitationScore:
    cited = list(dict.fromkeys(valid))
    return CitationScore(
        cited=cited,
        fabricated=len(set(fabricated)),
        gold_cited=len(set(cited) & set(gold)),
        gold_total=len(set(gold)),
    )


def baseline_citations(reply: str, provided: Sequence[str], gold: Sequence[str]) -> CitationScore:
    """Single-shot retrieval: ``[n]`` names the n-th source put in the prompt; any other number is fabricated."""
    nums = markers(reply)
    valid = [provided[n - 1] for n in nums if 1 <= n <= len(provided)]
    return score_citations(valid, [n for n in nums if not 1 <= n <= len(provided)], gold)


def read_urls(reasoning: str) -> set[str]:
    """The sources deepsearch reports having read (its ``Read [n] title (url)`` progress lines)."""
    return set(_READ_LINE.findall(reasoning))


def deepsearch_citations(
    reply: str, annotations: Sequence[dict[str, object]], fetched: set[str], gold: Sequence[str]
) -> CitationScore:
    """Deepsearch cites through ``url_citation`` annotations and its closing ``Sources:`` list. A citation is
    fabricated when its URL is not among the fetched sources, or a ``[n]`` in the text has no source entry."""
    urls: list[str] = []
    for a in annotations:
        cite = a.get("url_citation")
        if isinstance(cite, dict) and isinstance(cite.get("url"), str):
            urls.append(cite["url"])
    listed = {int(n): url for n, url in _SOURCE_LINE.findall(reply)}
    body = reply.split("\n\nSources:\n", 1)[0]
    unlisted = [n for n in markers(body) if n not in listed]
    urls += [listed[n] for n in markers(body) if n in listed]
    valid = [u for u in urls if u in fetched]
    bad: list[object] = [u for u in urls if u not in fetched]
    return score_citations(valid, bad + [f"[{n}]" for n in unlisted], gold)
