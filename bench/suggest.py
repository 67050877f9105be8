"""How good `phototag people suggest` is on real albums, as a user would meet it.

    python -m bench.suggest --fgnet ../shared/datasets/fgnet-dev --adience ../shared/datasets/adience-dev

Each album is scanned with the defaults (with --fgnet-crossval, fgnet-dev's labelled faces get the age
distributions of fold networks that never saw the person before its people are grouped and dated:
the shipped network learned from fgnet-dev). Then, for its first 200 suggestions: the share of the top 10
and top 20 pairs that are one person (each entry counted as the person most of its faces show), and
a user's session: going down the list, accepting the right pairs (a merge) and rejecting the wrong
ones, until BCubed recall reaches 0.95 or the list ends. Writes suggest.json and suggest.md.
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

from bench.people import _scan, adience_labels, bcubed

TARGET_RECALL = 0.95


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
    _, recall = bcubed([root(p) for _, p, _ in faces], truth)
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
            "recall_before": round(float(start_recall), 4), "recall_after": round(float(recall), 4),
            "precision_after": round(float(precision), 4), "reached_target": bool(recall >= TARGET_RECALL),
            "suggestions_looked_at": looked, "merges": merges}


def _honest_ages(db: Path, crossval: dict[str, Any]) -> int:
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
        update_people(index)
    return len(given)


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
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from bench.run import machine

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fgnet", type=Path)
    ap.add_argument("--adience", type=Path)
    ap.add_argument("--fgnet-crossval", type=Path,
                    help="fgnet-crossval.npz of a `training.finetune --no-final` run: fgnet-dev's ages from networks "
                         "that never saw the person (without it they are the shipped network's, in-sample)")
    ap.add_argument("--card", type=Path, default=Path("models/age-dlib-resnet.json"),
                    help="the card whose output rules the cross-validated distributions get")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args(argv)
    result: dict[str, Any] = {"machine": machine(), "sets": {}}
    crossval = None
    if args.fgnet_crossval:
        from bench.grouping import crossval_distributions

        crossval = crossval_distributions(args.fgnet_crossval, args.card)
        result["fgnet_ages"] = f"cross-validated ({args.fgnet_crossval.name}, with {args.card.name}'s output rules)"
    work = Path(tempfile.mkdtemp(prefix="phototag-suggest-"))
    try:
        for key, folder, truth in (("fgnet-dev", args.fgnet, fgnet_truth), ("adience-dev", args.adience, adience_truth)):
            if folder:
                print(f"{key} ...", file=sys.stderr)
                db = work / f"{key}.db"
                if key == "fgnet-dev" and crossval is not None:
                    _scan(folder, db, people=False)
                    result["fgnet_honest_faces"] = _honest_ages(db, crossval)
                else:
                    _scan(folder, db)
                result["sets"][key] = quality(db, truth(folder))
                print(json.dumps(result["sets"][key]), file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "suggest.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "suggest.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
