"""The index's schema: its tables, indexes, triggers and views as SQL, and the upgrade of an index an
earlier version made. Every statement here is fixed text; values are always bound parameters."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..errors import PhototagError
from .dates import valid_taken_at

__all__ = ["SCHEMA_VERSION", "SCHEMA", "INDEXES", "VIEWS", "upgrade"]

SCHEMA_VERSION = 3  # 3: taken_at holds real dates only (an index of version 2 is repaired on opening)

SCHEMA = """
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
-- The user's "these are two people" (phototag people reject): suggest never shows the pair again,
-- and a merge of the two takes the decision back. person_a < person_b.
CREATE TABLE IF NOT EXISTS person_rejections (
    person_a INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    person_b INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    PRIMARY KEY (person_a, person_b),
    CHECK (person_a < person_b)
);

"""

# Indexes and triggers: created after an older index's tables are upgraded (they name new columns).
INDEXES = """
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
VIEWS = """
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


def upgrade(conn: sqlite3.Connection, path: Path) -> None:
    """Bring an index made by an earlier version up to this one, in place and in one transaction:
    new columns are added, every row and value is kept. Faces scanned before get their descriptors
    at the next scan, from their stored boxes."""
    version = int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise PhototagError(f"{path} was made by a newer phototag (index version {version}); "
                            "upgrade phototag to use it")
    columns = {c[1] for c in conn.execute("PRAGMA table_info(photos)")}
    if version == SCHEMA_VERSION and "retag" in columns:
        conn.executescript(INDEXES)
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'person_faces'").fetchone() is None:
            conn.executescript(VIEWS)
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        upgrades = {"photos": [("content_sha256", "TEXT"), ("path_bytes", "BLOB"), *_V2_COLUMNS["photos"]],
                    "faces": _V2_COLUMNS["faces"]}
        for table, added in upgrades.items():
            have = {c[1] for c in conn.execute(f"PRAGMA table_info({table})")}
            for column, kind in added:
                if column not in have:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                    have.add(column)
        conn.execute("UPDATE faces SET age_photo = age, age_photo_low = age_low, age_photo_high = age_high, "
                     "age_source = 'photo' WHERE age_photo IS NULL")
        _repair_dates(conn)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.executescript(INDEXES)  # idempotent: a kill before this point redoes it next open
    conn.executescript(VIEWS)


def _repair_dates(conn: sqlite3.Connection) -> None:
    """Version 3: a `taken_at` that is no real date (`0000-00-00T00:00:00`, `2019-13-45T99:00:00`)
    becomes none, a broken time of day is dropped; the people of those photos are dated again."""
    fixes = []
    for photo_id, taken in conn.execute("SELECT id, taken_at FROM photos WHERE taken_at IS NOT NULL"):
        if (valid := valid_taken_at(taken)) != taken:
            fixes.append((valid, photo_id))
    conn.executemany("UPDATE photos SET taken_at = ? WHERE id = ?", fixes)
    if fixes:
        # `people` lists these until the next people update recomputes them: recompute them now.
        conn.execute(
            "UPDATE people SET first_taken = (SELECT min(p.taken_at) FROM faces f JOIN photos p ON p.id = "
            "f.photo_id WHERE f.person_id = people.id AND p.status = 'ok'), last_taken = (SELECT "
            "max(p.taken_at) FROM faces f JOIN photos p ON p.id = f.photo_id WHERE f.person_id = people.id "
            "AND p.status = 'ok')")
