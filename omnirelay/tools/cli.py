"""``omnirelay corpus add DIR``: index a folder of documents for the local search backend."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

corpus_app = typer.Typer(no_args_is_help=True, help="The local search corpus (SQLite FTS5).")


@corpus_app.command("add")
def add(
    folder: Annotated[Path, typer.Argument(help="folder of .md/.txt/.html documents")],
    index: Annotated[Path | None, typer.Option(help="index file (default: <data dir>/corpus.db)")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", envvar="OMNIRELAY_CONFIG")] = None,
) -> None:
    """Index (or re-index) every document under FOLDER."""
    from omnirelay.config import load_config
    from omnirelay.tools.search.local import LocalCorpus

    if not folder.is_dir():
        typer.echo(f"omnirelay: {folder} is not a folder", err=True)
        raise typer.Exit(2)
    path = index
    if path is None:
        cfg = load_config(config)
        path = Path(cfg.state.data_dir or ".").expanduser() / "corpus.db"
    corpus = LocalCorpus(str(path))
    added = corpus.add_dir(folder)
    typer.echo(f"indexed {added} documents into {path} ({corpus.count()} in total)")
