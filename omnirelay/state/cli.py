"""``omnirelay keys ...`` and ``omnirelay usage``: the key store and usage records from the command line.

They work on the database directly (the one the config and OMNIRELAY_DATABASE_URL name), so they need no
running gateway; a running one sees key changes within its cache refresh (``state.key_refresh_s``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec
import typer

from omnirelay.config import ConfigError, load_config
from omnirelay.core.errors import GatewayError
from omnirelay.state.backends import open_store
from omnirelay.state.fields import checked_time, dimensions, key_fields
from omnirelay.state.keys import KeyRecord, new_key
from omnirelay.state.store import RejectedUsage, Store, UsageFilter

keys_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Create and manage virtual API keys.")

T = TypeVar("T")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", envvar="OMNIRELAY_CONFIG", help="YAML config file (default: built-in)"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def fail(message: str) -> typer.Exit:
    typer.echo(f"omnirelay: {message}", err=True)
    return typer.Exit(2)


def with_store(config: Path | None, work: Callable[[Store], Awaitable[T]]) -> T:
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    assert cfg.state.database_url is not None

    async def run() -> T:
        store = open_store(cfg.state.database_url or "")
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except GatewayError as exc:
        raise fail(exc.message) from None
    except (OSError, ValueError) as exc:
        raise fail(str(exc)) from None


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Rows as aligned text columns (the CLI's tables): None as '-', floats without trailing zeros, lists joined."""

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.6f}".rstrip("0").rstrip(".") if v else "0"
        if isinstance(v, list):
            return ",".join(str(x) for x in v) or "*"
        return str(v)

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


KEY_COLUMNS = ["id", "name", "disabled", "models", "rpm", "tpm", "credit", "spent", "balance", "expires_at"]


def _print_keys(keys: list[KeyRecord], as_json: bool) -> None:
    views = [k.public() for k in keys]
    if as_json:
        typer.echo(msgspec.json.encode(views).decode())
        return
    for v in views:
        if v["expires_at"] is not None:
            v["expires_at"] = _iso(float(v["expires_at"]))  # type: ignore[arg-type]
    typer.echo(table(views, KEY_COLUMNS))


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _settings(
    name: str | None,
    credit: float | None,
    models: str | None,
    rpm: int | None,
    tpm: int | None,
    expires: str | None,
    unlimited: bool = False,
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if name is not None:
        body["name"] = name
    if credit is not None:
        body["credit"] = credit
    if unlimited:
        body["credit"] = None
    if models is not None:
        body["models"] = models
    if rpm is not None:
        body["rpm"] = None if rpm == 0 else rpm
    if tpm is not None:
        body["tpm"] = None if tpm == 0 else tpm
    if expires is not None:
        body["expires_at"] = None if expires in ("", "never") else expires
    try:
        return key_fields(body, creating=False)
    except GatewayError as exc:
        raise fail(exc.message) from None


CreditOpt = Annotated[float | None, typer.Option(help="credit in USD (default: unlimited)")]
ModelsOpt = Annotated[str | None, typer.Option(help="allowed models, comma-separated globs: 'gpt-4.1*,claude-*'")]
RpmOpt = Annotated[int | None, typer.Option(help="requests per minute (0: no limit)")]
TpmOpt = Annotated[int | None, typer.Option(help="tokens per minute (0: no limit)")]
ExpiresOpt = Annotated[str | None, typer.Option(help="expiry: 2027-01-01, ISO datetime or unix time ('never')")]


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="a name for the key (team, person, app)")],
    credit: CreditOpt = None,
    models: ModelsOpt = None,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    expires: ExpiresOpt = None,
    config: ConfigOption = None,
) -> None:
    """Create a key and print its secret (shown only this once)."""
    fields = _settings(None, credit, models, rpm, tpm, expires)
    rec, secret = new_key(name)
    for field, value in fields.items():
        setattr(rec, field, value)
    with_store(config, lambda store: store.insert_key(rec))
    typer.echo(f"created key {rec.id} ({rec.name})")
    typer.echo(secret)


@keys_app.command("list")
def list_keys(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List keys (never their secrets)."""
    keys = with_store(config, lambda store: store.load_keys())
    _print_keys(sorted(keys, key=lambda k: k.created_at), as_json)


@keys_app.command("show")
def show(key_id: str, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Show one key."""
    rec = with_store(config, lambda store: store.get_key(key_id))
    if rec is None:
        raise fail(f"no key {key_id!r}")
    _print_keys([rec], as_json)


def _update(config: Path | None, key_id: str, fields: dict[str, Any]) -> None:
    rec = with_store(config, lambda store: store.update_key(key_id, fields))
    if rec is None:
        raise fail(f"no key {key_id!r}")
    _print_keys([rec], False)


@keys_app.command("update")
def update(
    key_id: str,
    name: Annotated[str | None, typer.Option(help="new name")] = None,
    credit: CreditOpt = None,
    unlimited: Annotated[bool, typer.Option(help="remove the credit limit")] = False,
    models: ModelsOpt = None,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    expires: ExpiresOpt = None,
    config: ConfigOption = None,
) -> None:
    """Change a key's name, credit (total granted, USD), models, limits or expiry."""
    fields = _settings(name, credit, models, rpm, tpm, expires, unlimited)
    if not fields:
        raise fail("nothing to update")
    _update(config, key_id, fields)


@keys_app.command("disable")
def disable(key_id: str, config: ConfigOption = None) -> None:
    """Disable a key (rejected within a second by running gateways)."""
    _update(config, key_id, {"disabled": True})


@keys_app.command("enable")
def enable(key_id: str, config: ConfigOption = None) -> None:
    """Enable a disabled key."""
    _update(config, key_id, {"disabled": False})


@keys_app.command("delete")
def delete(key_id: str, config: ConfigOption = None) -> None:
    """Delete a key (its usage records stay)."""
    if not with_store(config, lambda store: store.delete_key(key_id)):
        raise fail(f"no key {key_id!r}")
    typer.echo(f"deleted key {key_id}")


REJECTED_COLUMNS = ["request_id", "rejected_at", "key_id", "error"]


def _print_rejected(rows: list[RejectedUsage], as_json: bool) -> None:
    views = [r.public() for r in rows]
    if as_json:
        typer.echo(msgspec.json.encode(views).decode())
        return
    for v in views:
        v["rejected_at"] = _iso(float(v["rejected_at"]))
    typer.echo(table(views, REJECTED_COLUMNS))


SUMMARY_COLUMNS = [
    "requests",
    "errors",
    "input_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost",
]


def usage(
    since: Annotated[str | None, typer.Option(help="from: 2025-06-01, ISO datetime, unix time or 24h/7d ago")] = None,
    until: Annotated[str | None, typer.Option(help="until (exclusive), same forms")] = None,
    by: Annotated[str, typer.Option(help="group by: key, model, model_used, provider, upstream, protocol, status")] = (
        "key,model"
    ),
    key: Annotated[str | None, typer.Option(help="only this key id")] = None,
    model: Annotated[str | None, typer.Option(help="only this model (requested or used)")] = None,
    rejected: Annotated[
        bool, typer.Option("--rejected", help="list the records the database could not store, kept aside instead")
    ] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Usage summary: requests, tokens and cost by key and model over a time range."""
    if rejected:
        _print_rejected(with_store(config, lambda store: store.query_rejected()), as_json)
        return
    try:
        flt = UsageFilter(
            since=checked_time(since, "since") if since else None,
            until=checked_time(until, "until") if until else None,
            key_id=key,
            model=model,
        )
        dims = dimensions(by)
    except GatewayError as exc:
        raise fail(exc.message) from None
    rows = with_store(config, lambda store: store.summarize_usage(flt, dims))
    if as_json:
        typer.echo(msgspec.json.encode(rows).decode())
        return
    total = {c: sum(r[c] for r in rows) for c in SUMMARY_COLUMNS}
    if dims:
        total[dims[0]] = "TOTAL"
    typer.echo(table([*rows, total] if len(rows) > 1 else rows, [*dims, *SUMMARY_COLUMNS]))
