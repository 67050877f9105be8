"""The Typer app, its global options (--version, --config), and how a run's end is printed."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .. import __version__
from ..errors import PhototagError
from .common import fatal as _fatal
from .common import printable
from .people import people_app  # light: typer only

__all__ = ["app", "EXIT_CODES", "report_failure", "finish"]

EXIT_CODES = """Exit codes: 0 all done; 1 some files failed (each named on stderr); 2 usage or fatal error;
3 another scan holds the index; 130 interrupted (SIGINT or SIGTERM)."""

app = typer.Typer(
    help="Tag family photos with the age group of every person in them: EXIF tags and a SQLite index.\n\n"
    + EXIT_CODES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

def report_failure(path: str, reason: str) -> None:
    """One line per bad file, naming it and the reason; the run carries on."""
    typer.echo(f"phototag: {printable(path)}: {reason}", err=True)


def finish(summary, *, dry_run: bool, quiet: bool) -> None:
    """The summary line (on stderr under --quiet, and only if something failed), then the exit code."""
    if not quiet or summary.exit_code:
        typer.echo(("dry run: " if dry_run else "") + summary.line(), err=summary.exit_code != 0 and quiet)
    raise typer.Exit(summary.exit_code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"phototag {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    config: Optional[Path] = typer.Option(None, "--config", show_default=False,
                                          help="Settings file (TOML; a table per command, e.g. [scan] "
                                               "sidecar = true). Default: $PHOTOTAG_CONFIG, else "
                                               "config.toml in the user config folder, if it exists."),
) -> None:
    """phototag."""
    from ..config import config_path, load_config

    group = ctx.command
    commands = {name: {p.name for p in cmd.params if p.name}
                for name, cmd in getattr(group, "commands", {}).items()}
    try:
        ctx.default_map = load_config(config_path(config), commands)
    except PhototagError as exc:
        raise _fatal(exc) from None


app.add_typer(people_app, name="people")

