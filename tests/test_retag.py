"""Scheme changes without the model, untag, and what a killed run leaves behind."""

import json
import os
import shutil
import sqlite3

from typer.testing import CliRunner

from phototag.cli import app
from phototag.ages.groups import point_ages
from phototag.ages.groups import unpack_distribution
from phototag.ages.model import DEFAULT_MODEL, MODELS_DIR, load_model
from phototag.tags.exif import read_tags

from .conftest import exiftool

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def broken_model_copy(tmp_path):
    """The shipped card (so the same model id) over weights that cannot load: any model call fails."""
    folder = tmp_path / "broken-model"
    folder.mkdir(exist_ok=True)
    shutil.copy(MODELS_DIR / f"{DEFAULT_MODEL}.json", folder / f"{DEFAULT_MODEL}.json")
    for ext in ("keras", "tflite"):  # whichever the card's kind of model reads
        (folder / f"{DEFAULT_MODEL}.{ext}").write_bytes(b"not a model")
    return folder / DEFAULT_MODEL


def test_a_new_scheme_retags_from_the_index_without_the_model(library, tmp_path):
    db = tmp_path / "i.db"
    assert run("scan", library / "2019", "--db", db, "--workers", "1").exit_code == 0
    photo = library / "2019" / "wedding" / "astronaut.jpg"
    age = sqlite3.connect(db).execute("SELECT age FROM faces f JOIN photos p ON p.id = f.photo_id WHERE p.path = ?",
                                      (str(photo),)).fetchone()[0]
    before = sqlite3.connect(db).execute("SELECT id, age, distribution FROM faces ORDER BY id").fetchall()
    point = load_model().point
    for _, shown, blob in before:  # the age shown is the model's rule applied to its distribution
        dist = unpack_distribution(blob)
        if point == "mode":  # the most probable year (float16 storage may blur a near tie)
            assert shown == int(shown) and dist[int(shown)] >= dist.max() - 2e-3
        else:
            assert abs(shown - float(point_ages(dist, point))) < 0.02
    r = run("scan", library / "2019", "--db", db, "--workers", "1", "--scheme", "three",
            "--model", broken_model_copy(tmp_path))
    assert r.exit_code == 0, r.output
    assert ", 2 regrouped in " in r.stdout and "0 skipped, 2 tagged, 3 faces" in r.stdout
    expected = "Young" if age < 29.5 else "Middle" if age < 59.5 else "Old"
    assert read_tags(photo)[0] == ["Holiday", "Grandma", f"Age group: {expected}"]
    rows = sqlite3.connect(db).execute("SELECT DISTINCT scheme, age_group FROM faces").fetchall()
    assert {s for s, _ in rows} == {"three"} and {g for _, g in rows} <= {"Young", "Middle", "Old"}
    # regrouping keeps the ages the scan showed: a scheme only regroups them
    assert sqlite3.connect(db).execute("SELECT id, age, distribution FROM faces ORDER BY id").fetchall() == before
    assert json.loads(exiftool("-s3", "-UserComment", str(photo)))["scheme"] == "three"
    # a photo without faces regroups too (nothing to write)
    run("scan", library / "2020", "--db", db, "--workers", "1")
    r = run("scan", library / "2020", "--db", db, "--workers", "1", "--scheme", "four", "--model",
            broken_model_copy(tmp_path))
    assert r.exit_code == 0 and ", 2 regrouped in " in r.stdout, r.output


def test_untag_removes_exactly_ours_and_sticks_until_force(library, tmp_path):
    db = tmp_path / "i.db"
    photo = library / "2019" / "wedding" / "astronaut.jpg"
    original = exiftool("-j", "-G", "-a", str(photo))
    run("scan", library, "--db", db, "--workers", "1")
    r = run("untag", library, "--db", db)
    assert r.exit_code == 0 and r.stdout.startswith("7 files seen, 2 untagged, 0 failed")
    assert read_tags(photo) == (["Holiday", "Grandma"], None)
    strip = lambda j: {k: v for k, v in json.loads(j)[0].items() if k.split(":")[0] not in ("System", "File")}  # noqa: E731
    assert strip(exiftool("-j", "-G", "-a", str(photo))) == strip(original)
    again = run("scan", library, "--db", db, "--workers", "1")
    assert "0 tagged" in again.stdout and read_tags(photo)[1] is None
    run("scan", library, "--db", db, "--workers", "1", "--force")
    assert read_tags(photo)[1] is not None


def test_a_staged_copy_left_by_a_killed_run_is_removed_by_the_next(library, tmp_path):
    folder = library / "2019"
    dead = folder / ".GROUP.JPG.phototag-999999.tmp"
    dead.write_bytes(b"half a photo")
    alive = folder / f".GROUP.JPG.phototag-{os.getppid()}.tmp"  # a live process: maybe another index's scan
    alive.write_bytes(b"being written")
    r = run("scan", folder, "--db", tmp_path / "i.db", "--workers", "1", "--no-exif")
    assert "1 leftover temp files removed" in r.stdout
    assert not dead.exists() and alive.exists()
    r = run("scan", folder, "--db", tmp_path / "j.db", "--workers", "1", "--dry-run")
    assert alive.exists()


def test_a_metadata_only_change_is_retagged_without_the_model(library, tmp_path):
    db = tmp_path / "i.db"
    photo = library / "2019" / "wedding" / "astronaut.jpg"
    run("scan", library / "2019", "--db", db, "--workers", "1")
    ours = read_tags(photo)[0][2:]
    exiftool("-overwrite_original", "-XPKeywords=Holiday;Grandma;Beach", str(photo))  # edited in another tool
    r = run("scan", library / "2019", "--db", db, "--workers", "1", "--model", broken_model_copy(tmp_path))
    assert r.exit_code == 0, r.output
    assert "1 skipped, 1 tagged" in r.stdout and "1 regrouped" in r.stdout
    assert read_tags(photo)[0] == ["Holiday", "Grandma", "Beach", *ours]
    # the pixels changed: that one needs the model, and says so
    from PIL import Image, ImageEnhance

    ImageEnhance.Brightness(Image.open(photo)).enhance(1.1).save(photo, quality=90)
    r = run("scan", library / "2019", "--db", db, "--workers", "1", "--model", broken_model_copy(tmp_path))
    assert r.exit_code == 2
    assert r.stderr == (f"Error: {tmp_path}/broken-model/{DEFAULT_MODEL}.tflite: missing, or not the file its card "
                        "describes (checksum differs)\n")
