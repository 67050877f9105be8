"""The command line: each command parses options, calls one library function, prints.

Library errors are PhototagError subclasses; they become one `Error: ...` line and an exit code.
"""

from __future__ import annotations

import os
import sys

import typer

from .. import __version__
# Each registers its commands on the app, in the order `phototag --help` lists them.
from . import scanning  # noqa: F401
from . import browse  # noqa: F401
from . import training  # noqa: F401
from .app import app
from .common import printable

__all__ = ["app", "run"]


def run() -> None:
    """The `phototag` command: the app, where no traceback ever reaches the user. A library error is
    already one `Error:` line; anything else (a bug, an index another tool damaged) is said on one line
    too (PHOTOTAG_DEBUG=1 shows the traceback), so a cron job's log stays readable and its exit code
    means what EXIT_CODES says."""
    try:
        app()
    except Exception as exc:  # noqa: BLE001 - the last line of defence, not a way of handling errors
        if os.environ.get("PHOTOTAG_DEBUG"):
            raise
        text = " ".join(f"{type(exc).__name__}: {exc}".split())
        typer.echo(f"Error: unexpected {printable(text)} (phototag {__version__} did not expect this: a damaged "
                   "index, or a bug; PHOTOTAG_DEBUG=1 shows where, please report it)", err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    run()
