"""Measure design choices on the same prepared faces: DEX vs CORAL, one head vs an ensemble, and the
30-nearest-neighbour floor. Selection is on the validation split; test is reported alongside.

    python -m training.compare --data utkface:../shared/datasets/utkface --out reports/compare.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from training.evaluate import metrics_for
from training.prepare import prepare
from training.train import TrainConfig, fit

VARIANTS = {
    "dex-1": {"head": "dex", "members": 1},
    "coral-1": {"head": "coral", "members": 1},
    "dex-5": {"head": "dex", "members": 5},
}


def knn_distribution(train_x, train_age, x, k=30) -> np.ndarray:
    """The floor: a 30-nearest-neighbour vote on descriptors, as a distribution over ages."""
    out = np.zeros((len(x), 101))
    for i in range(0, len(x), 512):
        d = ((x[i:i + 512, None, :] - train_x[None, :, :]) ** 2).sum(-1)
        idx = np.argpartition(d, k, axis=1)[:, :k]
        for r, row in enumerate(idx):
            np.add.at(out[i + r], np.clip(train_age[row], 0, 100), 1.0 / k)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", required=True)
    ap.add_argument("--config", default=None)
    ap.add_argument("--out", default="reports/compare.md")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    prep = prepare(args.data)
    prep = prep.subset(prep.ages >= 0)
    parts = {s: prep.subset(prep.splits == s) for s in ("train", "val", "test")}
    base = TrainConfig.load(args.config)
    rows = []
    t = time.time()
    for split in ("val", "test"):
        dist = knn_distribution(parts["train"].descriptors, parts["train"].ages.astype(int), parts[split].descriptors)
        m = metrics_for(parts[split], dist)
        rows.append(("knn-30", split, m, time.time() - t))
    for name in args.variants.split(","):
        cfg = dataclasses.replace(base, **VARIANTS[name])
        t = time.time()
        model, _ = fit(cfg, parts["train"], parts["val"])
        secs = time.time() - t
        for split in ("val", "test"):
            pred = model.predict(parts[split].descriptors, batch_size=1024, verbose=0)
            rows.append((name, split, metrics_for(parts[split], pred["age"], pred.get("gender")), secs))
        print(name, {s: round(m["mae"], 3) for n, s, m, _ in rows if n == name}, flush=True)
    lines = ["| variant | split | MAE | MAE 0-12 | ten exact | ten one-off | gender acc | fit seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for name, split, m, secs in rows:
        g = m["groups"]["ten"]
        lines.append(f"| {name} | {split} | {m['mae']:.2f} | {m['mae_0_12']:.2f} | {g['exact']:.1%} | "
                     f"{g['one_off']:.1%} | {m.get('gender_accuracy', float('nan')):.1%} | {secs:.0f} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps([{"variant": n, "split": s, "metrics": m} for n, s, m, _ in rows],
                                                   indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
