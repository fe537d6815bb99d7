"""The ``omnirelay`` command line. ``serve`` goes straight to ``omnirelay.serve`` (argparse, no typer, see there
why); every other command is in the typer app (``omnirelay.commands``). This module only dispatches: neither of
the two imports it."""

from __future__ import annotations

import sys


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["serve"]:
        from omnirelay.serve import serve

        serve(argv[1:])
        return
    from omnirelay.commands import app

    app()
