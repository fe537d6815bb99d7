"""The pure JSON-mode helpers of the local model: the prefix scanner and the bounded json_object grammar."""

from __future__ import annotations

import json
import random
import re

import pytest

from omnirelay.providers.local_json import MAX_DEPTH, JsonPrefix, is_json_prefix, json_object_grammar

DOCUMENTS: list[object] = [
    {},
    [],
    {"ok": True},
    {"a": [1, -2.5, 3e10, -0.0, 1.5e-3, 0], "b": {"c": None, "d": False}, "": ""},
    [[[]], [{}], {"x": [{"y": "z"}]}],
    {"text": 'quote " backslash \\ slash / tab \t newline \n é 😀 \u0001'},
    "just a string",
    12345,
    -0.25e8,
    True,
    None,
]


def _texts() -> list[str]:
    out = []
    for doc in DOCUMENTS:
        out.append(json.dumps(doc))
        out.append(json.dumps(doc, indent=2))
        out.append(json.dumps(doc, separators=(",", ":"), ensure_ascii=False))
    out.append(' { "a" :\t[ 1 ,2 ] ,\r\n"b":"\\u00e9\\ud83d\\ude00" } ')
    return out


@pytest.mark.parametrize("text", _texts())
def test_every_prefix_of_a_document_is_a_prefix_and_its_completion_parses(text: str) -> None:
    for end in range(len(text) + 1):
        scanner = JsonPrefix()
        assert scanner.feed(text[:end]), text[:end]
        completion = scanner.completion()
        assert completion is not None
        json.loads(text[:end] + completion)  # raises if the completion is wrong
    whole = JsonPrefix()
    assert whole.feed(text) and whole.complete and whole.completion() == ""


@pytest.mark.parametrize("text", _texts())
def test_feeding_in_pieces_is_the_same_as_feeding_at_once(text: str) -> None:
    rng = random.Random(text)
    scanner = JsonPrefix()
    at = 0
    while at < len(text):
        step = rng.randint(1, 5)
        assert scanner.feed(text[at : at + step])
        at += step
    assert scanner.completion() == ""


@pytest.mark.parametrize(
    "text",
    [
        '{"a" 1}',
        "[1,]",
        "{,}",
        '{"a":1,}',
        "tru e",
        "01",
        "-a",
        "1.e5",
        "1e+",  # a prefix, but then:
        '"\x01"',
        '{"a":1}}',
        "1 2",
        "{1:2}",
        '["\\x"]',
        '"\\u12g4"',
        "]",
        '{"a":1]',
        "nul1",
        "+1",
    ],
)
def test_text_no_document_starts_with_is_rejected(text: str) -> None:
    if text == "1e+":
        assert is_json_prefix(text)
        text += "x"
    scanner = JsonPrefix()
    assert not scanner.feed(text)
    assert not scanner.valid and scanner.completion() is None
    assert not scanner.feed("")  # stays invalid
    with pytest.raises(ValueError):
        json.loads(text)


def test_random_text_agrees_with_the_json_module() -> None:
    # Whatever the scanner accepts completes to something json.loads parses; whatever json.loads parses, the
    # scanner accepts as a complete document.
    rng = random.Random(7)
    alphabet = '{}[]:," \n0123456789-+.eEtrufalsn\\u"ab'
    accepted = 0
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        scanner = JsonPrefix()
        if scanner.feed(text):
            accepted += 1
            completion = scanner.completion()
            assert completion is not None
            json.loads(text + completion)
        try:
            json.loads(text)
        except ValueError:
            continue
        assert scanner.valid and scanner.complete, text
    assert accepted > 1000  # the check above really ran on many accepted prefixes


def test_completion_closes_every_open_container_in_order() -> None:
    scanner = JsonPrefix()
    scanner.feed('{"a": [{"b": "te')
    assert scanner.depth == 3
    assert scanner.completion() == '"}]}'
    scanner.feed('xt", "c')
    assert scanner.completion() == '":null}]}'


def test_grammar_nests_at_most_max_depth_and_bounds_whitespace() -> None:
    grammar = json_object_grammar()
    rules = dict(line.split(" ::= ", 1) for line in grammar.splitlines())
    assert rules["root"] == "obj1"
    # Whitespace is one optional space or newline: it cannot repeat.
    assert rules["ws"] == "[ \\n]?"
    # Containers exist down to MAX_DEPTH; one level deeper only scalars fit.
    assert f"obj{MAX_DEPTH}" in rules and f"obj{MAX_DEPTH + 1}" not in rules
    assert rules[f"val{MAX_DEPTH + 1}"] == "scalar"
    # No rule lets ws follow ws: every ws is followed by a literal or a value that starts with one.
    for body in rules.values():
        assert not re.search(r"\bws\s+\)?\s*[*+?]?\s*ws\b", body)
    # Digit runs are bounded, so a number cannot run on either.
    assert "[0-9]*" not in rules["number"] and "[0-9]+" not in rules["number"]
    # Every rule a body names is defined.
    for body in rules.values():
        for name in re.findall(r"\b([a-z]+[0-9]*)\b", re.sub(r'"(?:[^"\\]|\\.)*"|\[[^\]]*\]', "", body)):
            assert name in rules, name


def test_grammar_depth_is_configurable() -> None:
    assert "obj2" not in json_object_grammar(1)
    with pytest.raises(ValueError):
        json_object_grammar(0)
