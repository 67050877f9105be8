"""Two models on the same faces: UTKFace test (clean and degraded as old prints), fgnet-dev and
adience-dev, for the card and docs/model.md.

A model that learned from fgnet-dev's people is given its card's cross-validated figure there (fold
models that never saw the people they were measured on), never its score on faces it learned from.

    python -m training.side_by_side --old /tmp/old/age-dlib-mlp --new models/age-dlib-mlp \\
        --data utkface:../shared/datasets/utkface --fgnet fgnet:../shared/datasets/fgnet-dev \\
        --adience adience:../shared/datasets/adience-dev --out models/reports/side_by_side.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from training.evaluate import dev_metrics, metrics_for
from training.prepare import prepare, prepare_augmented


def measure(model_path: str, data: str, fgnet: str, adience: str) -> dict[str, Any]:
    from phototag.ages.model import load_model

    model = load_model(model_path)

    def distributions(x):
        return model.predict_descriptors(x).distribution

    out: dict[str, Any] = {"model": model.model_id}
    clean = prepare(data)
    worse = prepare_augmented(data, "archive")
    for key, prep in (("utk_test", clean), ("utk_test_degraded", worse)):
        part = prep.subset((prep.ages >= 0) & (prep.splits == "test"))
        out[key] = metrics_for(part, distributions(part.descriptors))
    held = model.card.get("metrics", {}).get("crossval", {}).get("fgnet")
    if held:
        out["fgnet"] = {**held, "how": "cross-validated over folds of people"}
    else:
        out["fgnet"] = {**dev_metrics(distributions, fgnet), "how": "never trained on"}
    out["adience"] = dev_metrics(distributions, adience)
    return out


def table(old: dict[str, Any], new: dict[str, Any]) -> str:
    def rows(m: dict[str, Any]) -> list[str]:
        t, d, f, a = m["utk_test"], m["utk_test_degraded"], m["fgnet"], m["adience"]
        bw, col = f["by_colour"]["black_and_white"], f["by_colour"]["colour"]
        return [f"{t['mae']:.2f}", f"{t['mae_0_12']:.2f}", f"{d['mae']:.2f}", f"{f['mae']:.2f}", f"{f['bias']:+.2f}",
                f"{bw['mae']:.2f} / {bw['bias']:+.2f}", f"{col['mae']:.2f} / {col['bias']:+.2f}",
                f"{f['mae_0_12']:.2f}", f"{a['exact']:.1%}", f"{a['one_off']:.1%}"]

    names = ["UTKFace test MAE", "UTKFace test MAE, ages 0-12", "UTKFace test degraded as old prints, MAE",
             "fgnet-dev MAE", "fgnet-dev bias", "fgnet-dev black-and-white, MAE / bias", "fgnet-dev colour, MAE / bias",
             "fgnet-dev ages 0-12 MAE", "adience-dev exact", "adience-dev one-off"]
    lines = [f"| | previous (`{old['model']}`) | new (`{new['model']}`) |", "|---|---|---|"]
    lines += [f"| {n} | {o} | {w} |" for n, o, w in zip(names, rows(old), rows(new))]
    lines.append(f"| fgnet-dev measured | {old['fgnet']['how']} | {new['fgnet']['how']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("old", "new", "data", "fgnet", "adience"):
        ap.add_argument(f"--{name}", required=True)
    ap.add_argument("--out", default="models/reports/side_by_side.md")
    args = ap.parse_args()
    old = measure(args.old, args.data, args.fgnet, args.adience)
    new = measure(args.new, args.data, args.fgnet, args.adience)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table(old, new), encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps({"old": old, "new": new}, indent=1) + "\n", encoding="utf-8")
    print(table(old, new))


if __name__ == "__main__":
    main()
