"""Which file a /console path serves: files under static/, index.html for pages, nothing outside the folder."""

from __future__ import annotations

from pathlib import Path

from omnirelay.console.static import CSP, content_type, resolve


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "static"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html>")
    (root / "assets" / "app.js").write_text("1")
    (tmp_path / "secret.txt").write_text("no")
    return root


def test_files_pages_and_traversal(tmp_path: Path) -> None:
    root = _root(tmp_path)
    assert resolve("", root) == root / "index.html"
    assert resolve("/", root) == root / "index.html"
    assert resolve("/assets/app.js", root) == (root / "assets" / "app.js").resolve()
    assert resolve("/tokens", root) == root / "index.html"  # a page of the app
    assert resolve("/admin/users", root) == root / "index.html"
    assert resolve("/missing.js", root) is None  # a file that is not there is not a page
    for bad in ("/../secret.txt", "/assets/../../secret.txt", "/./index.html", "/a//b", "/a\x00b", "/a\\b"):
        assert resolve(bad, root) is None, bad
    assert resolve("//etc/passwd", root) == root / "index.html"  # a page path below /console, not /etc


def test_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    root = _root(tmp_path)
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    assert resolve("/link.txt", root) is None


def test_content_types_and_policy() -> None:
    assert content_type(Path("a.js")) == "text/javascript; charset=utf-8"
    assert content_type(Path("a.CSS")) == "text/css; charset=utf-8"
    assert content_type(Path("a.html")) == "text/html; charset=utf-8"
    assert content_type(Path("a.unknownext")) == "application/octet-stream"
    assert "script-src 'self';" in CSP and "'unsafe-inline'" not in CSP and "'unsafe-eval'" not in CSP
