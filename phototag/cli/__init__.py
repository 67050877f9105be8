"""The command line: `phototag` is `run`, over the Typer `app` (main.py) and `phototag people` (people.py)."""

from .main import app, run

__all__ = ["app", "run"]
