"""``fetch``: read a web page for a model, with SSRF protection.

* Only http and https. The host is resolved here, every address is checked, and the connection goes to the
  checked address (a resolver that returns only vetted addresses), so DNS rebinding between check and connect
  cannot redirect it. Loopback, private, link-local, CGNAT, multicast, reserved and unspecified addresses are
  refused unless ``allow_private`` (or the host is in ``allow_hosts``).
* Redirects are followed by hand (at most 5), each hop checked again.
* Size (``max_bytes``), time (``timeout``) and content-type (text, HTML, JSON, XML) limits; HTML becomes text.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from omnirelay.tools.html_text import html_to_text
from omnirelay.tools.search.base import Document
from omnirelay.tools.settings import FetchSettings

ALLOWED_TYPES = ("text/html", "text/plain", "text/markdown", "application/json", "application/xhtml+xml", "text/xml")
MAX_REDIRECTS = 5
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


class FetchRefused(Exception):
    """The URL may not be fetched (SSRF rule, scheme, type, size); the message says why."""


def address_allowed(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return not (
        addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
        or (isinstance(addr, ipaddress.IPv4Address) and addr in _CGNAT)
    )


class _VettedResolver(AbstractResolver):
    """Resolves like the system resolver, then keeps only allowed addresses: aiohttp connects to what this
    returns, so the checked address is the one connected to."""

    def __init__(self, settings: FetchSettings) -> None:
        self.settings = settings

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=socket.AF_UNSPEC)
        except socket.gaierror as exc:
            raise FetchRefused(f"cannot resolve {host}: {exc.strerror}") from None
        trusted = self.settings.allow_private or host.lower() in {h.lower() for h in self.settings.allow_hosts}
        out: list[ResolveResult] = []
        for fam, _type, proto, _canon, sockaddr in infos:
            ip = str(sockaddr[0])
            if not trusted and not address_allowed(ip):
                raise FetchRefused(f"{host} resolves to a private or reserved address ({ip}); refused")
            out.append(ResolveResult(hostname=host, host=ip, port=int(sockaddr[1]), family=fam, proto=proto, flags=0))
        if not out:
            raise FetchRefused(f"cannot resolve {host}")
        return out

    async def close(self) -> None:
        return None


def check_url(url: str, settings: FetchSettings) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchRefused(f"only http and https URLs may be fetched, not {parts.scheme or 'none'}")
    host = parts.hostname
    if not host:
        raise FetchRefused("the URL has no host")
    if parts.username or parts.password:
        raise FetchRefused("URLs with credentials are refused")
    # An address literal never reaches the resolver (aiohttp connects to it directly): check it here.
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return
    if not settings.allow_private and not address_allowed(host):
        raise FetchRefused(f"{host} is a private or reserved address; refused")


async def fetch(url: str, settings: FetchSettings) -> Document:
    """The page at ``url`` as text. Raises FetchRefused for what the rules forbid, or for a failed fetch."""
    connector = aiohttp.TCPConnector(resolver=_VettedResolver(settings), use_dns_cache=False, force_close=True)
    timeout = aiohttp.ClientTimeout(total=settings.timeout)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            for _hop in range(MAX_REDIRECTS + 1):
                check_url(url, settings)
                async with session.get(
                    url, allow_redirects=False, headers={"User-Agent": "omnirelay-fetch/1", "Accept": "text/html,*/*"}
                ) as resp:
                    if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                        url = urljoin(url, resp.headers["Location"])
                        continue
                    if resp.status >= 400:
                        raise FetchRefused(f"{url} answered {resp.status}")
                    return await _read(url, resp, settings)
            raise FetchRefused(f"too many redirects fetching {url}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise FetchRefused(f"fetching {url} failed: {type(exc).__name__}") from None


async def _read(url: str, resp: aiohttp.ClientResponse, settings: FetchSettings) -> Document:
    ctype = resp.headers.get("Content-Type", "text/plain").split(";", 1)[0].strip().lower()
    if ctype not in ALLOWED_TYPES:
        raise FetchRefused(f"{url}: content type {ctype} is not text")
    length = resp.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > settings.max_bytes:
        raise FetchRefused(f"{url}: {length} bytes is over the {settings.max_bytes}-byte limit")
    body = bytearray()
    async for piece in resp.content.iter_chunked(65536):
        body.extend(piece)
        if len(body) > settings.max_bytes:
            raise FetchRefused(f"{url}: over the {settings.max_bytes}-byte limit")
    text = body.decode(resp.charset or "utf-8", errors="replace")
    title = ""
    if ctype in ("text/html", "application/xhtml+xml"):
        title, text = html_to_text(text)
    date: Any = resp.headers.get("Last-Modified")
    return Document(url=url, title=title or url, text=text[: settings.max_chars], date=date)
