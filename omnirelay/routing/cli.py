"""``omnirelay channels``: the running gateway's channel states, from its admin API.

Registered in ``omnirelay/commands.py`` with ``app.add_typer(channels_app, name="channels")``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer

from omnirelay.config import ConfigError, load_config

channels_app = typer.Typer(add_completion=False, help="Channel health: circuit breakers, rests, concurrency.")


@channels_app.callback(invoke_without_command=True)
def channels(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", envvar="OMNIRELAY_CONFIG", help="YAML config file")
    ] = None,
    url: Annotated[str | None, typer.Option(help="gateway base URL (default: from the config)")] = None,
    key: Annotated[
        str | None, typer.Option(envvar="OMNIRELAY_ADMIN_KEY", help="admin key (default: from the config)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the raw JSON")] = False,
) -> None:
    """Show every channel's state as the running gateway sees it."""
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        typer.echo(f"omnirelay: {exc}", err=True)
        raise typer.Exit(2) from None
    if url is None:
        host = cfg.server.host if cfg.server.host not in ("0.0.0.0", "::") else "127.0.0.1"
        url = f"http://{host}:{cfg.server.port}"
    key = key or cfg.admin_key()  # load_config has applied OMNIRELAY_ADMIN_KEY
    request = urllib.request.Request(url.rstrip("/") + "/admin/channels")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            body: dict[str, Any] = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        typer.echo(f"omnirelay: {url} answered {exc.code}: {exc.read().decode(errors='replace')[:300]}", err=True)
        raise typer.Exit(1) from None
    except (urllib.error.URLError, OSError) as exc:
        typer.echo(f"omnirelay: cannot reach {url}: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    typer.echo(render_table(body))


def render_table(body: dict[str, Any]) -> str:
    header = ("CHANNEL", "STATE", "FAILS", "WINDOW", "IN FLIGHT", "OK", "FAILED", "SINCE", "LAST ERROR")
    rows: list[tuple[str, ...]] = [header]
    now = time.time()
    for ch in body.get("data", []):
        state = ch["state"]
        if ch.get("open_for_s"):
            state += f" ({ch['open_for_s']:.0f}s)"
        if ch.get("resting_for_s"):
            state += f" rest {ch['resting_for_s']:.0f}s"
        if ch.get("isolated_keys"):
            state += f" {ch['isolated_keys']} key(s) kept off"
        flight = "-" if ch.get("in_flight") is None else f"{ch['in_flight']}/{ch['max_concurrency']}"
        rows.append(
            (
                ch["channel"],
                state,
                str(ch["consecutive_failures"]),
                f"{ch['window_failures']}/{ch['window_requests']}",
                flight,
                str(ch["successes"]),
                str(ch["failures"]),
                f"{max(0.0, now - ch['last_change']):.0f}s",
                (ch.get("last_error") or "")[:60],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    shared = "shared via Redis" if body.get("shared_state") else "this process only"
    lines.append(f"(replica {body.get('replica')}, state {shared})")
    return "\n".join(lines)
