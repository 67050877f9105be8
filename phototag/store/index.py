"""The SQLite index: opening (and upgrading) it, the scan lock, transactions, and the writes a scan makes.

Tables (see docs/index.md for every column): `photos` (one row per file, keyed by path, with its content
hash so moved files are recognised), `faces` (one row per face, with the age distribution as 101
float16 values so any scheme can regroup it without the model), `runs` (one row per scan). WAL mode:
queries run while a scan writes and see only committed photos. All SQL is parameterised.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlite_utils

from ..errors import IndexFullError, IndexLockedError, PeopleError, PhototagError
from .schema import SCHEMA, SCHEMA_VERSION, upgrade

__all__ = ["Index", "default_db_path", "resolve_person", "row_json", "SCHEMA_VERSION"]

def default_db_path() -> Path:
    """`PHOTOTAG_DB`, else `phototag.db` in the user's data folder."""
    env = os.environ.get("PHOTOTAG_DB")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("phototag")) / "phototag.db"


class Index:
    """One SQLite index file. Use as a context manager; `lock()` for the one-scan-at-a-time rule."""

    def __init__(self, path: str | Path, *, create: bool = True, in_memory: bool = False) -> None:
        """Open (or create) the index; `in_memory` works on a copy and never writes the file (dry runs)."""
        self.path = Path(path)
        if not create and not self.path.exists():
            raise PhototagError(f"no index at {self.path} (run `phototag scan` first, or pass --db)")
        try:
            if in_memory:
                self.conn = sqlite3.connect(":memory:", isolation_level=None)
                if self.path.exists():
                    src = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
                    src.backup(self.conn)
                    src.close()
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            self.db = sqlite_utils.Database(self.conn)
            if not in_memory:
                self.db.enable_wal()
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            fresh = self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'photos'").fetchone() is None
            self.conn.executescript(SCHEMA)
            self.conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                              (str(SCHEMA_VERSION if fresh else 1),))
            upgrade(self.conn, self.path)
        except (sqlite3.DatabaseError, sqlite3.OperationalError) as exc:
            if _is_full(exc):
                raise _full(self.path) from exc
            raise PhototagError(f"{self.path}: not a usable phototag index ({exc})") from exc
        self._lock_fd: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self.unlock()
        self.conn.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lock(self, wait: float = 0.0) -> None:
        """Take the scan lock (a kernel flock, released even if the process is killed)."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise PhototagError(f"cannot open the scan lock {lock_path}: {exc.strerror or exc}") from None
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise IndexLockedError(
                        f"another phototag scan is using {self.path}; try again later or pass --wait SECONDS"
                    ) from None
                time.sleep(0.2)
        self._lock_fd = fd
        try:  # who holds it, for a person looking; the lock itself is the flock
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass  # a full disk: the lock holds all the same

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def transaction(self) -> "_Transaction":
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on an error); a full disk raises IndexFullError."""
        return _Transaction(self.conn, self.path)

    # -- photos ------------------------------------------------------------------------------
    # Methods take file-system paths (str, possibly with surrogate escapes for non-UTF-8 bytes) and
    # store a key SQLite can hold; `fs_path` turns a row back into the path to open.

    @staticmethod
    def key(path: str) -> str:
        """The `path` column for a file-system path: itself, or with undecodable bytes as \\xNN."""
        raw = os.fsencode(path)
        return raw.decode("utf-8", "backslashreplace")

    @staticmethod
    def fs_path(row: sqlite3.Row) -> str:
        return os.fsdecode(row["path_bytes"]) if row["path_bytes"] is not None else row["path"]

    def photo(self, path: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM photos WHERE path = ?", (self.key(path),)).fetchone()

    def photos_with_hash(self, sha256: str) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM photos WHERE sha256 = ? AND status != 'failed'", (sha256,)).fetchall()

    def move(self, old_key: str, new_path: str, size: int, mtime_ns: int) -> None:
        """The row keyed `old_key` now describes the file at `new_path`."""
        new_key = self.key(new_path)
        raw = os.fsencode(new_path) if new_key != new_path else None
        self.conn.execute("DELETE FROM photos WHERE path = ?", (new_key,))
        self.conn.execute("UPDATE photos SET path = ?, path_bytes = ?, size = ?, mtime_ns = ?, status = 'ok' "
                          "WHERE path = ?", (new_key, raw, size, mtime_ns, old_key))

    def upsert_photo(self, row: dict[str, Any], faces: list[dict[str, Any]]) -> int:
        """Insert or replace one photo (row["path"]: its file-system path) and its faces, in a transaction."""
        key = self.key(row["path"])
        row = {**row, "path": key, "path_bytes": os.fsencode(row["path"]) if key != row["path"] else None}
        cols = list(row)
        self.conn.execute(
            f"INSERT INTO photos ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) "
            f"ON CONFLICT(path) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in cols if c != 'path')}",
            [row[c] for c in cols],
        )
        photo_id = self.conn.execute("SELECT id FROM photos WHERE path = ?", (row["path"],)).fetchone()[0]
        self._replace_faces(photo_id, faces)
        return photo_id

    def _replace_faces(self, photo_id: int, faces: list[dict[str, Any]]) -> None:
        """The photo's faces become `faces`. A face found again where it was (boxes overlapping by half or
        more) is updated in place: it keeps its id, its person and the user's decisions about it."""
        old = self.conn.execute('SELECT id, top, right, bottom, left FROM faces WHERE photo_id = ?',
                                (photo_id,)).fetchall()
        pairs = sorted(((_iou(o, f), oi, fi) for oi, o in enumerate(old) for fi, f in enumerate(faces)),
                       reverse=True)
        kept: dict[int, int] = {}  # new face -> old face id
        used: set[int] = set()
        for iou, oi, fi in pairs:
            if iou >= 0.5 and oi not in used and fi not in kept:
                kept[fi] = old[oi]["id"]
                used.add(oi)
        gone = [o["id"] for i, o in enumerate(old) if i not in used]
        if gone:
            self.conn.executemany("DELETE FROM faces WHERE id = ?", [(i,) for i in gone])
        # idx is UNIQUE per photo: park the kept rows out of the way before renumbering them
        self.conn.executemany("UPDATE faces SET idx = -1 - idx WHERE id = ?", [(i,) for i in kept.values()])
        for fi, face in enumerate(faces):
            cols = list(face)
            if fi in kept:
                self.conn.execute(f"UPDATE faces SET {', '.join(f'{c} = ?' for c in cols)} WHERE id = ?",
                                  [*(face[c] for c in cols), kept[fi]])
            else:
                # executemany/execute, not sqlite-utils' insert_all: that commits, and this is one transaction.
                self.conn.execute(f"INSERT INTO faces (photo_id, {', '.join(cols)}) "
                                  f"VALUES (?, {', '.join('?' for _ in cols)})", [photo_id, *(face[c] for c in cols)])

    def mark_missing(self, under: list[str], seen: set[str], *, prune: bool = False) -> int:
        """Photos under `under` that the walk did not see: marked `missing` (or deleted with prune)."""
        gone = []
        seen_keys = {self.key(p) for p in seen}
        for root in under:
            root = self.key(root)
            prefix = root.rstrip("/") + "/"
            rows = self.conn.execute(
                "SELECT path, path_bytes FROM photos WHERE (path = ? OR substr(path, 1, ?) = ?) AND status != 'missing'",
                (root, len(prefix), prefix),
            ).fetchall()
            for r in rows:
                if r["path"] in seen_keys:
                    continue
                path = self.fs_path(r)
                if _gone(path):
                    gone.append(r["path"])
                elif os.path.isdir(path):  # a folder's failure record; the folder reads again now
                    self.conn.execute("DELETE FROM photos WHERE path = ?", (r["path"],))
        for p in gone:
            if prune:
                self.conn.execute("DELETE FROM photos WHERE path = ?", (p,))
            else:
                self.conn.execute("UPDATE photos SET status = 'missing' WHERE path = ?", (p,))
        return len(gone)

    def record_run(self, run: dict[str, Any]) -> None:
        cols = list(run)
        self.conn.execute(f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
                          [run[c] for c in cols])

    def failures(self) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT path, error FROM photos WHERE status = 'failed' ORDER BY path").fetchall()

    def faces_of(self, path: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT fa.*, pe.name AS person FROM faces fa JOIN photos p ON p.id = fa.photo_id "
            "LEFT JOIN people pe ON pe.id = fa.person_id WHERE p.path = ? ORDER BY fa.idx",
            (self.key(path),)).fetchall()


def _is_full(exc: BaseException) -> bool:
    """SQLITE_FULL: the disk is full, or the database reached its size limit."""
    return isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def _full(path: Path) -> IndexFullError:
    return IndexFullError(f"the disk that holds the index is full ({path})")


class _Transaction:
    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn, self.path = conn, path

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if _is_full(exc):
                raise _full(self.path) from exc
            raise
        return self.conn

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
                return
            except sqlite3.Error as commit_error:
                exc = commit_error
        if self.conn.in_transaction:  # SQLite may have rolled back already (a failed COMMIT, SQLITE_FULL)
            self.conn.execute("ROLLBACK")
        if _is_full(exc):  # nothing of this transaction was kept; everything committed before stays
            raise _full(self.path) from exc
        if exc_type is None:
            raise exc


def resolve_person(index: Index, ref: str | int) -> sqlite3.Row:
    """A person by id or by name (any case); PeopleError when there is none."""
    text = str(ref).strip()
    row = None
    if text.isdigit():
        row = index.conn.execute("SELECT * FROM people WHERE id = ?", (int(text),)).fetchone()
    if row is None:
        row = index.conn.execute("SELECT * FROM people WHERE name = ?", (text,)).fetchone()
    if row is None:
        raise PeopleError(f"no person {text!r} in the index (phototag people lists them)")
    return row


_BLOBS = frozenset({"distribution", "descriptor", "person_distribution", "path_bytes"})


def row_json(row: sqlite3.Row) -> dict[str, Any]:
    """A row's values for people to read: the binary columns left out."""
    return {k: row[k] for k in row.keys() if k not in _BLOBS}




def _iou(a: Any, b: Any) -> float:
    """Overlap of two (top, right, bottom, left) boxes, as intersection over union."""
    h = min(a["bottom"], b["bottom"]) - max(a["top"], b["top"])
    w = min(a["right"], b["right"]) - max(a["left"], b["left"])
    if h <= 0 or w <= 0:
        return 0.0
    area = lambda r: (r["bottom"] - r["top"]) * (r["right"] - r["left"])  # noqa: E731
    return h * w / (area(a) + area(b) - h * w)


def _gone(path: str | bytes) -> bool:
    """True only when the path is not there. A photo behind a folder we may not enter (or a disk that
    answers with an I/O error) is not missing: its row must survive a --prune run."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False
