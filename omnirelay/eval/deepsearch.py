"""``eval deepsearch``: ``deepsearch:M`` against single-shot retrieval on the generated fictional corpus.

The corpus is written to a folder and indexed with the local FTS5 backend; the gateway must be configured with
that index as a search backend (``config_snippet``). The baseline retrieves the top-k documents for the question
once, from the same index, and asks ``M`` to answer from them, citing ``[n]``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import openai
from msgspec import Struct

from omnirelay.eval import corpus as fiction
from omnirelay.eval import metrics
from omnirelay.eval.client import Reply, chat
from omnirelay.eval.report import document, table
from omnirelay.eval.stats import bootstrap_ci, ratio
from omnirelay.tools.search.local import LocalCorpus

HEADERS = (
    "system",
    "answer accuracy [95% CI]",
    "gold-citation recall [95% CI]",
    "citation precision",
    "fabricated-citation rate",
    "citations",
    "errors",
    "tokens/question",
    "seconds/question",
)
UNKNOWN_BACKEND = "unknown search backend"
BASELINE_PROMPT = (
    "Answer the question using only the numbered sources below.\n\nQuestion: {question}\n\nSources:\n{sources}\n\n"
    "Start with a one-sentence direct answer. Then write 'Details:' and explain, citing the sources you used as "
    "[n] right after each claim. Where sources disagree, follow the newer one."
)


class DeepSearchSettings(Struct, kw_only=True):
    model: str
    questions: int = 20
    seed: int = 1
    workdir: str = "omnirelay-eval"
    search: str = "eval-corpus"  # the gateway's name for the backend over this corpus
    top_k: int = 5
    max_rounds: int = 3
    max_tokens: int | None = 1024


class Prepared(Struct, kw_only=True):
    corpus: fiction.Corpus
    folder: str
    index: str
    indexed: int


def _close(store: LocalCorpus) -> None:
    asyncio.run(store.aclose())


def prepare(settings: DeepSearchSettings) -> Prepared:
    """Write the corpus for ``settings.seed`` and index it (idempotent: the same seed rewrites the same files)."""
    root = Path(settings.workdir).expanduser().resolve()
    folder = root / f"docs-seed{settings.seed}"
    index = root / f"corpus-seed{settings.seed}.db"
    generated = fiction.generate(settings.questions, settings.seed)
    generated.write(folder)
    store = LocalCorpus(str(index))
    try:
        store.add_dir(folder)
        indexed = store.count()
    finally:
        _close(store)
    return Prepared(corpus=generated, folder=str(folder), index=str(index), indexed=indexed)


def config_snippet(settings: DeepSearchSettings, prepared: Prepared) -> str:
    return (
        "extra:\n  compound:\n    search_backends:\n"
        f"      {settings.search}:\n        type: local\n        path: {prepared.index}\n"
    )


class Outcome(Struct, kw_only=True):
    question: fiction.Question
    deep: Reply
    base: Reply
    deep_citations: metrics.CitationScore
    base_citations: metrics.CitationScore


def _baseline(
    client: openai.OpenAI, store: LocalCorpus, settings: DeepSearchSettings, q: fiction.Question
) -> tuple[Reply, list[str]]:
    hits = store.search_sync(q.text, settings.top_k)
    blocks: list[str] = []
    for n, hit in enumerate(hits, 1):
        doc = store.read_sync(hit.url)
        text = doc.text if doc is not None else hit.snippet
        dated = f", dated {hit.date}" if hit.date else ""
        blocks.append(f"[{n}] {hit.title}{dated}\n{text}")
    prompt = BASELINE_PROMPT.format(question=q.text, sources="\n\n".join(blocks) or "(none found)")
    return chat(client, settings.model, prompt, settings.max_tokens), [h.url for h in hits]


def run(
    client: openai.OpenAI,
    settings: DeepSearchSettings,
    prepared: Prepared,
    progress: Callable[[str], None] | None = None,
) -> list[Outcome]:
    store = LocalCorpus(prepared.index)
    outcomes: list[Outcome] = []
    options: dict[str, object] = {"search": settings.search, "max_rounds": settings.max_rounds}
    try:
        for q in prepared.corpus.questions[: settings.questions]:
            deep = chat(client, f"deepsearch:{settings.model}", q.text, settings.max_tokens, options=options)
            base, provided = _baseline(client, store, settings, q)
            fetched = metrics.read_urls(deep.reasoning)
            outcome = Outcome(
                question=q,
                deep=deep,
                base=base,
                deep_citations=metrics.deepsearch_citations(deep.text, deep.annotations, fetched, q.gold),
                base_citations=metrics.baseline_citations(base.text, provided, q.gold),
            )
            outcomes.append(outcome)
            if deep.error is not None and UNKNOWN_BACKEND in deep.error:
                break  # the gateway is not configured for this corpus: every question would fail the same way
            if progress is not None:
                progress(
                    f"{q.id}: gold {q.answer} | deepsearch "
                    f"{'ok' if metrics.answer_correct(deep.text, q.answer, q.outdated) else 'wrong'} "
                    f"({len(fetched)} read, {deep.seconds:.1f}s) | baseline "
                    f"{'ok' if metrics.answer_correct(base.text, q.answer, q.outdated) else 'wrong'}"
                    + (f" | error: {deep.error or base.error}" if deep.error or base.error else "")
                )
    finally:
        _close(store)
    return outcomes


def _row(name: str, pairs: list[tuple[fiction.Question, Reply, metrics.CitationScore]], seed: int) -> list[object]:
    correct = [1.0 if metrics.answer_correct(r.text, q.answer, q.outdated) else 0.0 for q, r, _c in pairs]
    recall = [c.recall for _q, _r, c in pairs]
    cited = sum(c.citations for _q, _r, c in pairs)
    per = max(len(pairs), 1)
    return [
        name,
        bootstrap_ci(correct, seed=seed).show(),
        bootstrap_ci(recall, seed=seed).show(),
        ratio(sum(c.gold_cited for _q, _r, c in pairs), cited),
        ratio(sum(c.fabricated for _q, _r, c in pairs), cited),
        cited,
        sum(1 for _q, r, _c in pairs if r.error is not None),
        f"{sum(r.total_tokens for _q, r, _c in pairs) / per:.0f}",
        f"{sum(r.seconds for _q, r, _c in pairs) / per:.2f}",
    ]


def render(settings: DeepSearchSettings, prepared: Prepared, outcomes: list[Outcome], base_url: str) -> str:
    rows = [
        _row(
            f"deepsearch:{settings.model} (up to {settings.max_rounds} rounds)",
            [(o.question, o.deep, o.deep_citations) for o in outcomes],
            settings.seed,
        ),
        _row(
            f"{settings.model} + single-shot top-{settings.top_k} retrieval",
            [(o.question, o.base, o.base_citations) for o in outcomes],
            settings.seed,
        ),
    ]
    notes = [
        f"answer: {metrics.ANSWER_RULE}",
        "gold-citation recall: per question, distinct gold documents cited / gold documents (invention, "
        "designer, newer fact), averaged; citation precision: gold citations / all distinct citations, pooled",
        "fabricated citation: a cited URL that was not among the sources the system fetched (deepsearch: its "
        "`Read [n]` progress lines) or was given (baseline: the top-k in its prompt), or a `[n]` naming no such "
        "source; the rate is fabricated / all distinct citations, pooled (n/a: no citations at all)",
        "CIs: percentile bootstrap over questions, 2000 resamples; tokens from each response's `usage` (deepsearch: "
        "every planning, note and report call); seconds = client wall time, one request at a time",
    ]
    docs = prepared.corpus.docs
    settings_rows: list[tuple[str, object]] = [
        ("gateway", base_url),
        ("corpus", f"{len(docs)} documents ({prepared.indexed} indexed) in {prepared.folder}, seed {settings.seed}"),
        (
            "corpus contents",
            f"{len(prepared.corpus.questions)} three-hop chains, each with an outdated fact "
            "(older date), its newer version, and a near-namesake distractor pair",
        ),
        ("questions", len(outcomes)),
        ("search backend", f"{settings.search} (local FTS5 index {prepared.index})"),
        ("max_tokens per call", settings.max_tokens if settings.max_tokens is not None else "default"),
    ]
    return document(
        f"omnirelay eval deepsearch: deepsearch:{settings.model} vs single-shot retrieval",
        settings_rows,
        table(HEADERS, rows),
        notes,
    )
