"""A seeded fictional corpus for ``eval deepsearch``: multi-hop chains with distractors and outdated facts.

Each chain links an invention to its designer, the designer to a town, and the town to a fact that changed: an
older profile (older date) states the outdated value, a newer update (newer date) the current one. The question
names only the invention, so answering takes three hops and a conflict resolved by date. Distractors: a
near-namesake invention by another designer who lives in another chain's town (so following it gives a real but
wrong value). Every name is invented, so the model cannot answer from memory.
"""

from __future__ import annotations

import random
from pathlib import Path

from msgspec import Struct

MIN_CHAINS = 20
URL_PREFIX = "corpus://"  # how the local FTS5 backend addresses a document (relative path under the folder)
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "st", "th")
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ou")
_CODAS = ("", "n", "r", "l", "s", "k", "th", "m")
KINDS = ("loom", "engine", "compass", "lantern", "telescope", "valve", "kiln", "press", "pump", "clock")
FACTS = ("population", "mayor", "schools")


class Doc(Struct, frozen=True):
    path: str  # relative path under the corpus folder; the document's URL is corpus://<path>
    title: str
    date: str
    body: str

    @property
    def url(self) -> str:
        return URL_PREFIX + self.path

    def markdown(self) -> str:
        return f"---\ntitle: {self.title}\ndate: {self.date}\n---\n# {self.title}\n\n{self.body}\n"


class Question(Struct, frozen=True):
    id: str
    text: str
    answer: str  # the current value, as the newer document states it
    outdated: str  # the value the older document states (a wrong answer)
    gold: tuple[str, ...]  # URLs of the documents the answer rests on (invention, designer, newer fact)
    stale: str  # URL of the older document with the outdated value
    kind: str  # population | mayor | schools


class Corpus(Struct, frozen=True):
    docs: list[Doc]
    questions: list[Question]

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for doc in self.docs:
            target = folder / doc.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(doc.markdown(), encoding="utf-8")


class _Names:
    """Unique invented words from a seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def word(self, syllables: int = 2) -> str:
        while True:
            w = "".join(
                self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) + self.rng.choice(_CODAS) for _ in range(syllables)
            ).capitalize()
            if w.lower() not in self.used and len(w) >= 4:
                self.used.add(w.lower())
                return w

    def person(self) -> str:
        return f"{self.word(2)} {self.word(2)}"


def _near_namesake(name: str, names: _Names) -> str:
    """A different word one letter away (``Quillon`` -> ``Quillan``), to tempt a careless reader."""
    for i in range(len(name) - 1, 0, -1):
        for v in "aeiou":
            if name[i] in "aeiou" and name[i] != v:
                cand = name[:i] + v + name[i + 1 :]
                if cand.lower() not in names.used:
                    names.used.add(cand.lower())
                    return cand
    return names.word(2)


def _fact_text(kind: str, town: str, value: str, year: int, newer: bool) -> str:
    if kind == "population":
        said = f"{town} has a population of {value} residents"
    elif kind == "mayor":
        said = f"the mayor of {town} is {value}"
    else:
        said = f"{town} has {value} schools"
    if newer:
        return (
            f"According to the official {year} figures published by the town council, {said}. These figures "
            f"supersede all earlier reports about {town}."
        )
    return (
        f"{town} is a quiet town known for its market square and river crossings. As of {year}, {said}. "
        f"Visitors often stop in {town} on their way to the coast."
    )


def _values(kind: str, rng: random.Random, names: _Names) -> tuple[str, str]:
    """(outdated, current) values of one fact; always different."""
    if kind == "population":
        old = rng.randint(20, 900) * 50
        new = old + rng.choice((-1, 1)) * rng.randint(4, 60) * 50
        return f"{old:,}", f"{max(new, 500):,}"
    if kind == "mayor":
        return names.person(), names.person()
    old_n = rng.randint(2, 30)
    return str(old_n), str(old_n + rng.randint(1, 9))


def generate(chains: int = MIN_CHAINS, seed: int = 1) -> Corpus:
    """``max(chains, MIN_CHAINS)`` chains of 6 documents each and one question per chain."""
    rng = random.Random(seed)
    names = _Names(rng)
    count = max(chains, MIN_CHAINS)
    towns = [names.word(2) for _ in range(count)]
    docs: list[Doc] = []
    questions: list[Question] = []
    for i in range(count):
        kind_of_thing = KINDS[i % len(KINDS)]
        invention = names.word(2)
        designer = names.person()
        town = towns[i]
        fact = FACTS[i % len(FACTS)]
        old_year, new_year = rng.randint(2012, 2018), rng.randint(2022, 2025)
        outdated, current = _values(fact, rng, names)
        slug = invention.lower()
        built = rng.randint(1990, 2015)
        invention_doc = Doc(
            path=f"inventions/{slug}-{kind_of_thing}.md",
            title=f"The {invention} {kind_of_thing}",
            date=f"{rng.randint(2015, 2024)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
            body=f"The {invention} {kind_of_thing} is a device first built in {built}. It was designed by the "
            f"engineer {designer}, who spent four years refining it before the first public demonstration.",
        )
        designer_doc = Doc(
            path=f"people/{designer.lower().replace(' ', '-')}.md",
            title=designer,
            date=f"{rng.randint(2016, 2024)}-1{rng.randint(0, 2)}-0{rng.randint(1, 9)}",
            body=f"{designer} is an engineer and designer. {designer} has lived in the town of {town} since "
            f"{rng.randint(1995, 2010)} and keeps a small workshop there.",
        )
        old_doc = Doc(
            path=f"towns/{town.lower()}-profile-{old_year}.md",
            title=f"{town} town profile",
            date=f"{old_year}-03-01",
            body=_fact_text(fact, town, outdated, old_year, newer=False),
        )
        new_doc = Doc(
            path=f"towns/{town.lower()}-{fact}-{new_year}.md",
            title=f"{town} {fact} update {new_year}",
            date=f"{new_year}-05-10",
            body=_fact_text(fact, town, current, new_year, newer=True),
        )
        # The distractor pair: a near-namesake invention whose designer lives in the next chain's town.
        decoy = _near_namesake(invention, names)
        decoy_designer = names.person()
        decoy_docs = [
            Doc(
                path=f"inventions/{decoy.lower()}-{kind_of_thing}.md",
                title=f"The {decoy} {kind_of_thing}",
                date=f"{rng.randint(2015, 2024)}-0{rng.randint(1, 9)}-2{rng.randint(0, 8)}",
                body=f"The {decoy} {kind_of_thing}, not to be confused with similar designs, was built in "
                f"{built + rng.randint(1, 5)} by the engineer {decoy_designer}.",
            ),
            Doc(
                path=f"people/{decoy_designer.lower().replace(' ', '-')}.md",
                title=decoy_designer,
                date=f"{rng.randint(2016, 2024)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
                body=f"{decoy_designer} is an engineer who lives in the town of {towns[(i + 1) % count]}.",
            ),
        ]
        docs += [invention_doc, designer_doc, old_doc, new_doc, *decoy_docs]
        subject = f"the town where the designer of the {invention} {kind_of_thing} lives"
        if fact == "population":
            text = f"What is the current population of {subject}?"
        elif fact == "mayor":
            text = f"Who is the current mayor of {subject}?"
        else:
            text = f"How many schools does {subject} currently have?"
        questions.append(
            Question(
                id=f"q{i + 1:02d}",
                text=text,
                answer=current,
                outdated=outdated,
                gold=(invention_doc.url, designer_doc.url, new_doc.url),
                stale=old_doc.url,
                kind=fact,
            )
        )
    return Corpus(docs=docs, questions=questions)
