"""`phototag untag`: take out exactly what phototag wrote, and say so in the index."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from ..errors import TagWriteError
from ..store.index import Index
from ..tags.exif import Writer
from ..tags.retag import UNTAGGED
from .analyse import sha256_file
from .pipeline import write_target
from .walk import StaleTemp, WalkError, sniff, walk

__all__ = ["untag", "UntagSummary"]


@dataclass
class UntagSummary:
    files_seen: int = 0
    untagged: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    stale_removed: int = 0

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0

    def line(self) -> str:
        text = f"{self.files_seen} files seen, {self.untagged} untagged, {len(self.failures)} failed"
        return text + (f", {self.stale_removed} leftover temp files removed" if self.stale_removed else "")


def untag(roots: Iterable[str | Path], writer: Writer, *, index: Index | None = None, exclude: Iterable[str] = (),
          follow_symlinks: bool = False, on_failure: Callable[[str, str], None] | None = None) -> UntagSummary:
    """Remove exactly what phototag wrote (its keywords and its UserComment record) from photos under `roots`.

    With an index, each untagged photo's row says so and records the file as it now is, so the next
    scan leaves it alone (`scan --force` tags it again).
    """
    summary = UntagSummary()
    report = on_failure or (lambda p, r: None)
    roots = [os.path.abspath(r) for r in roots]
    real_roots = [os.path.realpath(r) for r in roots]
    for item in walk(roots, exclude=exclude, follow_symlinks=follow_symlinks):
        if isinstance(item, StaleTemp):
            summary.stale_removed += writer.discard_stale(item.path, item.pid)
            continue
        if isinstance(item, WalkError):
            summary.failures.append((str(item.path), item.reason))
            report(str(item.path), item.reason)
            continue
        summary.files_seen += 1
        path = os.path.abspath(item)
        try:
            with open(path, "rb") as f:
                fmt = sniff(f.read(16))
            if fmt is None or not writer.remove(write_target(path, real_roots), fmt):
                continue  # remove() treats unreadable EXIF as holding nothing of ours
        except (TagWriteError, OSError) as exc:
            reason = str(exc) if isinstance(exc, TagWriteError) else f"cannot read: {exc.strerror or exc}"
            summary.failures.append((path, reason))
            report(path, reason)
            continue
        summary.untagged += 1
        if index is not None and index.photo(path) is not None:
            st = os.stat(path)
            with index.transaction() as conn:
                conn.execute("UPDATE photos SET tags = ?, size = ?, mtime_ns = ?, sha256 = ? WHERE path = ?",
                             (UNTAGGED, st.st_size, st.st_mtime_ns, sha256_file(path), Index.key(path)))
    return summary
