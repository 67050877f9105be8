"""Settings from a TOML file, as defaults for the command-line options.

    # ~/.config/phototag/config.toml (or --config FILE, or $PHOTOTAG_CONFIG)
    [scan]
    sidecar = true
    sidecar_style = "replace"   # IMG_0042.xmp, as Lightroom expects
    scheme = "four"

Each table is a command; each key is one of its options, spelled as in `--help` with `_` for `-`.
An option given on the command line wins over the file.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from .errors import PhototagError

__all__ = ["ConfigError", "config_path", "load_config"]


class ConfigError(PhototagError):
    """The settings file cannot be used."""


def config_path(given: str | Path | None = None) -> Path | None:
    """The settings file in use: `given`, else $PHOTOTAG_CONFIG, else the user's config folder's
    config.toml if there is one."""
    if given:
        return Path(given)
    env = os.environ.get("PHOTOTAG_CONFIG")
    if env:
        return Path(env)
    from platformdirs import user_config_path

    default = user_config_path("phototag") / "config.toml"
    return default if default.exists() else None


def load_config(path: Path | None, commands: dict[str, set[str]]) -> dict[str, dict[str, Any]]:
    """The file's settings as click's default_map, checked against `commands` (name -> option names)."""
    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read settings file {path}: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"settings file {path} is not valid TOML: {exc}") from exc
    out: dict[str, dict[str, Any]] = {}
    for section, values in data.items():
        if section not in commands or not isinstance(values, dict):
            raise ConfigError(f"settings file {path}: [{section}] is not a command "
                              f"(commands: {', '.join(sorted(commands))})")
        for key in values:
            if key not in commands[section]:
                raise ConfigError(f"settings file {path}: {section}.{key} is not an option of `phototag {section}`")
        out[section] = dict(values)
    return out
