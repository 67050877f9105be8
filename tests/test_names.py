"""A person's name in every reader of the tags: accepted names read back by exiftool as exactly one
person, refused ones get one `Error:` line and change nothing, and a name or keyword that the tags
cannot hold never stops a scan (the retag step reports the photo and goes on)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phototag.cli import app
from phototag.ages.groups import AgeGroup, Scheme
from phototag.store.index import Index
from phototag.scan.pipeline import file_hashes, write_target
from phototag.tags.retag import Retagger
from phototag.tags.exif import ExifWriter

from .conftest import ROOT, copy_scanned, exif_bytes, exiftool, save_jpeg, tree_digest

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def sample_scan(tmp_path_factory):
    """The README's sample, scanned once with sidecars (the tests copy it)."""
    root = tmp_path_factory.mktemp("sample")
    lib = root / "sample"
    shutil.copytree(ROOT / "examples" / "photos", lib, copy_function=shutil.copy2)
    r = run("scan", lib, "--db", root / "s.db", "--workers", "1", "--sidecar")
    assert r.exit_code == 0, r.output
    return lib, root / "s.db"


@pytest.fixture
def sample(sample_scan, tmp_path):
    """(library, index, the id of the person seen twice) in a fresh copy."""
    lib, db = copy_scanned(*sample_scan, tmp_path)
    return lib, db, _rows(db, "SELECT id FROM people WHERE face_count = 2")[0][0]


def _rows(db: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _photos_of(db: Path, person: int) -> list[Path]:
    return sorted(Path(p) for (p,) in _rows(db, f"SELECT DISTINCT p.path FROM photos p JOIN faces f ON "
                                                f"f.photo_id = p.id WHERE f.person_id = {int(person)}"))


REFUSED = [
    ("Robert'); DROP TABLE faces;--", "holds ';' (character 9), which Windows' XPKeywords (Explorer's Tags) puts "
                                      "between keywords: it would read as two keywords"),
    ("AC/DC", "holds '/' (character 3), which digiKam's tag paths put between levels: People/A/B would read "
              "as a person B inside a tag A"),
    ("Anna|Bea", "holds '|' (character 5), which Lightroom's hierarchical keywords put between levels: "
                 "People|A|B would read as a person B inside a tag A"),
    ("Smith, John", "holds ',' (character 6), which exiftool, Lightroom's keyword field and most photo tools "
                    "put between keywords: it would read as two keywords"),
    ("Ann\x07e", "holds the control character U+0007 (character 4): XMP sidecars (XML) cannot hold it, and "
                 "it cannot be shown on one line"),
    ("Zo\udcebe", "holds U+DCEB (character 3), which is no character (an undecodable byte?): it cannot be "
                  "written as UTF-16 or UTF-8"),
    ("Ana 🌸", "holds '🌸' (U+1F338, character 5), beyond Unicode's first 65,536 characters: exiftool and "
               "other readers of Windows' XPKeywords (UCS-2) show it as '?'"),
    ("A" * 101, "is 101 characters long: the most is 100"),
    ("Age group: Baby", "is or begins with 'Age group', which phototag's own age-group keywords use"),
]


@pytest.mark.parametrize("name, why", REFUSED, ids=["semicolon", "slash", "bar", "comma", "control", "surrogate",
                                                    "emoji", "long", "reserved"])
def test_a_name_the_tags_cannot_hold_is_refused_and_nothing_changes(sample, name, why, reliability):
    lib, db, person = sample
    photos, index = tree_digest(lib), _rows(db, "SELECT * FROM people ORDER BY id")
    r = run("people", "name", person, name, "--db", db)
    assert r.exit_code == 2
    assert r.stderr == f"Error: the name {name!r} {why}; choose another\n"
    assert r.stdout == ""
    assert tree_digest(lib) == photos and _rows(db, "SELECT * FROM people ORDER BY id") == index
    reliability(f"a person named {name[:30]!r}" + ("..." if len(name) > 30 else ""), 1,
                "refused: one Error line naming the character and why, exit 2, nothing changed")


ACCEPTED = ["Zoë O'Brien-Łukasz", "李小龍", "Tom & Jerry <3>", 'Robert"). DROP TABLE faces --',
            "Ma\u200dry", "Anne-Marie (Nana)"]


def test_every_accepted_name_reads_back_as_one_person_in_every_reader(sample, reliability):
    """Each name exiftool reads back from the photo and its sidecar: one XPKeywords entry, one dc:subject,
    one Lightroom and one digiKam path under People, and the region's Name: the name itself, whole."""
    lib, db, person = sample
    photos = _photos_of(db, person)
    for name in ACCEPTED:
        r = run("people", "name", person, name, "--db", db)
        assert r.exit_code == 0, r.output
        r = run("scan", lib, "--db", db, "--workers", "1", "--sidecar")
        assert r.exit_code == 0, r.output
        for photo in photos:
            exif = json.loads(exiftool("-j", "-XPKeywords", str(photo)))[0]
            xp = exif["XPKeywords"].split(";")
            side = json.loads(exiftool("-j", "-struct", "-Subject", "-HierarchicalSubject", "-TagsList",
                                       "-RegionInfo", f"{photo}.xmp"))[0]
            listed = lambda v: v if isinstance(v, list) else [v]  # noqa: E731
            assert [k for k in xp if not k.startswith("Age group: ") and k != "Wedding"] == [name]
            assert [k for k in listed(side["Subject"]) if not k.startswith("Age group: ")] == [name]
            assert [k for k in listed(side["HierarchicalSubject"]) if "Age group" not in k] == [f"People|{name}"]
            assert [k for k in listed(side["TagsList"]) if "Age group" not in k] == [f"People/{name}"]
            regions = [str(x.get("Name")) for x in side["RegionInfo"]["RegionList"] if x.get("Name")]
            assert regions == [name]
    reliability("names with accents, CJK, '&' '<' '\"' and joiners, then a scan", len(ACCEPTED),
                "read back by exiftool as exactly that one person in XPKeywords, dc:subject, both hierarchies "
                "and the region Name")


def test_a_stored_name_the_tags_cannot_hold_never_stops_a_scan(sample, reliability):
    """The issue's own steps, with the name put into the index as an earlier version stored it: each of
    the person's photos is reported on one line that says whom to rename, stays marked and untouched;
    the scan goes on (exit 1); after the rename the next scan writes them."""
    lib, db, person = sample
    bad = "Robert'); DROP TABLE faces;--"
    con = sqlite3.connect(db)
    con.execute("UPDATE people SET name = ? WHERE id = ?", (bad, person))
    con.execute("UPDATE photos SET retag = 1 WHERE id IN (SELECT photo_id FROM faces WHERE person_id = ?)",
                (person,))
    con.commit()
    con.close()
    photos = _photos_of(db, person)
    before = tree_digest(lib)
    for _ in range(2):  # and again: a cron job's next night
        r = run("scan", lib, "--db", db, "--workers", "1", "--sidecar")
        assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
        assert r.stderr.splitlines() == [
            f"phototag: {p}: tags not written: person {person}'s name {bad!r} holds ';' (character 9), which "
            "Windows' XPKeywords (Explorer's Tags) puts between keywords: it would read as two keywords; "
            f'rename them: phototag people name {person} "NEW NAME"' for p in photos]
        assert tree_digest(lib) == before
        assert _rows(db, f"SELECT retag FROM photos WHERE path IN ({','.join(repr(str(p)) for p in photos)})") \
            == [(1,)] * len(photos)
        assert _rows(db, "PRAGMA integrity_check") == [("ok",)]
    assert run("people", "name", person, "Robert", "--db", db).exit_code == 0
    r = run("scan", lib, "--db", db, "--workers", "1", "--sidecar")
    assert r.exit_code == 0 and r.stderr == "", r.output
    for photo in photos:
        assert "Robert" in exiftool("-s3", "-XPKeywords", str(photo)).strip().split(";")
    reliability("an index holding a name the tags cannot hold ('Robert'); DROP TABLE faces;--'), then scans", 2,
                "each photo reported on one line naming the person to rename; photos untouched and still "
                "marked; exit 1; written after the rename")


def _retagger(index: Index, lib: Path, failures: list) -> Retagger:
    return Retagger(index, ExifWriter(), "m", [str(lib)], write_target, file_hashes,
                    lambda p, r: failures.append((p, r)))


def test_the_retag_step_reports_a_keyword_it_cannot_encode_and_goes_on(sample, reliability):
    """A scheme built in code (the scan refuses such a file) whose group name holds ';': the retag step
    reports each photo, writes nothing into any, and returns."""
    lib, db, _ = sample
    bad = Scheme("bad", (AgeGroup("Young; or not", 0, 40), AgeGroup("Old", 41, 100)))
    before = tree_digest(lib)
    failures: list = []
    with Index(db) as index:
        index.conn.execute("UPDATE photos SET retag = 1")
        tagger = _retagger(index, lib, failures)
        out = tagger.run(tagger.marked(), lambda name: bad)
        marked = index.conn.execute("SELECT count(*) FROM photos WHERE retag = 1").fetchone()[0]
    assert out.written == [] and len(out.failures) == 3 == len(failures) == marked
    assert all("'Age group: Young; or not' is empty or holds ';' or NUL" in r for _, r in failures)
    assert tree_digest(lib) == before
    reliability("the retag step fed a keyword it cannot encode", 1, "each photo reported, untouched, still marked")


def test_the_retag_step_reports_a_name_that_overflows_the_exif_segment(sample, tmp_path, astronaut, reliability):
    """A photo whose camera EXIF leaves room for the age-group keyword but not for a long name: naming
    the person makes the next scan's retag step refuse that photo alone, which stays untouched."""
    lib, db, person = sample
    photo = lib / "big-exif.jpg"
    save_jpeg(photo, astronaut, exif_bytes(comment=b"ASCII\x00\x00\x00" + b"x" * 65180))
    r = run("scan", lib, "--db", db, "--workers", "1")
    assert r.exit_code == 0, r.output
    assert exiftool("-s3", "-XPKeywords", str(photo)).startswith("Age group: ")  # room for the group
    with Index(db) as index:
        pid = index.conn.execute("SELECT person_id FROM faces f JOIN photos p ON p.id = f.photo_id "
                                 "WHERE p.path = ?", (str(photo),)).fetchone()[0]
    before = photo.read_bytes()
    assert run("people", "name", pid, "N" * 100, "--db", db).exit_code == 0
    r = run("scan", lib, "--db", db, "--workers", "1")
    assert r.exit_code == 1
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"phototag: {photo}: EXIF would be ")
    assert lines[0].endswith("over the JPEG limit of 64 KB")
    assert photo.read_bytes() == before
    assert _rows(db, f"SELECT retag FROM photos WHERE path = {str(photo)!r}") == [(1,)]
    reliability("a name that makes a photo's EXIF outgrow its 64 KB segment (retag step)", 1,
                "that photo reported, untouched and still marked; the others tagged; exit 1")


def test_no_command_prints_a_traceback_whatever_the_index_holds(sample, tmp_path, reliability):
    """Values no phototag writes (another tool's edits): a name stored as bytes, an age that is text, a
    date that is a number, a distribution two bytes long. Every command, run as a user runs it, ends
    with its output or one `Error:` line, never a traceback."""
    lib, db, person = sample
    con = sqlite3.connect(db)
    con.execute("UPDATE faces SET distribution = X'0102', age = 'abc' WHERE id = (SELECT min(id) FROM faces)")
    con.execute("UPDATE photos SET taken_at = 12345 WHERE id = (SELECT min(id) FROM photos)")
    con.execute("UPDATE people SET name = X'FF00' WHERE id = ?", (person,))
    con.commit()
    con.close()
    commands = [["query"], ["query", "--scheme", "three"], ["stats"], ["people"], ["people", "show", str(person)],
                ["export"], ["show", str(next(lib.rglob("*.jpg")))], ["contact-sheet", "--out", str(tmp_path / "c.jpg")],
                ["scan", str(lib), "--workers", "1", "--force"], ["people", "name", str(person), "Bob"]]
    for args in commands:
        r = subprocess.run([sys.executable, "-m", "phototag", *args, "--db", str(db)], capture_output=True,
                           text=True, timeout=300)
        assert "Traceback" not in r.stderr, (args, r.stderr)
        errors = [line for line in r.stderr.splitlines() if line.startswith("Error: ")]
        assert r.returncode in (0, 1, 2), (args, r.returncode)
        if r.returncode == 2:
            assert errors and r.stderr == errors[0] + "\n", (args, r.stderr)
    reliability("every command on an index holding values no phototag writes (bytes, text, numbers)", 10,
                "output or one Error line each, never a traceback")


def test_a_scheme_whose_group_name_the_tags_cannot_hold_is_refused_before_scanning(sample, tmp_path):
    lib, db, _ = sample
    scheme = tmp_path / "kids.toml"
    scheme.write_text('[[groups]]\nname = "Kids/Teens"\nmin = 0\nmax = 19\n\n'
                      '[[groups]]\nname = "Grown-ups"\nmin = 20\nmax = 100\n')
    photos, rows = tree_digest(lib), _rows(db, "SELECT id, scheme, tags FROM photos ORDER BY id")
    r = run("scan", lib, "--db", db, "--scheme", scheme, "--workers", "1")
    assert r.exit_code == 2
    assert r.stderr == (f"Error: scheme {str(scheme)!r}: the group name 'Kids/Teens' holds '/' (character 5), "
                        "which digiKam's tag paths put between levels: People/A/B would read as a person B inside "
                        "a tag A\n")
    assert tree_digest(lib) == photos and _rows(db, "SELECT id, scheme, tags FROM photos ORDER BY id") == rows
