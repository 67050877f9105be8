"""Grouping with strangers among the faces: a real album plus faces of people seen once.

    python -m bench.strangers --fgnet ../shared/datasets/fgnet-dev --adience ../shared/datasets/adience-dev \
        --utkface ../shared/datasets/utkface --wider ../shared/datasets/wider-dev/images \
        --fgnet-crossval RUN1/fgnet-crossval.npz [RUN2/...] [--fgnet-db FG.db --adience-db AD.db --wider-db WD.db]

A family library holds its few people thousands of times, and also guests, crowds and faces in the
background, each seen once. Among a few hundred strangers some are as close to one another, and to the
family, as one person's faces are to each other (the nearest of 663 WIDER faces is 0.52 away at the
median, of 663 UTKFace faces 0.53), so a threshold chosen on albums of ten to forty people merges them.
Two sources of strangers, each added to fgnet-dev and to adience-dev in three draws of 300:
- UTKFace validation faces: web crops, each of a different person but for a few repeats, each in a photo
  of its own, with the shipped model's age distributions;
- WIDER faces (`--wider`, the wider-dev photos: handshakes and interviews), found, aligned, described
  and aged by phototag's own scan as a user's camera photos would be; faces of one photo stay in it
  (never one person), and a few public figures recur across photos, which only makes the strangers
  harder to keep apart.
All strangers are undated. Precision is the album's faces' BCubed precision with the strangers counted as
other people in their groups; recall is the album's own.

The lever: two single faces (not both children's) merge only under a threshold of their own
(`GroupingOptions.single_threshold`), stricter than the one for groups; a group of two faces or more
joins others as before. Each setting (children's, others', single faces') is chosen by leaving one set
out, as bench.grouping chooses, with the strangers composites choosing for the set they are not made
from; their precision floor is 0.95, a class album's (a few hundred people, most seen once, is a
class album's or a wedding's crowd, not a family's ten). Every setting runs with the neighbour support
as shipped (bench.support chose it). Writes strangers.json and .md.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.grouping import (FLOORS, THRESHOLDS, _join, _load, _subset, adience_set, choose, crossval_distributions,
                            fgnet_sets, scored, setting_rows)
from bench.people import _scan
from bench.run import write_results

STARTS = [1.0, 0.55, 0.52, 0.50, 0.48]  # the single faces' threshold; 1.0: they merge like any pair
SETTINGS = [(c, t, s) for t in THRESHOLDS for c in THRESHOLDS for s in STARTS if c <= t and t >= 0.52 and s != t]
STRANGERS_FLOOR = 0.95  # a class album's
DRAWS = 3


def held_out(names: list[str]) -> dict[str, list[str]]:
    """Who chooses for whom: a composite chooses for every set but the album it is made from."""
    fgnet = [n for n in names if n.startswith("fgnet-dev + ")]
    adience = [n for n in names if n.startswith("adience-dev + ")]
    return {"fgnet-dev": ["adience-dev"] + adience, "adience-dev": ["fgnet-dev", "fgnet-children"] + fgnet,
            "every set": ["fgnet-dev", "adience-dev", "fgnet-children"] + fgnet + adience}


def _floor(name: str) -> float:
    return FLOORS["each set's target"].get(name, STRANGERS_FLOOR)


def strangers_set(utkface: Path, n: int, work: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """`n` UTKFace validation faces, each a stranger in a photo of its own."""
    from phototag import faces
    from phototag.ages.model import load_model
    from training.chips import export_chips, load_chips

    path = work / "utk-val.npz"
    export_chips(f"utkface:{utkface}", path, split="val")
    d = load_chips(path)
    pick = np.sort(np.random.default_rng(seed).choice(len(d["keys"]), n, replace=False))
    chips = d["chips"][pick]
    return {"x": np.asarray(faces.describe(list(chips)), np.float64),
            "ages": load_model(None).predict_chips(chips).distribution.astype(np.float32),
            "days": np.full(n, np.nan), "photos": np.arange(n),
            "truth": np.array([f"stranger-{k}" for k in d["keys"][pick]]), "true_age": d["ages"][pick].astype(float)}


def wider_set(db: Path) -> dict[str, np.ndarray]:
    """Every face a scan found in the wider-dev photos, each a stranger, undated; faces of one photo keep it
    (never one person)."""
    rows, a = _load(db)
    a["days"] = np.full(len(rows), np.nan)
    a["truth"] = np.array([f"stranger-wider-{r[0]}" for r in rows])
    a["true_age"] = np.full(len(rows), np.nan)
    return a


def with_strangers(album: dict[str, np.ndarray], strangers: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The album's faces (what the strangers' set holds of each) and the strangers', in photos of their own."""
    return _join({k: album[k] for k in strangers}, strangers)


def draws(s: dict[str, np.ndarray], n: int, count: int = DRAWS) -> list[dict[str, np.ndarray]]:
    """`count` draws of `n` faces each (seeds 0, 1, ...; a face's photo comes with it)."""
    return [_subset(s, np.sort(np.random.default_rng(k).choice(len(s["x"]), min(n, len(s["x"])), replace=False)))
            for k in range(count)]


def score(s: dict[str, np.ndarray], setting: tuple[float, float, float]) -> tuple[float, float]:
    """The album's BCubed precision (strangers in a face's group count as other people) and recall."""
    from phototag.people.grouping import GroupingOptions, group_faces

    children, others, single = setting
    options = replace(GroupingOptions(), child_threshold=children, threshold=others,
                      single_threshold=single if single < others else None)
    return album_bcubed(s, group_faces(s["x"], s["photos"], s["days"], ages=s["ages"], options=options))


def album_bcubed(s: dict[str, np.ndarray], labels: np.ndarray) -> tuple[float, float]:
    """BCubed precision and recall of the album's labelled faces; strangers in a face's group count as
    other people, and the strangers' own figures are not counted (without strangers: plain BCubed)."""
    known = s["truth"] != ""
    album = known & ~np.char.startswith(s["truth"].astype(str), "stranger-")
    lab, truth = labels[known], s["truth"][known]
    mine = album[known]
    precision = recall = 0.0
    for i in np.flatnonzero(mine):
        group, same = lab == lab[i], truth == truth[i]
        precision += (group & same).sum() / group.sum()
        recall += (group & same & mine).sum() / (same & mine).sum()
    return precision / mine.sum(), recall / mine.sum()


def _key(t: tuple[float, float, float]) -> str:
    return f"{t[0]}/{t[1]}/{'-' if t[2] >= t[1] else t[2]}"


def run(runs: list[dict[str, dict[str, np.ndarray]]]) -> dict[str, Any]:
    _, table = scored(runs, SETTINGS, score)
    out: dict[str, Any] = {"pairings": len(runs), "starts": STARTS, "held_out": [],
                           "table": {n: {_key(t): [round(v, 4) for v in pr] for t, pr in rows.items()}
                                     for n, rows in table.items()}}
    for lever, allowed in (("no single faces' threshold", [1.0]), ("a single faces' threshold", STARTS)):
        settings = [t for t in SETTINGS if t[2] in allowed]
        for held, choosers in held_out(list(table)).items():
            t = choose(table, settings, choosers, {n: _floor(n) for n in table})
            out["held_out"].append({"lever": lever, "held_out": held, "chosen_on": choosers, "setting": _key(t),
                                    **{n: [round(v, 4) for v in table[n][t]] for n in table}})
    # does each source of strangers alone make the same choice? (the default's lever: no single faces' threshold)
    sources = sorted({n.split(" + ")[1] for n in table if " + " in n})
    plain = [t for t in SETTINGS if t[2] == 1.0]
    out["by_source"] = {}
    for source in sources:
        names = [n for n in table if " + " not in n or n.endswith(" + " + source)]
        out["by_source"][source] = _key(choose(table, plain, held_out(names)["every set"],
                                               {n: _floor(n) for n in table}))
    return out


def markdown(r: dict[str, Any]) -> str:
    names = [n for n in r["table"]]
    lines = ["# Grouping with strangers among the faces", "",
             f"BCubed precision / recall of each album's faces, the mean over {r['pairings']} pairings of a run of "
             "fgnet-dev's cross-validated ages and a draw of strangers; `+ ... strangers`: the album with "
             f"{r['strangers']} faces of people seen once (UTKFace's web crops, or the faces a scan finds in "
             "wider-dev's photos). Precision floors: "
             f"fgnet-dev and fgnet-children 0.95, adience-dev 0.98, each composite {STRANGERS_FLOOR}; the neighbour "
             "support as shipped. A setting is the "
             "children's threshold / everyone else's / two single faces' (`-`: none). **Bold**: the held-out figure. "
             "The scan ships the children's threshold and everyone else's, and no single faces' threshold "
             "(docs/people.md).",
             "", "| lever | held out | setting | " + " | ".join(names) + " |", "|---" * (3 + len(names)) + "|"]
    for v in r["held_out"]:
        cells = [(f"**{v[n][0]:.3f} / {v[n][1]:.3f}**" if n == v["held_out"] else f"{v[n][0]:.3f} / {v[n][1]:.3f}")
                 for n in names]
        lines.append(f"| {v['lever']} | {v['held_out']} | {v['setting']} | " + " | ".join(cells) + " |")
    if r.get("by_source"):
        lines += ["", "Every set choosing, with one source of strangers only (no single faces' threshold): "
                  + "; ".join(f"{source}, {key}" for source, key in r["by_source"].items()) + "."]
    lines += ["", "## Every setting", ""] + setting_rows(r["table"], "setting")
    return "\n".join(lines) + "\n"


def album_arguments(description: str) -> argparse.ArgumentParser:
    """The options of the benches that add strangers to the albums (this one and bench.support)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--fgnet", type=Path, required=True)
    ap.add_argument("--adience", type=Path, required=True)
    ap.add_argument("--utkface", type=Path, required=True)
    ap.add_argument("--fgnet-crossval", type=Path, nargs="+", required=True)
    ap.add_argument("--card", type=Path, default=Path("models/age-dlib-resnet.json"))
    ap.add_argument("--fgnet-db", type=Path, help="fgnet-dev already scanned with `--no-people` (default: scan it now)")
    ap.add_argument("--adience-db", type=Path, help="adience-dev already scanned with `--no-people`")
    ap.add_argument("--wider", type=Path, help="wider-dev's photos, whose faces are strangers (default: none)")
    ap.add_argument("--wider-db", type=Path, help="wider-dev already scanned with `--no-people`")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    return ap


def album_indexes(args: argparse.Namespace, work: Path) -> dict[str, Path]:
    """fgnet-dev's, adience-dev's and (with `--wider`) wider-dev's indexes: those given, or scanned now without
    people."""
    dbs = {}
    for name, given, folder in (("fgnet", args.fgnet_db, args.fgnet), ("adience", args.adience_db, args.adience),
                                ("wider", args.wider_db, args.wider)):
        if folder is None:
            continue
        dbs[name] = given or work / f"{name}.db"
        if not given:
            _scan(folder, dbs[name], people=False)
    return dbs


def main(argv: list[str] | None = None) -> int:
    ap = album_arguments(__doc__.split("\n\n")[0])
    ap.add_argument("--strangers", type=int, default=300, help="strangers in each draw")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="phototag-strangers-"))
    dbs = album_indexes(args, work)
    sources = {"UTKFace": draws(strangers_set(args.utkface, DRAWS * args.strangers, work), args.strangers)}
    if "wider" in dbs:
        sources["WIDER"] = draws(wider_set(dbs["wider"]), args.strangers)
    ad = adience_set(dbs["adience"], args.adience)
    album_draws = {(source, k): with_strangers(ad, d) for source, ds in sources.items() for k, d in enumerate(ds)}
    runs = []
    for fg in fgnet_sets(dbs["fgnet"], args.fgnet, [crossval_distributions(p, args.card) for p in args.fgnet_crossval]):
        children = _subset(fg, (fg["true_age"] >= 2) & (fg["true_age"] <= 12))
        mixed = {(source, k): with_strangers(fg, d) for source, ds in sources.items() for k, d in enumerate(ds)}
        for k in range(DRAWS):
            runs.append({"fgnet-dev": fg, "adience-dev": ad, "fgnet-children": children,
                         **{f"fgnet-dev + {source} strangers": mixed[source, k] for source in sources},
                         **{f"adience-dev + {source} strangers": album_draws[source, k] for source in sources}})
    result = {"strangers": args.strangers, "draws": DRAWS, **run(runs)}
    return write_results(args.out, "strangers", result, markdown)


if __name__ == "__main__":
    raise SystemExit(main())
