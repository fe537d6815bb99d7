"""The console's pure JS modules (omnirelay/console/static/js: SSE parser, formatting, API request options) under
node's own test runner; the pages themselves are tested in a real browser (tests/test_console_browser.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
STATIC_JS = HERE.parents[2] / "omnirelay" / "console" / "static" / "js"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_console_js_units() -> None:
    tests = sorted(str(p) for p in HERE.glob("*.test.mjs"))
    assert tests
    proc = subprocess.run(["node", "--test", *tests], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "# fail 0" in proc.stdout and "# pass 0" not in proc.stdout


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_every_console_module_parses() -> None:
    modules = sorted(STATIC_JS.rglob("*.js"))
    assert len(modules) >= 10
    for module in modules:
        proc = subprocess.run(["node", "--check", str(module)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"{module}: {proc.stderr}"


def test_no_inline_script_or_handler_in_the_shell() -> None:
    """The backend's CSP is script-src 'self': an inline script or on* attribute would be blocked."""
    html = (STATIC_JS.parent / "index.html").read_text()
    assert "<script>" not in html and not re.search(r"\son[a-z]+\s*=", html)
    for module in STATIC_JS.rglob("*.js"):
        text = module.read_text()
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text and "document.write" not in text, module
