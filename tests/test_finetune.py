"""training/chips, finetune and ship: dlib's descriptor network fine-tuned for age, end to end, on
chips of real faces, exported to a .tflite that phototag loads and that gives the Keras network's ages."""

import json
from argparse import Namespace

import numpy as np
import pytest

from .test_training import fgnet_like, utkface_like

pytest.importorskip("tensorflow", reason="exporting the network needs TensorFlow: the train extra")


def test_chips_are_the_aligned_crops_phototag_cuts(tmp_path, astronaut):
    from phototag import faces
    from training.chips import chips_for, export_chips, load_chips
    from training.prepare import locate
    from training.readers import open_data

    utk = utkface_like(tmp_path / "utk", astronaut, n=6)
    info = export_chips(f"utkface:{utk}", tmp_path / "c.npz", workers=1)
    assert info["faces"] == 6 and info["skipped"] == 0
    z = load_chips(tmp_path / "c.npz")
    assert z["chips"].shape == (6, 150, 150, 3) and z["chips"].dtype == np.uint8
    records = {r.key: r for r in open_data(f"utkface:{utk}")[0]}
    for key, chip, age in zip(z["keys"], z["chips"], z["ages"]):
        rgb, box, _ = locate(records[key])
        want = faces.align_and_crop(rgb, box).chip.astype(float)
        psnr = 10 * np.log10(255**2 / np.mean((chip - want) ** 2))
        assert psnr > 35, psnr  # the same crop, through WebP at quality 90
        assert age == records[key].age
    # the evaluation path: the same chips, cut once and cached, in the order asked for
    keys = z["keys"][::-1]
    got = chips_for(f"utkface:{utk}", keys, workers=1)
    assert np.array_equal(got, z["chips"][::-1])


def test_finetune_crossvalidates_by_person_and_ships_a_tflite_phototag_loads(tmp_path, astronaut, monkeypatch):
    monkeypatch.setenv("PHOTOTAG_CACHE", str(tmp_path / "cache"))
    from phototag.dlib_dat import read_dat
    from phototag.engine import source_files
    from phototag.model import load_model
    from training.chips import export_chips, load_chips
    from training.finetune import build_age_net, load_weight_files, run
    from training.ship import crossval_metrics, export, write_card

    utk = utkface_like(tmp_path / "utk", astronaut, n=16)
    fg = fgnet_like(tmp_path / "fg", astronaut)
    export_chips(f"utkface:{utk}", tmp_path / "utk.npz", workers=1)
    export_chips(f"fgnet:{fg}", tmp_path / "fg.npz", workers=1)
    out = tmp_path / "out"
    out.mkdir()
    args = Namespace(dat=source_files()["descriptor"].parent, train=tmp_path / "utk.npz", extra=tmp_path / "fg.npz",
                     out=out, epochs=2, batch=8, lr=1e-4, folds=2, variants=1, extra_weight=3.0, seed=1, limit=None,
                     workers=1)
    report = run(args)
    saved = json.loads((out / "finetune.json").read_text())
    cv = saved["fgnet_crossval"]
    assert saved["faces"] == {"main": 16, "extra": 12}
    assert len(cv["keys"]) == 12 and all(isinstance(p, float) for p in cv["predicted"])  # every face held out once
    assert set(saved["files"]) == {"1", "2"} and report["files"] == saved["files"]
    weights = sorted(out.glob("age-net-e2-*.npz"))
    model = build_age_net(read_dat(source_files()["descriptor"]))
    model.set_weights(load_weight_files(weights))
    # shipped: a .tflite on uint8 chips, with a card phototag honours
    base = tmp_path / "models" / "tiny-resnet"
    base.parent.mkdir()
    export(weights, base)
    fg_chips = load_chips(tmp_path / "fg.npz")
    metrics = {"val": {"faces": 0}, "test": {"faces": 0},
               "crossval": {"fgnet": crossval_metrics(saved, dict(zip(fg_chips["keys"], fg_chips["chips"])))}}
    write_card(base, saved, 2, metrics, {"rule": "test"}, "0000000")
    shipped = load_model(base)
    assert shipped.input_kind == "chip" and shipped.card["metrics"]["crossval"]["fgnet"]["faces"] == 12
    chips = fg_chips["chips"][:5]
    keras_dist = np.asarray(model.predict(chips, verbose=0)["age"])
    tflite = shipped.predict_chips(chips)
    assert shipped.runtime == "litert"
    ages = np.arange(101)
    assert np.abs(tflite.distribution @ ages - keras_dist @ ages).max() < 0.05
