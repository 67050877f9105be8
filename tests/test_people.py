"""People: real faces of two real people grouped exactly, their birth dates, ages that agree, the user's
decisions kept across scans, tags read back by exiftool, an old index upgraded, and kills mid-update."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from phototag.people.births import YEAR_DAYS, estimate_birth, usable_day
from phototag.cli import app

from .conftest import exiftool
from .people_photos import FAMILY, make_family

runner = CliRunner()
TODAY = dt.date.today()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def rows(db: Path, sql: str, *params) -> list[dict]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(sql, params)]
    finally:
        con.close()


def people_by_photo(db: Path) -> dict[frozenset[str], int]:
    """Each person as the set of photo names their faces are in."""
    found: dict[int, set[str]] = {}
    for r in rows(db, "SELECT f.person_id, p.path FROM faces f JOIN photos p ON p.id = f.photo_id"):
        found.setdefault(r["person_id"], set()).add(Path(r["path"]).name)
    return {frozenset(v): k for k, v in found.items()}


def photos_of(who: str) -> frozenset[str]:
    return frozenset(Path(n).name for n, (w, _) in FAMILY.items() if who in w)


@pytest.fixture(scope="module")
def family_scan(tmp_path_factory):
    """The family library scanned once (read-only for the tests that use it: they copy it)."""
    from skimage import data

    root = tmp_path_factory.mktemp("family")
    lib = make_family(root / "photos", data.astronaut())
    db = root / "i.db"
    r = run("scan", lib, "--db", db, "--workers", "1", "--sidecar")
    assert r.exit_code == 0, r.output
    assert "7 tagged, 8 faces, 0 failed" in r.stdout
    return lib, db


@pytest.fixture
def family(family_scan, tmp_path):
    import shutil

    lib, db = family_scan
    shutil.copytree(lib, tmp_path / "photos", copy_function=shutil.copy2)
    new_db = tmp_path / "i.db"
    src = sqlite3.connect(db)
    dst = sqlite3.connect(new_db)
    src.backup(dst)
    src.close()
    dst.execute("UPDATE photos SET path = replace(path, ?, ?)", (str(lib), str(tmp_path / "photos")))
    dst.commit()
    dst.close()
    return tmp_path / "photos", new_db


def person_id(db: Path, who: str) -> int:
    return people_by_photo(db)[photos_of(who)]


# -- grouping and birth dates ----------------------------------------------------------------------

def test_two_real_people_are_grouped_exactly(family):
    lib, db = family
    groups = people_by_photo(db)
    assert set(groups) == {photos_of("A"), photos_of("B")}  # two faces in one photo: two people
    r = run("people", "--db", db, "--format", "json")
    assert r.exit_code == 0, r.output
    listed = {p["id"]: p for p in json.loads(r.stdout)}
    alice, bob = listed[groups[photos_of("A")]], listed[groups[photos_of("B")]]
    assert (alice["faces"], alice["photos"], alice["first"], alice["last"]) == (5, 5, "2019-01-01", "2020-01-12")
    assert (bob["faces"], bob["photos"], bob["birth_faces"]) == (3, 3, 3)
    assert alice["birth_faces"] == 4  # the undated scan says nothing about her birth
    for p in (alice, bob):
        assert p["born_low"] <= p["born"] <= p["born_high"] and not p["born_given"] and not p["conflict"]
    r = run("people", "--db", db)
    assert r.stdout.splitlines()[0].split() == ["id", "name", "faces", "photos", "first", "last", "born"]


def test_ages_agree_with_the_person_and_an_undated_face_keeps_its_own(family):
    lib, db = family
    faces = rows(db, "SELECT f.*, p.path, p.taken_at FROM faces f JOIN photos p ON p.id = f.photo_id "
                     "WHERE f.person_id = ?", person_id(db, "A"))
    person = rows(db, "SELECT * FROM people WHERE id = ?", person_id(db, "A"))[0]
    born = dt.date.fromisoformat(person["birth_est"])
    for f in faces:
        if f["taken_at"] is None:
            assert f["age_source"] == "photo" and f["age"] == f["age_photo"]
            continue
        assert f["age_source"] == "person"
        taken = dt.date.fromisoformat(f["taken_at"][:10])
        assert f["age"] == pytest.approx((taken - born).days / YEAR_DAYS, abs=0.05)
        assert f["age_high"] - f["age_low"] < f["age_photo_high"] - f["age_photo_low"] + 1  # sharper
    # one person, one birth date: the ages differ exactly as the dates do
    dated = sorted((f["taken_at"], f["age"]) for f in faces if f["taken_at"])
    (t0, a0), (t1, a1) = dated[0], dated[-1]
    span = (dt.date.fromisoformat(t1[:10]) - dt.date.fromisoformat(t0[:10])).days / YEAR_DAYS
    assert a1 - a0 == pytest.approx(span, abs=0.02)


def test_naming_with_a_birth_date_makes_ages_exact_and_the_tags_follow(family, reliability):
    lib, db = family
    alice = person_id(db, "A")
    r = run("people", "name", alice, "Alice", "--born", "1985-04-02", "--db", db)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"person {alice}: Alice, 5 faces, born 1985-04-02 (given)")
    garden = rows(db, "SELECT f.* FROM faces f JOIN photos p ON p.id = f.photo_id WHERE p.path LIKE ?",
                  "%alice-garden.jpg")[0]
    assert garden["age_source"] == "birth"
    assert garden["age"] == pytest.approx((dt.date(2019, 6, 1) - dt.date(1985, 4, 2)).days / YEAR_DAYS, abs=0.01)
    assert garden["age_group"] == "Adult"  # 34 completed years
    r = run("query", "--db", db, "--person", "alice", "--min-age", 34, "--max-age", 35, "--format", "paths")
    assert sorted(Path(p).name for p in r.stdout.split()) == ["alice-garden.jpg", "alice-winter.jpg", "together.jpg"]
    # the next scan rewrites the tags from the index, without the model
    r = run("scan", lib, "--db", db, "--workers", "1", "--sidecar")
    assert r.exit_code == 0, r.output
    assert "0 tagged" in r.stdout and "5 re-tagged" in r.stdout
    together = lib / "2019" / "08" / "together.jpg"
    keywords = exiftool("-XPKeywords", "-s3", str(together)).strip().split(";")
    assert "Alice" in keywords and "Age group: Adult" in keywords
    side = json.loads(exiftool("-j", "-struct", "-G1", str(together) + ".xmp"))[0]
    regions = side["XMP-mwg-rs:RegionInfo"]["RegionList"]
    assert [g.get("Name") for g in regions] == [None, "Alice"]  # Bob has no name yet: no made-up one
    assert all("~" not in (g.get("Name") or "") for g in regions)
    assert regions[1]["Description"] == "Adult (~34)"
    assert "People|Alice" in side["XMP-lr:HierarchicalSubject"]
    assert "People/Alice" in side["XMP-digiKam:TagsList"]
    record = json.loads(exiftool("-UserComment", "-s3", str(together)))
    assert [f.get("person") for f in record["faces"]] == [None, "Alice"]
    reliability("a person named with a birth date, then a scan", 1,
                "ages exact; EXIF keywords, region names and hierarchical keywords rewritten without the model")


def test_a_date_fixed_in_another_tool_redates_the_face(family):
    lib, db = family
    alice = person_id(db, "A")
    assert run("people", "name", alice, "--born", "1985-04-02", "--db", db).exit_code == 0
    garden = lib / "2019" / "06" / "alice-garden.jpg"
    exiftool("-overwrite_original", "-DateTimeOriginal=2021:06:01 12:00:00", str(garden))
    r = run("scan", lib, "--db", db, "--workers", "1")
    assert r.exit_code == 0, r.output
    assert "1 regrouped" in r.stdout  # its pixels are the same: no model, only the index
    face = rows(db, "SELECT f.age, p.taken_at FROM faces f JOIN photos p ON p.id = f.photo_id WHERE p.path = ?",
                str(garden))[0]
    assert face["taken_at"] == "2021-06-01T12:00:00"
    assert face["age"] == pytest.approx((dt.date(2021, 6, 1) - dt.date(1985, 4, 2)).days / YEAR_DAYS, abs=0.01)
    record = json.loads(exiftool("-UserComment", "-s3", str(garden)))
    assert record["faces"][0]["age"] == round(face["age"], 1)


def test_the_users_decisions_survive_a_forced_rescan(family, reliability):
    lib, db = family
    alice, bob = person_id(db, "A"), person_id(db, "B")
    assert run("people", "name", alice, "Alice", "--db", db).exit_code == 0
    winter = rows(db, "SELECT f.id FROM faces f JOIN photos p ON p.id = f.photo_id WHERE p.path LIKE ?",
                  "%alice-winter.jpg")[0]["id"]
    r = run("people", "remove", "Alice", "--face", winter, "--db", db)
    assert r.exit_code == 0, r.output
    assert "1 face taken out" in r.stdout
    moved = rows(db, "SELECT person_id FROM faces WHERE id = ?", winter)[0]["person_id"]
    assert moved not in (None, alice)  # grouped again, never back into Alice
    r = run("people", "merge", bob, moved, "--db", db)
    assert r.exit_code == 0, r.output  # the user says the winter face is Bob's (it is not: theirs to say)
    before = rows(db, "SELECT id, person_id FROM faces ORDER BY id")
    r = run("scan", lib, "--db", db, "--workers", "1", "--force")
    assert r.exit_code == 0, r.output
    assert rows(db, "SELECT id, person_id FROM faces ORDER BY id") == before  # same faces, same people
    assert rows(db, "SELECT name FROM people WHERE id = ?", alice)[0]["name"] == "Alice"
    assert rows(db, "SELECT face_id, person_id FROM face_exclusions") == [{"face_id": winter, "person_id": alice}]
    reliability("the user's names, merges and removals, then scan --force", 1, "all kept: same faces, same people")


@pytest.mark.parametrize("args, message", [
    (["merge", "{a}", "{a}"], "cannot merge person {a} with itself"),
    (["merge", "{a}", "999"], "no person '999' in the index (phototag people lists them)"),
    (["show", "Nobody"], "no person 'Nobody' in the index (phototag people lists them)"),
    (["name", "{a}", "  "], "a name cannot be empty"),
    (["name", "{b}", "ALICE"], "person {a} is already called 'Alice': if they are one, merge them "
                               "(phototag people merge {a} {b}) or choose another name"),
    (["name", "{a}", "--born", "2019-05-01"], "birth date 2019-05-01 is after one of their photos (2019-01-01, "
                                             "{lib}/2019/01/alice-new-year.jpg)"),
    (["name", "{a}", "--born", "2999-01-01"], "birth date 2999-01-01 is in the future"),
    (["name", "{a}", "--born", "1985-13-01"], "malformed date '1985-13-01': month must be in 1..12"),
    (["name", "{a}", "--born", "02/04/1985"], "malformed date '02/04/1985': use YYYY-MM-DD"),
    (["remove", "{a}", "--face", "99999"], "no face 99999 in the index"),
    (["remove", "{b}", "--face", "{alice_face}"], "face {alice_face} is not in person {b}"),
])
def test_bad_people_commands_say_why_and_change_nothing(family, args, message):
    lib, db = family
    a, b = person_id(db, "A"), person_id(db, "B")
    assert run("people", "name", a, "Alice", "--db", db).exit_code == 0
    alice_face = rows(db, "SELECT id FROM faces WHERE person_id = ?", a)[0]["id"]
    values = {"a": a, "b": b, "alice_face": alice_face, "lib": lib}
    dump = "\n".join(sqlite3.connect(db).iterdump())
    r = run("people", *(x.format(**values) for x in args), "--db", db)
    assert r.exit_code == 2, r.output
    assert r.output.strip() == "Error: " + message.format(**values)
    assert "\n".join(sqlite3.connect(db).iterdump()) == dump


def test_merging_two_faces_of_one_photo_is_refused(family):
    lib, db = family
    a, b = person_id(db, "A"), person_id(db, "B")
    r = run("people", "merge", a, b, "--db", db)
    assert r.exit_code == 2
    assert r.output.strip() == f"Error: they are two faces in one photo ({lib}/2019/08/together.jpg): not one person"


# -- the index -------------------------------------------------------------------------------------

def test_an_old_index_is_upgraded_in_place_and_described_without_detecting(family, tmp_path, monkeypatch,
                                                                            reliability):
    """An index made by version 0.1.0 (schema 1): every row and value kept; the faces get descriptors
    from their stored boxes at the next scan, without running the detector."""
    from phototag import faces as faces_mod
    from phototag.store.index import SCHEMA_VERSION, Index

    lib, new = family
    old = tmp_path / "old.db"
    con = sqlite3.connect(old)
    con.executescript((Path(__file__).parent / "data" / "index-v1.sql").read_text())
    v1_photos = [c[1] for c in con.execute("PRAGMA table_info(photos)")]
    v1_faces = [c[1] for c in con.execute("PRAGMA table_info(faces)")]
    src = sqlite3.connect(new)
    for table, cols in (("photos", v1_photos), ("faces", v1_faces)):
        data = src.execute(f"SELECT {', '.join(cols)} FROM {table}").fetchall()
        con.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})", data)
    con.execute("UPDATE faces SET age = age_low + 0.5")  # values only the old index has
    con.commit()
    before = {t: con.execute(f"SELECT {', '.join(c)} FROM {t} ORDER BY id").fetchall()
              for t, c in (("photos", v1_photos), ("faces", v1_faces))}
    con.close()
    with Index(old) as index:
        assert index.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == \
            str(SCHEMA_VERSION)
        for t, c in (("photos", v1_photos), ("faces", v1_faces)):
            assert [tuple(r) for r in index.conn.execute(f"SELECT {', '.join(c)} FROM {t} ORDER BY id")] == before[t]
        assert index.conn.execute("SELECT count(*) FROM faces WHERE age_photo = age AND descriptor IS NULL "
                                  "AND person_id IS NULL").fetchone()[0] == 8

    def no_detection(*args, **kwargs):
        raise AssertionError("faces were detected again")

    monkeypatch.setattr(faces_mod, "detect", no_detection)
    r = run("scan", lib, "--db", old, "--workers", "1")
    assert r.exit_code == 0, r.output
    got = {r["id"]: r for r in rows(old, "SELECT id, descriptor FROM faces")}
    want = {r["id"]: r for r in rows(new, "SELECT id, descriptor FROM faces")}
    for face_id, w in want.items():
        d = np.frombuffer(got[face_id]["descriptor"], "<f4")
        assert np.linalg.norm(d - np.frombuffer(w["descriptor"], "<f4")) < 1e-4
    assert set(people_by_photo(old)) == {photos_of("A"), photos_of("B")}
    reliability("an index made by the previous version", 1,
                "upgraded in place, every row kept; descriptors from stored boxes, no detection")


KILL_SCRIPT = """
import sys, time
from phototag.store.index import Index
from phototag.people.update import update_people
with Index(sys.argv[1]) as index:
    print("go", flush=True)
    update_people(index)
print("done", flush=True)
"""


@pytest.mark.slow
def test_a_kill_during_a_people_update_leaves_the_index_consistent(tmp_path, reliability):
    import random
    import subprocess
    import sys
    import time

    from bench.people import synthetic

    db = tmp_path / "i.db"
    synthetic(db, 400, 50)  # 20,000 faces of 400 made-up people
    kills = 0
    rng = random.Random(11)
    t_full = None
    for attempt in range(12):
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(db)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "go"
        start = time.monotonic()
        if t_full is None:  # the first run measures how long an update takes, and is killed half-way
            delay = 0.5
        else:
            delay = rng.uniform(0.05, max(0.1, t_full * 0.9))
        time.sleep(delay)
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.wait()
        t_full = t_full or time.monotonic() - start + 1.0
        con = sqlite3.connect(db)
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        grouped = con.execute("SELECT count(*) FROM faces WHERE person_id IS NOT NULL").fetchone()[0]
        assert grouped in (0, 20000)  # all or nothing: one transaction
        con.close()
        if grouped:
            break
    assert kills >= 1
    r = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(db)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    counts = dict(sqlite3.connect(db).execute("SELECT person_id, count(*) FROM faces GROUP BY person_id").fetchall())
    listed = dict(sqlite3.connect(db).execute("SELECT id, face_count FROM people").fetchall())
    assert counts == listed and None not in counts  # every face in a person, every count right
    reliability("SIGKILL during a people update", kills, "index intact: all of the update or none of it")


# -- the parts alone ------------------------------------------------------------------------------

def test_grouping_keeps_people_their_faces_and_never_joins_faces_of_one_photo():
    from phototag.people.grouping import group_faces

    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 0.05, (2, 128))
    a[0] += 1.0
    x = np.vstack([a + rng.normal(0, 0.01, (4, 128)), b + rng.normal(0, 0.01, (3, 128))])
    photos = np.arange(7)
    assert len(set(group_faces(x, photos).tolist())) == 2
    # the two closest faces share a photo: they cannot be one person
    same = photos.copy()
    same[1] = same[0]
    labels = group_faces(x, same)
    assert labels[0] != labels[1]
    # existing people keep their labels; new faces join them; a banned face does not
    fixed = np.array([5, 5, -1, -1, 9, -1, -1])
    labels = group_faces(x, photos, fixed=fixed, banned={6: {9}})
    assert labels[:5].tolist() == [5, 5, 5, 5, 9] and labels[5] == 9 and labels[6] not in (5, 9)
    # two existing people are never merged by grouping, however alike
    assert group_faces(x, photos, fixed=np.array([1, 2, -1, -1, -1, -1, -1]))[:2].tolist() == [1, 2]


@pytest.mark.parametrize("age, joined", [(5, False), (40, True), (None, False)])
def test_children_are_held_to_a_stricter_threshold(age, joined):
    """Two groups 0.55 apart (between the children's 0.48 and everyone else's 0.58): adults are one person,
    children are two, and without ages every pair is held to the children's threshold."""
    from phototag.people.grouping import GroupingOptions, group_faces

    o = GroupingOptions()
    assert o.child_threshold < 0.55 < o.threshold
    rng = np.random.default_rng(1)
    centre = rng.normal(0, 1, 128)
    step = rng.normal(0, 1, 128)
    centre_b = centre + 0.55 * step / np.linalg.norm(step)
    x = np.vstack([c + rng.normal(0, 0.0005, (3, 128)) for c in (centre, centre_b)])
    ages = None
    if age is not None:
        ages = np.full((6, 101), 1e-4)
        ages[:, age] = 1.0
    labels = group_faces(x, np.arange(6), ages=ages)
    assert len(set(labels[:3].tolist())) == 1 and len(set(labels[3:].tolist())) == 1
    assert (labels[0] == labels[3]) == joined


@pytest.mark.parametrize("size, age, joined", [(1, 40, False), (2, 40, True), (1, 5, True)])
def test_two_single_faces_are_held_to_a_stricter_threshold(size, age, joined):
    """With a single faces' threshold (measured, not the default): two faces seen once each, 0.46 apart for
    children and 0.55 for adults: adults stay two (a stranger in the background is often that close to
    someone), while two groups of two faces each, as far apart, are one person, because the link held
    back while both were single is kept for the next round; children keep the children's threshold."""
    from phototag.people.grouping import GroupingOptions, group_faces

    o = GroupingOptions(single_threshold=0.52)
    gap = 0.55 if age >= 13 else 0.46
    assert o.single_threshold < gap < o.threshold if age >= 13 else gap < o.child_threshold < o.single_threshold
    rng = np.random.default_rng(2)
    centre = rng.normal(0, 1, 128)
    step = rng.normal(0, 1, 128)
    other = centre + gap * step / np.linalg.norm(step)
    x = np.vstack([c + rng.normal(0, 0.0005, (size, 128)) for c in (centre, other)])
    ages = np.full((2 * size, 101), 1e-4)
    ages[:, age] = 1.0
    labels = group_faces(x, np.arange(2 * size), ages=ages, options=o)
    assert (labels[0] == labels[-1]) == joined
    assert group_faces(x, np.arange(2 * size), ages=ages)[-1] == labels[0]  # the default: like any pair


def _children(centres: np.ndarray, faces: list[int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Faces around each centre (a child each, `faces` of them), and their age distributions (aged 3)."""
    x = np.vstack([c + rng.normal(0, 0.0005, (k, 128)) for c, k in zip(centres, faces)])
    ages = np.full((len(x), 101), 1e-4)
    ages[:, 3] = 1.0
    return x, ages


def _apart(rng: np.random.Generator, n: int, distance: float) -> np.ndarray:
    """n centres `distance` from each other (orthogonal steps from one point in 128 dimensions)."""
    step = np.linalg.qr(rng.normal(0, 1, (128, n)))[0].T
    return rng.normal(0, 1, 128) + step * distance / np.sqrt(2)


@pytest.mark.parametrize("nightly", [False, True])
def test_a_childs_fragment_joins_the_group_its_neighbours_are_in(nightly):
    """A baby photographed forty times and three more faces just over the children's threshold from them
    (under support_threshold), whose every neighbour is the baby's: one person, in a scan from scratch
    and when the three come in a nightly run. Without the lever they are two."""
    from phototag.people.grouping import GroupingOptions, group_faces

    o = GroupingOptions()
    gap = (o.child_threshold + o.support_threshold) / 2
    assert o.child_threshold < gap < o.support_threshold and o.support is not None
    rng = np.random.default_rng(5)
    x, ages = _children(_apart(rng, 2, gap), [40, 3], rng)
    fixed = np.r_[np.full(40, 7), np.full(3, -1)] if nightly else None
    labels = group_faces(x, np.arange(43), ages=ages, fixed=fixed)
    assert len(set(labels.tolist())) == 1 and (not nightly or labels[0] == 7)
    labels = group_faces(x, np.arange(43), ages=ages, fixed=fixed, options=GroupingOptions(support=None))
    assert labels[40] != labels[0] and len(set(labels[40:].tolist())) == 1


def test_children_seen_a_few_times_each_stay_apart_whatever_their_neighbours():
    """Ten children of four faces each, all as far apart as the baby's fragment above, as in a class
    album: each face's neighbours are spread over the other nine, so no child's group is supported into
    another, and ten stay ten."""
    from phototag.people.grouping import GroupingOptions, group_faces

    o = GroupingOptions()
    rng = np.random.default_rng(6)
    x, ages = _children(_apart(rng, 10, (o.child_threshold + o.support_threshold) / 2), [4] * 10, rng)
    labels = group_faces(x, np.arange(40), ages=ages)
    assert [len(set(labels[k * 4:(k + 1) * 4].tolist())) for k in range(10)] == [1] * 10
    assert len(set(labels.tolist())) == 10


def test_neighbour_links_are_counted_between_groups_and_out_of_each():
    """The links a scan's new faces send: into each other group of a candidate pair, and out of their own."""
    from phototag.people.grouping import GroupingOptions, _candidate_pairs, neighbours

    rng = np.random.default_rng(7)
    x = rng.normal(0, 0.035, (30, 128))  # about 0.56 apart: some pairs near, some not
    g_of_face = np.r_[np.zeros(10, np.int64), np.ones(5, np.int64), 2 + np.arange(15)]  # two people, 15 new
    new = np.arange(15, 30)
    o = GroupingOptions(k=6)
    pairs, ab, ba, leaving = _candidate_pairs(x, new, g_of_face, 17, o)
    _, idx = neighbours(x, x[new], o.k + 1)
    edges = [(g_of_face[i], g_of_face[j]) for i, row in zip(new, idx) for j in row if j != i]
    assert leaving.tolist() == [sum(a == g and b != g for a, b in edges) for g in range(17)]
    assert len(pairs) and ab.tolist() == [edges.count((a, b)) for a, b in pairs]
    assert ba.tolist() == [edges.count((b, a)) for a, b in pairs]


def test_time_weighted_linkage_is_exact_over_the_pairs_of_faces():
    """The sums kept per group and quarter give what weighing every pair of faces gives, undated faces
    counting fully, through merges."""
    from phototag.people.timed import QUARTER_DAYS, TimeWeighted

    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (40, 8))
    days = np.round(rng.uniform(0, 3000, 40) / QUARTER_DAYS) * QUARTER_DAYS + 10  # quarters: exact
    days[[3, 17]] = np.nan
    g_of_face = np.arange(40) % 6
    scale = 400.0

    def brute(group, a, b):
        fa, fb = np.flatnonzero(group == a), np.flatnonzero(group == b)
        d2 = ((x[fa, None] - x[None, fb]) ** 2).sum(-1)
        gap = np.abs(days[fa, None] - days[None, fb])
        w = np.where(np.isnan(gap), 1.0, np.exp(-np.nan_to_num(gap) / scale))
        return (w * d2).sum() / w.sum()

    t = TimeWeighted(x, g_of_face, 6, days, scale)
    a, b = np.array([0, 0, 1, 2]), np.array([1, 3, 4, 5])
    assert np.allclose(t.mean_square(a, b, np.zeros(4)), [brute(g_of_face, i, j) for i, j in zip(a, b)])
    t.merge(np.array([0]), np.array([2]))
    merged = np.where(g_of_face == 2, 0, g_of_face)
    a, b = np.array([0, 0, 1]), np.array([1, 5, 4])
    assert np.allclose(t.mean_square(a, b, np.zeros(3)), [brute(merged, i, j) for i, j in zip(a, b)])


def test_one_person_drifting_over_the_years_is_linked_through_the_years_between():
    """A face that changes a little every year, photographed for twenty years: the plain average over
    them sits over the threshold, while its faces photographed close in time are close. A second person
    as far from the first at every year stays apart, and without dates nothing changes."""
    from phototag.people.grouping import GroupingOptions, group_faces

    years = 20
    rng = np.random.default_rng(4)
    step = rng.normal(0, 1, (years, 128))
    step *= 0.2 / np.linalg.norm(step, axis=1, keepdims=True)
    path = np.cumsum(step, axis=0)  # a random walk: 0.2 a year
    other = path + rng.normal(0, 1, 128) * 0.75 / np.sqrt(128)
    x = np.vstack([path, other])
    days = np.tile(np.arange(years) * 365.25 + 1000, 2)
    ages = np.full((2 * years, 101), 1e-4)
    ages[np.arange(2 * years), 20 + np.arange(2 * years) % years] = 1.0  # adults, one birth date each
    photos = np.arange(2 * years)
    plain = GroupingOptions(time_scale_days=None)
    labels = group_faces(x, photos, days, ages=ages, options=plain)
    assert len(set(labels[:years].tolist())) > 1  # the plain average splits the one person
    labels = group_faces(x, photos, days, ages=ages)
    assert len(set(labels[:years].tolist())) == 1 and not set(labels[:years].tolist()) & set(labels[years:].tolist())
    undated = np.full(2 * years, np.nan)
    assert (group_faces(x, photos, undated, ages=ages).tolist()
            == group_faces(x, photos, undated, ages=ages, options=plain).tolist())


def test_birth_dates_from_ages_resist_a_wrong_face_and_flag_two_people():
    def one_hot(ages):
        d = np.full((len(ages), 101), 1e-5)
        for i, a in enumerate(ages):
            d[i, a] = 1.0
        return d

    born = (dt.date(2010, 3, 15) - dt.date(1970, 1, 1)).days
    days = born + np.array([100, 800, 1500, 2600, 4000], float)
    ages = [int((d - born) // YEAR_DAYS) for d in days]
    est = estimate_birth(days, one_hot(ages))
    lo, hi = est.interval
    assert lo <= born <= hi and abs(est.median - born) < 200 and not est.conflict
    wrong = estimate_birth(np.append(days, born + 3000), one_hot(ages + [40]))  # someone else's face
    assert abs(wrong.median - born) < 250 and wrong.disagreeing == 1 and not wrong.conflict
    two = estimate_birth(np.concatenate([days, days]), one_hot(ages + [a + 30 for a in ages]))
    assert two.conflict


@pytest.mark.parametrize("taken, usable", [
    ("2019-06-01T12:00:00", True), ("1970-01-01T00:00:00", False), ("2000-01-01T00:00:00", False),
    (None, False), ("", False), ("garbage", False), ((TODAY + dt.timedelta(days=3)).isoformat() + "T00:00:00", False),
    ("1800-05-01T00:00:00", False),
])
def test_only_real_dates_count(taken, usable):
    assert (usable_day(taken) is not None) == usable


# -- the real data sets, when ../shared has them ----------------------------------------------------

ADIENCE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "adience-dev"


@pytest.mark.slow
@pytest.mark.skipif(not (ADIENCE / "labels.tsv").exists(), reason="needs ../shared/datasets/adience-dev")
def test_a_real_family_album_is_grouped_precisely(tmp_path):
    """Adience's Flickr family album, scanned as a user would: BCubed precision >= 0.98. Its baby's faces
    come in a few entries (recall 0.829): the children's threshold is chosen on other sets, where two
    children of different families would otherwise be one (docs/people.md), and `people suggest`
    offers those entries' merges first. Without the neighbour support, which joins the baby's
    fragments whose every neighbour is the baby's, the recall is 0.780 and fails this."""
    from bench.people import adience_truth, bcubed

    db = tmp_path / "a.db"
    r = run("scan", ADIENCE, "--db", db, "--no-exif")
    assert r.exit_code == 0, r.output
    labels, truth = adience_truth(db, ADIENCE)
    precision, recall = bcubed(labels, truth)
    assert precision >= 0.98 and recall >= 0.81, (precision, recall)


FGNET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fgnet-dev"


@pytest.mark.slow
@pytest.mark.skipif(not (FGNET / "births.csv").exists(), reason="needs ../shared/datasets/fgnet-dev")
def test_people_across_decades_and_their_children_are_grouped_precisely(tmp_path):
    """FG-NET's scanned prints, scanned as a user would: 41 people from childhood to old age. Precision
    first, for the whole album and for its children aged 2 to 12 (forty of them, as in a class album,
    where one threshold for every pair let different children into one person), and recall enough
    that grouping still links people across years. The age model learned from these faces, so its
    birth dates are sharper here than in a new family and the figures are not held out
    (docs/people.md): shipped 0.976 / 0.629, children 0.993. The plain average linkage, where faces
    decades apart count as much as faces a year apart, fails it (0.977 / 0.585), and so do one threshold
    of 0.58 for every pair (0.931, children 0.897) and one of 0.48 (recall 0.44)."""
    import csv

    from bench.people import bcubed

    db = tmp_path / "f.db"
    r = run("scan", FGNET, "--db", db, "--no-exif")
    assert r.exit_code == 0, r.output
    births = {row["subject"]: dt.date.fromisoformat(row["birth_date"]) for row in csv.DictReader(open(FGNET / "births.csv"))}
    con = sqlite3.connect(db)
    rows = con.execute("SELECT fa.person_id, p.path, p.taken_at FROM faces fa JOIN photos p ON p.id = fa.photo_id "
                       "WHERE fa.idx = 0").fetchall()
    con.close()
    people = [row[0] for row in rows]
    truth = [Path(row[1]).name[:3] for row in rows]
    ages = [(dt.date.fromisoformat(row[2][:10]) - births[t]).days / YEAR_DAYS for row, t in zip(rows, truth)]
    precision, recall = bcubed(people, truth)
    assert len(rows) >= 490 and precision >= 0.95 and recall >= 0.60, (len(rows), precision, recall)
    kids = [i for i, a in enumerate(ages) if 2 <= a <= 12]
    kid_precision, _ = bcubed([people[i] for i in kids], [truth[i] for i in kids])
    assert len(kids) >= 150 and kid_precision >= 0.93, (len(kids), kid_precision)
