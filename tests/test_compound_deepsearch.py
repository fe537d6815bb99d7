"""deepsearch: over a local corpus with a scripted upstream: rounds, server tool blocks, citation numbering and
offsets, refusal of unfetched sources, conflict notes, usage and charges; on both SDKs."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.compound_support import CompoundEnv, compound_gateway, gpt_cost
from tests.gateway import ROOT
from tests.mocks.script import ScriptedReply
from tests.mocks.server import MockUpstreams

DOCS = {
    "zorblax-2020.md": "---\ntitle: Zorblax town profile\ndate: 2020-01-01\n---\n"
    "The town of Zorblax had a population of 5,000 residents in 2020.",
    "zorblax-census-2024.md": "---\ntitle: Zorblax census 2024\ndate: 2024-06-01\n---\n"
    "The official 2024 census counts 7,200 residents in Zorblax, population up from 2020.",
    "quintar.md": "# Quintar harbour\n\nQuintar is a harbour city with 90,000 residents.",
}
PLAN = ScriptedReply(text="- Zorblax population\n- Zorblax census")
NOTES = ScriptedReply(
    text="FINDINGS:\n- 5,000 residents in 2020 [1]\n- 7,200 residents in 2024 [2]\n"
    "CONFLICTS:\n- the 2024 census is newer and official, it wins\nNEXT QUERIES:\nnone"
)
REPORT_TEXT = (
    "Zorblax has 7,200 residents [2]. An older profile said 5,000 [1], but the newer official census wins [7].\n"
    "Details: the census was taken in 2024 [2, 9].\nKey citations: [2]"
)


@pytest.fixture(scope="module")
def denv(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CompoundEnv]:
    root = tmp_path_factory.mktemp("deepsearch")
    docs = root / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    index = root / "corpus.db"
    out = subprocess.run(
        [sys.executable, "-m", "omnirelay", "corpus", "add", str(docs), "--index", str(index)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "indexed 3 documents" in out.stdout
    settings = {"search_backends": {"local": {"type": "local", "path": str(index)}}}
    yield from compound_gateway(mocks, root / "gw", settings)


def _push_run(mocks: MockUpstreams, chunks: int = 9) -> None:
    mocks.push("openai", PLAN, NOTES, ScriptedReply(text=REPORT_TEXT, chunks=chunks))


def _check_citations(content: str, annotations: list[dict[str, Any]]) -> None:
    sources = dict(re.findall(r"^\[(\d+)\] .*: (corpus://\S+)$", content, re.MULTILINE))
    assert sources, content
    assert "[7]" not in content and "[9]" not in content  # never-fetched sources are stripped
    assert annotations
    for a in annotations:
        assert a["type"] == "url_citation"
        cite = a["url_citation"]
        span = content[cite["start_index"] : cite["end_index"]]
        number = re.findall(r"\[(\d+)\]$", span)
        assert number, span
        assert sources[number[0]] == cite["url"]
        assert cite["url"].startswith("corpus://zorblax")


def test_deepsearch_openai_non_stream(denv: CompoundEnv, mocks: MockUpstreams) -> None:
    _push_run(mocks)
    raw = denv.oai().chat.completions.with_raw_response.create(
        model="deepsearch:gpt-4.1",
        messages=[{"role": "user", "content": "How many people live in Zorblax?"}],
        extra_body={"omnirelay": {"max_rounds": 2}},
    )
    resp = raw.parse()
    msg = resp.choices[0].message
    content = msg.content or ""
    assert content.startswith("Zorblax has 7,200 residents [1].")
    assert "An older profile said 5,000 [2], but the newer official census wins." in content
    assert "Details: the census was taken in 2024 [1]." in content
    data = raw.http_response.json()["choices"][0]["message"]
    _check_citations(content, data["annotations"])
    reasoning = (msg.model_extra or {})["reasoning_content"]
    assert "Searching: Zorblax population" in reasoning and "Read [1]" in reasoning
    assert "Conflict noted" in reasoning
    reqs = mocks.requests("openai")
    assert len(reqs) == 3
    assert "7,200 residents" in str(reqs[1].body["messages"])  # the notes call saw the fetched source
    assert resp.usage is not None and resp.usage.prompt_tokens == 36
    assert float(raw.headers["x-omnirelay-cost"]) == pytest.approx(gpt_cost(3), abs=1e-15)
    assert denv.record(raw.headers["x-request-id"])["cost"] == pytest.approx(gpt_cost(3), abs=1e-15)


def test_deepsearch_openai_stream_annotations(denv: CompoundEnv, mocks: MockUpstreams) -> None:
    _push_run(mocks, chunks=23)
    stream = denv.oai().chat.completions.create(
        model="deepsearch:gpt-4.1",
        messages=[{"role": "user", "content": "How many people live in Zorblax?"}],
        stream=True,
        extra_body={"omnirelay": {"max_rounds": 2}},
    )
    content, annotations, order = "", [], []
    for chunk in stream:
        for c in chunk.choices:
            extra = c.delta.model_extra or {}
            if extra.get("reasoning_content"):
                order.append("reasoning")
            if c.delta.content:
                content += c.delta.content
                order.append("content")
            if extra.get("annotations"):
                annotations.extend(extra["annotations"])
                order.append("annotation")
    assert order[0] == "reasoning" and "content" in order
    _check_citations(content, annotations)


def test_deepsearch_anthropic_blocks(denv: CompoundEnv, mocks: MockUpstreams) -> None:
    _push_run(mocks)
    msg = denv.claude().messages.create(
        model="deepsearch:gpt-4.1",
        max_tokens=2000,
        messages=[{"role": "user", "content": "How many people live in Zorblax?"}],
        extra_body={"omnirelay": {"max_rounds": 2}},
    )
    types = [b.type for b in msg.content]
    assert types[0] == "thinking"
    assert types[1:5] == ["server_tool_use", "web_search_tool_result", "server_tool_use", "web_search_tool_result"]
    use = msg.content[1]
    assert use.type == "server_tool_use" and use.name == "web_search" and use.input == {"query": "Zorblax population"}
    result = msg.content[2]
    assert result.type == "web_search_tool_result" and result.tool_use_id == use.id
    assert isinstance(result.content, list) and result.content[0].url.startswith("corpus://")
    cited = [b for b in msg.content if b.type == "text" and b.citations]
    assert cited and all(getattr(c, "url", "").startswith("corpus://zorblax") for b in cited for c in b.citations or [])
    text = "".join(b.text for b in msg.content if b.type == "text")
    assert "[7]" not in text and text.startswith("Zorblax has 7,200 residents [1].")
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (36, 21)


def test_deepsearch_anthropic_stream(denv: CompoundEnv, mocks: MockUpstreams) -> None:
    _push_run(mocks)
    with denv.claude().messages.stream(
        model="deepsearch:gpt-4.1",
        max_tokens=2000,
        messages=[{"role": "user", "content": "How many people live in Zorblax?"}],
        extra_body={"omnirelay": {"max_rounds": 2}},
    ) as stream:
        starts = [e.content_block.type for e in stream if e.type == "content_block_start"]
        final = stream.get_final_message()
    assert starts[0] == "thinking" and starts[-1] == "text"
    assert starts.index("server_tool_use") < starts.index("web_search_tool_result") < starts.index("text")
    cites = [c for b in final.content if b.type == "text" for c in b.citations or []]
    assert cites and {getattr(c, "url", None) for c in cites} == {
        "corpus://zorblax-2020.md",
        "corpus://zorblax-census-2024.md",
    }
    assert all(c.type == "web_search_result_location" and c.cited_text.endswith("]") for c in cites)


def test_deepsearch_round_cap_stops_and_marks_truncated(denv: CompoundEnv, mocks: MockUpstreams) -> None:
    notes_more = ScriptedReply(text="FINDINGS:\n- 5,000 [1]\nCONFLICTS:\nnone\nNEXT QUERIES:\n- Quintar harbour")
    mocks.push("openai", PLAN, notes_more, ScriptedReply(text="About 5,000 [1]."))
    resp = denv.oai().chat.completions.create(
        model="deepsearch:gpt-4.1",
        messages=[{"role": "user", "content": "Zorblax population?"}],
        extra_body={"omnirelay": {"max_rounds": 1}},
    )
    assert len(mocks.requests("openai")) == 3  # plan, one round of notes, report
    assert resp.choices[0].finish_reason == "stop"
    assert (resp.choices[0].message.content or "").startswith("About 5,000 [1].")


def test_deepsearch_unknown_backend_is_400(denv: CompoundEnv) -> None:
    import openai

    with pytest.raises(openai.BadRequestError) as exc:
        denv.oai().chat.completions.create(
            model="deepsearch:gpt-4.1",
            messages=[{"role": "user", "content": "x"}],
            extra_body={"omnirelay": {"search": "nope"}},
        )
    assert "omnirelay.search" in str(exc.value) or "unknown search backend" in str(exc.value)


def test_corpus_index_reads_front_matter(tmp_path: Path) -> None:
    from omnirelay.tools.search.local import LocalCorpus

    (tmp_path / "a.md").write_text(DOCS["zorblax-census-2024.md"])
    (tmp_path / "b.html").write_text(
        '<html><head><title>Page B</title><meta name="date" content="2023-02-02"></head>'
        "<body><script>x=1</script><p>Zorblax ferries run hourly.</p></body></html>"
    )
    corpus = LocalCorpus(str(tmp_path / "idx.db"))
    assert corpus.add_dir(tmp_path) == 2
    hits = corpus.search_sync("zorblax census")
    assert hits[0].url == "corpus://a.md" and hits[0].date == "2024-06-01" and hits[0].title == "Zorblax census 2024"
    doc = corpus.read_sync("corpus://b.html")
    assert doc is not None and doc.title == "Page B" and doc.text == "Zorblax ferries run hourly." and doc.date
