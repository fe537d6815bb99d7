"""``eval heavy``: ``heavy:M`` against one sample of ``M`` on generated arithmetic word problems."""

from __future__ import annotations

from collections.abc import Callable

import openai
from msgspec import Struct

from omnirelay.eval import arith
from omnirelay.eval.client import Reply, chat
from omnirelay.eval.report import document, table
from omnirelay.eval.stats import bootstrap_ci, paired_difference_ci, ratio

HEADERS = (
    "system",
    "accuracy [95% CI]",
    "correct",
    "no answer",
    "errors",
    "tokens/problem",
    "seconds/problem",
    "token multiple",
    "latency multiple",
)


class HeavySettings(Struct, kw_only=True):
    model: str
    n: int = 50
    agents: int = 4
    seed: int = 1
    max_tokens: int | None = 512
    temperature: float | None = 0.7  # the single sample's; heavy spreads its agents over 0.3 .. 1.0


class Outcome(Struct, kw_only=True):
    problem: arith.Problem
    heavy: Reply
    single: Reply
    heavy_answer: int | None
    single_answer: int | None


def run(client: openai.OpenAI, settings: HeavySettings, progress: Callable[[str], None] | None = None) -> list[Outcome]:
    """Each problem to ``heavy:M`` then ``M``, one at a time (so wall times are not inflated by each other)."""
    outcomes: list[Outcome] = []
    for problem in arith.generate(settings.n, settings.seed):
        text = arith.prompt(problem)
        heavy = chat(client, f"heavy:{settings.model}", text, settings.max_tokens, options={"agents": settings.agents})
        single = chat(client, settings.model, text, settings.max_tokens, settings.temperature)
        outcome = Outcome(
            problem=problem,
            heavy=heavy,
            single=single,
            heavy_answer=arith.extract_integer(heavy.text),
            single_answer=arith.extract_integer(single.text),
        )
        outcomes.append(outcome)
        if progress is not None:
            progress(
                f"{problem.id}: gold {problem.answer} | heavy {outcome.heavy_answer} ({heavy.seconds:.1f}s)"
                f" | single {outcome.single_answer} ({single.seconds:.1f}s)"
                + (f" | error: {heavy.error or single.error}" if heavy.error or single.error else "")
            )
    return outcomes


def render(settings: HeavySettings, outcomes: list[Outcome], base_url: str) -> str:
    n = len(outcomes)
    heavy_ok = [1.0 if o.heavy_answer == o.problem.answer else 0.0 for o in outcomes]
    single_ok = [1.0 if o.single_answer == o.problem.answer else 0.0 for o in outcomes]
    tokens_h = sum(o.heavy.total_tokens for o in outcomes)
    tokens_s = sum(o.single.total_tokens for o in outcomes)
    secs_h = sum(o.heavy.seconds for o in outcomes)
    secs_s = sum(o.single.seconds for o in outcomes)
    per = max(n, 1)
    rows: list[list[object]] = [
        [
            f"heavy:{settings.model} ({settings.agents} agents)",
            bootstrap_ci(heavy_ok, seed=settings.seed).show(),
            f"{int(sum(heavy_ok))}/{n}",
            sum(1 for o in outcomes if o.heavy_answer is None and o.heavy.error is None),
            sum(1 for o in outcomes if o.heavy.error is not None),
            f"{tokens_h / per:.0f}",
            f"{secs_h / per:.2f}",
            ratio(tokens_h, tokens_s),
            ratio(secs_h, secs_s),
        ],
        [
            f"{settings.model} (single sample)",
            bootstrap_ci(single_ok, seed=settings.seed).show(),
            f"{int(sum(single_ok))}/{n}",
            sum(1 for o in outcomes if o.single_answer is None and o.single.error is None),
            sum(1 for o in outcomes if o.single.error is not None),
            f"{tokens_s / per:.0f}",
            f"{secs_s / per:.2f}",
            1.0,
            1.0,
        ],
    ]
    diff = paired_difference_ci(heavy_ok, single_ok, seed=settings.seed)
    notes = [
        f"accuracy difference heavy - single (paired bootstrap, 95% CI): {diff.show()}",
        f"answer extraction: {arith.EXTRACTION_RULE}",
        "CIs: percentile bootstrap over problems, 2000 resamples; tokens = prompt + completion from each "
        "response's `usage` (for heavy: the sum over every agent and synthesis call); seconds = client wall time "
        "per request, requests sent one at a time; multiples are heavy totals / single totals",
        "a failed request (errors column) counts as wrong",
    ]
    settings_rows: list[tuple[str, object]] = [
        ("gateway", base_url),
        ("problems", f"{n} generated multi-step arithmetic word problems (seed {settings.seed})"),
        ("max_tokens per call", settings.max_tokens if settings.max_tokens is not None else "default"),
        ("single-sample temperature", settings.temperature if settings.temperature is not None else "default"),
    ]
    return document(
        f"omnirelay eval heavy: heavy:{settings.model} vs {settings.model}", settings_rows, table(HEADERS, rows), notes
    )
