"""Tags from the index: what goes into a photo is rebuilt from its rows, never from the model.

A scan stores each photo's faces first and marks the photo `retag`; the people update then settles
who is in it and how old they are; only then are the tags written, once, from the rows. A new scheme,
a merge, a name or a birth date takes the same path: the rows change, the photo is marked, and the
next scan rewrites its tags atomically, without the model.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import TagWriteError
from ..ages.groups import Scheme, used_estimate
from ..store.index import Index
from .exif import TagRecord, Writer
from .names import KEYWORD_PREFIX, name_problem

__all__ = ["used_estimate", "photo_record", "Retagger", "regroup_faces", "PENDING", "UNTAGGED", "FAILED"]

PENDING = "pending"  # the `tags` of a photo whose tags are still to be written from the index
UNTAGGED = "removed by untag"  # the `tags` of a photo the user untagged: left so until scan --force
FAILED = "failed: "  # the `tags` of a photo whose tags could not be written, then the reason


def _check_names(faces: list[sqlite3.Row]) -> None:
    """Refuse a photo whose people include a name its tags cannot hold (made by an earlier version, or
    by another tool writing the index), naming the person to rename."""
    for f in faces:
        if f["person"] and (problem := name_problem(f["person"])):
            raise TagWriteError(f"tags not written: person {f['person_id']}'s name {f['person']!r} {problem}; "
                                f"rename them: phototag people name {f['person_id']} \"NEW NAME\"")


def photo_record(model_id: str, scheme: Scheme, faces: list[sqlite3.Row], size: tuple[int, int] | None
                 ) -> TagRecord:
    """What goes into the photo: a keyword per age group present (in the scheme's order), a keyword
    per named person, and every face with its box, age, group and, when named, its person."""
    ests = [used_estimate(f, scheme) for f in faces]
    groups = [g for g in scheme.names if any(e.group == g for e in ests)]
    names: list[str] = []
    face_list = []
    for f, e in zip(faces, ests):
        # "shown": the whole years every view prints, from the full age: rounding the stored 1-decimal
        # age again would show 34.54 as 34 here and 35 everywhere else.
        item = {"box": [f["top"], f["right"], f["bottom"], f["left"]], "age": round(e.age, 1),
                "shown": f"{e.age:.0f}", "interval": [_num(e.low), _num(e.high)], "group": e.group,
                "p": round(e.group_prob, 2)}
        if f["person"]:
            item["person"] = f["person"]
            if f["person"] not in names:
                names.append(f["person"])
        face_list.append(item)
    return TagRecord(model=model_id, scheme=scheme.name, keywords=[KEYWORD_PREFIX + g for g in groups] + names,
                     faces=face_list, size=size)


def _num(v: Any) -> float | int:
    return int(v) if float(v).is_integer() else round(float(v), 1)


def regroup_faces(index: Index, photo_id: int, scheme: Scheme) -> None:
    """Regroup a photo's faces under `scheme` from their stored distributions, and mark it for new tags."""
    faces = index.conn.execute("SELECT * FROM faces WHERE photo_id = ?", (photo_id,)).fetchall()
    for f in faces:
        e = used_estimate(f, scheme)
        index.conn.execute("UPDATE faces SET age_group = ?, group_prob = ?, scheme = ? WHERE id = ?",
                           (e.group, round(e.group_prob, 4), scheme.name, f["id"]))
    index.conn.execute("UPDATE photos SET scheme = ?, retag = 1 WHERE id = ?", (scheme.name, photo_id))


@dataclass
class RetagOutcome:
    """What writing the marked photos' tags did."""

    written: list[str] = field(default_factory=list)  # paths whose tags were (re)written or checked
    failures: list[tuple[str, str]] = field(default_factory=list)
    not_written: dict[str, int] = field(default_factory=dict)


class Retagger:
    """Writes the tags of photos marked `retag`, from their rows, and records what happened."""

    def __init__(self, index: Index, writer: Writer, model_id: str, real_roots: list[str],
                 write_target: Callable[[str, list[str]], Path], file_hashes: Callable[[str], tuple[str, str]],
                 on_failure: Callable[[str, str], None]) -> None:
        self.index, self.writer, self.model_id = index, writer, model_id
        self.real_roots, self.write_target, self.file_hashes = real_roots, write_target, file_hashes
        self.on_failure = on_failure

    def marked(self, keys: set[str] | None = None) -> list[sqlite3.Row]:
        """The photos marked for new tags (only those whose key is in `keys`, when given)."""
        rows = self.index.conn.execute(
            "SELECT * FROM photos WHERE retag = 1 AND status = 'ok' AND tags IS NOT ? ORDER BY path",
            (UNTAGGED,)).fetchall()
        return [r for r in rows if keys is None or r["path"] in keys]

    def run(self, photos: Iterable[sqlite3.Row], scheme_of: Callable[[str], Scheme]) -> RetagOutcome:
        out = RetagOutcome()
        batch: list[tuple[Any, ...]] = []
        for photo in photos:
            path = Index.fs_path(photo)
            tags = self._write(photo, path, scheme_of(photo["scheme"]), out)
            try:
                st = os.stat(path)
                digest, content = self.file_hashes(path)
            except OSError:
                continue  # gone meanwhile: the next scan marks it missing
            # A photo whose write failed stays marked: the next scan tries again (after a rename, say).
            failed = tags.startswith(FAILED)
            batch.append((tags, digest, content, st.st_size, st.st_mtime_ns, int(failed), photo["id"]))
            if not failed:
                out.written.append(path)
            if len(batch) >= 200:
                self._commit(batch)
        self._commit(batch)
        return out

    def _write(self, photo: sqlite3.Row, path: str, scheme: Scheme, out: RetagOutcome) -> str:
        faces = self.index.conn.execute(
            "SELECT fa.*, pe.name AS person FROM faces fa LEFT JOIN people pe ON pe.id = fa.person_id "
            "WHERE fa.photo_id = ? ORDER BY fa.idx", (photo["id"],)).fetchall()
        try:
            if faces:
                _check_names(faces)
                target = self.write_target(path, self.real_roots)
                size = (photo["width"], photo["height"]) if photo["width"] else None
                tags = self.writer.write(target, photo["format"], photo_record(self.model_id, scheme, faces, size))
            else:  # no faces (any more): take out tags an earlier scan wrote, touch nothing else
                tags = "no faces" + (" (old tags removed)" if self._remove_old(path, photo["format"]) else "")
        except TagWriteError as exc:
            tags = self._failed(path, str(exc), out)
        except OSError as exc:
            tags = self._failed(path, str(exc.strerror or exc), out)
        except Exception as exc:  # noqa: BLE001 - one photo's tags never stop a scan (nor a cron job's next one)
            tags = self._failed(path, f"tags not written ({type(exc).__name__}: {exc})", out)
        if tags.startswith("not written"):
            reason = tags[len("not written ("):-1]
            out.not_written[reason] = out.not_written.get(reason, 0) + 1
        return tags

    def _failed(self, path: str, reason: str, out: RetagOutcome) -> str:
        """Report and record a photo whose tags could not be written; it stays marked for the next scan."""
        out.failures.append((path, reason))
        self.on_failure(path, reason)
        return f"{FAILED}{reason}"

    def _remove_old(self, path: str, fmt: str) -> bool:
        try:
            target = self.write_target(path, self.real_roots)
        except TagWriteError:
            return False  # outside the roots: we wrote nothing there, and write nothing now
        return self.writer.remove(target, fmt)

    def _commit(self, batch: list[tuple[Any, ...]]) -> None:
        if not batch:
            return
        with self.index.transaction() as conn:
            conn.executemany("UPDATE photos SET tags = ?, sha256 = ?, content_sha256 = ?, size = ?, mtime_ns = ?, "
                             "retag = ? WHERE id = ?", batch)
        batch.clear()
