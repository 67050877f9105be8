"""`python -m phototag`: the same command as `phototag`."""

from .cli.main import run

run()
