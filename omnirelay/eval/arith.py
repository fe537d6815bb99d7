"""Seeded multi-step arithmetic word problems with exact integer answers, and the rule that reads an integer
answer out of a model's reply.

Every template picks its numbers so that each intermediate step divides exactly; the answer is computed from
the same numbers the text states, so generator and answer cannot drift apart.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from msgspec import Struct

from omnirelay.compound.vote import extract


class Problem(Struct, frozen=True):
    id: str
    text: str
    answer: int


INSTRUCTION = "Solve the problem step by step. End with a last line of the form `Final answer: <integer>`."
EXTRACTION_RULE = (
    "the integer in the reply's last `Final answer: X` line (or `\\boxed{X}`), as the heavy vote reads it; "
    "if there is none, the last integer anywhere in the reply; thousands separators ignored; exact match"
)
FRACTIONS = {2: "half", 3: "a third", 4: "a quarter", 5: "a fifth"}
NAMES = ("Ana", "Bilal", "Chen", "Dana", "Emeka", "Freya", "Goran", "Hana", "Ivo", "Jun", "Kira", "Luis")


def _bakery(rng: random.Random) -> tuple[str, int]:
    trays, per_tray, d = rng.randint(3, 12), rng.randint(6, 24), rng.choice((2, 3, 4, 5))
    total = trays * per_tray
    rest = d * rng.randint(1, max(1, (total - 1) // d))
    sold = total - rest
    text = (
        f"A bakery bakes {trays} trays of {per_tray} rolls each. It sells {sold} rolls in the morning, then gives "
        f"away {FRACTIONS[d]} of the remaining rolls to a shelter. How many rolls does the bakery have left?"
    )
    return text, rest - rest // d


def _shopping(rng: random.Random) -> tuple[str, int]:
    name = rng.choice(NAMES)
    a, x, b, y = rng.randint(2, 9), rng.randint(3, 19), rng.randint(2, 9), rng.randint(2, 14)
    total = a * x + b * y
    bill = next(v for v in (20, 50, 100, 200, 500) if v > total)
    text = (
        f"{name} buys {a} notebooks at ${x} each and {b} pens at ${y} each, and pays with a ${bill} note. "
        "How many dollars of change does "
        f"{name} get?"
    )
    return text, bill - total


def _trip(rng: random.Random) -> tuple[str, int]:
    v1, h1, v2, h2 = rng.randint(4, 12) * 10, rng.randint(1, 4), rng.randint(3, 9) * 10, rng.randint(1, 3)
    done = v1 * h1 + v2 * h2
    trip = done + rng.randint(1, 40) * 5
    text = (
        f"A trip is {trip} km long. A bus drives {h1} hours at {v1} km/h, then {h2} hours at {v2} km/h. "
        "How many kilometres of the trip are left?"
    )
    return text, trip - done


def _savings(rng: random.Random) -> tuple[str, int]:
    name = rng.choice(NAMES)
    start, weekly, weeks = rng.randint(5, 60), rng.randint(3, 25), rng.randint(2, 12)
    saved = start + weekly * weeks
    spent = rng.randint(1, saved - 2)
    if (saved - spent) % 2:
        spent += 1
    left = saved - spent
    text = (
        f"{name} has ${start} and saves ${weekly} every week for {weeks} weeks, then spends ${spent} on a game. "
        f"An aunt then adds half of what {name} has left. How many dollars does {name} have now?"
    )
    return text, left + left // 2


def _warehouse(rng: random.Random) -> tuple[str, int]:
    stores = rng.randint(2, 6)
    per_crate = stores * rng.randint(2, 8)
    rows, cols = rng.randint(2, 6), rng.randint(3, 8)
    crates = rows * cols
    shipped = rng.randint(1, crates - 1)
    text = (
        f"A warehouse stacks crates in {rows} rows of {cols}, each crate holding {per_crate} lamps. It ships "
        f"{shipped} full crates to a customer, then splits the lamps in the remaining crates equally among "
        f"{stores} stores. How many lamps does each store get?"
    )
    return text, (crates - shipped) * per_crate // stores


def _ages(rng: random.Random) -> tuple[str, int]:
    a, extra = rng.randint(3, 20), rng.randint(1, 15)
    if extra % 2:
        extra += 1  # Ben's age must be even so that Cara's is a whole number
    ben = 2 * a + extra
    cara = ben // 2
    p, q, r = rng.sample(NAMES, 3)
    text = (
        f"{p} is {a} years old. {q} is {extra} years older than twice {p}'s age. {r} is half as old as {q}. "
        f"What is the sum of the three ages?"
    )
    return text, a + ben + cara


TEMPLATES: tuple[Callable[[random.Random], tuple[str, int]], ...] = (
    _bakery,
    _shopping,
    _trip,
    _savings,
    _warehouse,
    _ages,
)


def generate(n: int, seed: int = 1) -> list[Problem]:
    """``n`` problems cycling through the templates; the same (n, seed) always gives the same problems, and a
    longer list starts with the shorter one."""
    rng = random.Random(seed)
    out: list[Problem] = []
    for i in range(n):
        text, answer = TEMPLATES[i % len(TEMPLATES)](rng)
        out.append(Problem(id=f"p{i + 1:03d}", text=text, answer=answer))
    return out


def prompt(problem: Problem) -> str:
    return f"{problem.text}\n\n{INSTRUCTION}"


_INTEGER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")


def _to_int(number: str) -> int | None:
    digits = number.replace(",", "")
    try:
        value = float(digits)
    except ValueError:
        return None
    return int(value) if value == int(value) else None


def extract_integer(reply: str) -> int | None:
    """The reply's answer under ``EXTRACTION_RULE``; None when it states no whole number."""
    stated = extract(reply)
    if stated is not None:
        numbers = _INTEGER.findall(stated)
        if numbers:
            return _to_int(numbers[-1])
    numbers = _INTEGER.findall(reply)
    return _to_int(numbers[-1]) if numbers else None
