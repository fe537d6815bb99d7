"""Reasoning effort (OpenAI, xAI) <-> thinking budget (Anthropic, Gemini).

One table in both directions so a round trip is stable: effort -> budget -> the same effort.
Anthropic refuses budgets under 1,024 tokens, so that is the floor.
"""

from __future__ import annotations

from omnirelay.core.types import Effort, Reasoning

BUDGET_BY_EFFORT: dict[Effort, int] = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
MIN_BUDGET = 1024


def effort_to_budget(effort: Effort) -> int:
    return BUDGET_BY_EFFORT[effort]


def budget_to_effort(budget: int) -> Effort:
    if budget <= BUDGET_BY_EFFORT["minimal"]:
        return "minimal"
    if budget <= BUDGET_BY_EFFORT["low"]:
        return "low"
    if budget <= BUDGET_BY_EFFORT["medium"]:
        return "medium"
    return "high"


def budget_of(reasoning: Reasoning | None) -> int | None:
    """The token budget the caller asked for, or None when reasoning is off or unspecified."""
    if reasoning is None or not reasoning.enabled:
        return None
    if reasoning.budget_tokens is not None:
        return max(MIN_BUDGET, reasoning.budget_tokens)
    if reasoning.effort is not None:
        return effort_to_budget(reasoning.effort)
    return None


def effort_of(reasoning: Reasoning | None) -> Effort | None:
    """The effort level the caller asked for, or None when reasoning is off or unspecified."""
    if reasoning is None or not reasoning.enabled:
        return None
    if reasoning.effort is not None:
        return reasoning.effort
    if reasoning.budget_tokens is not None:
        return budget_to_effort(reasoning.budget_tokens)
    return None
