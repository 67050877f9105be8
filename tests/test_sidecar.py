"""XMP sidecars, read back by exiftool: keywords three ways, MWG face regions, merging, re-tag, untag."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from phototag.cli import app

from .conftest import exif_bytes, exiftool, group_photo, save_jpeg
from .test_retag import broken_model_copy

runner = CliRunner()

# A sidecar as digiKam (through Exiv2) leaves it: a rating, the user's keywords and tags, and a face
# region the user named, written as a nested rdf:Description with attributes.
DIGIKAM_SIDECAR = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:digiKam="http://www.digikam.org/ns/1.0/"
    xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/"
    xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#"
    xmlns:stDim="http://ns.adobe.com/xap/1.0/sType/Dimensions#"
    xmlns:acme="http://example.com/acme/1.0/"
   xmp:Rating="4" acme:Album="Summer">
   <dc:subject><rdf:Bag><rdf:li>Holiday</rdf:li><rdf:li>Grandma</rdf:li></rdf:Bag></dc:subject>
   <digiKam:TagsList><rdf:Seq><rdf:li>Places/Beach</rdf:li></rdf:Seq></digiKam:TagsList>
   <mwg-rs:Regions rdf:parseType="Resource">
    <mwg-rs:AppliedToDimensions stDim:w="1600" stDim:h="900" stDim:unit="pixel"/>
    <mwg-rs:RegionList><rdf:Bag>
     <rdf:li><rdf:Description mwg-rs:Name="Grandma" mwg-rs:Type="Face"><mwg-rs:Area stArea:x="0.8"
       stArea:y="0.3" stArea:w="0.1" stArea:h="0.15" stArea:unit="normalized"/></rdf:Description></rdf:li>
    </rdf:Bag></mwg-rs:RegionList>
   </mwg-rs:Regions>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>
"""


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def xmp(path: Path) -> dict:
    """What exiftool reads from a sidecar (all groups, structures kept)."""
    return json.loads(exiftool("-j", "-struct", "-G1", "-XMP:all", str(path)))[0]


def faces_in_index(db: Path, photo: Path) -> list[sqlite3.Row]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    return con.execute("SELECT f.*, p.width, p.height FROM faces f JOIN photos p ON p.id = f.photo_id "
                       "WHERE p.path = ? ORDER BY f.idx", (str(photo),)).fetchall()


@pytest.fixture
def lib(tmp_path, astronaut):
    """Photos as shown 1600 x 900 with faces at known places: one stored rotated (orientation 6), one
    PNG, one with a digiKam sidecar already beside it."""
    lib = tmp_path / "lib"
    shown = group_photo(astronaut, n=2)  # heads at x 80-290 and 410-620, y 200-440
    save_jpeg(lib / "rotated.jpg", np.rot90(shown).copy(), exif_bytes(orientation=6))
    Image.fromarray(shown).save(lib / "family.png")
    save_jpeg(lib / "beach.jpg", shown, exif_bytes(keywords=["Holiday"]))
    (lib / "beach.jpg.xmp").write_text(DIGIKAM_SIDECAR, encoding="utf-8")
    return lib


def check_sidecar(side: Path, db: Path, photo: Path) -> dict:
    """Every value in the sidecar against the index: keywords three ways, one region per face."""
    got = xmp(side)
    rows = faces_in_index(db, photo)
    assert rows, photo
    groups = sorted({r["age_group"] for r in rows})
    ours = [g for g in got.get("XMP-dc:Subject", []) if g.startswith("Age group: ")]
    assert sorted(ours) == [f"Age group: {g}" for g in groups]
    assert sorted(h for h in got["XMP-lr:HierarchicalSubject"] if h.startswith("People|")) == \
        [f"People|Age group|{g}" for g in groups]
    assert sorted(t for t in got["XMP-digiKam:TagsList"] if t.startswith("People/")) == \
        [f"People/Age group/{g}" for g in groups]
    regions = [r for r in got["XMP-mwg-rs:RegionInfo"]["RegionList"] if r.get("Name") != "Grandma"]
    assert len(regions) == len(rows)
    for region, face in zip(regions, rows):
        w, h = face["width"], face["height"]
        # unnamed people get no Name (photo managers would make a person of it); the age is a description
        assert "Name" not in region and region["Type"] == "Face"
        assert region["Description"] == f"{face['age_group']} (~{face['age']:.0f})"
        area = region["Area"]
        assert area["Unit"] == "normalized"
        assert area["X"] == pytest.approx((face["left"] + face["right"]) / 2 / w, abs=1e-5)
        assert area["Y"] == pytest.approx((face["top"] + face["bottom"]) / 2 / h, abs=1e-5)
        assert area["W"] == pytest.approx((face["right"] - face["left"]) / w, abs=1e-5)
        assert area["H"] == pytest.approx((face["bottom"] - face["top"]) / h, abs=1e-5)
    return got


def test_scan_writes_sidecars_that_exiftool_reads(lib, tmp_path, reliability):
    db = tmp_path / "i.db"
    r = run("scan", lib, "--db", db, "--workers", "1", "--sidecar")
    assert r.exit_code == 0, r.output
    assert "not written" not in r.stdout  # the PNG's tags went into its sidecar
    for name in ("rotated.jpg", "family.png", "beach.jpg"):
        got = check_sidecar(lib / f"{name}.xmp", db, lib / name)
        regions = [g for g in got["XMP-mwg-rs:RegionInfo"]["RegionList"] if g.get("Name") != "Grandma"]
        # in the orientation the photo is shown: both heads left of centre, in the upper half
        assert [round(g["Area"]["X"], 2) for g in regions] == pytest.approx([0.12, 0.32], abs=0.03)
        assert all(0.2 < g["Area"]["Y"] < 0.5 for g in regions)
        assert got["XMP-mwg-rs:RegionInfo"]["AppliedToDimensions"]["W"] == 1600
    con = sqlite3.connect(db)
    assert dict(con.execute("SELECT substr(path, -10), tags FROM photos").fetchall()) == {
        "otated.jpg": "written; sidecar written", "family.png": "sidecar written", "/beach.jpg": "written; sidecar written"}
    reliability("XMP sidecar written, read back by exiftool", 3, "keywords three ways and every face region correct")


def test_an_existing_sidecar_keeps_everything_that_is_not_ours(lib, tmp_path, reliability):
    side = lib / "beach.jpg.xmp"
    before = xmp(side)
    assert run("scan", lib, "--db", tmp_path / "i.db", "--workers", "1", "--sidecar").exit_code == 0
    after = check_sidecar(side, tmp_path / "i.db", lib / "beach.jpg")
    assert after["XMP-xmp:Rating"] == 4 and after["XMP-acme:Album"] == "Summer"
    assert after["XMP-dc:Subject"][:2] == ["Holiday", "Grandma"]
    assert after["XMP-digiKam:TagsList"][0] == "Places/Beach"
    grandma = [g for g in after["XMP-mwg-rs:RegionInfo"]["RegionList"] if g.get("Name") == "Grandma"]
    assert grandma == before["XMP-mwg-rs:RegionInfo"]["RegionList"]
    # untag: back to exactly what it was
    r = run("untag", lib, "--db", tmp_path / "i.db")
    assert r.exit_code == 0, r.output
    assert xmp(side) == before
    assert not (lib / "rotated.jpg.xmp").exists() and not (lib / "family.png.xmp").exists()  # only ours in them
    reliability("an existing sidecar (digiKam's) merged into, then untagged", 1,
                "every other field, keyword and region kept; back to exactly the original after untag")


def test_rerun_leaves_sidecars_alone_and_a_new_scheme_updates_them_without_the_model(lib, tmp_path):
    db = tmp_path / "i.db"
    assert run("scan", lib, "--db", db, "--workers", "1", "--sidecar").exit_code == 0
    sides = sorted(lib.glob("*.xmp"))
    first = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sides}
    r = run("scan", lib, "--db", db, "--workers", "1", "--sidecar", "--force")
    assert r.exit_code == 0
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sides} == first  # nothing rewritten
    r = run("scan", lib, "--db", db, "--workers", "1", "--sidecar", "--scheme", "three",
            "--model", broken_model_copy(tmp_path))
    assert r.exit_code == 0 and ", 3 regrouped in " in r.stdout, r.output
    for p in sides:
        photo = p.with_suffix("")
        got = check_sidecar(p, db, photo)
        assert not [s for s in got["XMP-dc:Subject"] if s.startswith("Age group: ")
                    and s.split(": ")[1] not in ("Young", "Middle", "Old")]


def test_lightroom_naming_and_the_config_setting(lib, tmp_path):
    cfg = tmp_path / "phototag.toml"
    cfg.write_text('[scan]\nsidecar = true\nsidecar_style = "replace"\n')
    r = run("--config", cfg, "scan", lib, "--db", tmp_path / "i.db", "--workers", "1", "--no-exif")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in lib.glob("*.xmp")) == ["beach.jpg.xmp", "beach.xmp", "family.xmp", "rotated.xmp"]
    check_sidecar(lib / "rotated.xmp", tmp_path / "i.db", lib / "rotated.jpg")
    assert exiftool("-XPKeywords", "-s3", str(lib / "rotated.jpg")) == ""  # --no-exif: sidecar only
    r = run("untag", lib, "--db", tmp_path / "i.db")
    assert r.exit_code == 0 and sorted(p.name for p in lib.glob("*.xmp")) == ["beach.jpg.xmp"]


def test_bad_settings_are_one_error_line(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[scan]\nsidecars = true\n")
    r = run("--config", cfg, "stats")
    assert r.exit_code == 2
    assert r.stderr == f"Error: settings file {cfg}: scan.sidecars is not an option of `phototag scan`\n"
    cfg.write_text("[scan\n")
    r = run("--config", cfg, "stats")
    assert r.exit_code == 2 and r.stderr.startswith(f"Error: settings file {cfg} is not valid TOML: ")


def test_a_broken_sidecar_is_reported_and_left_alone(lib, tmp_path):
    side = lib / "beach.jpg.xmp"
    side.write_text("<x:xmpmeta this is not xml")
    r = run("scan", lib, "--db", tmp_path / "i.db", "--workers", "1", "--sidecar")
    assert r.exit_code == 1
    assert r.stderr.startswith(f"phototag: {lib / 'beach.jpg'}: its sidecar is not valid XML (")
    assert "tags not written to it (written)" in r.stderr  # the EXIF tags still went in
    assert side.read_text() == "<x:xmpmeta this is not xml"


def test_untag_leaves_a_sidecar_with_nothing_of_ours_alone(lib, tmp_path):
    """An empty sidecar another tool left is not ours to delete, nor to rewrite."""
    empty = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
             '<rdf:Description rdf:about=""/></rdf:RDF></x:xmpmeta>')
    side = lib / "rotated.jpg.xmp"
    side.write_text(empty)
    r = run("untag", lib, "--db", tmp_path / "i.db")
    assert r.exit_code == 0, r.output
    assert side.read_text() == empty and (lib / "beach.jpg.xmp").read_text(encoding="utf-8") == DIGIKAM_SIDECAR


def test_region_shows_the_same_whole_years_as_every_other_view():
    """34.54 is stored as 34.5 in the record; the region must still say ~35, as query and show do."""
    from phototag.tags.sidecar import _Ours

    face = {"box": [10, 60, 60, 10], "age": 34.5, "shown": "35", "group": "Adult"}
    ours = _Ours.of(["Age group: Adult"], ["Adult"], [face], (100, 100))
    assert ours.regions[0][-1] == "Adult (~35)"
    older = {k: v for k, v in face.items() if k != "shown"}  # a record written before "shown" existed
    assert _Ours.of([], ["Adult"], [older], (100, 100)).regions[0][-1] == "Adult (~34)"
