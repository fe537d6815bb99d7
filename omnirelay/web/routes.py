"""Route lists and the one lookup over them: what the app composes instead of hard-coding paths.

An ``Endpoint`` is one method and path with its handler; a ``Mount`` groups endpoints under a prefix with the
error renderer that applies to them (an inbound protocol's endpoints answer errors in that protocol's shape,
the admin API in OpenAI's). ``Router`` builds its tables once at start-up, so matching a request is a dict
lookup, as it was with the fixed table it replaces.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from omnirelay.core.errors import GatewayError
from omnirelay.web.exchange import Exchange

Handler = Callable[[Exchange], Awaitable[None]]
ErrorRenderer = Callable[[GatewayError], bytes]

SUBTREE = "/*"  # an endpoint path ending in it matches every path below (the handler reads the rest itself)


class Endpoint:
    """``method`` and ``path`` (below the mount's prefix) answered by ``handler``."""

    __slots__ = ("handler", "method", "path")

    def __init__(self, method: str, path: str, handler: Handler) -> None:
        self.method = method
        self.path = path
        self.handler = handler


class Mount:
    """``endpoints`` under ``prefix``, whose errors (and those of unknown paths below them) ``render_error``
    renders."""

    __slots__ = ("endpoints", "prefix", "render_error")

    def __init__(self, prefix: str, endpoints: Sequence[Endpoint], render_error: ErrorRenderer) -> None:
        self.prefix = prefix.rstrip("/")
        self.endpoints = tuple(endpoints)
        self.render_error = render_error


class Route:
    """What a request matched: its handler and the error renderer of the mount it came from."""

    __slots__ = ("handler", "render_error")

    def __init__(self, handler: Handler, render_error: ErrorRenderer) -> None:
        self.handler = handler
        self.render_error = render_error


class Router:
    """The lookup over a list of mounts. A path registered twice for one method is a programming error."""

    __slots__ = ("default_render_error", "exact", "exact_paths", "owners", "subtrees")

    def __init__(self, mounts: Sequence[Mount], default_render_error: ErrorRenderer) -> None:
        self.exact: dict[tuple[str, str], Route] = {}
        self.subtrees: dict[tuple[str, str], Route] = {}
        self.exact_paths: set[str] = set()  # for 405: a path some method has
        # Path -> renderer of the mount owning it: the format of 404/405 answers for paths no endpoint matched.
        self.owners: dict[str, ErrorRenderer] = {}
        self.default_render_error = default_render_error
        for mount in mounts:
            if mount.prefix:
                self.owners.setdefault(mount.prefix, mount.render_error)
            for ep in mount.endpoints:
                self._add(mount, ep)

    def _add(self, mount: Mount, ep: Endpoint) -> None:
        path = mount.prefix + ep.path
        table = self.exact
        if path.endswith(SUBTREE):
            path, table = path.removesuffix(SUBTREE), self.subtrees
        key = (ep.method, path)
        if key in table:
            raise ValueError(f"two endpoints for {ep.method} {path}")
        table[key] = Route(ep.handler, mount.render_error)
        if table is self.exact:
            self.exact_paths.add(path)
        self.owners.setdefault(path, mount.render_error)

    def match(self, method: str, path: str) -> Route | None:
        """The route for ``method`` on ``path`` (no trailing slash), or None."""
        route = self.exact.get((method, path))
        if route is not None or not self.subtrees:
            return route
        parent = path
        while "/" in parent.rstrip("/"):
            parent = parent.rsplit("/", 1)[0]
            route = self.subtrees.get((method, parent))
            if route is not None:
                return route
        return None

    def allows_other_method(self, path: str) -> bool:
        """Whether ``path`` is an endpoint for some method (then a request with another one gets 405)."""
        return path in self.exact_paths

    def render_error_for(self, path: str) -> ErrorRenderer:
        """The error format of ``path``: that of the mount owning it or the nearest path above it."""
        parent = path
        while True:
            render = self.owners.get(parent)
            if render is not None:
                return render
            if "/" not in parent.rstrip("/"):
                return self.default_render_error
            parent = parent.rsplit("/", 1)[0]
