"""The built-in search backend: a folder of .md/.txt/.html documents indexed with SQLite FTS5 (bm25 ranking).

Documents are addressed as ``corpus://<relative path>``. A ``date:`` line in a Markdown front matter block (or
a ``<meta name="date">`` tag) is kept as the document's date, which deepsearch uses to prefer newer facts.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from pathlib import Path
from typing import Self

from omnirelay.tools.html_text import html_to_text
from omnirelay.tools.search.base import Document, SearchBackend, SearchResult
from omnirelay.tools.settings import SearchBackendConfig

SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm")
_WORD = re.compile(r"\w+", re.UNICODE)
_DATE_LINE = re.compile(r"^date:\s*(\S+)", re.IGNORECASE | re.MULTILINE)
_TITLE_LINE = re.compile(r"^title:\s*(.+)$", re.IGNORECASE | re.MULTILINE)
_META_DATE = re.compile(r"<meta\s+name=[\"']date[\"']\s+content=[\"']([^\"']+)[\"']", re.IGNORECASE)
_SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS docs USING fts5(url UNINDEXED, title, body, date UNINDEXED,
    tokenize = 'porter unicode61');
"""


def parse_document(path: Path, url: str) -> Document:
    raw = path.read_text(encoding="utf-8", errors="replace")
    date: str | None = None
    title = path.stem.replace("-", " ").replace("_", " ")
    if path.suffix.lower() in (".html", ".htm"):
        meta = _META_DATE.search(raw)
        date = meta.group(1) if meta else None
        found_title, text = html_to_text(raw)
        title = found_title or title
    else:
        text = raw
        if raw.startswith("---"):
            end = raw.find("\n---", 3)
            if end > 0:
                front = raw[3:end]
                text = raw[end + 4 :].lstrip("\n")
                m = _DATE_LINE.search(front)
                date = m.group(1) if m else None
                t = _TITLE_LINE.search(front)
                title = t.group(1).strip() if t else title
        for line in text.splitlines():
            if line.startswith("# "):
                title = line[2:].strip()
                break
    return Document(url=url, title=title, text=text.strip(), date=date)


class LocalCorpus(SearchBackend):
    name = "local"

    @classmethod
    def from_config(cls, cfg: SearchBackendConfig, data_dir: str | None) -> Self:
        return cls(cfg.path or str(Path(data_dir or ".").expanduser() / "corpus.db"))

    def __init__(self, path: str) -> None:
        self.path = path
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(Path(path).expanduser()), check_same_thread=False)
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def add_dir(self, folder: str | Path) -> int:
        """Index every document under ``folder`` (replacing earlier versions of the same path)."""
        root = Path(folder).expanduser().resolve()
        count = 0
        with self._lock, self._db:
            for file in sorted(root.rglob("*")):
                if not file.is_file() or file.suffix.lower() not in SUFFIXES:
                    continue
                url = "corpus://" + file.relative_to(root).as_posix()
                doc = parse_document(file, url)
                self._db.execute("DELETE FROM docs WHERE url = ?", (url,))
                self._db.execute(
                    "INSERT INTO docs (url, title, body, date) VALUES (?, ?, ?, ?)",
                    (doc.url, doc.title, doc.text, doc.date),
                )
                count += 1
        return count

    def count(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT count(*) FROM docs").fetchone()
        return int(row[0])

    def search_sync(self, query: str, limit: int = 5) -> list[SearchResult]:
        words = [w for w in _WORD.findall(query.lower()) if len(w) > 1]
        if not words:
            return []
        # Any word may match (OR); bm25 ranks documents matching more and rarer words first.
        match = " OR ".join('"' + w.replace('"', "") + '"' for w in dict.fromkeys(words))
        with self._lock:
            rows = self._db.execute(
                "SELECT url, title, snippet(docs, 2, '', '', ' ... ', 24), date FROM docs WHERE docs MATCH ? "
                "ORDER BY bm25(docs, 0.0, 5.0, 1.0) LIMIT ?",
                (match, limit),
            ).fetchall()
        return [SearchResult(url=r[0], title=r[1], snippet=r[2], date=r[3]) for r in rows]

    def read_sync(self, url: str) -> Document | None:
        with self._lock:
            row = self._db.execute("SELECT url, title, body, date FROM docs WHERE url = ?", (url,)).fetchone()
        if row is None:
            return None
        return Document(url=row[0], title=row[1], text=row[2], date=row[3])

    async def search(self, query: str, limit: int = 5) -> list[SearchResult]:
        return await asyncio.to_thread(self.search_sync, query, limit)

    async def read(self, url: str) -> Document | None:
        return await asyncio.to_thread(self.read_sync, url)

    async def aclose(self) -> None:
        with self._lock:
            self._db.close()
