"""The scan: walk, skip what is unchanged, detect in worker processes, predict in batches, tag, index.

main process: walk + index look-ups -> bounded task queue -> N worker processes (analyse.py: decode;
detect and align with dlib; confirm and describe with the face engine) -> chips or descriptors gathered
across photos into batches -> the model, loaded once -> index upserts in transactions -> people ->
tags written from the index (tags/retag.py).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing as mp
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .. import __version__, faces
from ..ages.groups import estimate, get_scheme, pack_distribution
from ..ages.model import AgeModel, load_model
from ..errors import IndexFullError, PhotoError, PhototagError, SchemeError, TagWriteError
from ..people.update import update_people
from ..store.index import Index
from ..tags.exif import NullWriter, Writer
from ..tags.names import keyword_problem
from ..tags.retag import FAILED, PENDING, UNTAGGED, Retagger, regroup_faces
from .analyse import Analysis, age_faces, analyse, file_hashes, known_boxes, sha256_file, stat_key, warm_worker
from .cluster import DEVICES as RAY_DEVICES, GPU_WITH_RAY, WORKER_LOST, RayOptions, ray_analyses
from .decode import DEFAULT_DETECT_SIZE, taken_at
from .walk import StaleTemp, WalkError, walk

__all__ = ["ScanOptions", "ScanSummary", "scan", "Interrupted", "analyse", "Analysis", "write_target",
           "file_hashes"]


# Failures that say nothing about the file's content (permissions, a flaky disk, a write that raced
# ours): tried again next run even when size and mtime are unchanged, as chmod leaves both alone.
RETRIED = ("cannot read", "changed while it was being scanned", WORKER_LOST)


def write_target(path: str, real_roots: list[str]) -> Path:
    """The file to rewrite for `path`: its real location, which must lie under a root the user gave.

    A link is never replaced by a tagged copy of what it points to: the file behind it is written,
    and only when it is inside the folders given (`--follow-symlinks` may lead anywhere)."""
    real = os.path.realpath(path)
    for root in real_roots:
        if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
            return Path(real)
    raise TagWriteError("outside the folders given (reached through a symlink), tags not written")


class Interrupted(BaseException):
    """SIGTERM: stop after committing what is done. A BaseException, like KeyboardInterrupt (SIGINT), so
    the per-photo `except Exception` that keeps one bad photo from stopping a scan never swallows it."""


@dataclass(frozen=True)
class ScanOptions:
    detector: str = "auto"  # faces.detect: the CNN and HOG together (bench/detection.py)
    upsample: int | None = None  # None: once for small photos (see _upsample), else not at all
    detect_size: int = DEFAULT_DETECT_SIZE
    min_face: int = 40  # full-resolution pixels
    min_score: float = faces.DEFAULT_MIN_SCORE
    verify: bool = True  # HOG proposes, dlib's CNN confirms
    workers: int = 0  # 0: one per core
    batch_size: int = 64
    force: bool = False
    exclude: tuple[str, ...] = ()
    follow_symlinks: bool = False
    scheme: str = "ten"
    prune: bool = False
    people: bool = True  # group faces into people and date them (phototag.people)
    ray: RayOptions | None = None  # analyse on a Ray cluster (scan/cluster.py) instead of local processes
    runtime: str = "litert"  # what runs the networks: litert (CPU) or keras (a GPU: `scan --device gpu`)

    # --thorough: faces down to 80 px in a 4000 x 3000 photo (bench/: 97% found, at a third the speed).
    THOROUGH = {"detect_size": 2400, "upsample": 1}

    @classmethod
    def thorough(cls, **kw: Any) -> "ScanOptions":
        return cls(**{**cls.THOROUGH, **kw})

    def analyse_args(self, keep_chips: bool) -> tuple:
        """`analyse`'s arguments after the path, as a worker or a Ray actor is handed them."""
        return (self.detect_size, self.detector, self.upsample, self.min_face, self.min_score, self.verify,
                keep_chips)


@dataclass
class ScanSummary:
    files_seen: int = 0
    skipped: int = 0
    tagged: int = 0
    faces: int = 0
    moved: int = 0
    missing: int = 0
    known_failures: int = 0  # skipped: failed before and unchanged since
    regrouped: int = 0  # tagged under a new scheme from stored distributions, without the model
    retagged: int = 0  # not analysed, but tags rewritten from the index (people, names, birth dates)
    stale_removed: int = 0  # staged copies left by a killed run, deleted
    not_written: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        return 130 if self.interrupted else 1 if self.failures else 0

    def line(self) -> str:
        skipped = f"{self.skipped} skipped" + (f" ({self.known_failures} known failures)" if self.known_failures else "")
        parts = [f"{self.files_seen} files seen", skipped, f"{self.tagged} tagged",
                 f"{self.faces} faces", f"{len(self.failures)} failed"]
        if self.moved:
            parts.append(f"{self.moved} moved")
        if self.missing:
            parts.append(f"{self.missing} missing")
        if self.regrouped:
            parts.append(f"{self.regrouped} regrouped")
        if self.retagged:
            parts.append(f"{self.retagged} re-tagged")
        if self.stale_removed:
            parts.append(f"{self.stale_removed} leftover temp files removed")
        text = ", ".join(parts) + f" in {self.seconds:.1f}s"
        if self.not_written:
            why = "; ".join(f"{n} {reason}" for reason, n in sorted(self.not_written.items()))
            text += f" (tags not written: {why})"
        if self.interrupted:
            text = "interrupted: " + text
        return text


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class _Results:
    """What a scan found, on its way into the index: faces batched across photos through the age model,
    rows committed in transactions (every 200 photos or 2 seconds), failures recorded."""

    def __init__(self, index: Index, model: AgeModel, scheme: Any, options: ScanOptions, summary: ScanSummary,
                 on_failure: Callable[[str, str], None], progress: Any) -> None:
        self.index, self.model, self.scheme, self.opt = index, model, scheme, options
        self.summary, self.on_failure, self.progress = summary, on_failure, progress
        self.pending: deque[Analysis] = deque()
        self.pending_faces = 0
        self.rows: list[tuple[dict, list]] = []
        self.regroups: list[int] = []  # photo ids to regroup from the index, in the next transaction
        self.redated: list[tuple[str | None, int]] = []  # (new date, photo id): dates fixed in another tool
        self.handled: set[str] = set()  # index keys analysed or regrouped in this run
        self.last_commit = time.monotonic()
        self.saved = 0  # photos of this run committed to the index (analysed or regrouped)

    def fail(self, path: str, reason: str) -> None:
        """Name the file and the reason, and record it: unchanged, it is not tried (or reported) again."""
        self.summary.failures.append((path, reason))
        self.on_failure(path, reason)
        try:
            st = os.stat(path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size = mtime = None
        self.rows.append(({"path": path, "status": "failed", "error": reason, "scanned_at": _now(),
                           "face_count": None, "size": size, "mtime_ns": mtime, "model_id": self.model.model_id,
                           "scheme": self.scheme.name, "tags": None, "sha256": None}, []))

    def regroup(self, path: str, row: Any, dated: bool = False) -> None:
        """Same photo, same model: new groups (another scheme) and new tags (its metadata changed, or
        its last write failed) from the index, without the model. With `dated`, its date is read again:
        a date fixed in another tool re-dates its people."""
        if dated and (taken := taken_at(path)) != row["taken_at"]:
            self.redated.append((taken, row["id"]))
        self.regroups.append(row["id"])
        self.handled.add(row["path"])
        self.summary.regrouped += 1
        self.summary.tagged += 1
        self.summary.faces += row["face_count"] or 0
        self.flush_rows()

    def take(self, a: Analysis) -> None:
        if a.error is not None:
            self.fail(a.path, a.error)
            self.progress.update(1)
            return
        if a.distribution is not None:  # aged where it was analysed (a Ray actor)
            self.finish(a, a.distribution, a.female)
            self.progress.update(1)
            return
        self.pending.append(a)
        self.pending_faces += len(a.boxes)
        if self.pending_faces >= self.opt.batch_size:
            self.predict_pending()

    def predict_pending(self) -> None:
        if not self.pending:
            return
        batch = list(self.pending)
        self.pending.clear()
        self.pending_faces = 0
        age_faces(self.model, batch)  # batched across photos, in this process (a GPU's place)
        for a in batch:
            self.finish(a, a.distribution, a.female)
            self.progress.update(1)

    @staticmethod
    def _same_content(a: Analysis) -> bool:
        """Only its metadata changed (another tool's keywords, a scan of another index): the faces hold."""
        try:
            return a.content is not None and file_hashes(a.path)[1] == a.content
        except (OSError, PhotoError):
            return False

    def finish(self, a: Analysis, dist: np.ndarray, female: np.ndarray | None) -> None:
        """Store what was found; the tags are written from the index once people are settled (retag)."""
        if a.seen is not None and stat_key(a.path) != a.seen and not self._same_content(a):
            # Replaced or edited after the worker read it: these faces belong to the old file.
            self.fail(a.path, "changed while it was being scanned; left as it is (scanned again next run)")
            return
        try:
            st = os.stat(a.path)
            if a.digest is not None and (st.st_size, st.st_mtime_ns) == a.seen:
                digest, content = a.digest, a.content  # as the worker read it: not read again here
            else:
                digest, content = file_hashes(a.path)
        except OSError as exc:
            self.fail(a.path, f"disappeared while scanning: {exc.strerror or exc}")
            return
        row = {
            "path": a.path, "sha256": digest, "content_sha256": content, "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "format": a.format,
            "width": a.width, "height": a.height, "taken_at": a.taken_at, "scanned_at": _now(),
            "model_id": self.model.model_id, "scheme": self.scheme.name, "face_count": len(a.boxes),
            "status": "ok", "tags": PENDING, "error": None, "retag": 1,
        }
        face_rows = []
        for i, (b, p) in enumerate(zip(a.boxes, dist)):
            e = estimate(p, self.scheme, point=self.model.point)
            desc = a.descriptors[i] if a.descriptors is not None and i < len(a.descriptors) else None
            face_rows.append({
                "idx": i, "top": b.top, "right": b.right, "bottom": b.bottom, "left": b.left,
                "age": round(e.age, 2), "age_low": e.low, "age_high": e.high, "age_group": e.group,
                "group_prob": round(e.group_prob, 4), "scheme": self.scheme.name,
                "female_prob": None if female is None else round(float(female[i]), 4),
                "distribution": pack_distribution(p),
                "descriptor": None if desc is None else np.asarray(desc, "<f4").tobytes(),
                "age_photo": round(e.age, 2), "age_photo_low": e.low, "age_photo_high": e.high,
                "age_source": "photo", "person_distribution": None,
            })
        self.rows.append((row, face_rows))
        self.handled.add(Index.key(a.path))
        self.summary.tagged += 1
        self.summary.faces += len(a.boxes)
        self.flush_rows()

    def flush_rows(self, force: bool = False) -> None:
        waiting = len(self.rows) + len(self.regroups)
        if not waiting or (not force and waiting < 200 and time.monotonic() - self.last_commit < 2.0):
            return
        with self.index.transaction():
            for row, face_rows in self.rows:
                self.index.upsert_photo(row, face_rows)
            self.index.conn.executemany("UPDATE photos SET taken_at = ? WHERE id = ?", self.redated)
            for photo_id in self.regroups:
                regroup_faces(self.index, photo_id, self.scheme)
        self.saved += sum(row["status"] == "ok" for row, _ in self.rows) + len(self.regroups)
        self.rows.clear()
        self.regroups.clear()
        self.redated.clear()
        self.last_commit = time.monotonic()

    def drop_unsaved(self) -> None:
        """What no transaction could hold (a full disk): the next scan does it again."""
        self.rows.clear()
        self.regroups.clear()
        self.redated.clear()


class _Scan:
    """One scan: the walk and its triage (what needs the model, what only new groups or tags), the worker
    processes, then people and the tags, all in the index this scan holds the lock of."""

    def __init__(self, roots, index: Index, model: AgeModel, writer: Writer, options: ScanOptions,
                 on_failure: Callable[[str, str], None], progress: Any) -> None:
        self.roots = [os.path.abspath(r) for r in roots]
        self.index, self.model, self.writer, self.opt = index, model, writer, options
        self.real_roots = [os.path.realpath(r) for r in roots]
        self.scheme = get_scheme(options.scheme)
        self.on_failure, self.progress = on_failure, progress
        self.summary = ScanSummary()
        self.out = _Results(index, model, self.scheme, options, self.summary, on_failure, progress)
        # Faces indexed by a version that kept no descriptors: described again from their boxes.
        self.undescribed = {r[0] for r in index.conn.execute(
            "SELECT DISTINCT photo_id FROM faces WHERE descriptor IS NULL")}

    # -- triage ------------------------------------------------------------------------------
    def triage(self, path: str) -> str:
        """'analyse' (run the model), 'describe' (faces known, descriptors missing), 'skip' (the index
        has it as it is now), or 'done' (handled here: regrouped under a new scheme or for new tags,
        recognised as moved, or failed to stat)."""
        try:
            st = os.stat(path)
        except OSError as exc:
            self.out.fail(path, f"cannot read: {exc.strerror or exc}")
            return "done"
        row = self.index.photo(path)
        if row is not None and not self.opt.force and row["size"] == st.st_size and row["mtime_ns"] == st.st_mtime_ns:
            if row["status"] == "failed":
                if str(row["error"] or "").startswith(RETRIED):
                    return "analyse"
                self.summary.known_failures += 1
                return "skip"
            tags = str(row["tags"] or "")
            if row["status"] == "ok" and row["id"] in self.undescribed:
                return "describe"
            if row["model_id"] == self.model.model_id and not tags.startswith(FAILED):
                if row["scheme"] == self.scheme.name or tags == UNTAGGED:
                    return "skip"  # untagged by the user: stays so until scan --force
                self.out.regroup(path, row)
                return "done"
        if (row is not None and not self.opt.force and row["status"] == "ok" and row["content_sha256"]
                and row["model_id"] == self.model.model_id and row["tags"] != UNTAGGED):
            # The file changed: if only its metadata did (our own write, cut off before the index heard
            # of it, or keywords edited elsewhere), the faces are as they were: re-tag, no model.
            try:
                _, content = file_hashes(path)
            except OSError as exc:
                self.out.fail(path, f"cannot read: {exc.strerror or exc}")
                return "done"
            if content == row["content_sha256"]:
                self.out.regroup(path, row, dated=True)
                return "done"
        if row is None and not self.opt.force:
            try:
                digest = sha256_file(path)
            except OSError as exc:
                self.out.fail(path, f"cannot read: {exc.strerror or exc}")
                return "done"
            for old in self.index.photos_with_hash(digest):
                if old["path"] != Index.key(path) and not os.path.exists(Index.fs_path(old)) \
                        and old["model_id"] == self.model.model_id and old["scheme"] == self.scheme.name:
                    self.out.flush_rows(force=True)
                    with self.index.transaction():
                        self.index.move(old["path"], path, st.st_size, st.st_mtime_ns)
                    self.summary.moved += 1
                    return "done"
        return "analyse"

    # -- the run -----------------------------------------------------------------------------

    def tasks(self) -> Iterable[tuple[str, list[faces.Box] | None]]:
        seen = self.seen
        inodes: set[tuple[int, int]] = set()
        for item in walk(self.roots, exclude=self.opt.exclude, follow_symlinks=self.opt.follow_symlinks):
            if isinstance(item, StaleTemp):
                self.summary.stale_removed += self.writer.discard_stale(item.path, item.pid)
                continue
            self.summary.files_seen += isinstance(item, Path)
            if isinstance(item, WalkError):
                path = os.path.abspath(item.path)
                seen.add(path)  # its row (a failure record) is not 'missing'
                self.out.fail(path, item.reason)
                continue
            path = os.path.abspath(item)
            if path in seen:
                continue
            seen.add(path)
            try:  # one file under two names (a link, a hard link): scanned and written once
                st = os.stat(path)
                if (st.st_dev, st.st_ino) in inodes:
                    continue
                inodes.add((st.st_dev, st.st_ino))
            except OSError:
                pass  # triage names the problem
            verdict = self.triage(path)
            if verdict in ("analyse", "describe"):
                self.progress.total = (self.progress.total or 0) + 1
                self.progress.refresh()
                known = None
                if verdict == "describe":
                    known = [faces.Box(f["top"], f["right"], f["bottom"], f["left"]) for f in self.index.faces_of(path)]
                yield path, known
            elif verdict == "skip":
                self.summary.skipped += 1

    def run(self) -> ScanSummary:
        started, t0 = _now(), time.monotonic()
        full: IndexFullError | None = None
        self.seen: set[str] = set()
        o = self.opt
        args = o.analyse_args(keep_chips=self.model.input_kind == "chip")
        try:
            if o.ray is not None:
                found = ray_analyses(self.tasks(), args, self.model, o.ray)
            else:
                found = _local_analyses(self.tasks(), args, o.workers or os.cpu_count() or 1,
                                        "keras" if o.runtime == "keras" else None)
            with contextlib.closing(found):  # stopped early (Ctrl-C, a full disk): the pool stops too
                for analysis in found:
                    self.out.take(analysis)
            self.out.predict_pending()
            missing = self.index_missing()
            self.summary.missing = missing
            if self.opt.people:
                update_people(self.index)
            self.write_tags()
        except (KeyboardInterrupt, Interrupted):
            self.summary.interrupted = True
        except IndexFullError as exc:
            full = exc
        finally:
            self.summary.seconds = time.monotonic() - t0
            full = self._close(started, full)
        if full is not None:
            saved = self.out.saved
            raise IndexFullError(f"{full}: {saved} photo{'s' if saved != 1 else ''} of this scan saved in it; no "
                                 "photo was harmed. Free some space and scan again: it goes on where this scan "
                                 "stopped") from full
        return self.summary

    def _close(self, started: str, full: IndexFullError | None) -> IndexFullError | None:
        """Commit what is left and record the run; on a full disk, keep what was committed and say so."""
        if full is not None:  # what no transaction could hold is done again by the next scan
            self.out.drop_unsaved()
        try:
            self.out.flush_rows(force=True)
            with self.index.transaction():
                self.index.record_run({
                    "started_at": started, "finished_at": _now(), "roots": "\n".join(self.roots),
                    "files_seen": self.summary.files_seen, "skipped": self.summary.skipped,
                    "tagged": self.summary.tagged, "faces": self.summary.faces,
                    "failures": len(self.summary.failures), "exit_code": self.summary.exit_code,
                    "version": __version__, "model_id": self.model.model_id,
                })
        except IndexFullError as exc:
            return full or exc
        return full

    def write_tags(self) -> None:
        """Write the tags of every photo of this run marked for them, from the index (people settled)."""
        tagger = Retagger(self.index, self.writer, self.model.model_id, self.real_roots, write_target,
                          file_hashes, self.on_failure)
        keys = {Index.key(p) for p in self.seen}
        schemes = {self.scheme.name: self.scheme}
        out = tagger.run(tagger.marked(keys), lambda name: schemes.setdefault(name, get_scheme(name)))
        self.summary.failures += out.failures
        for reason, n in out.not_written.items():
            self.summary.not_written[reason] = self.summary.not_written.get(reason, 0) + n
        self.summary.retagged += sum(Index.key(p) not in self.out.handled for p in out.written)

    def index_missing(self) -> int:
        self.out.flush_rows(force=True)
        folders = [r for r in self.roots if os.path.isdir(r)]
        if not folders:
            return 0
        with self.index.transaction():
            return self.index.mark_missing(folders, self.seen, prune=self.opt.prune)


def _local_analyses(tasks: Iterable[tuple[str, list[faces.Box] | None]], args: tuple, workers: int,
                    engine: str | None = None) -> Iterator[Analysis]:
    """Each task's Analysis from a pool of worker processes on this machine (or this process alone),
    their networks run by the face engine `engine` (None: the default, LiteRT)."""
    if workers <= 1:
        before = faces.use_engine(engine)
        try:
            for path, known in tasks:
                yield analyse(path, *args, **known_boxes(known))
        finally:
            faces.use_engine(before)
        return
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=warm_worker,
                                initargs=(engine,)) as pool:
        try:
            inflight: set[cf.Future] = set()
            for path, known in tasks:
                inflight.add(pool.submit(analyse, path, *args, **known_boxes(known)))
                if len(inflight) >= workers * 4:
                    done, inflight = cf.wait(inflight, return_when=cf.FIRST_COMPLETED)
                    for fut in done:
                        yield fut.result()
            for fut in cf.as_completed(inflight):
                yield fut.result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


class _NoProgress:
    total: int | None = 0

    def update(self, n: int) -> None:
        pass

    def refresh(self) -> None:
        pass


def scan(roots: Iterable[str | Path], index: Index, model: AgeModel, *, writer: Writer | None = None,
         options: ScanOptions | None = None, on_failure: Callable[[str, str], None] | None = None,
         progress: Any = None) -> ScanSummary:
    """Scan `roots` into `index`, writing tags with `writer` (NullWriter: touch no photo)."""
    options = options or ScanOptions()
    if options.detector not in faces.DETECTORS:
        raise PhototagError(f"unknown detector {options.detector!r}: use auto, hog or cnn")
    for group in get_scheme(options.scheme).names:  # each becomes a keyword in every tagged photo
        if problem := keyword_problem(group):
            raise SchemeError(f"scheme {options.scheme!r}: the group name {group!r} {problem}")
    if options.runtime not in ("litert", "keras"):
        raise PhototagError(f"unknown runtime {options.runtime!r}: use litert or keras")
    if options.runtime == "keras" and options.ray is not None:
        raise PhototagError(GPU_WITH_RAY)
    if options.ray is not None and options.ray.device not in RAY_DEVICES:
        raise PhototagError(f"unknown Ray device {options.ray.device!r}: use cpu or gpu")
    if options.runtime == "keras" and model.prefer != "keras":
        model = load_model(model.path, runtime="keras")  # the age network's Keras copy, batched across photos
    return _Scan(list(roots), index, model, writer or NullWriter(), options, on_failure or (lambda p, r: None),
                 progress or _NoProgress()).run()
