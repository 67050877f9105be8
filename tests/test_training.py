"""training/: prepare through phototag.faces, train, write the card, evaluate with a report."""

import json

import numpy as np
import pytest
from PIL import Image, ImageEnhance


from .conftest import UTKFACE


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
    from phototag.model import load_model
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
    from phototag.groups import get_scheme
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
