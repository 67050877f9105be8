"""Dataset readers. Each yields `FaceRecord`s, so training and evaluation never care where data came from.

A data spec on the command line is `READER:PATH`, e.g. `utkface:../shared/datasets/utkface`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

__all__ = ["FaceRecord", "ReadStats", "open_data", "split_of", "READERS"]


@dataclass(frozen=True)
class FaceRecord:
    """One labelled face. `image` is a path or an RGB/grey uint8 array; `age` or `group` is the label."""

    key: str
    image: Path | np.ndarray
    source: str
    age: int | None = None
    group: str | None = None
    gender: int | None = None  # 0 male, 1 female
    # Where the face is when the detector misses it: (top, right, bottom, left) as fractions of the image.
    fallback_box: tuple[float, float, float, float] | None = None
    person: str | None = None  # who it is, where the data set says (FG-NET, Adience): for splits by person


@dataclass
class ReadStats:
    """What a reader skipped and why, so nothing is dropped silently."""

    read: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, example: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 5:
            self.examples[reason].append(example)


def split_of(key: str, *, val: int = 10, test: int = 10) -> str:
    """A stable split from a hash of the record's key: the same face is always in the same part."""
    bucket = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:4], "big") % 100
    if bucket < test:
        return "test"
    if bucket < test + val:
        return "val"
    return "train"


def _registry() -> dict[str, Callable[[Path, ReadStats], Iterator[FaceRecord]]]:
    from . import adience, fgnet, labelled_csv, utkface, utkface_csv, wiki_mat

    return {
        "utkface": utkface.read,
        "utkface_csv": utkface_csv.read,
        "wiki": wiki_mat.read,
        "labelled_csv": labelled_csv.read,
        "fgnet": fgnet.read,
        "adience": adience.read,
    }


READERS = ("utkface", "utkface_csv", "wiki", "labelled_csv", "fgnet", "adience")


def open_data(spec: str, stats: ReadStats | None = None) -> tuple[list[FaceRecord], ReadStats]:
    """Read every record of `READER:PATH`; raise ValueError for an unknown reader or missing path."""
    name, sep, path = spec.partition(":")
    if not sep or not path:
        raise ValueError(f"data spec {spec!r} is not READER:PATH (readers: {', '.join(READERS)})")
    readers = _registry()
    if name not in readers:
        raise ValueError(f"unknown reader {name!r} (readers: {', '.join(READERS)})")
    root = Path(path).expanduser()
    if not root.exists():
        raise ValueError(f"{root}: no such file or folder")
    stats = stats or ReadStats()
    records = list(readers[name](root, stats))
    stats.read = len(records)
    return records, stats
