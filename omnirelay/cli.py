"""The ``omnirelay`` command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from omnirelay.config import ConfigError, load_config

app = typer.Typer(no_args_is_help=True, add_completion=False, help="omnirelay: one endpoint, every model.")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", envvar="OMNIRELAY_CONFIG", help="YAML config file (default: built-in)"),
]


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="bind address (default: from config)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: from config, 8080)")] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes (default: from config, 1)")] = None,
    interface: Annotated[
        str,
        typer.Option(
            envvar="OMNIRELAY_INTERFACE",
            help="granian interface: rsgi (native, cheaper per request) or asgi (the same app, standard ASGI)",
        ),
    ] = "rsgi",
) -> None:
    """Run the gateway."""
    from granian import Granian

    if interface not in ("rsgi", "asgi"):
        typer.echo(f"omnirelay: --interface must be rsgi or asgi, not {interface!r}", err=True)
        raise typer.Exit(2)

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        typer.echo(f"omnirelay: {exc}", err=True)
        raise typer.Exit(2) from None
    if config is not None:
        os.environ["OMNIRELAY_CONFIG"] = str(config.resolve())
    bind_host = host or cfg.server.host
    bind_port = port or cfg.server.port
    typer.echo(f"omnirelay listening on http://{bind_host}:{bind_port}", err=True)
    Granian(
        target="omnirelay.server.rsgi:create_rsgi_app" if interface == "rsgi" else "omnirelay.server.app:create_app",
        factory=True,
        address=bind_host,
        port=bind_port,
        interface=interface,  # type: ignore[arg-type]
        workers=workers or cfg.server.workers,
        loop="uvloop",  # type: ignore[arg-type]
        log_access=False,
        backlog=2048,
    ).serve()


@app.command("check-config")
def check_config(config: ConfigOption = None) -> None:
    """Validate a config file and print the upstreams and routes it defines."""
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        typer.echo(f"omnirelay: {exc}", err=True)
        raise typer.Exit(2) from None
    for up in cfg.upstreams:
        typer.echo(f"upstream {up.name}: provider={up.provider} preset={up.preset or '-'} models={up.models}")
    for name, route in cfg.models.items():
        chans = ", ".join(f"{c.upstream}:{c.model or name}" for c in route.channels)
        typer.echo(f"model {name}: {chans}")


# ``omnirelay serve`` needs none of the other command groups. Not importing them keeps their modules (key store,
# routing, eval and corpus CLIs) out of the server's processes, which saves RSS in the supervisor and in each
# forked worker (see bench/CHANGES.md).
_SERVING = sys.argv[1:2] == ["serve"]


def _add_state_commands() -> None:
    from omnirelay.state.cli import keys_app, usage

    app.add_typer(keys_app, name="keys")
    app.command("usage")(usage)


if not _SERVING:
    _add_state_commands()


def _add_routing_commands() -> None:
    from omnirelay.routing.cli import channels_app

    app.add_typer(channels_app, name="channels")


if not _SERVING:
    _add_routing_commands()


def _add_compound_commands() -> None:
    from omnirelay.eval.cli import eval_app
    from omnirelay.tools.cli import corpus_app

    app.add_typer(corpus_app, name="corpus")
    app.add_typer(eval_app, name="eval")


if not _SERVING:
    _add_compound_commands()


def main() -> None:
    app()
