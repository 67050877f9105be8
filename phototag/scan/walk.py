"""Which files to look at: recursion, content sniffing, excludes, hidden folders and symlinks.

A file is a candidate when its extension says image or its first bytes do; a `.jpg` that holds text
is still yielded, so the scan can name it and say why it is not a photo.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from ..tags.exif import sniff  # the format a file's first bytes announce

__all__ = ["WalkError", "StaleTemp", "walk", "sniff", "IMAGE_EXTENSIONS", "TEMP_NAME"]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".tif", ".tiff", ".heic", ".heif", ".gif", ".bmp"}
)
# Never images, never worth opening: skipped without a read.
_NOT_IMAGES = frozenset({".xmp", ".txt", ".json", ".db", ".sqlite", ".mov", ".mp4", ".avi", ".m4v", ".mts",
                         ".aae", ".thm", ".pdf", ".doc", ".docx", ".md", ".csv", ".toml", ".ini", ".lock"})


# The staged copy tags.atomic_replace writes beside a photo: `.NAME.phototag-PID.tmp`.
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.phototag-(?P<pid>\d+)\.tmp$", re.DOTALL)


@dataclass(frozen=True)
class StaleTemp:
    """A staged copy left beside a photo by a phototag process that was killed mid-write."""

    path: Path
    pid: int


@dataclass(frozen=True)
class WalkError:
    """A path the walk could not enter or read, and why."""

    path: Path
    reason: str


def _sniff_file(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return sniff(f.read(16))
    except OSError:
        return None


def _excluded(path: Path, patterns: tuple[str, ...]) -> bool:
    s = str(path)
    return any(fnmatch.fnmatch(s, p) or fnmatch.fnmatch(path.name, p) for p in patterns)


def _is_candidate(path: Path) -> bool:
    ext = path.suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        return True
    if ext in _NOT_IMAGES:
        return False
    return _sniff_file(path) is not None


def walk(
    roots: Iterable[str | Path], *, exclude: Iterable[str] = (), follow_symlinks: bool = False
) -> Iterator[Path | WalkError | StaleTemp]:
    """Every candidate photo under `roots`, depth first in name order; problems as WalkError; our own
    staged copies as StaleTemp (the caller decides whether their writer is gone)."""
    patterns = tuple(exclude)
    seen_dirs: set[tuple[int, int]] = set()

    def visit_dir(folder: Path, ancestors: frozenset = frozenset()) -> Iterator[Path | WalkError | StaleTemp]:
        try:
            st = folder.stat()
        except OSError as exc:
            yield WalkError(folder, exc.strerror or str(exc))
            return
        key = (st.st_dev, st.st_ino)
        if key in ancestors:
            yield WalkError(folder, "symlink loop: links back to a folder that contains it")
            return
        if key in seen_dirs:
            return  # reached again through a link: the same files, already yielded
        seen_dirs.add(key)
        ancestors = ancestors | {key}
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            yield WalkError(folder, f"cannot read folder: {exc.strerror or exc}")
            return
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith("."):
                m = TEMP_NAME.match(entry.name)
                if m and entry.is_file(follow_symlinks=False):
                    yield StaleTemp(path, int(m["pid"]))
                continue
            if _excluded(path, patterns):
                continue
            try:
                if entry.is_symlink() and not follow_symlinks:
                    continue
                if entry.is_dir(follow_symlinks=follow_symlinks):
                    yield from visit_dir(path, ancestors)
                elif entry.is_file(follow_symlinks=follow_symlinks) and _is_candidate(path):
                    yield path
            except OSError as exc:
                yield WalkError(path, exc.strerror or str(exc))

    for root in roots:
        root = Path(root)
        try:
            st = root.stat() if follow_symlinks or not root.is_symlink() else root.lstat()
        except OSError as exc:
            yield WalkError(root, exc.strerror or str(exc))
            continue
        if stat.S_ISDIR(st.st_mode):
            yield from visit_dir(root)
        elif stat.S_ISREG(st.st_mode):
            yield root  # a file named on the command line is always looked at
        else:
            yield WalkError(root, "not a file or folder")
