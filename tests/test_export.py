"""export, the browsing views (through the sqlite-utils CLI, as docs/index.md shows), contact sheets, and
annotated copies."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from phototag.render.annotate import PALETTE
from phototag.cli import app
from phototag.ages.groups import get_scheme

from .conftest import exif_bytes, group_photo, save_jpeg

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def scanned(tmp_path_factory, astronaut):
    """A scanned library: photos with 1, 2 and 3 faces on different dates, one without, one broken."""
    lib = tmp_path_factory.mktemp("export") / "lib"
    save_jpeg(lib / "2019" / "one.jpg", group_photo(astronaut, n=1), exif_bytes(taken=b"2019:05:01 10:00:00"))
    save_jpeg(lib / "2020" / "two.jpg", group_photo(astronaut, n=2), exif_bytes(taken=b"2020:05:01 10:00:00"))
    save_jpeg(lib / "2021" / "three.jpg", group_photo(astronaut, n=3), exif_bytes(taken=b"2021:05:01 10:00:00"))
    save_jpeg(lib / "2021" / "empty.jpg", np.full((400, 600, 3), 90, np.uint8))
    (lib / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    db = lib.parent / "i.db"
    r = run("scan", lib, "--db", db, "--workers", "1")
    assert r.exit_code == 1, r.output  # the broken one
    return lib, db


def index_rows(db: Path, sql: str) -> list[dict]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    return [dict(r) for r in con.execute(sql)]


def test_export_jsonl_has_every_column_of_every_photo_and_face(scanned):
    lib, db = scanned
    r = run("export", "--db", db)
    assert r.exit_code == 0, r.output
    photos = [json.loads(line) for line in r.stdout.splitlines()]
    table = {p["path"]: p for p in index_rows(db, "SELECT * FROM photos")}
    assert sorted(p["path"] for p in photos) == sorted(table)  # failed one included
    for p in photos:
        faces = p.pop("faces")
        row = table[p["path"]]
        row.pop("path_bytes")
        assert p == row
        stored = index_rows(db, f"SELECT * FROM faces WHERE photo_id = {row['id']} ORDER BY idx")
        assert [f["id"] for f in faces] == [f["id"] for f in stored]
        binary = {"distribution", "descriptor", "person_distribution"}
        for f, s in zip(faces, stored):
            # every column but the binary ones (the descriptor is the index's business), plus the person's name
            assert {k: v for k, v in f.items() if k not in binary} == \
                {**{k: v for k, v in s.items() if k not in binary}, "person": None}
            assert len(f["distribution"]) == 101 and sum(f["distribution"]) == pytest.approx(1, abs=0.01)
            assert f["person_id"] is not None and f["age_photo"] is not None and f["age"] is not None
    broken = next(p for p in photos if p["path"].endswith("broken.jpg"))
    assert broken["status"] == "failed" and broken["error"]


def test_export_takes_the_query_filters_and_formats_agree(scanned, tmp_path):
    lib, db = scanned
    out = {}
    for fmt in ("csv", "json", "jsonl"):
        r = run("export", "--db", db, "--format", fmt, "--since", "2020-01-01", "--min-faces", "2",
                "--output", tmp_path / f"e.{fmt}")
        assert r.exit_code == 0, r.output
        assert r.stderr == f"2 photos written to {tmp_path / f'e.{fmt}'}\n"
        out[fmt] = (tmp_path / f"e.{fmt}").read_text()
    as_json = json.loads(out["json"])
    assert as_json == [json.loads(line) for line in out["jsonl"].splitlines()]
    assert [Path(p["path"]).name for p in as_json] == ["two.jpg", "three.jpg"]
    rows = list(csv.DictReader(io.StringIO(out["csv"])))
    assert len(rows) == 5  # a row per face: 2 + 3
    assert [(r["path"], int(r["face_idx"])) for r in rows] == \
        [(p["path"], f["idx"]) for p in as_json for f in p["faces"]]
    assert float(rows[0]["face_age"]) == as_json[0]["faces"][0]["age"]
    assert json.loads(rows[0]["face_distribution"]) == as_json[0]["faces"][0]["distribution"]
    # a group filter: only photos with a matching face; regrouped under another scheme on the way
    r = run("export", "--db", db, "--scheme", "three", "--group", "Young", "--group", "Middle")
    photos = [json.loads(line) for line in r.stdout.splitlines()]
    assert photos and all(f["scheme"] == "three" and f["age_group"] in ("Young", "Middle")
                          for p in photos for f in p["faces"])
    r = run("export", "--db", db, "--format", "xml")
    assert r.exit_code == 2 and r.stderr == "Error: unknown format 'xml': use csv, json, jsonl\n"


def test_views_answer_the_readme_queries_through_sqlite_utils(scanned):
    """The sqlite-utils examples of docs/index.md, run as written, against the views."""
    lib, db = scanned
    cli = shutil.which("sqlite-utils", path=str(Path(sys.executable).parent))
    assert cli, "sqlite-utils is a dependency; its CLI comes with it"

    def sqlite_utils(*args: str) -> list[dict]:
        out = subprocess.run([cli, *args], capture_output=True, text=True, check=True).stdout
        return json.loads(out)

    groups = sqlite_utils("rows", str(db), "photo_groups")
    ok = index_rows(db, "SELECT path FROM photos WHERE status = 'ok'")
    assert sorted(g["path"] for g in groups) == sorted(r["path"] for r in ok)
    three = next(g for g in groups if g["path"].endswith("three.jpg"))
    ages = [f["age"] for f in index_rows(db, f"SELECT age FROM faces WHERE photo_id = {three['photo_id']}")]
    assert three["face_count"] == 3 and three["youngest"] == min(ages) and three["oldest"] == max(ages)
    empty = next(g for g in groups if g["path"].endswith("empty.jpg"))
    assert empty["age_groups"] is None and empty["face_count"] == 0
    group = _commonest_group(db)
    in_group = sqlite_utils("query", str(db), "select path, age from face_photos where age_group = :g order by age",
                            "-p", "g", group)
    assert len(in_group) == len(index_rows(db, f"SELECT id FROM faces WHERE age_group = '{group}'")) > 0
    fks = sqlite_utils("query", str(db), "select * from pragma_foreign_key_list('faces')")
    assert sorted((f["table"], f["from"], f["to"]) for f in fks) == [("people", "person_id", "id"),
                                                                     ("photos", "photo_id", "id")]


def _commonest_group(db) -> str:
    """The group most of the library's faces are in (the test photos are of adults; which adult group
    is the model's call)."""
    return index_rows(db, "SELECT age_group FROM faces GROUP BY age_group ORDER BY count(*) DESC, age_group LIMIT 1"
                      )[0]["age_group"]


def test_contact_sheet_lays_out_the_matching_faces(scanned, tmp_path, astronaut):
    lib, db = scanned
    out = tmp_path / "sheet.png"
    group = _commonest_group(db)
    r = run("contact-sheet", "--db", db, "--group", group.lower(), "--out", out, "--size", "100", "--columns", "4")
    n = len(index_rows(db, f"SELECT id FROM faces WHERE age_group = '{group}'"))
    assert r.exit_code == 0 and r.stdout == f"{n} faces on {out}\n", r.output
    from phototag.store.index import Index
    from phototag.store.queries import QueryFilters, query
    from phototag.render.sheet import SheetOptions, contact_sheet

    with Index(db) as ix:
        faces = query(ix, QueryFilters(groups=(group,)))
    names = get_scheme("ten").names
    result = contact_sheet(faces, out, names, SheetOptions(thumb=100, columns=4))
    sheet = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert result.faces == n == len(result.cells)
    assert len({top for _, top, _, _ in result.cells}) == -(-n // 4)  # rows of 4
    colour = np.array(Image.new("RGB", (1, 1), PALETTE[names.index(group)]))[0, 0]
    for left, top, right, bottom in result.cells:
        assert (right - left, bottom - top) == (100, 100)
        assert np.abs(sheet[top - 1, left + 50] - colour).max() < 20  # framed in the group's colour
        cell = sheet[top:bottom, left:right]
        assert cell.std() > 20  # a picture, not a flat fill
        # the astronaut's face, centred: skin (red above blue) in the middle of the thumbnail
        middle = cell[35:65, 35:65].reshape(-1, 3).mean(axis=0)
        assert middle[0] > middle[2] + 20, middle
    # a photo that is gone by now: reported, the rest still laid out
    moved = lib / "2019" / "one.jpg"
    moved.rename(tmp_path / "elsewhere.jpg")
    try:
        r = run("contact-sheet", "--db", db, "--group", group.lower(), "--out", out)
        assert r.exit_code == 1
        assert r.stderr == f"phototag: {moved}: cannot read: No such file or directory\n"
        assert r.stdout == f"{n - 1} faces on {out}, 1 photos unreadable\n"
    finally:
        (tmp_path / "elsewhere.jpg").rename(moved)


@pytest.mark.parametrize("size", [(400, 300), (6000, 4000)])
def test_annotated_labels_scale_with_the_photo(tmp_path, astronaut, size):
    """Readable at any size: the label's height is a steady share of the photo, never under 12 px."""
    from phototag.render.annotate import annotate

    w, h = size
    photo = tmp_path / "p.jpg"
    Image.fromarray(astronaut).resize((w, h)).save(photo)
    box = {"top": h // 4, "bottom": h // 2, "left": w // 4, "right": w // 2}
    faces = [{**box, "age": 3.2, "age_group": "Toddler"}, {**box, "left": w // 2 + 5, "right": w - 5,
                                                           "age": 70, "age_group": "Senior"}]
    names = get_scheme("ten").names
    annotate(photo, faces, tmp_path / "out.png", names)
    out = np.asarray(Image.open(tmp_path / "out.png").convert("RGB")).astype(int)
    colours = [np.array(Image.new("RGB", (1, 1), PALETTE[names.index(g)]))[0, 0] for g in ("Toddler", "Senior")]
    assert np.abs(colours[0] - colours[1]).max() > 60  # two groups, two clearly different colours
    for f, c in zip(faces, colours):
        above = out[: f["top"], f["left"] + 2]  # the label sits on the box's top edge
        tall = int((np.abs(above - c).max(axis=1) < 30).sum())
        assert tall >= 12 and tall >= 0.02 * max(w, h), (size, tall)
