"""`phototag export`: the index as CSV (a row per face), JSON or JSON lines (an object per photo)."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import IO, Any, Iterable

from ..errors import PhototagError

__all__ = ["FORMATS", "write_export", "PHOTO_COLUMNS", "FACE_COLUMNS"]

FORMATS = ("csv", "json", "jsonl")
PHOTO_COLUMNS = ["id", "path", "sha256", "content_sha256", "size", "mtime_ns", "format", "width", "height",
                 "taken_at", "scanned_at", "model_id", "scheme", "face_count", "status", "tags", "error"]
FACE_COLUMNS = ["id", "idx", "top", "right", "bottom", "left", "age", "age_low", "age_high", "age_group",
                "group_prob", "scheme", "female_prob", "distribution"]


def _csv_rows(photos: Iterable[dict[str, Any]]) -> Iterable[list[Any]]:
    """A row per face, its photo's columns first; a photo without faces still gets its row."""
    yield PHOTO_COLUMNS + [f"face_{c}" for c in FACE_COLUMNS]
    for p in photos:
        head = [p.get(c) for c in PHOTO_COLUMNS]
        if not p["faces"]:
            yield head + [None] * len(FACE_COLUMNS)
        for f in p["faces"]:
            tail = [f.get(c) for c in FACE_COLUMNS]
            tail[-1] = json.dumps(f["distribution"]) if f.get("distribution") is not None else None
            yield head + tail


def _write(photos: Iterable[dict[str, Any]], fmt: str, out: IO[str]) -> int:
    n = 0

    def counted() -> Iterable[dict[str, Any]]:
        nonlocal n
        for p in photos:
            n += 1
            yield p

    if fmt == "csv":
        csv.writer(out).writerows(_csv_rows(counted()))
    elif fmt == "jsonl":
        for p in counted():
            out.write(json.dumps(p, ensure_ascii=False) + "\n")
    else:
        out.write("[")
        for i, p in enumerate(counted()):
            out.write(("," if i else "") + "\n" + json.dumps(p, ensure_ascii=False))
        out.write("\n]\n")
    return n


def write_export(photos: Iterable[dict[str, Any]], fmt: str, output: str | Path | None = None) -> int:
    """Stream `photos` as `fmt` to `output` (None: standard output); returns how many photos.

    A file is written beside its final name and moved into place only when complete, so an export
    cut short never leaves half a file where a whole one was."""
    if output is None:
        return _write(photos, fmt, sys.stdout)
    output = Path(output)
    tmp = output.with_name(f".{output.name}.phototag-{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            n = _write(photos, fmt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, output)
    except OSError as exc:
        raise PhototagError(f"cannot write {output}: {exc.strerror or exc}") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    return n
