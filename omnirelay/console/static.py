"""The console's pages: static files from ``console/static/`` at ``/console/*``. A path without a file extension
that names no file is a page of the single-page app and gets ``index.html``; ``/console/api/*`` never falls
back (its unknown paths are JSON 404s). Every answer carries a strict Content-Security-Policy (scripts and
styles from the gateway only: no inline script), ``X-Frame-Options: DENY`` and ``nosniff``."""

from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path

from omnirelay.core.errors import GatewayError
from omnirelay.web.exchange import Exchange

STATIC_DIR = Path(__file__).resolve().parent / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".map": "application/json",
}


def content_type(path: Path) -> str:
    return TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def resolve(rest: str, root: Path = STATIC_DIR) -> Path | None:
    """The file a path below /console names, or index.html for a page; None when there is none."""
    rest = rest.strip("/")
    if not rest:
        return root / "index.html"
    if "\x00" in rest or "\\" in rest or any(part in ("", ".", "..") for part in rest.split("/")):
        return None
    candidate = (root / rest).resolve()
    if not candidate.is_relative_to(root.resolve()):
        return None
    if candidate.is_file():
        return candidate
    if "." not in rest.rsplit("/", 1)[-1]:
        return root / "index.html"
    return None


class StaticPages:
    def __init__(self, root: Path = STATIC_DIR) -> None:
        self.root = root

    async def serve(self, request: Exchange) -> None:
        rest = request.path.removeprefix("/console")
        if rest == "/api" or rest.startswith("/api/"):
            raise GatewayError("not_found", f"no route for {request.method} {request.path}", code="unknown_url")
        path = resolve(rest, self.root)
        if path is None or not path.is_file():
            raise GatewayError("not_found", f"no page {request.path}", code="unknown_url")
        body = await asyncio.to_thread(path.read_bytes)
        html = path.suffix == ".html"
        headers = {**SECURITY_HEADERS, "cache-control": "no-cache" if html else "public, max-age=300"}
        await request.respond(200, body, content_type=content_type(path), headers=headers)
