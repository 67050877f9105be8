"""The SQLite index: schema, upserts, queries, the scan lock.

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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import sqlite_utils

from .dates import filter_date, valid_taken_at
from .errors import IndexFullError, IndexLockedError, PhototagError

__all__ = ["Index", "QueryFilters", "default_db_path", "SCHEMA_VERSION"]

SCHEMA_VERSION = 3  # 3: taken_at holds real dates only (an index of version 2 is repaired on opening)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS photos (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,          -- absolute path (bytes that are not UTF-8 as backslash escapes)
    path_bytes BLOB,                    -- the path's raw bytes, only when it is not valid UTF-8
    sha256 TEXT,                        -- of the file as it is now (after tagging)
    content_sha256 TEXT,                -- of its bytes outside EXIF: unchanged = only metadata changed
    size INTEGER,
    mtime_ns INTEGER,
    format TEXT,
    width INTEGER,                      -- as shown (EXIF orientation applied)
    height INTEGER,
    taken_at TEXT,                      -- EXIF DateTimeOriginal, ISO 8601, local time
    scanned_at TEXT,                    -- UTC, ISO 8601
    model_id TEXT,
    scheme TEXT,
    face_count INTEGER,
    status TEXT NOT NULL,               -- ok | failed | missing
    tags TEXT,                          -- what happened to the tags in the file
    error TEXT,                         -- why it failed, when status = 'failed'
    retag INTEGER NOT NULL DEFAULT 0    -- 1: its tags must be rewritten from the index (no model)
);
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY,
    photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,               -- 0.. in the photo, largest face first
    top INTEGER, right INTEGER, bottom INTEGER, left INTEGER,  -- full-resolution pixels, as shown
    age REAL,                           -- the age shown, in years: the model's point estimate (its card's outputs.age.point)
    age_low INTEGER, age_high INTEGER,  -- central 80% interval
    age_group TEXT,
    group_prob REAL,
    scheme TEXT,
    female_prob REAL,
    distribution BLOB,                  -- 101 float16, little-endian: P(age = 0..100), the face's own
    descriptor BLOB,                    -- dlib's 128-d face descriptor, float32 little-endian
    person_id INTEGER REFERENCES people(id) ON DELETE SET NULL,
    age_photo REAL,                     -- the face's own estimate (age above: the one phototag uses)
    age_photo_low INTEGER, age_photo_high INTEGER,
    age_source TEXT,                    -- photo | person (birth estimated) | birth (birth date given)
    person_distribution BLOB,           -- P(completed years) its person implies, when age_source != photo
    UNIQUE (photo_id, idx)
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started_at TEXT, finished_at TEXT, roots TEXT, files_seen INTEGER, skipped INTEGER, tagged INTEGER,
    faces INTEGER, failures INTEGER, exit_code INTEGER, version TEXT, model_id TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS people (
    id INTEGER PRIMARY KEY,
    name TEXT UNIQUE COLLATE NOCASE,    -- given by the user; NULL until then
    birth_given TEXT,                   -- YYYY-MM-DD, given by the user: every age of theirs is exact
    birth_est TEXT,                     -- estimated from the dated faces (YYYY-MM-DD), and its
    birth_low TEXT, birth_high TEXT,    --   central 80 % interval
    birth_faces INTEGER,                -- dated faces the estimate used
    birth_conflict INTEGER NOT NULL DEFAULT 0,  -- 1: the faces cannot share one birth date (two people?)
    face_count INTEGER NOT NULL DEFAULT 0,
    photo_count INTEGER NOT NULL DEFAULT 0,
    first_taken TEXT, last_taken TEXT,
    created_at TEXT,
    dirty INTEGER NOT NULL DEFAULT 1    -- its faces changed: birth and ages are recomputed next update
);
-- The user's "this face is not that person": kept, so no later grouping puts it back.
CREATE TABLE IF NOT EXISTS face_exclusions (
    face_id INTEGER NOT NULL REFERENCES faces(id) ON DELETE CASCADE,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    PRIMARY KEY (face_id, person_id)
);

"""

# Indexes and triggers: created after an older index's tables are upgraded (they name new columns).
_INDEXES = """
CREATE INDEX IF NOT EXISTS faces_age_group ON faces(age_group);
CREATE INDEX IF NOT EXISTS faces_age ON faces(age);
CREATE INDEX IF NOT EXISTS faces_photo ON faces(photo_id);
CREATE INDEX IF NOT EXISTS photos_taken_at ON photos(taken_at);
CREATE INDEX IF NOT EXISTS photos_sha256 ON photos(sha256);
CREATE INDEX IF NOT EXISTS photos_status ON photos(status);
CREATE INDEX IF NOT EXISTS faces_person ON faces(person_id);
-- What a nightly scan asks every time, answered without reading every face's blobs.
CREATE INDEX IF NOT EXISTS faces_undescribed ON faces(photo_id) WHERE descriptor IS NULL;
CREATE INDEX IF NOT EXISTS faces_unassigned ON faces(photo_id) WHERE person_id IS NULL;
CREATE INDEX IF NOT EXISTS photos_retag ON photos(retag) WHERE retag = 1;
-- A person's birth date and ages follow their faces: any change to them marks the person for the
-- next people update, whoever made it (a scan, a merge, a prune, another tool).
CREATE TRIGGER IF NOT EXISTS faces_person_insert AFTER INSERT ON faces WHEN NEW.person_id IS NOT NULL
BEGIN UPDATE people SET dirty = 1 WHERE id = NEW.person_id; END;
CREATE TRIGGER IF NOT EXISTS faces_person_delete AFTER DELETE ON faces WHEN OLD.person_id IS NOT NULL
BEGIN UPDATE people SET dirty = 1 WHERE id = OLD.person_id; END;
CREATE TRIGGER IF NOT EXISTS faces_person_update AFTER UPDATE OF person_id, distribution ON faces
BEGIN UPDATE people SET dirty = 1 WHERE id IN (OLD.person_id, NEW.person_id); END;
CREATE TRIGGER IF NOT EXISTS photos_date_update AFTER UPDATE OF taken_at, status ON photos
WHEN OLD.taken_at IS NOT NEW.taken_at OR OLD.status IS NOT NEW.status
BEGIN UPDATE people SET dirty = 1 WHERE id IN (SELECT person_id FROM faces WHERE photo_id = NEW.id); END;
"""

# For people browsing the index with Datasette or sqlite-utils: one row per photo with its groups, one
# row per face with its photo and person, one row per face of each person. Recreated on upgrade.
_VIEWS = """
DROP VIEW IF EXISTS photo_groups;
DROP VIEW IF EXISTS face_photos;
DROP VIEW IF EXISTS person_faces;
CREATE VIEW photo_groups AS
SELECT p.id AS photo_id, p.path, p.taken_at, p.width, p.height, p.face_count,
       (SELECT group_concat(age_group, ', ') FROM
           (SELECT age_group FROM faces WHERE photo_id = p.id GROUP BY age_group ORDER BY min(age)))
           AS age_groups,
       (SELECT min(age) FROM faces WHERE photo_id = p.id) AS youngest,
       (SELECT max(age) FROM faces WHERE photo_id = p.id) AS oldest,
       p.scheme, p.model_id
FROM photos p WHERE p.status = 'ok';
CREATE VIEW face_photos AS
SELECT f.id AS face_id, f.photo_id, p.path, p.taken_at, f.idx, f.age, f.age_low, f.age_high, f.age_group,
       f.group_prob, f.female_prob, f.scheme, f.top, f.right, f.bottom, f.left, p.width, p.height, p.model_id,
       f.person_id, pe.name AS person, f.age_photo, f.age_source
FROM faces f JOIN photos p ON p.id = f.photo_id LEFT JOIN people pe ON pe.id = f.person_id
WHERE p.status = 'ok';
CREATE VIEW person_faces AS
SELECT pe.id AS person_id, pe.name AS person, coalesce(pe.birth_given, pe.birth_est) AS born,
       pe.birth_given IS NOT NULL AS born_given, f.id AS face_id, p.path, p.taken_at, f.age, f.age_group,
       f.age_photo, f.age_source, f.top, f.right, f.bottom, f.left
FROM people pe JOIN faces f ON f.person_id = pe.id JOIN photos p ON p.id = f.photo_id
WHERE p.status = 'ok';
"""

# Columns that schema version 2 added to an index made by an earlier version.
_V2_COLUMNS = {
    "photos": [("retag", "INTEGER NOT NULL DEFAULT 0")],
    "faces": [("descriptor", "BLOB"), ("person_id", "INTEGER REFERENCES people(id) ON DELETE SET NULL"),
              ("age_photo", "REAL"), ("age_photo_low", "INTEGER"), ("age_photo_high", "INTEGER"),
              ("age_source", "TEXT"), ("person_distribution", "BLOB")],
}


def default_db_path() -> Path:
    """`PHOTOTAG_DB`, else `phototag.db` in the user's data folder."""
    env = os.environ.get("PHOTOTAG_DB")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("phototag")) / "phototag.db"


def pack_distribution(p: np.ndarray) -> bytes:
    return np.asarray(p, dtype="<f2").tobytes()


def unpack_distribution(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f2").astype(np.float32)


@dataclass
class QueryFilters:
    """`phototag query` filters; every one becomes a bound parameter, never SQL text."""

    groups: tuple[str, ...] = ()
    min_age: float | None = None
    max_age: float | None = None
    since: str | None = None
    until: str | None = None
    path_glob: str | None = None
    min_faces: int | None = None
    scheme: str | None = None  # regroup under this scheme (from the stored distributions)
    person: str | None = None  # a person's name (any case) or id

    def checked(self) -> "QueryFilters":
        """These filters with their dates as the index compares them (`--since 2019` from 2019-01-01,
        `--until 2019-06` to 2019-06-30); a date that is not one (`2019-02-30`) is refused, since it
        would silently compare as text."""
        dates = {}
        for field_, option, end in (("since", "--since", False), ("until", "--until", True)):
            value = getattr(self, field_)
            if value is not None:
                try:
                    dates[field_] = filter_date(value, end=end)
                except ValueError as exc:
                    why = f" ({exc})" if str(exc) else ""
                    raise PhototagError(f"{option} {value!r} is not a date{why}: use YYYY-MM-DD, "
                                        "YYYY-MM or YYYY") from None
        return replace(self, **dates)


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
            self.conn.executescript(_SCHEMA)
            self.conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                              (str(SCHEMA_VERSION if fresh else 1),))
            self._upgrade()
        except (sqlite3.DatabaseError, sqlite3.OperationalError) as exc:
            if _is_full(exc):
                raise _full(self.path) from exc
            raise PhototagError(f"{self.path}: not a usable phototag index ({exc})") from exc
        self._lock_fd: int | None = None

    def _upgrade(self) -> None:
        """Bring an index made by an earlier version up to this one, in place and in one transaction:
        new columns are added, every row and value is kept. Faces scanned before get their descriptors
        at the next scan, from their stored boxes."""
        version = int(self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise PhototagError(f"{self.path} was made by a newer phototag (index version {version}); "
                                "upgrade phototag to use it")
        columns = {c[1] for c in self.conn.execute("PRAGMA table_info(photos)")}
        if version == SCHEMA_VERSION and "retag" in columns:
            self.conn.executescript(_INDEXES)
            if self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'person_faces'").fetchone() is None:
                self.conn.executescript(_VIEWS)
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            upgrades = {"photos": [("content_sha256", "TEXT"), ("path_bytes", "BLOB"), *_V2_COLUMNS["photos"]],
                        "faces": _V2_COLUMNS["faces"]}
            for table, added in upgrades.items():
                have = {c[1] for c in self.conn.execute(f"PRAGMA table_info({table})")}
                for column, kind in added:
                    if column not in have:
                        self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                        have.add(column)
            self.conn.execute("UPDATE faces SET age_photo = age, age_photo_low = age_low, age_photo_high = age_high, "
                              "age_source = 'photo' WHERE age_photo IS NULL")
            self._repair_dates()
            self.conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.executescript(_INDEXES)  # idempotent: a kill before this point redoes it next open
        self.conn.executescript(_VIEWS)

    def _repair_dates(self) -> None:
        """Version 3: a `taken_at` that is no real date (`0000-00-00T00:00:00`, `2019-13-45T99:00:00`)
        becomes none, a broken time of day is dropped; the people of those photos are dated again."""
        fixes = []
        for photo_id, taken in self.conn.execute("SELECT id, taken_at FROM photos WHERE taken_at IS NOT NULL"):
            if (valid := valid_taken_at(taken)) != taken:
                fixes.append((valid, photo_id))
        self.conn.executemany("UPDATE photos SET taken_at = ? WHERE id = ?", fixes)
        if fixes:
            # `people` lists these until the next people update recomputes them: recompute them now.
            self.conn.execute(
                "UPDATE people SET first_taken = (SELECT min(p.taken_at) FROM faces f JOIN photos p ON p.id = "
                "f.photo_id WHERE f.person_id = people.id AND p.status = 'ok'), last_taken = (SELECT "
                "max(p.taken_at) FROM faces f JOIN photos p ON p.id = f.photo_id WHERE f.person_id = people.id "
                "AND p.status = 'ok')")

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

    # -- queries -----------------------------------------------------------------------------

    def faces_rows(self, f: QueryFilters) -> Iterator[sqlite3.Row]:
        """Faces (joined to their photo) matching the photo-level and age filters."""
        where, params = self._photo_where(f)
        self._age_where(f, where, params)
        sql = (
            "SELECT p.id AS photo_id, p.path, p.taken_at, p.face_count, p.model_id, fa.idx, fa.top, fa.right, "
            "fa.bottom, fa.left, fa.age, fa.age_low, fa.age_high, fa.age_group, fa.group_prob, fa.scheme, "
            "fa.female_prob, fa.distribution, fa.person_distribution, fa.person_id, pe.name AS person, "
            "fa.age_photo, fa.age_source FROM photos p JOIN faces fa ON fa.photo_id = p.id "
            "LEFT JOIN people pe ON pe.id = fa.person_id "
            f"WHERE {' AND '.join(where)} ORDER BY p.taken_at, p.path, fa.idx"
        )
        # A plain loop, not `yield from`: a generator dropped after the index is closed would otherwise
        # close the cursor then, and Python prints that error's traceback while it exits.
        for row in self.conn.execute(sql, params):
            yield row

    @staticmethod
    def _age_where(f: QueryFilters, where: list[str], params: list[Any]) -> None:
        """Add the face filters (age, person), on faces aliased `fa`."""
        if f.person is not None:
            where.append("fa.person_id IN (SELECT id FROM people WHERE name = ? OR CAST(id AS TEXT) = ?)")
            params += [f.person, f.person]
        if f.min_age is not None:
            where.append("fa.age >= ?"); params.append(float(f.min_age))
        if f.max_age is not None:
            where.append("fa.age <= ?"); params.append(float(f.max_age))

    @staticmethod
    def _photo_where(f: QueryFilters, only_ok: bool = True) -> tuple[list[str], list[Any]]:
        """SQL conditions (with `?` parameters, never pasted values) for the photo-level filters."""
        where: list[str] = ["p.status = 'ok'"] if only_ok else []
        params: list[Any] = []
        if f.since:
            where.append("p.taken_at >= ?"); params.append(f.since)
        if f.until:
            where.append("p.taken_at < ?" if "T" in f.until else "substr(p.taken_at, 1, 10) <= ?")
            params.append(f.until)
        if f.path_glob:
            where.append("p.path GLOB ?"); params.append(f.path_glob)
        if f.min_faces is not None:
            where.append("p.face_count >= ?"); params.append(int(f.min_faces))
        return where, params

    def stats(self) -> dict[str, Any]:
        c = self.conn
        by_status = {r[0]: r[1] for r in c.execute("SELECT status, count(*) FROM photos GROUP BY status")}
        groups = {r[0]: r[1] for r in c.execute(
            "SELECT fa.age_group, count(*) FROM faces fa JOIN photos p ON p.id = fa.photo_id "
            "WHERE p.status = 'ok' GROUP BY fa.age_group ORDER BY min(fa.age)")}
        last = c.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        models = [r[0] for r in c.execute("SELECT DISTINCT model_id FROM photos WHERE model_id IS NOT NULL")]
        schemes = [r[0] for r in c.execute("SELECT DISTINCT scheme FROM faces WHERE scheme IS NOT NULL")]
        return {
            "index": str(self.path),
            "photos": sum(by_status.values()),
            "photos_by_status": by_status,
            "photos_with_faces": c.execute("SELECT count(*) FROM photos WHERE status = 'ok' AND face_count > 0")
            .fetchone()[0],
            "faces": sum(groups.values()),
            "faces_by_group": groups,
            "people": c.execute("SELECT count(*) FROM people WHERE face_count >= 2 OR name IS NOT NULL")
            .fetchone()[0],
            "people_named": c.execute("SELECT count(*) FROM people WHERE name IS NOT NULL").fetchone()[0],
            "schemes": schemes,
            "models": models,
            "last_scan": dict(last) if last else None,
        }

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


_BLOBS = frozenset({"distribution", "descriptor", "person_distribution", "path_bytes"})


def row_json(row: sqlite3.Row) -> dict[str, Any]:
    """A row's values for people to read: the binary columns left out."""
    return {k: row[k] for k in row.keys() if k not in _BLOBS}


__all__ += ["pack_distribution", "unpack_distribution", "row_json"]


class _FaceFilter:
    """The face-level part of the filters: groups (under `filters.scheme` when given), regrouping."""

    def __init__(self, index: Index, filters: QueryFilters) -> None:
        from .errors import SchemeError

        filters = filters.checked()
        from .groups import get_scheme

        self.scheme = get_scheme(filters.scheme) if filters.scheme else None
        self.filters = filters  # with the person named by id, once resolved the way `people` resolves them
        if filters.person is not None:
            from .people import resolve_person

            self.filters = replace(filters, person=str(resolve_person(index, filters.person)["id"]))
        self.wanted: set[str] | None = None
        if filters.groups:
            names = self.scheme.names if self.scheme else sorted({r[0] for r in index.conn.execute(
                "SELECT DISTINCT age_group FROM faces")} | set(get_scheme(None).names))
            lookup = {n.lower(): n for n in names}
            self.wanted = set()
            for g in filters.groups:
                if g.lower() not in lookup:
                    where = f"scheme {self.scheme.name}" if self.scheme else "the index"
                    raise SchemeError(f"unknown group {g!r} in {where} (groups: {', '.join(names)})")
                self.wanted.add(lookup[g.lower()])

    def __call__(self, row: sqlite3.Row) -> dict[str, Any] | None:
        """The face as a dict (regrouped if asked), or None when it does not match."""
        from .retag import used_estimate

        item = row_json(row)
        if self.scheme is not None and row["scheme"] != self.scheme.name and row["distribution"]:
            e = used_estimate(row, self.scheme)
            item.update(age_group=e.group, group_prob=round(e.group_prob, 4), scheme=self.scheme.name,
                        age_low=e.low, age_high=e.high)
        if self.wanted is not None and item["age_group"] not in self.wanted:
            return None
        return item


def query(index: Index, filters: QueryFilters) -> list[dict[str, Any]]:
    """Matching faces, one dict each; groups recomputed from the distribution under `filters.scheme`."""
    keep = _FaceFilter(index, filters)
    return [item for item in map(keep, index.faces_rows(keep.filters)) if item is not None]


def export(index: Index, filters: QueryFilters) -> Iterator[dict[str, Any]]:
    """Every column of every matching photo, with a `faces` list holding every column of its matching
    faces (the age distribution as 101 probabilities). Streams, so 100,000 photos need little memory.

    Photo filters (dates, path, face count) apply as in `query`. With an age or group filter only
    photos with a matching face come out; without one, every photo does: failed and missing ones
    too (their `status` and `error` say why), since an export is a full record of the index."""
    keep = _FaceFilter(index, filters)
    filters = keep.filters
    face_filter = (filters.groups or filters.min_age is not None or filters.max_age is not None
                   or filters.person is not None)
    where, params = index._photo_where(filters, only_ok=bool(face_filter))
    sql = f"SELECT * FROM photos p WHERE {' AND '.join(where) or '1'} ORDER BY p.taken_at, p.path"
    face_where: list[str] = ["fa.photo_id = ?"]
    face_params: list[Any] = []
    index._age_where(filters, face_where, face_params)
    face_sql = (f"SELECT fa.*, pe.name AS person FROM faces fa LEFT JOIN people pe ON pe.id = fa.person_id "
                f"WHERE {' AND '.join(face_where)} ORDER BY fa.idx")
    for photo in index.conn.execute(sql, params):  # one read snapshot while the statement is open
        item = {k: photo[k] for k in photo.keys() if k != "path_bytes"}
        found = []
        for face in index.conn.execute(face_sql, [photo["id"], *face_params]):
            f = keep(face)
            if f is None:
                continue
            f["distribution"] = ([round(float(x), 5) for x in unpack_distribution(face["distribution"])]
                                 if face["distribution"] else None)
            found.append(f)
        if face_filter and not found:
            continue
        item["faces"] = found
        yield item


__all__ += ["query", "export"]


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
