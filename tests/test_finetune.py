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
    from phototag.faces.dlib_dat import read_dat
    from phototag.faces.engine import source_files
    from phototag.ages.model import load_model
    from training.chips import export_chips, load_chips
    from training.finetune import build_age_net, load_weight_files, run
    from training.ship import crossval_metrics, export, merge_crossval, merge_runs, write_card

    utk = utkface_like(tmp_path / "utk", astronaut, n=16)
    fg = fgnet_like(tmp_path / "fg", astronaut)
    export_chips(f"utkface:{utk}", tmp_path / "utk.npz", workers=1)
    export_chips(f"fgnet:{fg}", tmp_path / "fg.npz", workers=1)
    # split over two calls, as a device's time limit asks: one person's fold, then the rest and the final network
    from training.sets import person_folds

    folds = person_folds(load_chips(tmp_path / "fg.npz")["persons"], 3)
    ran_first = [int(folds[0])]
    ran_then = sorted(set(folds.tolist()) - set(ran_first))
    assert ran_then, "the test's people all fell in one fold"
    first, out = tmp_path / "call1", tmp_path / "out"
    first.mkdir(), out.mkdir()
    common = dict(dat=source_files()["descriptor"].parent, train=tmp_path / "utk.npz", extra=tmp_path / "fg.npz",
                  epochs=2, batch=8, lr=1e-4, folds=3, variants=1, extra_weight=3.0, seed=1, limit=None, workers=1,
                  gender_weight=0.1, mixed_bf16=False, train_from=None)
    run(Namespace(out=first, folds_run=ran_first, no_final=True, **common))
    report = run(Namespace(out=out, folds_run=ran_then, no_final=False, **common))
    parts = [json.loads((d / "finetune.json").read_text()) for d in (first, out)]
    assert not parts[0]["files"] and not list(first.glob("age-net-*.npz"))
    held = [[p is not None for p in part["fgnet_crossval"]["predicted"]] for part in parts]
    assert all(a != b for a, b in zip(*held)) and all(any(h) for h in held)  # each face held out in one call
    for d, h in zip((first, out), held):  # each call keeps the distributions of the faces it held out
        dist = np.load(d / "fgnet-crossval.npz")["distributions"]
        assert (~np.isnan(dist).any(axis=1)).tolist() == h
    saved = merge_runs(parts)
    cv = saved["fgnet_crossval"]
    assert saved["faces"] == {"main": 16, "extra": 12}
    assert len(cv["keys"]) == 12 and all(isinstance(p, float) for p in cv["predicted"])  # every face held out once
    assert set(saved["files"]) == {"1", "2"} and report["files"] == saved["files"]
    assert {f"fold{f}" for f in ran_first + ran_then} | {"final"} <= set(saved["timings"])
    with pytest.raises(ValueError, match="in no run's held-out fold"):
        merge_runs(parts[1:])
    # the distributions merge the same way, and their means are the reported ages
    dist = merge_crossval([first, out], cv["keys"])
    assert np.abs(dist @ np.arange(101) - np.array(cv["predicted"])).max() < 1e-3
    with pytest.raises(ValueError, match="FG-NET faces have no held-out distribution"):
        merge_crossval([out], cv["keys"])
    with pytest.raises(ValueError, match="a face held out by two calls"):
        merge_crossval([out, out], cv["keys"])
    weights = sorted(out.glob("age-net-e2-*.npz"))
    model = build_age_net(read_dat(source_files()["descriptor"]))
    model.set_weights(load_weight_files(weights))
    # shipped: a .tflite on uint8 chips, with a card phototag honours
    base = tmp_path / "models" / "tiny-resnet"
    base.parent.mkdir()
    export(weights, base)
    fg_chips = load_chips(tmp_path / "fg.npz")
    metrics = {"val": {"faces": 0}, "test": {"faces": 0},
               "crossval": {"fgnet": crossval_metrics(saved, dict(zip(fg_chips["keys"], fg_chips["chips"])), dist,
                                                      "mode")}}
    fg_mode = metrics["crossval"]["fgnet"]
    assert fg_mode["point"] == "mode"
    assert fg_mode["mae"] == pytest.approx(np.abs(dist.argmax(axis=1) - np.array(cv["ages"])).mean())
    thumbs = dict(zip(fg_chips["keys"], fg_chips["chips"]))
    assert crossval_metrics(saved, thumbs)["mae"] == pytest.approx(crossval_metrics(saved, thumbs, dist)["mae"],
                                                                  abs=1e-3)  # the mean: from either
    with pytest.raises(ValueError, match=r"the mode of FG-NET's held-out faces needs their distributions"):
        crossval_metrics(saved, thumbs, None, "mode")
    write_card(base, saved, 2, metrics, {"rule": "test"}, "0000000", point="mode")
    shipped = load_model(base)
    assert shipped.input_kind == "chip" and shipped.card["metrics"]["crossval"]["fgnet"]["faces"] == 12
    assert shipped.point == "mode" and "fine-tuned end to end" in shipped.card["description"]
    chips = fg_chips["chips"][:5]
    keras_dist = np.asarray(model.predict(chips, verbose=0)["age"])
    tflite = shipped.predict_chips(chips)
    assert shipped.runtime == "litert"
    ages = np.arange(101)
    assert np.abs(tflite.distribution @ ages - keras_dist @ ages).max() < 0.05


def test_packed_dlib_weights_build_the_same_network(tmp_path):
    """The float16 copy of dlib's .dat that travels to a GPU machine: same layers, weights to fp16."""
    from phototag.faces.dlib_dat import read_dat
    from phototag.faces.engine import source_files
    from training.finetune import pack_dat, read_layers

    dat = source_files()["descriptor"]
    packed = pack_dat(dat, tmp_path / "dlib.npz")
    assert packed.stat().st_size < 0.6 * dat.stat().st_size
    want, got = read_dat(dat), read_layers(packed)
    assert [(a.kind, a.params) for a in want] == [(b.kind, b.params) for b in got]
    for a, b in zip(want, got):
        assert a.weights.keys() == b.weights.keys()
        for k in a.weights:
            assert b.weights[k].dtype == np.float32
            np.testing.assert_allclose(b.weights[k], a.weights[k], rtol=1e-3, atol=1e-4)
    assert len(read_layers(dat.parent)) == len(want)  # a folder holding the .dat reads it as it is


def test_train_from_keeps_dlibs_lower_layers_and_trains_the_rest(tmp_path, astronaut, monkeypatch):
    """The CPU's fine-tune: dlib's weights below the cut come out as they went in, the layers above
    are trained, and the whole network computes what the two halves compute."""
    from phototag.faces.dlib_dat import read_dat
    from phototag.faces.engine import source_files
    from training.chips import export_chips, load_chips
    from training.finetune import build_age_net, load_weight_files, run
    from training.frozen import features, split_at

    utk = utkface_like(tmp_path / "utk", astronaut, n=12)
    fg = fgnet_like(tmp_path / "fg", astronaut)
    export_chips(f"utkface:{utk}", tmp_path / "utk.npz", workers=1)
    export_chips(f"fgnet:{fg}", tmp_path / "fg.npz", workers=1)
    out = tmp_path / "out"
    out.mkdir()
    args = Namespace(dat=source_files()["descriptor"].parent, train=tmp_path / "utk.npz",
                     extra=tmp_path / "fg.npz", out=out, epochs=2, batch=8, lr=1e-3, folds=3, variants=1,
                     extra_weight=3.0, seed=1, limit=None, workers=1, gender_weight=0.1, mixed_bf16=False,
                     folds_run=None, no_final=False, train_from="relu70", balance=0.5,
                     features_cache=tmp_path / "cache" / "f.npy", val=tmp_path / "fg.npz")
    report = run(args)
    assert report["timings"]["features"] > 0
    predicted = report["fgnet_crossval"]["predicted"]
    assert all(isinstance(p, float) for p in predicted)  # each face held out once
    held = np.load(out / "fgnet-crossval.npz")  # the held-out distributions, for any point estimate
    assert list(held["keys"]) == report["fgnet_crossval"]["keys"]
    np.testing.assert_allclose(held["distributions"].sum(axis=1), 1, atol=1e-4)
    np.testing.assert_allclose(held["distributions"] @ np.arange(101), predicted, atol=2e-3)
    dlib = build_age_net(read_dat(source_files()["descriptor"]))
    trained = build_age_net(read_dat(source_files()["descriptor"]))
    trained.set_weights(load_weight_files(sorted(out.glob("age-net-e2-*.npz"))))
    below, above = [], []
    cut = [layer.name for layer in trained.get_layer("dlib_face_descriptor").layers].index("relu70")
    for i, (a, b) in enumerate(zip(dlib.get_layer("dlib_face_descriptor").layers,
                                   trained.get_layer("dlib_face_descriptor").layers)):
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            (below if i <= cut else above).append(np.array_equal(wa, wb))
    assert below and all(below), "a frozen layer changed"
    assert above and not any(above), "a layer above the cut did not train"
    chips = load_chips(tmp_path / "fg.npz")["chips"][:4]
    lower, upper = split_at(trained, "relu70")
    whole = np.asarray(trained.predict(chips, verbose=0)["age"])
    halves = np.asarray(upper.predict(features(lower, chips).astype(np.float32), verbose=0)["age"])
    ages = np.arange(101)
    assert np.abs(whole @ ages - halves @ ages).max() < 0.05  # float16 features: the same ages
    with pytest.raises(ValueError, match="no layer 'relu71'"):
        split_at(trained, "relu71")
    with pytest.raises(ValueError, match="'relu67' is inside a residual block of dlib's network: cut where a "
                                         "block ends, at one of .*relu65, relu70"):
        split_at(trained, "relu67")
    # each checkpoint measured on the validation faces, clean and mirrored
    val = np.load(out / "val-e2.npz")
    faces = len(load_chips(tmp_path / "fg.npz")["keys"])
    assert val["distributions"].shape == val["distributions_mirrored"].shape == (faces, 101)
    np.testing.assert_allclose(val["distributions"].sum(axis=1), 1, atol=1e-4)
    assert not np.allclose(val["distributions"], val["distributions_mirrored"])
    assert set(report["val"]) == {"1", "2"} and report["val"]["2"]["mode"] >= 0
    assert "distributions_mirrored" in held.files
    # a second run on the same faces reads the frozen features back instead of computing them: the
    # cache holds dlib's own lower layers' output for every face, clean and mirrored
    import training.finetune as ft

    def no_copies(*args, **kwargs):
        raise AssertionError("the degraded copies were drawn again")

    again = tmp_path / "again"
    again.mkdir()
    monkeypatch.setattr(ft, "_variants", no_copies)
    second = ft.run(Namespace(**{**vars(args), "out": again}))
    assert all(isinstance(p, float) for p in second["fgnet_crossval"]["predicted"])
    table = np.load(tmp_path / "cache" / "f.npy", mmap_mode="r")
    every = np.concatenate([load_chips(tmp_path / "utk.npz")["chips"], load_chips(tmp_path / "fg.npz")["chips"]])
    assert table.shape[:3] == (2, 2, len(every))  # mirrored or not, clean or the one degraded copy
    dlib_lower, _ = split_at(dlib, "relu70")
    np.testing.assert_allclose(table[0, 0], features(dlib_lower, every), atol=2e-2, rtol=1e-2)
    np.testing.assert_allclose(table[1, 0], features(dlib_lower, every[:, :, ::-1]), atol=2e-2, rtol=1e-2)


def test_balance_weights_lift_the_rare_ages():
    from training.finetune import balance_weights

    ages = np.array([30] * 80 + [70] * 20)
    w = balance_weights(ages, 0.5)
    assert w.mean() == pytest.approx(1.0)
    assert w[-1] / w[0] == pytest.approx(2.0, rel=0.01)  # four times rarer, weighed twice as much
    assert np.array_equal(balance_weights(ages, 0.0), np.ones(100, np.float32))
    smooth = balance_weights(np.array([30] * 50 + [31] * 50), 1.0)
    assert np.allclose(smooth, 1.0, atol=0.01)  # neighbouring years share a density


def test_recard_gives_the_shipped_network_new_output_rules(tmp_path, astronaut):
    """training/recard.py: the training ages' prior (FG-NET counted as training counted it), and a
    card that phototag loads and honours: the mirror average, the prior correction, the point rule."""
    import shutil

    from phototag.ages.groups import correct_prior, point_ages
    from phototag.ages.model import DEFAULT_MODEL, MODELS_DIR, load_model
    from training.recard import recard, training_prior

    prior = training_prior(np.array([30, 30, 30, 70]), np.array([1.0, 1.0, 1.0, 3.0]))
    assert prior.mean() == pytest.approx(1.0, abs=1e-3) and prior[30] == pytest.approx(prior[70], rel=1e-6)
    assert prior.min() == pytest.approx(1e-3)  # an age never seen is rare, not impossible
    assert prior[50] < prior[30] and prior[0] < prior[30]
    shipped = load_model()
    card = recard(shipped.card, point="mode-or-median", mirror=True, prior=prior, power=0.5, prior_note="test")
    assert shipped.card["outputs"]["age"].get("prior") is None or shipped.card is not card
    (tmp_path / "m.json").write_text(json.dumps(card))
    shutil.copy(MODELS_DIR / f"{DEFAULT_MODEL}.tflite", tmp_path / "m.tflite")
    m = load_model(tmp_path / "m")
    assert m.mirror_average and m.point == "mode-or-median"
    from .test_model import _real_chips

    chips = _real_chips(astronaut)
    plain = load_model(MODELS_DIR / DEFAULT_MODEL)
    plain.card = recard(plain.card, point="mode", mirror=False, prior=None, power=0, prior_note="")
    a, b = plain.predict_chips(chips).distribution, plain.predict_chips(chips[:, :, ::-1]).distribution
    want = correct_prior((a + b) / 2, prior, 0.5)
    got = m.predict_chips(chips).distribution
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert point_ages(got, m.point).tolist() == point_ages(want, "mode-or-median").tolist()
