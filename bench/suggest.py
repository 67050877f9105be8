"""How good `phototag people suggest` is on real albums, as a user would meet it.

    python -m bench.suggest --fgnet ../shared/datasets/fgnet-dev --adience ../shared/datasets/adience-dev

Each album is scanned with the defaults (with --fgnet-crossval, fgnet-dev's labelled faces get the age
distributions of fold networks that never saw the person before its people are grouped and dated:
the shipped network learned from fgnet-dev). Then, for its first 200 suggestions: the share of the top 10
and top 20 pairs that are one person (each entry counted as the person most of its faces show), and
a user's session: going down the list, accepting the right pairs (a merge) and rejecting the wrong
ones, until BCubed recall reaches 0.95 or the list ends. Writes suggest.json and suggest.md.

The time scale (how fast a pair of faces counts less the more years lie between their photos) is
chosen by leaving people out: fgnet-dev's 41 people are split in two halves of other people, each an
index grouped on its own, and each half's figure is measured at the scale the other half chose (the
most right pairs in the top 20, then the top 10; ties to the smaller scale; with several runs of
cross-validated ages, on their mean). adience-dev is undated,
so every scale gives it the same list. The shipped scale is chosen on both halves: fgnet-dev's whole
figure at it is not held out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from bench.people import _scan, adience_labels, bcubed, fgnet_half
from bench.run import write_results

TARGET_RECALL = 0.95
SCALES = [0.0, 1.0, 2.0, 3.0, 5.0, 8.0]  # years; 0: every pair of faces counts the same (the plain average)


def _faces(db: Path, truth_of: Any) -> list[tuple[int, int, str]]:
    """(face id, person id, true identity) of every face the truth knows."""
    con = sqlite3.connect(db)
    rows = con.execute("SELECT f.id, f.person_id, p.path, f.idx FROM faces f JOIN photos p ON p.id = f.photo_id "
                       "WHERE f.person_id IS NOT NULL").fetchall()
    con.close()
    out = []
    for face_id, person_id, path, idx in rows:
        truth = truth_of(Path(path).name, idx)
        if truth is not None:
            out.append((face_id, person_id, truth))
    return out


def quality(db: Path, truth_of: Any, limit: int = 200, **options: Any) -> dict[str, Any]:
    from phototag.people.suggest import suggest_merges
    from phototag.store.index import Index

    faces = _faces(db, truth_of)
    main = {pid: Counter(t for _, p, t in faces if p == pid).most_common(1)[0][0] for _, pid, _ in faces}
    with Index(db) as index:
        found = [s for s in suggest_merges(index, limit=limit, **options) if s.person_a in main and s.person_b in main]
    right = [main[s.person_a] == main[s.person_b] for s in found]
    parent = {pid: pid for pid in main}

    def root(p: int) -> int:
        while parent[p] != p:
            p = parent[p]
        return p

    truth = [t for _, _, t in faces]
    start_precision, recall = bcubed([root(p) for _, p, _ in faces], truth)
    start_recall, looked, merges = recall, 0, 0
    for s, ok in zip(found, right):
        if recall >= TARGET_RECALL:
            break
        looked += 1
        if ok and root(s.person_a) != root(s.person_b):
            parent[root(s.person_b)] = root(s.person_a)
            merges += 1
            _, recall = bcubed([root(p) for _, p, _ in faces], truth)
    precision, _ = bcubed([root(p) for _, p, _ in faces], truth)
    return {"faces": len(faces), "entries": len(main), "suggestions": len(found),
            "top10_right": sum(right[:10]), "top10": len(right[:10]),
            "top20_right": sum(right[:20]), "top20": len(right[:20]),
            "precision_before": round(float(start_precision), 4), "recall_before": round(float(start_recall), 4),
            "recall_after": round(float(recall), 4),
            "precision_after": round(float(precision), 4), "reached_target": bool(recall >= TARGET_RECALL),
            "suggestions_looked_at": looked, "merges": merges}


def _honest_ages(db: Path, crossval: dict[str, Any], options: Any = None) -> int:
    """Give each labelled fgnet-dev face the age distribution of the fold network that never saw the
    person (the shipped one learned from these faces), then group and date the album's people on
    them, as a scan would have. Returns how many faces were given one."""
    from phototag.ages.groups import pack_distribution
    from phototag.people.update import update_people
    from phototag.store.index import Index

    with Index(db) as index:
        with index.transaction() as conn:
            rows = conn.execute("SELECT f.id, p.path FROM faces f JOIN photos p ON p.id = f.photo_id "
                                "WHERE f.idx = 0").fetchall()
            given = [(pack_distribution(crossval[Path(path).name]), face_id)
                     for face_id, path in rows if Path(path).name in crossval]
            conn.executemany("UPDATE faces SET distribution = ? WHERE id = ?", given)
        update_people(index, **({"options": options} if options else {}))
    return len(given)


def people_halves(db: Path, work: Path, options: Any = None) -> dict[str, Path]:
    """fgnet-dev's index split by people (bench.people.fgnet_half) into two indexes, each grouped
    and dated on its own (with grouping `options`, default the shipped ones), as two albums of other
    people would be."""
    from phototag.people.update import update_people
    from phototag.store.index import Index

    out = {}
    for half in (0, 1):
        path = work / f"fgnet-half{half}.db"
        shutil.copy(db, path)
        with Index(path) as index:
            with index.transaction() as conn:
                drop = [(i,) for i, p in conn.execute("SELECT id, path FROM photos").fetchall()
                        if fgnet_half(Path(p).name[:3]) != half]
                conn.executemany("DELETE FROM faces WHERE photo_id = ?", drop)
                conn.executemany("DELETE FROM photos WHERE id = ?", drop)
                conn.execute("UPDATE faces SET person_id = NULL, age_source = 'photo', person_distribution = NULL")
                conn.execute("DELETE FROM people")
            update_people(index, **({"options": options} if options else {}))
        out[f"fgnet-half{half}"] = path
    return out


GAPS = [(0, 1), (1, 3), (3, 6), (6, 10), (10, 15), (15, 25), (25, 60)]  # years between two photos


def drift(db: Path) -> list[dict[str, Any]]:
    """fgnet-dev's labelled faces in pairs, by the years between their photos: the median descriptor
    distance of one person's pairs and of two people's (why near-in-time faces count most)."""
    import datetime as dt

    import numpy as np

    con = sqlite3.connect(db)
    rows = con.execute("SELECT p.path, p.taken_at, f.descriptor FROM faces f JOIN photos p ON p.id = f.photo_id "
                       "WHERE f.idx = 0").fetchall()
    con.close()
    who = np.array([Path(r[0]).name[:3] for r in rows])
    years = np.array([dt.date.fromisoformat(r[1][:10]).toordinal() for r in rows]) / 365.2425
    x = np.stack([np.frombuffer(r[2], "<f4") for r in rows]).astype(np.float64)
    sq = (x * x).sum(1)
    upper = np.triu_indices(len(rows), 1)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0))[upper]
    gap = np.abs(years[:, None] - years[None, :])[upper]
    same = (who[:, None] == who[None, :])[upper]
    out = []
    for lo, hi in GAPS:
        m = (gap >= lo) & (gap < hi)
        out.append({"years": f"{lo}-{hi}", "same_pairs": int((m & same).sum()),
                    "same_median": round(float(np.median(d[m & same])), 3),
                    "other_pairs": int((m & ~same).sum()), "other_median": round(float(np.median(d[m & ~same])), 3),
                    "other_5th_percentile": round(float(np.percentile(d[m & ~same], 5)), 3)})
    return out


def choose_scale(by_scale: dict[float, dict[str, float]]) -> float:
    """The most right pairs in the top 20, then in the top 10; ties to the smaller scale."""
    return max(by_scale, key=lambda t: (by_scale[t]["top20_right"], by_scale[t]["top10_right"], -t))


def _mean(figures: list[dict[str, Any]]) -> dict[str, float]:
    return {k: float(sum(q[k] for q in figures) / len(figures)) for k in ("top10_right", "top20_right", "top20")}


def sweep(runs: list[dict[str, tuple[Path, Any]]]) -> dict[str, Any]:
    """Every set at every scale, for each run of fgnet-dev's cross-validated ages; the scale each half
    is measured at is chosen on the other half's figures averaged over the runs."""
    done: dict[Path, dict[float, dict[str, Any]]] = {}  # an index the runs share (adience-dev): measured once
    for dbs in runs:
        for db, truth in dbs.values():
            if db not in done:
                done[db] = {t: quality(db, truth, time_scale_years=t or None) for t in SCALES}
    tables = [{name: done[db] for name, (db, _) in dbs.items()} for dbs in runs]
    mean = {name: {t: _mean([tb[name][t] for tb in tables]) for t in SCALES} for name in tables[0]}
    out: dict[str, Any] = {"scales": SCALES, "runs": len(runs), "held_out": {},
                           "table": {n: {str(t): q for t, q in rows.items()} for n, rows in mean.items()},
                           "each_run": [{n: {str(t): q for t, q in rows.items()} for n, rows in tb.items()}
                                        for tb in tables]}
    if {"fgnet-half0", "fgnet-half1"} <= set(mean):
        for held, chooser in (("fgnet-half0", "fgnet-half1"), ("fgnet-half1", "fgnet-half0")):
            t = choose_scale(mean[chooser])
            out["held_out"][held] = {"chosen_on": chooser, "scale": t, **mean[held][t]}
        both = {t: {k: mean["fgnet-half0"][t][k] + mean["fgnet-half1"][t][k] for k in ("top20_right", "top10_right")}
                for t in SCALES}
        out["shipped_scale"] = choose_scale(both)
    return out


def _group(db: Path) -> None:
    from phototag.people.update import update_people
    from phototag.store.index import Index

    with Index(db) as index:
        update_people(index)


def adience_truth(folder: Path) -> Any:
    names = adience_labels(folder)
    return lambda name, idx: names.get(name) if idx == 0 else None


def fgnet_truth(_folder: Path) -> Any:
    return lambda name, idx: name[:3] if idx == 0 else None


def markdown(r: dict[str, Any]) -> str:
    lines = ["# Merge suggestions on real albums\n", r["machine"] + "\n",
             f"fgnet-dev's ages: {r.get('fgnet_ages', 'in-sample (the shipped network learned from them)')}.\n",
             "| album | faces / entries | top 10 right | top 20 right | recall before | merges (suggestions "
             "looked at) | recall after | precision after |", "|---|---|---|---|---|---|---|---|"]
    for key, q in r["sets"].items():
        lines.append(f"| {key} | {q['faces']} / {q['entries']} | {q['top10_right']} of {q['top10']} | "
                     f"{q['top20_right']} of {q['top20']} | {q['recall_before']} | {q['merges']} "
                     f"({q['suggestions_looked_at']}) | {q['recall_after']}"
                     f"{'' if q['reached_target'] else ' (0.95 not reached)'} | {q['precision_after']} |")
    if rows := r.get("drift"):
        lines += ["", "## One person's faces drift apart over the years; two people's stay apart", "",
                  "fgnet-dev's labelled faces in pairs, by the years between their two photos: median descriptor "
                  "distance.", "",
                  "| years apart | one person (pairs) | two people (pairs) | two people, 5th percentile |",
                  "|---|---|---|---|"]
        lines += [f"| {g['years']} | {g['same_median']:.3f} ({g['same_pairs']}) | {g['other_median']:.3f} "
                  f"({g['other_pairs']}) | {g['other_5th_percentile']:.3f} |" for g in rows]
    if sw := r.get("sweep"):
        names = list(sw["table"])
        runs = sw.get("runs", 1)
        lines += ["", "## The time scale, chosen by leaving people out", "",
                  "Top 10 / top 20 right at each scale (years; 0: the plain average)"
                  + (f", the mean over {runs} runs of fgnet-dev's cross-validated ages" if runs > 1 else "")
                  + ". Each half of fgnet-dev's people is measured at the scale the other half chose (**bold**); the "
                  f"shipped scale, chosen on both halves: {sw.get('shipped_scale')} years.", ""]
        each = [(f"Run {k + 1}", tb) for k, tb in enumerate(sw["each_run"])] if runs > 1 else []
        tables = [("", sw["table"])] + each
        for title, table in tables:
            if title:
                lines += ["", title + ":", ""]
            lines += ["| scale | " + " | ".join(names) + " |", "|---" * (1 + len(names)) + "|"]
            for t in sw["scales"]:
                cells = []
                for n in names:
                    q = table[n][str(t)]
                    text = f"{q['top10_right']:g} / {q['top20_right']:g} of {q['top20']:g}"
                    held = sw["held_out"].get(n)
                    cells.append(f"**{text}**" if held and held["scale"] == t and not title else text)
                lines.append(f"| {t:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from bench.run import machine

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fgnet", type=Path)
    ap.add_argument("--adience", type=Path)
    ap.add_argument("--fgnet-crossval", type=Path, nargs="+",
                    help="fgnet-crossval.npz of one or more `training.finetune --no-final` runs: fgnet-dev's ages from "
                         "networks that never saw the person (without it they are the shipped network's, in-sample); "
                         "with several, the time scale is chosen on their mean")
    ap.add_argument("--card", type=Path, default=Path("models/age-dlib-resnet.json"),
                    help="the card whose output rules the cross-validated distributions get")
    ap.add_argument("--fgnet-db", type=Path, help="fgnet-dev already scanned with `--no-people` (default: scan it now)")
    ap.add_argument("--adience-db", type=Path, help="adience-dev already scanned with `--no-people`")
    ap.add_argument("--sweep", action="store_true",
                    help="also measure every time scale, fgnet-dev's halves choosing for each other")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args(argv)
    result: dict[str, Any] = {"machine": machine(), "sets": {}}
    crossvals: list[Any] = [None]
    if args.fgnet_crossval:
        from bench.grouping import crossval_distributions

        crossvals = [crossval_distributions(p, args.card) for p in args.fgnet_crossval]
        names = ", ".join(f"{p.parent.name}/{p.name}" for p in args.fgnet_crossval)
        result["fgnet_ages"] = f"cross-validated ({names}, with {args.card.name}'s output rules)"
    work = Path(tempfile.mkdtemp(prefix="phototag-suggest-"))
    runs: list[dict[str, tuple[Path, Any]]] = [{} for _ in crossvals]
    try:
        albums = (("fgnet-dev", args.fgnet, fgnet_truth), ("adience-dev", args.adience, adience_truth))
        for key, folder, truth in albums:
            if not folder:
                continue
            print(f"{key} ...", file=sys.stderr)
            db = work / f"{key}.db"
            given = args.fgnet_db if key == "fgnet-dev" else args.adience_db
            honest = key == "fgnet-dev" and crossvals[0] is not None
            if given:  # scanned already, without people: grouped here as the scan would
                shutil.copy(given, db)
            else:
                _scan(folder, db, people=not honest)
            if key == "fgnet-dev":
                result["drift"] = drift(db)
            if honest:  # an index for each run of ages, grouped and dated on them
                indexes = [work / f"{key}-run{k + 1}.db" for k in range(len(crossvals))]
                for index, crossval in zip(indexes, crossvals):
                    shutil.copy(db, index)
                    result["fgnet_honest_faces"] = _honest_ages(index, crossval)
            else:  # one index, the same in every run
                if given:
                    _group(db)
                indexes = [db] * len(runs)
            for k, (index, dbs) in enumerate(zip(indexes, runs)):
                name = key + (f", run {k + 1}" if honest and len(runs) > 1 else "")
                if name not in result["sets"]:
                    result["sets"][name] = quality(index, truth(folder))
                    print(name, json.dumps(result["sets"][name]), file=sys.stderr)
                dbs[key] = (index, truth(folder))
                if key == "fgnet-dev" and args.sweep:
                    halves = work / f"run{k + 1}"
                    halves.mkdir()
                    dbs.update({h: (v, truth(folder)) for h, v in people_halves(index, halves).items()})
        if args.sweep:
            result["sweep"] = sweep(runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return write_results(args.out, "suggest", result, markdown)


if __name__ == "__main__":
    raise SystemExit(main())
