"""Ship a network fine-tuned by training/finetune.py: one LiteRT file in `models/` and its card.

    python -m training.ship --run DIR [DIR ...] --epochs 25 --val val.npz --test test.npz --dev adience.npz \\
        --out models/age-dlib-resnet

DIR is what a device run sent back (finetune.json and the weight files); a training split over
several calls (`--folds-run`, `--no-final`) gives one DIR per call, and their reports are merged.
The network is rebuilt from dlib's .dat and the weights, exported with a uint8 chip input (the (pixel - mean) / 256 of
dlib's input layer is inside it), and then measured as shipped: the card's figures come from the
.tflite under LiteRT, on chips cut here by training/chips.py. FG-NET's figure is the device run's
cross-validation by person. Model selection (the epoch count) is on validation data only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from phototag.ages.groups import POINTS, point_ages
from phototag.ages.model import AGE_BINS, CARD_FORMAT
from phototag.runtime import file_sha256 as _sha256
from training.augment import AUGMENT_VERSION, POLICIES
from training.evaluate import BANDS, black_and_white, group_metrics, metrics_for
from training.finetune import CROSSVAL_FILE, build_age_net, load_weight_files, score_crossval

__all__ = ["export", "merge_runs", "merge_crossval", "crossval_metrics", "write_card"]


def export(weights: list[Path], out: Path) -> Path:
    """The fine-tuned network as a .tflite taking uint8 chips (n x 150 x 150 x 3)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from phototag.faces.dlib_dat import read_dat
    from phototag.faces.engine import source_files

    model = build_age_net(read_dat(source_files()["descriptor"]))
    model.set_weights(load_weight_files(weights))

    @tf.function(input_signature=[tf.TensorSpec([None, 150, 150, 3], tf.uint8)])
    def serve(x):
        return model(x, training=False)

    frozen = convert_variables_to_constants_v2(serve.get_concrete_function())
    path = out.with_suffix(".tflite")
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([frozen]).convert())
    return path


def merge_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One report from the reports of a training split over several calls: each fold's predictions
    from the call that ran it, the weight files from the call that trained the final network."""
    finals = [r for r in runs if r.get("files")]
    if len(finals) != 1:
        raise ValueError(f"{len(finals)} of the runs trained a final network: exactly one must")
    out = json.loads(json.dumps(finals[0]))
    cv = out["fgnet_crossval"]
    if any(r["fgnet_crossval"]["keys"] != cv["keys"] for r in runs):
        raise ValueError("the runs cross-validated different faces")
    cv["predicted"] = [next((r["fgnet_crossval"]["predicted"][i] for r in runs
                             if r["fgnet_crossval"]["predicted"][i] is not None), None) for i in range(len(cv["keys"]))]
    if None in cv["predicted"]:
        raise ValueError(f"{cv['predicted'].count(None)} FG-NET faces were in no run's held-out fold")
    score_crossval(cv)
    timings: dict[str, float] = {}
    for r in runs:
        for k, v in r["timings"].items():
            timings[k] = round(timings.get(k, 0.0) + v, 1) if k in ("data", "total") else v
    out["timings"] = timings
    return out


def merge_crossval(runs: list[Path], keys: list[str], mirror: bool = False) -> np.ndarray | None:
    """The held-out age distributions of every FG-NET face (in `keys`' order), each from the call
    whose fold held it out, averaged with the face's mirror image's where `mirror`; None where the
    runs predate the distributions file (they kept means only)."""
    files = [d / CROSSVAL_FILE for d in runs]
    if not all(f.is_file() for f in files):
        return None
    out = None
    for f in files:
        z = np.load(f)
        if [str(k) for k in z["keys"]] != keys:
            raise ValueError(f"{f}: cross-validated different faces from the report")
        d = z["distributions"].astype(np.float64)
        if mirror:
            if "distributions_mirrored" not in z.files:
                raise ValueError(f"{f}: holds no mirrored distributions (trained before they were kept)")
            d = (d + z["distributions_mirrored"].astype(np.float64)) / 2
        if out is None:
            out = np.full_like(d, np.nan)
        held = ~np.isnan(d).any(axis=1)
        if (held & ~np.isnan(out).any(axis=1)).any():
            raise ValueError(f"{f}: a face held out by two calls")
        out[held] = d[held]
    assert out is not None
    if np.isnan(out).any():
        raise ValueError(f"{int(np.isnan(out).any(axis=1).sum())} FG-NET faces have no held-out distribution")
    return out


def crossval_metrics(run: dict[str, Any], thumbs: dict[str, np.ndarray], dist: np.ndarray | None = None,
                     point: str = "mean") -> dict[str, Any]:
    """FG-NET's figures from the device run's held-out predictions (each by a model that never saw
    that person): MAE, bias, by band and black-and-white against colour (decided from the pixels),
    for the age shown by rule `point` (from the held-out distributions `dist`; the mean needs only
    the report's expected ages)."""
    cv = run["fgnet_crossval"]
    ages = np.array(cv["ages"], float)
    if dist is not None:
        pred = point_ages(dist, point)
    elif point == "mean":
        pred = np.array(cv["predicted"], float)
    else:
        raise ValueError(f"the {point} of FG-NET's held-out faces needs their distributions ({CROSSVAL_FILE})")
    err = pred - ages
    grey = black_and_white(np.stack([thumbs[k] for k in cv["keys"]]))

    def block(sel: np.ndarray) -> dict[str, Any]:
        return {"faces": int(sel.sum()), "mae": float(np.abs(err[sel]).mean()) if sel.any() else None,
                "bias": float(err[sel].mean()) if sel.any() else None}

    return {"folds": int(run["args"]["folds"]), "people_split": True, "faces": len(ages), "point": point,
            "mae": float(np.abs(err).mean()), "bias": float(err.mean()),
            "mae_0_12": float(np.abs(err[ages <= 12]).mean()),
            "mae_by_band": {name: block((ages >= lo) & (ages <= hi)) for name, lo, hi in BANDS},
            "by_colour": {"black_and_white": block(grey), "colour": block(~grey)}}


def _measure(model: Any, chips_file: Path) -> dict[str, Any]:
    from types import SimpleNamespace

    from training.chips import load_chips

    z = load_chips(chips_file)
    pred = model.predict_chips(z["chips"])
    if (z["ages"] >= 0).all():
        return metrics_for(SimpleNamespace(ages=z["ages"], genders=z["genders"], thumbs=z["chips"]),
                           pred.distribution, pred.female, model.point)
    return group_metrics(SimpleNamespace(groups=z["groups"]), pred.distribution, model.point)


HARDWARE = "one NVIDIA H200 (device machine), Keras 3.15.1 on JAX 0.11.2"
TRAIN_SUBSET = "every train face"


def write_card(out: Path, run: dict[str, Any], epochs: int, metrics: dict[str, Any], selection: dict[str, Any],
               commit: str, *, train_subset: str = TRAIN_SUBSET, hardware: str = HARDWARE, point: str = "mean",
               mirror: bool = False) -> Path:
    tflite = out.with_suffix(".tflite")
    args = run["args"]
    frozen = args.get("train_from") if args.get("train_from") not in (None, "None") else None
    how = (f"with dlib's weights kept up to its layer {frozen} and every layer above it and the head trained "
           "for age (training/frozen.py)" if frozen else "fine-tuned end to end for age")
    card = {
        "format": CARD_FORMAT,
        "name": out.name,
        "description": "Age (and gender) from the aligned face chip: a copy of dlib's face descriptor ResNet "
                       f"{how}, with a distribution head. dlib's own network, unchanged, "
                       "still gives the identity descriptors that people are grouped by.",
        "weights": tflite.name, "weights_sha256": _sha256(tflite), "size_bytes": tflite.stat().st_size,
        "tflite": tflite.name, "tflite_sha256": _sha256(tflite),
        "preprocessing": {"align": "phototag.faces.align_and_crop",
                          "landmarks": "dlib shape_predictor_5_face_landmarks", "chip_size": 150, "chip_padding": 0.25,
                          "color": "RGB uint8", "backbone": "dlib_face_recognition_resnet_model_v1",
                          "backbone_package": "face_recognition_models", "backbone_finetuned": True,
                          "backbone_frozen_up_to": frozen,
                          "normalisation": "(pixel - dlib's mean_rgb) / 256, inside the network"},
        "input": {"name": "chip", "shape": [150, 150, 3], "dtype": "uint8"},
        "outputs": {"age": {"type": "distribution", "bins": AGE_BINS, "ages": "0..100 (last bin: 100 and older)",
                            "point": point, **({"mirror": "average"} if mirror else {})},
                    "gender": {"type": "sigmoid", "meaning": "P(female)"}},
        "config": {"epochs": epochs, "batch_size": int(args["batch"]), "learning_rate": float(args["lr"]),
                   "schedule": "one epoch of linear warm-up, then cosine decay to 0", "optimizer": "AdamW, "
                   "weight decay 5e-5, gradient norm clipped at 1", "loss": "training/train.py's: cross-entropy to "
                   "Gaussian label distributions (sigma 1 + 0.06 * age) + 0.05 * |expected age - age|, "
                   f"gender {float(args.get('gender_weight', 0.1)):g} * BCE", "seed": int(args["seed"]),
                   "precision": "mixed bfloat16 (float32 weights)" if args.get("mixed_bf16") == "True" else "float32",
                   "degraded_copies_per_face": int(args["variants"]),
                   "age_balance": _balance(args),
                   "head": "Dense 256 (gelu), dropout 0.2, softmax over 101 ages and a sigmoid",
                   "selection": selection},
        "training": {
            "data": "utkface",
            "split": "sha256(record key) % 100: 0-9 test, 10-19 val, 20-99 train",
            "faces": {"train": int(run["faces"]["main"]), "val": metrics["val"]["faces"],
                      "test": metrics["test"]["faces"]},
            "train_subset": train_subset,
            "augment": {"policy": "archive", "version": AUGMENT_VERSION, "operations": POLICIES["archive"],
                        "note": "each epoch shows every face once: half clean, half as one of its degraded "
                                "copies (drawn on the chip), each mirrored at random"},
            "extra": {"fgnet": {"faces": int(run["faces"]["extra"]), "weight": float(args["extra_weight"]),
                                "folds": int(args["folds"])}},
            "seconds": run["timings"],
        },
        "metrics": metrics,
        "hardware": {"training": hardware,
                     "evaluation": f"{platform.processor() or platform.machine()} CPU, LiteRT (this .tflite)",
                     "platform": platform.platform()},
        "git_commit": commit,
        "trained_at": datetime.date.today().isoformat(),
        "licence": "Weights trained on UTKFace (Zhang, Song and Qi, CVPR 2017) and FG-NET (Lanitis, Taylor and "
                   "Cootes, 2002), starting from dlib's public-domain face descriptor network (Davis King): "
                   "non-commercial research use only.",
        "git_note": "Trained by training/finetune.py at this commit; exported and measured "
                    "by training/ship.py.",
    }
    path = out.with_suffix(".json")
    path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return path


def _balance(args: dict[str, Any]) -> str:
    alpha = float(args.get("balance", 0) or 0)
    if not alpha:
        return "none: every face weighs the same"
    return (f"each face weighed by its age's frequency among the training faces, smoothed by a Gaussian of 5 "
            f"years, to the power -{alpha:g} (training/finetune.py's balance_weights)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, nargs="+", required=True, help="what training/finetune.py wrote (per call)")
    ap.add_argument("--epochs", type=int, nargs="+", required=True, help="checkpoints to choose from on val")
    ap.add_argument("--val", type=Path, required=True)
    ap.add_argument("--test", type=Path, required=True)
    ap.add_argument("--dev", type=Path, nargs="*", default=[], help="chips of group-labelled dev sets (adience)")
    ap.add_argument("--fgnet", default="fgnet:../shared/datasets/fgnet-dev")
    ap.add_argument("--commit", required=True, help="the commit whose training/finetune.py ran")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--note", default="", help="what else was tried, for the card's selection record")
    ap.add_argument("--train-subset", default=TRAIN_SUBSET, help="which UTKFace train faces the chips held")
    ap.add_argument("--hardware", default=HARDWARE, help="where the network was trained")
    ap.add_argument("--mirror-average", action="store_true",
                    help="the age is read from each chip and its mirror image, averaged (the card's outputs.age.mirror)")
    ap.add_argument("--point", choices=POINTS, default="mode",
                    help="the age phototag shows from the distribution (the card's outputs.age.point)")
    args = ap.parse_args(argv)
    from phototag.ages.model import load_model
    from training.prepare import prepare

    reports = {d: json.loads((d / "finetune.json").read_text()) for d in args.run}
    run = merge_runs(list(reports.values()))
    weights_dir = next(d for d, r in reports.items() if r.get("files"))
    card_args = {"train_subset": args.train_subset, "hardware": args.hardware, "point": args.point,
                 "mirror": args.mirror_average}
    cv_dist = merge_crossval(list(reports), run["fgnet_crossval"]["keys"], args.mirror_average)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    unmeasured = {"val": {"faces": 0}, "test": {"faces": 0}}
    val = {}
    for e in args.epochs:  # choose the epoch count on validation, never on test
        candidate = args.out.with_name(f"{args.out.name}-e{e}")
        export(sorted(weights_dir.glob(f"age-net-e{e}-*.npz")), candidate)
        write_card(candidate, run, e, unmeasured, {}, args.commit, **card_args)
        val[e] = _measure(load_model(candidate), args.val)
        print(f"epochs {e}: val MAE {val[e]['mae']:.3f} (ages 0-12: {val[e]['mae_0_12']:.3f})", flush=True)
    best = min(val, key=lambda e: val[e]["mae"])
    for e in val:  # the chosen export becomes the model; the others go
        candidate = args.out.with_name(f"{args.out.name}-e{e}")
        candidate.with_suffix(".json").unlink()
        if e == best:
            candidate.with_suffix(".tflite").replace(args.out.with_suffix(".tflite"))
        else:
            candidate.with_suffix(".tflite").unlink()
    write_card(args.out, run, best, unmeasured, {}, args.commit, **card_args)
    model = load_model(args.out)
    fg = prepare(args.fgnet, quiet=True)
    metrics = {"val": val[best], "test": _measure(model, args.test),
               "dev": {p.stem: _measure(model, p) for p in args.dev},
               "crossval": {"fgnet": crossval_metrics(run, dict(zip(fg.keys, fg.thumbs)), cv_dist, args.point)}}
    selection = {"rule": "least UTKFace val MAE among the checkpoints", "val_mae": {str(e): val[e]["mae"] for e in val},
                 "note": args.note}
    print(write_card(args.out, run, best, metrics, selection, args.commit, **card_args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
