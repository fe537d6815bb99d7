"""``omnirelay serve``: run the gateway under granian.

Its options are parsed with argparse so that the server's processes never import typer: typer imports pydantic
when it parses a command line (about 12 MB of RSS), and granian forks its workers from this process, so every
worker would carry that too. The other commands are tools run by hand, where typer's help and options are worth
their cost.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from omnirelay.config import Config

INTERFACES = ("rsgi", "asgi")


def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omnirelay serve", description="Run the gateway.")
    env_config = os.environ.get("OMNIRELAY_CONFIG") or None
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        default=Path(env_config) if env_config else None,
        help="YAML config file (default: built-in) [env var: OMNIRELAY_CONFIG]",
    )
    parser.add_argument("--host", help="bind address (default: from config)")
    parser.add_argument("--port", type=int, help="port (default: from config, 8080)")
    parser.add_argument("--workers", type=int, help="worker processes (default: from config, 1)")
    parser.add_argument(
        "--interface",
        default=os.environ.get("OMNIRELAY_INTERFACE") or "rsgi",
        help="granian interface: rsgi (native, cheaper per request) or asgi (the same app, standard ASGI) "
        "[env var: OMNIRELAY_INTERFACE] [default: rsgi]",
    )
    return parser


def serve(argv: Sequence[str]) -> None:
    """``omnirelay serve [OPTIONS]``: run the gateway under granian until it is stopped."""
    args = serve_parser().parse_args(argv)
    if args.interface not in INTERFACES:
        _fail(f"--interface must be rsgi or asgi, not {args.interface!r}")
    config: Path | None = args.config

    from omnirelay.config import ConfigError, load_config

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        _fail(str(exc))
    if config is not None:
        os.environ["OMNIRELAY_CONFIG"] = str(config.resolve())
    bind_host = args.host or cfg.server.host
    bind_port = args.port or cfg.server.port
    print(f"omnirelay listening on http://{bind_host}:{bind_port}", file=sys.stderr, flush=True)

    metrics_dir = _metrics_dir() if cfg.metrics.enabled else None
    rsgi = args.interface == "rsgi"
    # granian forks the workers from this process. Frozen objects are left alone by the workers' collector, so
    # the pages holding them stay shared instead of being copied into each worker (3.5 MB less PSS per worker
    # under load; RSS, which counts shared pages in every process, is unchanged).
    gc.freeze()
    try:
        _granian(args, cfg, bind_host, bind_port, rsgi)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _metrics_dir() -> str | None:
    """A fresh PROMETHEUS_MULTIPROC_DIR for this run, inherited by every worker, so that /metrics sums all of
    them (prometheus_client reads it when first imported: no process has imported it yet). None when the
    operator set one: theirs is used, and left alone at exit."""
    chosen = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if chosen:
        os.makedirs(chosen, exist_ok=True)
        return None
    path = tempfile.mkdtemp(prefix="omnirelay-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def _granian(args: argparse.Namespace, cfg: Config, bind_host: str, bind_port: int, rsgi: bool) -> None:
    from granian import Granian
    from granian.constants import HTTPModes
    from granian.http import HTTP1Settings

    Granian(
        target="omnirelay.server.rsgi:create_rsgi_app" if rsgi else "omnirelay.server.app:create_app",
        factory=True,
        address=bind_host,
        port=bind_port,
        interface=args.interface,
        workers=args.workers or cfg.server.workers,
        loop="uvloop",  # type: ignore[arg-type]
        log_access=False,
        backlog=2048,
        # HTTP/1.1 only: in granian's "auto" mode a connection first waits, with no timeout, for enough bytes
        # to tell HTTP/1 from HTTP/2, so a silent connection was held forever. Served as HTTP/1 directly,
        # hyper's header read timeout runs from the moment a connection waits for a request: it closes
        # connections that are silent or slow to send their headers, first request or keep-alive alike.
        http=HTTPModes.http1,
        http1_settings=HTTP1Settings(header_read_timeout=round(cfg.server.header_timeout * 1000)),
        websockets=False,
    ).serve()


def _fail(message: str) -> NoReturn:
    print(f"omnirelay: {message}", file=sys.stderr)
    raise SystemExit(2)
