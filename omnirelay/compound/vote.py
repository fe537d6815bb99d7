"""Final-answer extraction and plurality vote for ``heavy:``."""

from __future__ import annotations

import re
from collections import Counter

_FINAL = re.compile(r"final answer\s*(?:is)?\s*:?\s*(.+)", re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_OPTION = re.compile(r"^\(?([A-Ha-h])\)?(?:[.):]\s.*|[.)]?)$")
_NUMBER = re.compile(r"^[-+]?\$?\s*\d[\d,]*(?:\.\d+)?\s*%?$")
MAX_SHORT = 60


def normalise(answer: str) -> str | None:
    """A comparable form of a short final answer: numbers canonical (``1,000.0`` -> ``1000``), an option
    letter lower-case, other short strings lower-cased without surrounding punctuation. None if too long."""
    a = answer.replace("*", "").replace("`", "").strip().strip("_").strip()
    a = a.rstrip(".!;").strip()
    if not a:
        return None
    if _NUMBER.match(a):
        digits = a.replace("$", "").replace(",", "").replace("%", "").replace(" ", "")
        try:
            value = float(digits)
        except ValueError:
            return None
        return str(int(value)) if value == int(value) else repr(value)
    option = _OPTION.match(a)
    if option and len(a) <= 3:
        return option.group(1).lower()
    if len(a) > MAX_SHORT:
        return None
    return " ".join(a.lower().strip("\"'").split())


def extract(text: str) -> str | None:
    """The final answer an agent stated (``Final answer: X`` or ``\\boxed{X}``), normalised; None if none."""
    found = None
    for m in _FINAL.finditer(text):
        found = m.group(1).strip().splitlines()[0] if m.group(1).strip() else None
    if found is None:
        boxed = _BOXED.findall(text)
        if boxed:
            found = boxed[-1]
    return normalise(found) if found else None


def plurality(answers: list[str | None]) -> tuple[str | None, bool]:
    """(winner, decisive): the most common extracted answer and whether the vote settles the question.

    Decisive means: at least half of the agents gave an extractable answer, and one answer has strictly more
    votes than any other and at least two votes (or it is the only agent)."""
    given = [a for a in answers if a is not None]
    if not given:
        return None, False
    counts = Counter(given).most_common()
    winner, top = counts[0]
    tie = len(counts) > 1 and counts[1][1] == top
    enough = 2 * len(given) >= len(answers)
    decisive = enough and not tie and (top >= 2 or len(answers) == 1)
    return (None if tie else winner), decisive
