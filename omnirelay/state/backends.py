"""Which store a database URL names. Apart from ``store.py`` so that the interface never imports its
implementations (each backend's module is loaded only when its URL is used: asyncpg or aiosqlite)."""

from __future__ import annotations

from omnirelay.state.store import Store


def open_store(database_url: str) -> Store:
    """The store for a URL: ``sqlite:///path`` (or a bare path) or ``postgresql://...``."""
    if database_url.startswith(("postgres://", "postgresql://")):
        from omnirelay.state.postgres import PostgresStore

        return PostgresStore(database_url)
    from omnirelay.state.sqlite import SqliteStore

    # SQLAlchemy's spelling: sqlite:///relative.db, sqlite:////absolute/path.db; a bare path also works.
    path = database_url.removeprefix("sqlite:///") if database_url.startswith("sqlite:///") else database_url
    return SqliteStore(path)
