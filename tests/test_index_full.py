"""The disk under the index fills during a scan, for real: a tmpfs with a few pages left, and SQLite's
own size limit. One `Error:` line saying so and how much was saved; photos untouched; the index
intact; the next scan with room finishes the work, each photo once."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from phototag.errors import IndexFullError
from phototag.store.index import Index
from phototag.ages.model import load_model
from phototag.scan.pipeline import ScanOptions, scan
from phototag.tags.exif import ExifWriter

from .conftest import exif_bytes, group_photo, save_jpeg, tree_digest

PHOTOS = 12


@pytest.fixture
def library(tmp_path, astronaut):
    lib = tmp_path / "lib"
    for i in range(PHOTOS):  # each a different file: a day's date apiece
        save_jpeg(lib / f"p{i:02}.jpg", group_photo(astronaut, 2, (1000, 700)),
                  exif_bytes(taken=f"2019:06:{i + 1:02} 12:00:00".encode()))
    return lib


def _counts(db: Path) -> tuple[str, int, int, int]:
    con = sqlite3.connect(db)
    try:
        return (con.execute("PRAGMA integrity_check").fetchone()[0],
                con.execute("SELECT count(*) FROM photos WHERE status = 'ok'").fetchone()[0],
                con.execute("SELECT count(DISTINCT path) FROM photos").fetchone()[0],
                con.execute("SELECT count(*) FROM faces").fetchone()[0])
    finally:
        con.close()


def test_the_index_reaching_sqlites_size_limit_stops_the_scan_with_what_was_saved(library, tmp_path, reliability):
    """SQLite's max_page_count, on the index the scan is given: SQLITE_FULL, as from a full disk."""
    db = tmp_path / "i.db"
    before = tree_digest(library)
    model = load_model()
    with Index(db) as index:
        pages = index.conn.execute("PRAGMA page_count").fetchone()[0]
        index.conn.execute(f"PRAGMA max_page_count = {pages + 2}")
        with pytest.raises(IndexFullError) as err:
            scan([library], index, model, writer=ExifWriter(), options=ScanOptions(workers=1))
    saved = int(re.fullmatch(rf"the disk that holds the index is full \({re.escape(str(db))}\): (\d+) photos? of "
                             r"this scan saved in it; no photo was harmed\. Free some space and scan again: it goes "
                             r"on where this scan stopped", str(err.value))[1])
    assert tree_digest(library) == before  # tags are written only once the index holds the faces
    check, ok, paths, _ = _counts(db)
    assert check == "ok" and ok == saved < PHOTOS
    with Index(db) as index:  # room again
        summary = scan([library], index, model, writer=ExifWriter(), options=ScanOptions(workers=1))
    assert summary.exit_code == 0 and summary.tagged == PHOTOS - saved and summary.skipped == saved
    assert _counts(db) == ("ok", PHOTOS, PHOTOS, 2 * PHOTOS)
    reliability("the index reaching SQLite's size limit (max_page_count) during a scan", 1,
                f"stopped with one error saying so and what was saved ({saved} of {PHOTOS}); photos untouched; "
                "index intact; the next scan finished the rest")


_FULL_DISK = textwrap.dedent("""\
    mount -t tmpfs -o size=2m tmpfs "$MNT" || exit 77
    "$PY" -c "from phototag.store.index import Index; Index('$MNT/i.db').close()" || exit 1
    free=$(df -k --output=avail "$MNT" | tail -n 1)
    dd if=/dev/zero of="$MNT/filler" bs=1k count=$((free - 32)) 2>/dev/null
    "$PY" -m phototag scan "$LIB" --db "$MNT/i.db" --workers 1 >"$OUT/1.out" 2>"$OUT/1.err"
    echo $? >"$OUT/1.rc"
    "$PY" -c "$DIGEST" >"$OUT/1.photos"
    cp "$MNT"/i.db* "$OUT/"
    rm "$MNT/filler"
    "$PY" -m phototag scan "$LIB" --db "$MNT/i.db" --workers 1 >"$OUT/2.out" 2>"$OUT/2.err"
    echo $? >"$OUT/2.rc"
    "$PY" -c "import sqlite3; sqlite3.connect('$MNT/i.db').execute('PRAGMA wal_checkpoint(TRUNCATE)')"
    cp "$MNT/i.db" "$OUT/after.db"
""")


def test_a_full_disk_under_the_index_is_one_error_line_and_the_next_scan_finishes(library, tmp_path,
                                                                                  reliability):
    """The issue's own case: the index on a small filesystem that fills mid-scan (a tmpfs with 32 KB
    left, in a mount namespace of its own). `python -m phototag`, as a user runs it."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) to mount a small tmpfs in a mount namespace")
    out, mnt = tmp_path / "out", tmp_path / "mnt"
    out.mkdir(), mnt.mkdir()
    digest = ("import hashlib, json, pathlib; root = pathlib.Path(%r); "
              "print(json.dumps({str(p.relative_to(root)): [hashlib.sha256(p.read_bytes()).hexdigest(), "
              "p.stat().st_mtime_ns] for p in sorted(root.rglob('*')) if p.is_file()}))" % str(library))
    env = {**os.environ, "PY": sys.executable, "MNT": str(mnt), "LIB": str(library), "OUT": str(out),
           "DIGEST": digest}
    before = tree_digest(library)
    r = subprocess.run(["unshare", "-m", "bash", "-c", _FULL_DISK], env=env, capture_output=True, text=True,
                       timeout=600)
    if r.returncode == 77 or "Operation not permitted" in r.stderr:
        pytest.skip(f"mounting a tmpfs is not permitted here ({r.stderr.strip()[:120]}); CI runs as root")
    assert r.returncode == 0, r.stderr
    rc, err = int((out / "1.rc").read_text()), (out / "1.err").read_text()
    assert rc == 2 and (out / "1.out").read_text() == ""
    m = re.fullmatch(rf"Error: the disk that holds the index is full \({re.escape(str(mnt))}/i\.db\): (\d+) "
                     r"photos? of this scan saved in it; no photo was harmed\. Free some space and scan again: it "
                     r"goes on where this scan stopped\n", err)
    assert m, err
    saved = int(m[1])
    assert json.loads((out / "1.photos").read_text()) == {k: list(v) for k, v in before.items()}  # untouched
    check, ok, _, _ = _counts(out / "i.db")
    assert check == "ok" and ok == saved < PHOTOS
    assert int((out / "2.rc").read_text()) == 0, (out / "2.err").read_text()
    assert f"{PHOTOS - saved} tagged, {2 * (PHOTOS - saved)} faces, 0 failed" in (out / "2.out").read_text()
    assert _counts(out / "after.db") == ("ok", PHOTOS, PHOTOS, 2 * PHOTOS)
    assert set(tree_digest(library)) == set(before)  # tagged now, no file added or lost
    reliability("the disk holding the index full during a scan (a tmpfs with 32 KB left)", 1,
                f"one Error line saying so and what was saved ({saved} of {PHOTOS}), exit 2; photos untouched; "
                "index intact; the next scan with room finished the rest, each photo once")
