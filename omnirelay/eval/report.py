"""Markdown output of the evaluation commands."""

from __future__ import annotations

import math
from collections.abc import Sequence


def cell(value: object) -> str:
    text = f"{value:.2f}" if isinstance(value, float) and not math.isnan(value) else str(value)
    if isinstance(value, float) and math.isnan(value):
        text = "n/a"
    return text.replace("|", "\\|").replace("\n", " ")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; floats with two decimals, NaN as ``n/a``."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, expected {len(headers)}")
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def document(title: str, settings: Sequence[tuple[str, object]], body: str, notes: Sequence[str]) -> str:
    """A results document: title, the run's settings, the table(s), and the notes that define the metrics."""
    parts = [f"## {title}\n", "\n".join(f"- {k}: {cell(v)}" for k, v in settings) + "\n", body]
    if notes:
        parts.append("\n".join(f"- {n}" for n in notes) + "\n")
    return "\n".join(parts)
