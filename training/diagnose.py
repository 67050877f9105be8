"""Where an age model's error comes from, measured on validation faces only: the point rule, the
mirror image, the spread of the distribution, and the training faces' ages.

    python -m training.diagnose --model models/age-dlib-resnet --chips VAL.npz --out models/reports/age-errors
    python -m training.diagnose --distributions RUN/val-e80.npz --out ...   # a checkpoint finetune measured

For every age band it reports MAE and bias under each point rule (mode, median, mean), each alone
and averaged with the face's mirror image, and how wide the central 80 % of the distribution is.
A bias that no rule removes lives in the network (what it learned from the ages it saw); an error
that stays once the bias is gone is spread, which no rule can fix.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from phototag.ages.groups import point_ages
from training.evaluate import BANDS

__all__ = ["diagnose", "train_age_histogram"]

RULES = ("mode", "median", "mean")


def _row(pred: np.ndarray, ages: np.ndarray) -> dict[str, Any]:
    err = pred - ages
    out: dict[str, Any] = {"mae": float(np.abs(err).mean()), "mae_0_12": float(np.abs(err[ages <= 12]).mean())}
    for name, lo, hi in BANDS:
        sel = (ages >= lo) & (ages <= hi)
        out[name] = {"mae": float(np.abs(err[sel]).mean()), "bias": float(err[sel].mean()), "faces": int(sel.sum())}
    return out


def _width(p: np.ndarray, mass: float = 0.8) -> np.ndarray:
    c = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    tail = (1 - mass) / 2
    return (c < 1 - tail).sum(axis=1) - (c < tail).sum(axis=1)


def diagnose(dist: np.ndarray, mirrored: np.ndarray | None, ages: np.ndarray) -> dict[str, Any]:
    """Every rule's figures, alone and mirror-averaged, and the 80 % width by band."""
    ages = np.asarray(ages, np.float64)
    out: dict[str, Any] = {"faces": int(len(ages)), "rules": {}}
    sets = {"": dist} if mirrored is None else {"": dist, " + mirror": (dist + mirrored) / 2}
    for rule in RULES:
        for suffix, p in sets.items():
            out["rules"][rule + suffix] = _row(point_ages(p, rule), ages)
    width = _width(dist)
    out["width_80"] = {name: float(width[(ages >= lo) & (ages <= hi)].mean()) for name, lo, hi in BANDS}
    if mirrored is not None:
        out["mirror_disagreement_mode"] = float(np.abs(point_ages(dist, "mode") - point_ages(mirrored, "mode")).mean())
    return out


def train_age_histogram(spec: str = "utkface:../shared/datasets/utkface") -> dict[str, int]:
    """How many UTKFace training faces each band holds."""
    from training.readers import open_data, split_of

    records, _ = open_data(spec)
    ages = np.array([r.age for r in records if r.age is not None and split_of(r.key) == "train"])
    return {name: int(((ages >= lo) & (ages <= hi)).sum()) for name, lo, hi in BANDS}


def _markdown(report: dict[str, Any]) -> str:
    names = [b[0] for b in BANDS]
    lines = [f"# Where the age error comes from ({report['source']}, {report['faces']} validation faces)", "",
             "MAE / bias by true age band; each rule alone and averaged with the mirror image.", "",
             "| rule | MAE | 0-12 | " + " | ".join(names) + " |", "|---" * (3 + len(names)) + "|"]
    for rule, row in report["rules"].items():
        cells = [f"{row[n]['mae']:.2f} / {row[n]['bias']:+.2f}" for n in names]
        lines.append(f"| {rule} | {row['mae']:.3f} | {row['mae_0_12']:.3f} | " + " | ".join(cells) + " |")
    lines += ["", "| | " + " | ".join(names) + " |", "|---" * (1 + len(names)) + "|",
              "| 80 % interval width (years) | " + " | ".join(f"{report['width_80'][n]:.1f}" for n in names) + " |"]
    if "train_faces" in report:
        lines.append("| UTKFace training faces | " + " | ".join(str(report["train_faces"][n]) for n in names) + " |")
    if "mirror_disagreement_mode" in report:
        lines += ["", f"A face and its mirror image disagree by {report['mirror_disagreement_mode']:.2f} years "
                      "on average (mode)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="a model that reads chips (its card's own mirror rule is not applied)")
    ap.add_argument("--chips", type=Path, help="validation chips (training/chips.py), with --model")
    ap.add_argument("--distributions", type=Path, help="a val-eN.npz that training/finetune.py --val wrote")
    ap.add_argument("--utkface", default="utkface:../shared/datasets/utkface", help="to count the training ages")
    ap.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = ap.parse_args(argv)
    if args.distributions:
        z = np.load(args.distributions)
        dist, mirrored, ages, source = z["distributions"], z["distributions_mirrored"], z["ages"], args.distributions.name
    elif args.model and args.chips:
        from phototag.ages.model import load_model
        from training.chips import load_chips

        model, z = load_model(args.model), load_chips(args.chips)
        model.card.get("outputs", {}).get("age", {}).pop("mirror", None)  # each image alone, then averaged here
        dist = model.predict_chips(z["chips"]).distribution
        mirrored = model.predict_chips(z["chips"][:, :, ::-1]).distribution
        ages, source = z["ages"], model.model_id
    else:
        ap.error("give --distributions, or --model and --chips")
    report = {"source": str(source), **diagnose(dist, mirrored, ages)}
    try:
        report["train_faces"] = train_age_histogram(args.utkface)
    except (OSError, ValueError):
        pass  # the data set is not here: the table goes without the counts
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(report))
    print(_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
