"""Dates that are not dates: EXIF's camera defaults and damaged values are no date in the index, an
index that already holds them is repaired, and a date filter that is not a date is one `Error:` line."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phototag.cli import app
from phototag.store.dates import filter_date, from_exif, valid_taken_at
from phototag.scan.decode import decode
from phototag.store.index import Index

from .conftest import exif_bytes, group_photo, save_jpeg

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("raw, iso", [
    (b"2019:06:01 14:03:00", "2019-06-01T14:03:00"),
    (b"2019:06:01 14:03:00\x00", "2019-06-01T14:03:00"),
    ("2020:02:29 23:59:59", "2020-02-29T23:59:59"),
    (b"0000:00:00 00:00:00", None),  # a camera with no clock
    (b"    :  :     :  :  ", None),  # EXIF's own "unknown"
    (b"2019:13:45 99:00:00", None),  # no month 13
    (b"2019:02:30 10:00:00", None),  # no 30 February
    (b"2019:02:29 10:00:00", None),  # 2019 is no leap year
    (b"2019:06:01 99:00:00", "2019-06-01"),  # a real day, a broken time: the day is kept
    (b"2019:06:01   :  :  ", "2019-06-01"),
    (b"2019:06:01", "2019-06-01"),
    (b"2019-06-01 14:03:00", None),  # not EXIF's form
    (b"garbage", None), (b"", None), (None, None), (12345, None),
])
def test_exif_dates_are_real_dates_or_none(raw, iso):
    assert from_exif(raw) == iso


@pytest.mark.parametrize("stored, fixed", [
    ("2019-06-01T14:03:00", "2019-06-01T14:03:00"), ("2019-06-01", "2019-06-01"),
    ("0000-00-00T00:00:00", None), ("2019-13-45T99:00:00", None), ("2019-06-01T99:00:00", "2019-06-01"),
    ("", None), (None, None), ("nonsense", None),
])
def test_a_stored_date_is_repaired_to_a_real_one_or_none(stored, fixed):
    assert valid_taken_at(stored) == fixed


@pytest.mark.parametrize("text, start, end", [
    ("2019-06-01", "2019-06-01", "2019-06-01"), ("2019-06", "2019-06-01", "2019-06-30"),
    ("2020-02", "2020-02-01", "2020-02-29"), ("2019", "2019-01-01", "2019-12-31"),
    ("2019-06-01T14:03", "2019-06-01T14:03", "2019-06-01T14:03"),
])
def test_filter_dates_take_a_day_a_month_or_a_year(text, start, end):
    assert filter_date(text) == start and filter_date(text, end=True) == end


@pytest.fixture
def odd_dates(tmp_path, astronaut):
    """Photos of the same person whose EXIF dates are a camera default, damaged, and real."""
    lib = tmp_path / "lib"
    dates = {"default.jpg": b"0000:00:00 00:00:00", "damaged.jpg": b"2019:13:45 99:00:00",
             "late-time.jpg": b"2019:06:01 99:00:00", "real.jpg": b"2019:07:04 12:00:00"}
    for name, raw in dates.items():
        save_jpeg(lib / name, group_photo(astronaut, 1, (900, 700)), exif_bytes(taken=raw))
    return lib


def test_a_scan_stores_no_date_for_dates_that_are_not_dates(odd_dates, tmp_path, reliability):
    assert decode(odd_dates / "default.jpg").taken_at is None
    db = tmp_path / "i.db"
    r = run("scan", odd_dates, "--db", db, "--workers", "1")
    assert r.exit_code == 0, r.output
    con = sqlite3.connect(db)
    taken = dict((Path(p).name, t) for p, t in con.execute("SELECT path, taken_at FROM photos"))
    assert taken == {"default.jpg": None, "damaged.jpg": None, "late-time.jpg": "2019-06-01",
                     "real.jpg": "2019-07-04T12:00:00"}
    first = con.execute("SELECT min(first_taken) FROM people").fetchone()[0]
    con.close()
    assert first == "2019-06-01"
    people = run("people", "--db", db, "--format", "json")
    assert all(p["first"] != "0000-00-00" for p in json.loads(people.stdout))
    assert run("query", "--db", db, "--since", "2019-06", "--until", "2019-06", "--format", "paths").stdout \
        == f"{odd_dates / 'late-time.jpg'}\n"
    reliability("EXIF dates that are not dates (0000:00:00, 2019:13:45 99:00:00)", 2,
                "stored as no date (a real day with a broken time keeps its day); people's dates ignore them")


def test_an_index_holding_such_dates_is_repaired_when_opened(odd_dates, tmp_path, reliability):
    """An index of the previous version (2) stored the raw text: opened by this one, it is repaired in
    place, every other value kept, and `people` lists real dates at once."""
    db = tmp_path / "i.db"
    assert run("scan", odd_dates, "--db", db, "--workers", "1").exit_code == 0
    con = sqlite3.connect(db)
    con.execute("UPDATE photos SET taken_at = '0000-00-00T00:00:00' WHERE path LIKE '%default.jpg'")
    con.execute("UPDATE photos SET taken_at = '2019-13-45T99:00:00' WHERE path LIKE '%damaged.jpg'")
    con.execute("UPDATE photos SET taken_at = '2019-06-01T99:00:00' WHERE path LIKE '%late-time.jpg'")
    con.execute("UPDATE people SET first_taken = '0000-00-00T00:00:00'")
    con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    con.commit()
    other = con.execute("SELECT id, path, sha256, face_count FROM photos ORDER BY id").fetchall()
    con.close()
    people = json.loads(run("people", "--db", db, "--format", "json").stdout)
    assert [p["first"] for p in people] == ["2019-06-01"]
    con = sqlite3.connect(db)
    assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "3"
    assert sorted(t for (t,) in con.execute("SELECT taken_at FROM photos") if t) == ["2019-06-01",
                                                                                     "2019-07-04T12:00:00"]
    assert con.execute("SELECT id, path, sha256, face_count FROM photos ORDER BY id").fetchall() == other
    con.close()
    reliability("an index holding dates that are not dates (made by the previous version)", 1,
                "repaired when opened: no date, or the day alone; every other value kept")


@pytest.mark.parametrize("command", ["query", "export", "contact-sheet"])
@pytest.mark.parametrize("option, value, why", [
    ("--since", "2019-02-30", " (day is out of range for month)"),
    ("--until", "2019-13", " (month must be in 1..12)"),
    ("--since", "1st of May", ""),
    ("--until", "2019-06-01T25:00", " (hour must be in 0..23)"),
])
def test_a_date_filter_that_is_not_a_date_is_one_error_line(tmp_path, command, option, value, why):
    db = tmp_path / "i.db"
    Index(db).close()
    extra = ["--out", tmp_path / "sheet.jpg"] if command == "contact-sheet" else []
    r = run(command, "--db", db, option, value, *extra)
    assert r.exit_code == 2
    assert r.stderr == f"Error: {option} {value!r} is not a date{why}: use YYYY-MM-DD, YYYY-MM or YYYY\n"
    assert r.stdout == ""
    assert not (tmp_path / "sheet.jpg").exists()
