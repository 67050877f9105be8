"""The time-weighted grouping's scale, chosen with the suggestions it leaves, by halves of fgnet-dev's people.

    python -m bench.grouping_scale --fgnet-db FGNET.db \
        --fgnet-crossval RUN1/fgnet-crossval.npz [RUN2/fgnet-crossval.npz ...]

A shorter scale links more of one person across the years (grouping's recall), and so takes from
`people suggest` the pairs it would have offered first. Issue 24 asks for both: grouping's precision
0.95 and 16 of the suggestions' top 20 right. fgnet-dev is the only dated set (an undated album is
grouped the same at every scale). For each scale its index (scanned with `--no-people`) gets each run's
cross-validated ages and is grouped and dated whole and as two halves of its people (bench.suggest's
halves), and each is measured as bench.suggest measures: grouping's BCubed precision and recall, and
the suggestions' top 10 and top 20. Each half's scale is chosen on the other half (the mean of the
runs): the best grouping recall among the scales where grouping keeps precision >= 0.95 and the
suggestions keep >= 16 of their top 20 right (a recall within 0.005 of the best is a tie, and ties go to
the longer scale; none: the plain average). The
shipped scale is chosen the same way with the whole set and both halves each keeping both floors, so
its whole-set figure is not held out. Writes grouping_scale.json and .md.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.people import YEAR
from bench.run import write_results
from bench.suggest import _honest_ages, fgnet_truth, people_halves, quality

SCALES = [None, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0]  # years; None: the plain average linkage
PRECISION_FLOOR = 0.95
TOP20_FLOOR = 16
# recall this close to the best is a tie: two runs of one training differ by more (docs/people.md)
TIE = 0.005
_KEYS = ("precision_before", "recall_before", "top10_right", "top20_right", "top20")


def measure(db: Path, crossvals: list[Any], work: Path) -> list[dict[str, dict[float | None, dict[str, Any]]]]:
    """For each run of ages: fgnet-dev whole and its halves, grouped at each scale, measured."""
    from phototag.people.grouping import GroupingOptions

    truth = fgnet_truth(db)
    runs: list[dict[str, dict[float | None, dict[str, Any]]]] = [{} for _ in crossvals]
    for scale in SCALES:
        options = replace(GroupingOptions(), time_scale_days=scale * YEAR if scale else None)
        for k, crossval in enumerate(crossvals):
            folder = work / f"scale{scale}-run{k + 1}"
            folder.mkdir()
            whole = folder / "fgnet-dev.db"
            shutil.copy(db, whole)
            _honest_ages(whole, crossval, options)
            for name, path in {"fgnet-dev": whole, **people_halves(whole, folder, options)}.items():
                runs[k].setdefault(name, {})[scale] = quality(path, truth)
    return runs


def _passes(q: dict[str, float]) -> bool:
    return q["precision_before"] >= PRECISION_FLOOR and q["top20_right"] >= TOP20_FLOOR


def choose(tables: list[dict[float | None, dict[str, float]]]) -> float | None:
    """The scale with the best recall on the first table among those that pass on every table; a recall
    within TIE of the best is a tie, and ties go to the longer scale (the nearer to the plain average)."""
    ok = [s for s in SCALES if all(_passes(t[s]) for t in tables)]
    if not ok:
        return None
    best = max(tables[0][s]["recall_before"] for s in ok)
    return max((s for s in ok if tables[0][s]["recall_before"] >= best - TIE),
               key=lambda s: float("inf") if s is None else s)


def run(runs: list[dict[str, dict[float | None, dict[str, Any]]]]) -> dict[str, Any]:
    mean = {name: {s: {k: sum(r[name][s][k] for r in runs) / len(runs) for k in _KEYS} for s in SCALES}
            for name in runs[0]}
    held = {}
    for name, chooser in (("fgnet-half0", "fgnet-half1"), ("fgnet-half1", "fgnet-half0")):
        s = choose([mean[chooser]])
        held[name] = {"chosen_on": chooser, "scale": s, **mean[name][s],
                      "each_run": [{"scale": (c := choose([r[chooser]])), **{k: r[name][c][k] for k in _KEYS}}
                                   for r in runs]}
    shipped = choose([mean["fgnet-dev"], mean["fgnet-half0"], mean["fgnet-half1"]])
    return {"scales": SCALES, "runs": len(runs), "floors": {"precision": PRECISION_FLOOR, "top20_right": TOP20_FLOOR},
            "held_out": held, "shipped": shipped,
            "table": {n: {str(s): {k: round(v, 4) for k, v in q.items()} for s, q in rows.items()}
                      for n, rows in mean.items()}}


def markdown(r: dict[str, Any]) -> str:
    names = list(r["table"])
    lines = ["# The time-weighted grouping's scale, chosen with the suggestions it leaves", "",
             f"fgnet-dev grouped at each scale (years; `plain`: the plain average linkage), the mean over {r['runs']} "
             "runs of cross-validated ages: grouping's BCubed precision / recall, then the suggestions' top 10 / "
             f"top 20 right. A scale passes where precision >= {r['floors']['precision']} and >= "
             f"{r['floors']['top20_right']} of the top 20 are right; each half is measured at the passing scale "
             f"with the best recall on the other half (**bold**; a recall within {TIE} of the best is a tie, and "
             f"ties go to the longer scale). Shipped: {r['shipped'] or 'plain'} (the whole set "
             "and both halves each passing).", "",
             "| scale | " + " | ".join(names) + " |", "|---" * (1 + len(names)) + "|"]
    for s in r["scales"]:
        cells = []
        for n in names:
            q = r["table"][n][str(s)]
            text = (f"{q['precision_before']:.3f} / {q['recall_before']:.3f}, "
                    f"{q['top10_right']:g} / {q['top20_right']:g}")
            held = r["held_out"].get(n)
            cells.append(f"**{text}**" if held and held["scale"] == s else text)
        lines.append(f"| {'plain' if s is None else f'{s:g}'} | " + " | ".join(cells) + " |")
    lines += ["", "Each run choosing alone, the held-out halves:", ""]
    for n, h in r["held_out"].items():
        runs = "; ".join(f"scale {e['scale'] or 'plain'}: {e['precision_before']:.3f} / {e['recall_before']:.3f}, "
                         f"{e['top10_right']:g} / {e['top20_right']:g}" for e in h["each_run"])
        lines.append(f"- {n}: {runs}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from bench.grouping import crossval_distributions

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fgnet-db", type=Path, required=True, help="fgnet-dev scanned with `--no-people`")
    ap.add_argument("--fgnet-crossval", type=Path, nargs="+", required=True,
                    help="fgnet-crossval.npz of one or more `training.finetune --no-final` runs")
    ap.add_argument("--card", type=Path, default=Path("models/age-dlib-resnet.json"))
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args(argv)
    crossvals = [crossval_distributions(p, args.card) for p in args.fgnet_crossval]
    work = Path(tempfile.mkdtemp(prefix="phototag-grouping-scale-"))
    try:
        result = run(measure(args.fgnet_db, crossvals, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return write_results(args.out, "grouping_scale", result, markdown)


if __name__ == "__main__":
    raise SystemExit(main())
