-- The schema of a phototag index made by version 0.1.0 (index version 1), as that version wrote it:
-- tests/test_people.py builds an old index from it and checks the upgrade in place.
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
    error TEXT                          -- why it failed, when status = 'failed'
);
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY,
    photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,               -- 0.. in the photo, largest face first
    top INTEGER, right INTEGER, bottom INTEGER, left INTEGER,  -- full-resolution pixels, as shown
    age REAL,                           -- expected age in years
    age_low INTEGER, age_high INTEGER,  -- central 80% interval
    age_group TEXT,
    group_prob REAL,
    scheme TEXT,
    female_prob REAL,
    distribution BLOB,                  -- 101 float16, little-endian: P(age = 0..100)
    UNIQUE (photo_id, idx)
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started_at TEXT, finished_at TEXT, roots TEXT, files_seen INTEGER, skipped INTEGER, tagged INTEGER,
    faces INTEGER, failures INTEGER, exit_code INTEGER, version TEXT, model_id TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE INDEX IF NOT EXISTS faces_age_group ON faces(age_group);
CREATE INDEX IF NOT EXISTS faces_age ON faces(age);
CREATE INDEX IF NOT EXISTS faces_photo ON faces(photo_id);
CREATE INDEX IF NOT EXISTS photos_taken_at ON photos(taken_at);
CREATE INDEX IF NOT EXISTS photos_sha256 ON photos(sha256);
CREATE INDEX IF NOT EXISTS photos_status ON photos(status);
-- For people browsing the index with Datasette or sqlite-utils: one row per photo with its groups,
-- one row per face with its photo.
CREATE VIEW IF NOT EXISTS photo_groups AS
SELECT p.id AS photo_id, p.path, p.taken_at, p.width, p.height, p.face_count,
       (SELECT group_concat(age_group, ', ') FROM
           (SELECT age_group FROM faces WHERE photo_id = p.id GROUP BY age_group ORDER BY min(age)))
           AS age_groups,
       (SELECT min(age) FROM faces WHERE photo_id = p.id) AS youngest,
       (SELECT max(age) FROM faces WHERE photo_id = p.id) AS oldest,
       p.scheme, p.model_id
FROM photos p WHERE p.status = 'ok';
CREATE VIEW IF NOT EXISTS face_photos AS
SELECT f.id AS face_id, f.photo_id, p.path, p.taken_at, f.idx, f.age, f.age_low, f.age_high, f.age_group,
       f.group_prob, f.female_prob, f.scheme, f.top, f.right, f.bottom, f.left, p.width, p.height, p.model_id
FROM faces f JOIN photos p ON p.id = f.photo_id WHERE p.status = 'ok';
INSERT INTO meta(key, value) VALUES ('schema_version', '1');
