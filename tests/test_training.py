"""training/: prepare through phototag.faces, train, write the card, evaluate with a report."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from .conftest import UTKFACE

pytest.importorskip("tensorflow", reason="training needs TensorFlow: the train extra (uv sync --extra train)")


def utkface_like(folder, astronaut, n=40):
    """UTKFace-style 200x200 chips of a real face, varied in crop, brightness and mirroring."""
    folder.mkdir(parents=True, exist_ok=True)
    face = Image.fromarray(astronaut[30:250, 110:330])
    made = 0
    i = 0
    while made < n:
        i += 1
        name = f"{10 + i % 60}_{i % 2}_0_2017011{i:010d}.jpg.chip.jpg"
        im = face.crop((i % 7, i % 5, 220 - i % 6, 220 - i % 4)).resize((200, 200))
        im = ImageEnhance.Brightness(im).enhance(0.8 + (i % 5) / 10)
        if i % 2:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        im.save(folder / name, quality=92)
        made += 1
    (folder / "39_1_20170116174525125.jpg.chip.jpg").write_bytes(b"malformed name: skipped")
    return folder


@pytest.fixture
def tiny_data(tmp_path, astronaut, monkeypatch):
    monkeypatch.setenv("PHOTOTAG_CACHE", str(tmp_path / "cache"))
    return utkface_like(tmp_path / "utk", astronaut)


def test_train_writes_a_model_and_card_that_phototag_loads(tiny_data, tmp_path):
    from phototag.ages.model import load_model
    from training.train import train

    out = tmp_path / "models" / "tiny"
    card = train(f"utkface:{tiny_data}", out, "smoke", workers=1, quiet=True)
    assert out.with_suffix(".keras").is_file()
    import zipfile

    import h5py

    with zipfile.ZipFile(out.with_suffix(".keras")) as z, z.open("model.weights.h5") as f, h5py.File(f) as h5:
        assert "optimizer" not in h5  # weights only: the optimizer's state would triple the file
    on_disk = json.loads(out.with_suffix(".json").read_text())
    assert on_disk == json.loads(json.dumps(card))
    prep = card["training"]["preparation"]
    assert prep["used"] == 40 and prep["skipped"] == {"missing field": 1}
    assert card["training"]["faces"]["train"] + card["training"]["faces"]["val"] + card["training"]["faces"]["test"] == 40
    assert card["hardware"]["cpu_count"] >= 1 and card["config"]["name"] == "age-smoke"
    assert card["git_commit"]
    model = load_model(out)
    from training.prepare import prepare

    p = prepare(f"utkface:{tiny_data}", workers=1, quiet=True)
    pred = model.predict_descriptors(p.descriptors)
    assert pred.distribution.shape == (40, 101) and pred.female.shape == (40,)
    # the cache is reused: a second prepare does no detection
    assert prepare(f"utkface:{tiny_data}", workers=1, quiet=True).descriptors.tobytes() == p.descriptors.tobytes()


def test_evaluate_writes_metrics_report_and_plots(tiny_data, tmp_path):
    from training.evaluate import evaluate
    from training.train import train

    out = tmp_path / "m" / "tiny"
    train(f"utkface:{tiny_data}", out, "smoke", workers=1, quiet=True)
    report = tmp_path / "report"
    m = evaluate(out, f"utkface:{tiny_data}", split="all", report=report, workers=1, quiet=True)
    assert m["faces"] == 40
    assert set(m["mae_by_band"]) == {"0-2", "3-12", "13-19", "20-39", "40-59", "60+"}
    assert set(m["groups"]) == {"ten", "three", "four", "adience"}
    assert 0 <= m["groups"]["ten"]["exact"] <= m["groups"]["ten"]["one_off"] <= 1
    assert m["speed"]["head_faces_per_second"] > 0 and m["speed"]["descriptor_seconds_per_face"] > 0
    assert json.loads((report / "metrics.json").read_text())["mae"] == pytest.approx(m["mae"])
    text = (report / "report.md").read_text()
    assert "| MAE (years) |" in text
    for png in ("scatter.png", "off_by_n.png", "confusion.png", "mae_by_band.png"):
        assert Image.open(report / png).size[0] > 300
        assert f"![{png}]({png})" in text


def test_group_accuracy_one_off_counts_neighbours():
    from phototag.ages.groups import get_scheme
    from training.evaluate import group_accuracy

    s = get_scheme("ten")
    dist = np.zeros((3, 101))
    dist[0, 3] = dist[1, 5] = dist[2, 40] = 1  # Toddler, Child, Mature Adult
    acc = group_accuracy(dist, np.array([3, 3, 3]), s)
    assert acc == {"exact": pytest.approx(1 / 3), "one_off": pytest.approx(2 / 3)}


@pytest.mark.skipif(not UTKFACE.is_dir(), reason="needs ../shared/datasets/utkface (not on this machine)")
def test_shipped_model_on_a_utkface_sample(tmp_path):
    """The shipped model on 1,000 UTKFace faces it may have trained on; its test-split faces are held out."""
    from training.evaluate import evaluate

    m = evaluate(None, f"utkface:{UTKFACE}", split="test", limit=1000, quiet=True)
    assert m["faces"] >= 60
    assert m["mae"] < 7.5, m
    assert m["groups"]["ten"]["one_off"] > 0.85


def test_cli_train_and_evaluate_errors_are_one_line(tmp_path):
    from typer.testing import CliRunner

    from phototag.cli import app

    r = CliRunner().invoke(app, ["evaluate", "--data", "nope"])
    assert (r.exit_code, r.stderr) == (
        2, "Error: data spec 'nope' is not READER:PATH (readers: utkface, utkface_csv, wiki, labelled_csv, fgnet, adience)\n")
    r = CliRunner().invoke(app, ["train", "--data", f"utkface:{tmp_path}/none", "--out", str(tmp_path / "m")])
    assert (r.exit_code, r.stderr) == (2, f"Error: {tmp_path}/none: no such file or folder\n")


def test_augmentations_are_seeded_by_key_recorded_and_each_does_what_it_says(astronaut):
    from training.augment import OPERATIONS, POLICIES, apply, augment, draw
    from training.evaluate import black_and_white

    img = astronaut[30:250, 110:330]
    a, ops_a = augment(img, "utk/1.jpg", 150)
    b, ops_b = augment(img, "utk/1.jpg", 150)
    assert ops_a == ops_b and a.tobytes() == b.tobytes()  # the same face always gets the same copy
    assert a.shape == img.shape and a.dtype == np.uint8
    drawn = [draw(f"k{i}")[0] for i in range(400)]
    assert all(ops and set(ops) <= set(OPERATIONS) for ops in drawn)  # never nothing, only known names
    colour = [sum(o in ("grey", "sepia", "fade", "cast") for o in ops) for ops in drawn]
    assert max(colour) == 1  # at most one colour treatment per copy
    share = np.mean([ops.count("grey") for ops in drawn])
    assert abs(share - POLICIES["archive"]["grey"]) < 0.07
    rng = np.random.default_rng
    for op in OPERATIONS:
        out = apply(img, [op], rng(0), 150)
        assert np.abs(out.astype(int) - img).mean() > 1.0, op  # every operation changes the photo
    grey = apply(img, ["grey"], rng(0), 150)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    thumbs = np.stack([np.asarray(Image.fromarray(x).resize((64, 64))) for x in (img, grey,
                                                                                 apply(img, ["sepia"], rng(0), 150))])
    assert black_and_white(thumbs).tolist() == [False, True, False]  # sepia is toned, not grey
    # a small face brought back up has lost its fine detail: less energy between neighbouring pixels
    small = apply(img, ["lowres"], rng(0), 150).astype(float)
    assert np.abs(np.diff(small, axis=1)).mean() < 0.7 * np.abs(np.diff(img.astype(float), axis=1)).mean()


def fgnet_like(folder, astronaut, people=4, each=3):
    """FG-NET-style names (person 00P at age AA) on real face photos, some black-and-white."""
    folder.mkdir(parents=True, exist_ok=True)
    face = Image.fromarray(astronaut[10:270, 90:350])
    for p in range(people):
        for k in range(each):
            im = face.rotate(3 * k - 3).resize((240, 240))
            if (p + k) % 3 == 0:
                im = im.convert("L").convert("RGB")
            im.save(folder / f"{p + 1:03d}A{5 + 10 * k:02d}.JPG", quality=90)
    return folder


def test_train_with_augmentation_and_fgnet_people_crossvalidated(tiny_data, tmp_path, astronaut):
    from training.prepare import prepare, prepare_augmented
    from training.train import train

    fg = fgnet_like(tmp_path / "fg", astronaut)
    cfg = json.loads((Path(__file__).parents[1] / "training" / "configs" / "smoke.json").read_text())
    cfg.update(augment="archive", extra_weight=3.0, folds=2)
    (tmp_path / "aug.json").write_text(json.dumps(cfg))
    out = tmp_path / "models" / "aug"
    card = train(f"utkface:{tiny_data}", out, tmp_path / "aug.json", extra=[f"fgnet:{fg}"], workers=1, quiet=True)
    faces = card["training"]["faces"]
    clean = prepare(f"utkface:{tiny_data}", workers=1, quiet=True)
    worse = prepare_augmented(f"utkface:{tiny_data}", "archive", workers=1, quiet=True)
    assert worse.keys.tolist() == clean.keys.tolist() and all(worse.augs)  # one degraded copy of every face
    assert not np.allclose(worse.descriptors, clean.descriptors)
    assert faces["train"] == 2 * int((clean.splits == "train").sum())  # each train face and its copy
    assert faces["test_degraded"] == faces["test"] == int((clean.splits == "test").sum())
    assert card["training"]["augment"]["policy"] == "archive"
    assert card["training"]["extra"] == {"fgnet": {"faces": 12, "weight": 3.0, "folds": 2}}
    cv = card["metrics"]["crossval"]["fgnet"]
    assert cv["faces"] == 12 and cv["folds"] == 2 and cv["people_split"] is True
    assert cv["by_colour"]["black_and_white"]["faces"] == 4
    assert "FG-NET" in card["licence"] and "UTKFace" in card["licence"]
    # evaluating it on the faces it learned from says so, and points to the cross-validated figure
    from typer.testing import CliRunner

    from phototag.cli import app

    r = CliRunner().invoke(app, ["evaluate", "--data", f"fgnet:{fg}", "--model", str(out), "--split", "all", "-q"])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[-1] == (
        "note: this model learned from these faces, so the figures above flatter it; its card's cross-validated "
        f"figure, on people each fold model never saw: MAE {cv['mae']:.2f}, bias {cv['bias']:+.2f} on 12 faces")


def test_people_folds_keep_a_person_together():
    from training.sets import person_folds

    persons = np.array([f"fgnet/{i // 5:03d}" for i in range(200)])
    folds = person_folds(persons, 5)
    for p in set(persons):
        assert len(set(folds[persons == p])) == 1
    assert set(folds) == {0, 1, 2, 3, 4}
