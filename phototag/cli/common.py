"""What every command module of the CLI shares: the --db option, the index path, the `Error:` line."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import PhototagError

__all__ = ["DbOption", "db_path", "fatal", "printable"]

DbOption = typer.Option(None, "--db", help="Index file. Default: $PHOTOTAG_DB, else phototag.db in the user data folder.",
                        show_default=False)


def fatal(exc: PhototagError) -> typer.Exit:
    """One `Error: ...` line on stderr; raise the returned Exit for the error's exit code."""
    typer.echo(f"Error: {exc}", err=True)
    return typer.Exit(exc.exit_code)


def printable(path: str) -> str:
    """A path on one line: control characters and undecodable bytes escaped."""
    text = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def db_path(db: Optional[Path]) -> Path:
    """The index the user means: --db, else $PHOTOTAG_DB, else the user data folder's."""
    from ..store.index import default_db_path

    return db if db is not None else default_db_path()
