"""`python -m phototag`: the same command as `phototag`."""

from .cli import run

run()
