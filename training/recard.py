"""Give a shipped chip model new output rules and measure it again: the same network, another card.

    python -m training.recard --model models/age-dlib-resnet --folds RUN --train .ft/utk-train.npz \\
        --extra .ft/fgnet.npz --val VAL.npz --test TEST.npz --dev ADIENCE.npz \\
        --mirror-average --point mode-or-median --prior-power 0.5 --commit COMMIT --out models/age-dlib-resnet

The rules are what phototag does with the network's output (phototag.ages.model): average each chip
with its mirror image, divide by the training ages' prior (`--prior-power`, from the ages of the
faces the network learned from, weighed as it weighed them), and read the age by a point rule. The
network itself is untouched, so the card keeps its training record; its metrics are measured again
as shipped: the .tflite under LiteRT with the new rules on validation, test and the dev sets, and
FG-NET from a cross-validation run of the same training (training/finetune.py --no-final), whose
fold networks never saw the people they predict.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from phototag.ages.groups import POINTS, correct_prior
from training.finetune import age_frequency
from training.ship import _measure, crossval_metrics, merge_crossval

__all__ = ["training_prior", "recard"]

PRIOR_SIGMA = 5.0  # years: the Gaussian that smooths the ages' histogram (finetune's age_frequency)
PRIOR_FLOOR = 1e-3  # of the mean frequency


def training_prior(ages: np.ndarray, weights: np.ndarray, bins: int = 101, sigma: float = PRIOR_SIGMA) -> np.ndarray:
    """How often each age was seen in training, weighed as training weighed it, smoothed, mean 1."""
    smooth = age_frequency(ages, weights, sigma, bins)
    smooth /= smooth.mean()
    return np.maximum(smooth, PRIOR_FLOOR)  # an age never seen is rare, not impossible


def recard(card: dict[str, Any], *, point: str, mirror: bool, prior: np.ndarray | None, power: float,
           prior_note: str) -> dict[str, Any]:
    """A copy of `card` whose outputs.age carries the new rules."""
    out = copy.deepcopy(card)
    age = out["outputs"]["age"]
    age["point"] = point
    age.pop("mirror", None)
    age.pop("prior", None)
    if mirror:
        age["mirror"] = "average"
    if prior is not None and power > 0:
        age["prior"] = {"power": power, "frequency": [float(f"{v:.6g}") for v in prior], "from": prior_note}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="the shipped model (card and .tflite)")
    ap.add_argument("--folds", type=Path, nargs="+", required=True,
                    help="finetune.py runs that cross-validated FG-NET with the same training")
    ap.add_argument("--train", type=Path, required=True, help="the chips the network trained on (their ages)")
    ap.add_argument("--extra", type=Path, required=True, help="the extra chips it trained on (their ages)")
    ap.add_argument("--val", type=Path, required=True)
    ap.add_argument("--test", type=Path, required=True)
    ap.add_argument("--dev", type=Path, nargs="*", default=[])
    ap.add_argument("--point", choices=POINTS, required=True)
    ap.add_argument("--mirror-average", action="store_true")
    ap.add_argument("--prior-power", type=float, default=0.0)
    ap.add_argument("--commit", required=True, help="the commit whose phototag applies these rules")
    ap.add_argument("--note", default="", help="how the rules were chosen")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    from phototag.ages.model import load_model
    from training.chips import load_chips

    card = json.loads(args.model.with_suffix(".json").read_text())
    extra_weight = float(card["training"]["extra"]["fgnet"]["weight"])
    main_ages, extra_ages = np.load(args.train)["ages"], np.load(args.extra)["ages"]
    ages = np.r_[main_ages, extra_ages]
    weights = np.r_[np.ones(len(main_ages)), np.full(len(extra_ages), extra_weight)]
    prior = training_prior(ages, weights)
    note = (f"the ages of the {len(main_ages)} UTKFace and {len(extra_ages)} FG-NET faces the network trained on "
            f"(FG-NET's counted {extra_weight:g} times, as in training), smoothed by a Gaussian of "
            f"{PRIOR_SIGMA:g} years, mean 1")
    new = recard(card, point=args.point, mirror=args.mirror_average, prior=prior, power=args.prior_power,
                 prior_note=note)
    if args.out.with_suffix(".tflite") != args.model.with_suffix(".tflite"):
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(args.model.with_suffix(".tflite"), args.out.with_suffix(".tflite"))
    args.out.with_suffix(".json").write_text(json.dumps(new, indent=2) + "\n", encoding="utf-8")
    model = load_model(args.out)
    reports = [json.loads((d / "finetune.json").read_text()) for d in args.folds]
    run = reports[0]
    keys = run["fgnet_crossval"]["keys"]
    dist = merge_crossval(list(args.folds), keys, args.mirror_average)
    if dist is not None and args.prior_power > 0:
        dist = correct_prior(dist, prior, args.prior_power)
    fg = load_chips(args.extra)  # black and white is told from the pixels of the chips
    metrics = {"val": _measure(model, args.val), "test": _measure(model, args.test),
               "dev": {p.stem: _measure(model, p) for p in args.dev},
               "crossval": {"fgnet": crossval_metrics(run, dict(zip(fg["keys"], fg["chips"])), dist, args.point)}}
    new["metrics"] = metrics
    new["config"]["selection"]["output_rules"] = {
        "note": args.note, "commit": args.commit, "measured_at": datetime.date.today().isoformat(),
        "before": {"val_mae": card["metrics"]["val"]["mae"], "test_mae": card["metrics"]["test"]["mae"]},
        "fgnet_folds": "training/finetune.py with the card's own settings, --no-final: "
                       f"{', '.join(str(d.name) for d in args.folds)}"}
    args.out.with_suffix(".json").write_text(json.dumps(new, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: metrics[k] for k in ("val", "test")}, indent=1)[:3000])
    print(json.dumps(metrics["crossval"], indent=1)[:2000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
