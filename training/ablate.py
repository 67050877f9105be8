"""Which augmentations, and how much target-domain data, make ages hold on old family photos.

Each variant is a config override (and whether FG-NET's people join training). Every variant is
measured on validation only: UTKFace val (clean and degraded), fgnet-dev (by cross-validation over
folds of people where the variant trains on it, else whole) and adience-dev. The test split is never
looked at here.

    python -m training.ablate --data utkface:../shared/datasets/utkface \\
        --fgnet fgnet:../shared/datasets/fgnet-dev --adience adience:../shared/datasets/adience-dev \\
        --out models/reports/ablation.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from training.augment import OPERATIONS
from training.evaluate import dev_metrics, metrics_for
from training.prepare import prepare_augmented
from training.sets import extra_set, main_sets
from training.train import TrainConfig, fit_all

# name: (config overrides, FG-NET weight or None when FG-NET is not trained on)
VARIANTS: dict[str, tuple[dict[str, Any], float | None]] = {
    "clean": ({}, None),
    "archive": ({"augment": "archive"}, None),
    **{f"archive-no-{op}": ({"augment": "archive", "augment_skip": (op,)}, None) for op in OPERATIONS},
    "clean+fgnet-x3": ({}, 3.0),
    "clean+fgnet-x10": ({}, 10.0),
    "archive+fgnet-x3": ({"augment": "archive"}, 3.0),
    "archive+fgnet-x10": ({"augment": "archive"}, 10.0),
    "archive+fgnet-x30": ({"augment": "archive"}, 30.0),
    # the same two again with another seed: how far one run's figures move by chance
    "clean-seed2": ({"seed": 2}, None),
    "archive-seed2": ({"augment": "archive", "seed": 2}, None),
}


def _row(name: str, cfg: TrainConfig, data: str, fgnet: str, adience: str | None, weight: float | None,
         ) -> dict[str, Any]:
    started = time.time()
    parts, _ = main_sets(data, augment=cfg.augment, augment_skip=cfg.augment_skip)
    worse = prepare_augmented(data, "archive")
    val_degraded = worse.subset((worse.ages >= 0) & (worse.splits == "val"))
    row: dict[str, Any] = {"variant": name}
    extras = {}
    if weight is not None:
        cfg = dataclasses.replace(cfg, extra_weight=weight)
        extras = {fgnet: extra_set(fgnet, cfg.folds)}
    model, _, crossval = fit_all(cfg, parts, extras)

    def distributions(x):
        return model.predict(x, batch_size=1024, verbose=0)["age"]

    row["fgnet"] = crossval["fgnet"] if extras else dev_metrics(distributions, fgnet)
    clean_val = parts["val"] if not cfg.augment else parts["val"].subset(parts["val"].augs == "")
    for key, part in (("utk_val", clean_val), ("utk_val_degraded", val_degraded)):
        row[key] = metrics_for(part, distributions(part.descriptors))
    if adience:
        row["adience"] = dev_metrics(distributions, adience)
    row["seconds"] = round(time.time() - started)
    return row


def _n(x: float | None, fmt: str) -> str:
    return "n/a" if x is None or x != x else format(x, fmt)


def _table(rows: list[dict[str, Any]]) -> str:
    lines = ["| variant | UTK val MAE | UTK val 0-12 | UTK val degraded | FG-NET MAE | bias | b/w bias | FG-NET 0-12 "
             "| Adience exact | one-off | seconds |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f, u, d = r["fgnet"], r["utk_val"], r["utk_val_degraded"]
        a = r.get("adience", {})
        cells = [_n(u["mae"], ".2f"), _n(u["mae_0_12"], ".2f"), _n(d["mae"], ".2f"), _n(f["mae"], ".2f"),
                 _n(f["bias"], "+.2f"), _n(f["by_colour"]["black_and_white"]["bias"], "+.2f"), _n(f["mae_0_12"], ".2f"),
                 _n(a.get("exact"), ".1%"), _n(a.get("one_off"), ".1%")]
        lines.append(f"| {r['variant']} | " + " | ".join(cells) + f" | {r['seconds']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--fgnet", required=True)
    ap.add_argument("--adience", default=None)
    ap.add_argument("--config", default=None, help="base config (default cpu); `members` 1 makes it quick")
    ap.add_argument("--members", type=int, default=1)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--out", default="models/reports/ablation.md")
    args = ap.parse_args()
    base = dataclasses.replace(TrainConfig.load(args.config), members=args.members)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    done = out.with_suffix(".json")
    if done.exists():  # carry on where an earlier run stopped, with the same base config
        earlier = json.loads(done.read_text(encoding="utf-8"))
        if earlier["config"] == json.loads(json.dumps(dataclasses.asdict(base))):
            rows = earlier["rows"]
    for name in args.variants.split(","):
        if any(r["variant"] == name for r in rows):
            continue
        overrides, weight = VARIANTS[name]
        rows.append(_row(name, dataclasses.replace(base, **overrides), args.data, args.fgnet, args.adience, weight))
        print(_table(rows[-1:]).splitlines()[-1], flush=True)
        out.write_text(_table(rows), encoding="utf-8")
        out.with_suffix(".json").write_text(json.dumps({"config": dataclasses.asdict(base), "rows": rows}, indent=1)
                                            + "\n", encoding="utf-8")
    print(_table(rows))


if __name__ == "__main__":
    main()
