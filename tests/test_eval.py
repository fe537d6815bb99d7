"""``omnirelay eval``: the generators, the statistics and the scoring rules, and one tiny end-to-end run of each
command through a real gateway whose upstream is the scripted OpenAI mock."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from omnirelay.eval import arith, corpus, metrics
from omnirelay.eval.cli import eval_app
from omnirelay.eval.deepsearch import DeepSearchSettings, prepare
from omnirelay.eval.report import table
from omnirelay.eval.stats import bootstrap_ci, paired_difference_ci
from omnirelay.tools.search.local import LocalCorpus
from tests.gateway import Gateway, mock_config
from tests.mocks.script import ScriptedReply
from tests.mocks.server import MockUpstreams

# -- arithmetic problems --------------------------------------------------------------------------------------

_NUM = re.compile(r"\d+")
_FRACTION = {"half": 2, "a third": 3, "a quarter": 4, "a fifth": 5}


def _solve(index: int, text: str) -> int:
    """An independent solution of each template from the numbers its text states; asserts each step divides."""
    v = [int(x) for x in _NUM.findall(text)]
    kind = index % len(arith.TEMPLATES)
    if kind == 0:
        d = next(k for w, k in _FRACTION.items() if f"away {w} of" in text)
        rest = v[0] * v[1] - v[2]
        assert rest > 0 and rest % d == 0
        return rest - rest // d
    if kind == 1:
        return v[4] - v[0] * v[1] - v[2] * v[3]
    if kind == 2:
        return v[0] - v[1] * v[2] - v[3] * v[4]
    if kind == 3:
        left = v[0] + v[1] * v[2] - v[3]
        assert left % 2 == 0
        return left + left // 2
    if kind == 4:
        lamps = (v[0] * v[1] - v[3]) * v[2]
        assert lamps % v[4] == 0
        return lamps // v[4]
    ben = 2 * v[0] + v[1]
    assert ben % 2 == 0
    return v[0] + ben + ben // 2


def test_problems_are_deterministic_and_prefix_stable() -> None:
    assert arith.generate(30, seed=7) == arith.generate(30, seed=7)
    assert arith.generate(30, seed=7)[:10] == arith.generate(10, seed=7)
    assert arith.generate(10, seed=7) != arith.generate(10, seed=8)
    assert len({p.id for p in arith.generate(30)}) == 30


def test_problem_answers_are_exact_positive_integers() -> None:
    for i, p in enumerate(arith.generate(240, seed=3)):
        assert isinstance(p.answer, int) and p.answer > 0, p
        assert _solve(i, p.text) == p.answer, p
    assert "Final answer: <integer>" in arith.prompt(arith.generate(1)[0])


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("6*7 = 42\nFinal answer: 42", 42),
        ("Final answer: **1,234**.", 1234),
        ("first 12, then\nFinal answer: 7\nno wait, Final answer: 9", 9),
        ("the total is \\boxed{56}", 56),
        ("Final answer: $15 dollars", 15),
        ("We get 12 then 30 rolls", 30),  # no stated answer: the last integer
        ("Final answer: 2.5", None),
        ("I cannot solve this.", None),
    ],
)
def test_answer_extraction(reply: str, expected: int | None) -> None:
    assert arith.extract_integer(reply) == expected


# -- fictional corpus -----------------------------------------------------------------------------------------


def _one_letter_apart(a: str, b: str) -> bool:
    return len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=True)) == 1


def test_corpus_sizes_determinism_and_structure() -> None:
    c = corpus.generate(3, seed=5)  # a small request still yields the minimum corpus
    assert len(c.docs) >= 40 and len(c.questions) >= 20
    assert c == corpus.generate(3, seed=5) and c != corpus.generate(3, seed=6)
    by_url = {d.url: d for d in c.docs}
    assert len(by_url) == len(c.docs)
    for q in c.questions:
        assert q.answer != q.outdated and len(q.gold) == 3
        assert all(url in by_url for url in q.gold)
        newer = by_url[q.gold[2]]
        assert q.answer in newer.body
        older = by_url[q.stale]
        assert q.outdated in older.body and older.date < newer.date  # the outdated fact carries an older date
        assert older.title.split(" ")[0] == newer.title.split(" ")[0]  # about the same town
        invention = by_url[q.gold[0]].title
        assert invention.split(" ", 1)[1] in q.text
        decoys = [d.title for d in c.docs if d.path.startswith("inventions/") and _one_letter_apart(d.title, invention)]
        assert decoys, q  # a near-namesake distractor


def test_corpus_is_indexed_and_searchable(tmp_path: Path) -> None:
    settings = DeepSearchSettings(model="m", questions=2, workdir=str(tmp_path))
    prepared = prepare(settings)
    assert prepared.indexed == len(prepared.corpus.docs) >= 40
    again = prepare(settings)  # idempotent
    assert again.indexed == prepared.indexed
    store = LocalCorpus(prepared.index)
    q = prepared.corpus.questions[0]
    hits = [h.url for h in store.search_sync(q.text, 5)]
    assert q.gold[0] in hits
    doc = store.read_sync(q.gold[2])
    assert doc is not None and doc.date is not None and q.answer in doc.text


# -- statistics and tables ------------------------------------------------------------------------------------


def test_bootstrap_ci() -> None:
    ones = bootstrap_ci([1.0] * 20)
    assert (ones.mean, ones.low, ones.high) == (1.0, 1.0, 1.0)
    half = bootstrap_ci([0.0, 1.0] * 50, seed=1)
    assert half.mean == 0.5 and 0.35 < half.low < 0.5 < half.high < 0.65
    assert half == bootstrap_ci([0.0, 1.0] * 50, seed=1)
    small = bootstrap_ci([0.0, 1.0] * 5, seed=1)
    assert small.high - small.low > half.high - half.low  # fewer items, wider interval
    assert math.isnan(bootstrap_ci([]).mean)
    diff = paired_difference_ci([1.0] * 10, [0.0] * 10)
    assert (diff.mean, diff.low, diff.high) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError):
        paired_difference_ci([1.0], [])


def test_markdown_table() -> None:
    out = table(("a", "b"), [["x|y", 0.5], ["z", float("nan")]])
    assert out.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 0.50 |", "| z | n/a |"]
    with pytest.raises(ValueError):
        table(("a",), [[1, 2]])


# -- scoring rules --------------------------------------------------------------------------------------------


def test_answer_normalisation_and_matching() -> None:
    assert metrics.normalise("Population: 12,400 residents!") == "population 12400 residents"
    reply = "The town has 12,400 residents [2].\nDetails: an older profile said 9,000 [1]."
    assert metrics.direct_answer(reply) == "The town has 12,400 residents [2]."
    assert metrics.answer_correct(reply, "12,400", "9,000")
    assert not metrics.answer_correct("Either 9,000 or 12,400.", "12,400", "9,000")  # hedging is wrong
    assert not metrics.answer_correct("It has 112400 people.", "12,400", "9,000")  # whole words only
    assert metrics.answer_correct("The mayor is keran RIRZUS.", "Keran Rirzus", "Krolkrae Vaekzas")


def test_baseline_citation_metrics() -> None:
    provided = ["corpus://a", "corpus://b", "corpus://c"]
    score = metrics.baseline_citations("X [1]. Y [2, 3]. Z [7]. again [1].", provided, ["corpus://a", "corpus://g"])
    assert score.cited == provided and score.fabricated == 1
    assert (score.gold_cited, score.gold_total, score.citations) == (1, 2, 4)
    assert score.recall == 0.5


def test_deepsearch_citation_metrics() -> None:
    reasoning = "Searching: x\nRead [1] A town (profile), 2020-01-01 (corpus://a.md)\nRead [2] B (corpus://b.md)\n"
    fetched = metrics.read_urls(reasoning)
    assert fetched == {"corpus://a.md", "corpus://b.md"}
    reply = "It is 5 [1]. More [2].\n\nSources:\n[1] A town (2020-01-01): corpus://a.md\n[2] Z: corpus://z.md"
    annotations: list[dict[str, object]] = [
        {"type": "url_citation", "url_citation": {"url": "corpus://a.md", "start_index": 0, "end_index": 12}},
        {"type": "url_citation", "url_citation": {"url": "corpus://z.md", "start_index": 13, "end_index": 22}},
    ]
    score = metrics.deepsearch_citations(reply, annotations, fetched, ["corpus://a.md", "corpus://q.md"])
    assert score.cited == ["corpus://a.md"] and score.fabricated == 1 and score.recall == 0.5
    clean = metrics.deepsearch_citations("It is 5 [1].\n\nSources:\n[1] A: corpus://a.md", annotations[:1], fetched, [])
    assert clean.fabricated == 0 and clean.citations == 1


# -- end to end through a gateway over the scripted mock ------------------------------------------------------


@pytest.fixture(scope="module")
def eval_gateway(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Path]]:
    root = tmp_path_factory.mktemp("eval")
    prepared = prepare(DeepSearchSettings(model="gpt-4.1", workdir=str(root / "work")))
    cfg = mock_config(mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini"))
    cfg["extra"] = {"compound": {"search_backends": {"eval-corpus": {"type": "local", "path": prepared.index}}}}
    gw = Gateway(cfg, root / "gw").start()
    yield gw, root
    gw.stop()


def _rows(markdown: str) -> dict[str, list[str]]:
    lines = [ln for ln in markdown.splitlines() if ln.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return {"header": header} | {
        cells[0]: cells for cells in ([c.strip() for c in ln.strip("|").split("|")] for ln in lines[1:])
    }


def test_eval_heavy_end_to_end(eval_gateway: tuple[Gateway, Path], mocks: MockUpstreams) -> None:
    gw, root = eval_gateway
    problems = arith.generate(3, seed=2)
    for i, p in enumerate(problems):
        agent = ScriptedReply(text=f"Working it out.\nFinal answer: {p.answer}")
        reply = [f"Final answer: {p.answer}", f"Final answer: {p.answer + 1}", "I am not sure."][i]
        mocks.push("openai", agent, agent, ScriptedReply(text=reply))
    out = root / "heavy.md"
    args = ["heavy", "--model", "gpt-4.1", "--n", "3", "--agents", "2", "--seed", "2", "--max-tokens", "64"]
    result = CliRunner().invoke(eval_app, [*args, "--base-url", gw.url + "/v1", "--api-key", "sk-x", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    rows = _rows(text)
    assert rows["header"] == [
        "system",
        "accuracy [95% CI]",
        "correct",
        "no answer",
        "errors",
        "tokens/problem",
        "seconds/problem",
        "token multiple",
        "latency multiple",
    ]
    heavy, single = rows["heavy:gpt-4.1 (2 agents)"], rows["gpt-4.1 (single sample)"]
    assert heavy[1] == "1.00 [1.00, 1.00]" and heavy[2] == "3/3" and heavy[4] == "0"
    assert single[1].startswith("0.33 [0.00, ") and single[2] == "1/3" and single[3] == "1"
    assert heavy[5] == "38" and single[5] == "19"  # usage: two agents of 12 + 7 tokens vs one call
    assert heavy[7] == "2.00" and float(heavy[8]) > 0
    assert "answer extraction:" in text and "Final answer: X" in text
    bodies = [r.body for r in mocks.requests("openai")]
    assert len(bodies) == 9 and all(b["model"] == "gpt-4.1" for b in bodies)
    assert all(b.get("max_completion_tokens", b.get("max_tokens")) == 64 for b in bodies)
    assert problems[0].text in str(bodies[0]["messages"])


def test_eval_deepsearch_end_to_end(eval_gateway: tuple[Gateway, Path], mocks: MockUpstreams) -> None:
    gw, root = eval_gateway
    questions = corpus.generate(seed=1).questions[:2]
    for q in questions:
        invention = Path(q.gold[0]).stem.replace("-", " ")
        mocks.push(
            "openai",
            ScriptedReply(text=f"- {invention}"),
            ScriptedReply(text="FINDINGS:\n- designer [1]\nCONFLICTS:\nnone\nNEXT QUERIES:\nnone"),
            ScriptedReply(text=f"The answer is {q.answer} [1].\nDetails: see [1] and [9]."),
            ScriptedReply(text=f"It is {q.outdated} [1].\nDetails: per [7]."),  # the baseline
        )
    out = root / "deep.md"
    args = ["deepsearch", "--model", "gpt-4.1", "--questions", "2", "--workdir", str(root / "work"), "--max-rounds"]
    args += ["1", "--base-url", gw.url + "/v1", "--api-key", "sk-x", "--out", str(out)]
    result = CliRunner().invoke(eval_app, args)
    assert result.exit_code == 0, result.output
    text = out.read_text()
    rows = _rows(text)
    assert rows["header"][:6] == [
        "system",
        "answer accuracy [95% CI]",
        "gold-citation recall [95% CI]",
        "citation precision",
        "fabricated-citation rate",
        "citations",
    ]
    deep = rows["deepsearch:gpt-4.1 (up to 1 rounds)"]
    base = rows["gpt-4.1 + single-shot top-5 retrieval"]
    assert deep[1] == "1.00 [1.00, 1.00]" and deep[4] == "0.00" and deep[6] == "0"
    assert 0.0 < float(deep[2].split()[0]) <= 1.0 and int(deep[5]) >= 2
    assert base[1] == "0.00 [0.00, 0.00]" and float(base[4]) > 0  # [7] named no source in its prompt
    assert "documents" in text and "fabricated citation:" in text
    bodies = [r.body for r in mocks.requests("openai")]
    assert len(bodies) == 8
    baseline_prompt = str(bodies[3]["messages"])
    assert questions[0].text in baseline_prompt and "[1] The " in baseline_prompt  # sources put in the prompt


def test_eval_deepsearch_without_the_backend_prints_the_config(
    eval_gateway: tuple[Gateway, Path], mocks: MockUpstreams
) -> None:
    gw, root = eval_gateway
    args = ["deepsearch", "--model", "gpt-4.1", "--workdir", str(root / "work"), "--search", "not-configured"]
    result = CliRunner().invoke(eval_app, [*args, "--base-url", gw.url + "/v1", "--api-key", "sk-x"])
    assert result.exit_code == 2
    assert "search_backends:\n      not-configured:\n        type: local\n        path: " in result.output
    assert "no search backend 'not-configured'" in result.output
    assert len(mocks.requests("openai")) == 1  # stopped after the first question (its baseline call)
