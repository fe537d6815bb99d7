"""The typer app behind every ``omnirelay`` command except ``serve`` (``omnirelay.cli`` sends that one to
``omnirelay.serve`` directly, so the server never imports typer; ``serve`` is listed here for ``omnirelay --help``
and forwards its arguments)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from omnirelay.config import ConfigError, load_config
from omnirelay.eval.cli import eval_app
from omnirelay.routing.cli import channels_app
from omnirelay.state.cli import keys_app, usage
from omnirelay.state.users_cli import users_app
from omnirelay.tools.cli import corpus_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help="omnirelay: one endpoint, every model.")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", envvar="OMNIRELAY_CONFIG", help="YAML config file (default: built-in)"),
]


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def serve(ctx: typer.Context) -> None:
    """Run the gateway."""
    from omnirelay.serve import serve as run

    run(ctx.args)


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


app.add_typer(keys_app, name="keys")
app.add_typer(users_app, name="users")
app.command("usage")(usage)
app.add_typer(channels_app, name="channels")
app.add_typer(corpus_app, name="corpus")
app.add_typer(eval_app, name="eval")
