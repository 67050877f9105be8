"""Measure the people feature on real photos and at library scale, in one run.

    python -m bench.people --fgnet ../shared/datasets/fgnet-dev --adience ../shared/datasets/adience-dev \
        [--scale 100000] [--library /tmp/library] [--out bench/results]

- FG-NET (scanned family photos of 41 people, childhood to old age, dated): the age phototag uses
  against the truth (photo date minus birth date), all ages and 0 to 12, beside each face's own
  estimate; birth years within 2 years for the people found with 5 or more dated faces; then every
  person found is named with the birth date of the subject most of their faces show, and the median
  age error is measured again. Grouping precision and recall (BCubed) too.
- Adience (a Flickr family album): BCubed precision and recall of the people found.
- Scale: made-up descriptors of `--scale` faces grouped from scratch (time, peak memory of a fresh
  process), then 1,000 new faces added to them.
- `--library`: the bench/ library scanned with people and without (`--no-people`), alternately, twice
  each: photos per second of each.
Writes people.json and people.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

YEAR = 365.2425


def fgnet_half(subject: str | int) -> int:
    """The half of fgnet-dev's people a subject id falls in, 0 or 1 (ids 0-1, 4-5, ... and 2-3, 6-7, ...:
    its ids are odd, so (id // 2) % 2 splits them evenly): the benches hold people out by these halves."""
    return (int(subject) // 2) % 2


def bcubed(labels: list[Any], truth: list[Any]) -> tuple[float, float]:
    """BCubed precision and recall of a clustering against the truth."""
    labels_a, truth_a = np.asarray(labels), np.asarray(truth)
    p = r = 0.0
    for i in range(len(truth_a)):
        same_c, same_t = labels_a == labels_a[i], truth_a == truth_a[i]
        both = (same_c & same_t).sum()
        p += both / same_c.sum()
        r += both / same_t.sum()
    return p / len(truth_a), r / len(truth_a)


def _scan(folder: Path, db: Path, **options: Any) -> Any:
    from phototag.store.index import Index
    from phototag.ages.model import load_model
    from phototag.scan.pipeline import ScanOptions, scan
    from phototag.tags.exif import NullWriter

    with Index(db) as index:
        return scan([folder], index, load_model(None), writer=NullWriter("--no-exif", tidy=True),
                    options=ScanOptions(**options))


def adience_labels(folder: Path) -> dict[str, str]:
    """Adience's crop file name -> the face_id of the person it shows (its labels.tsv)."""
    with open(folder / "labels.tsv") as f:
        return {f"coarse_tilt_aligned_face.{row['face_id']}.{row['original_image']}": row["face_id"]
                for row in csv.DictReader(f, delimiter="\t")}


def adience_truth(db: Path, folder: Path) -> tuple[list[int], list[str]]:
    """(person id, true face_id) of the largest face of each Adience crop the scan found a face in."""
    names = adience_labels(folder)
    con = sqlite3.connect(db)
    got = con.execute("SELECT p.path, f.person_id FROM faces f JOIN photos p ON p.id = f.photo_id "
                      "WHERE f.idx = 0 ORDER BY p.path").fetchall()
    con.close()
    pairs = [(pid, names[Path(path).name]) for path, pid in got if Path(path).name in names]
    return [p for p, _ in pairs], [t for _, t in pairs]


def adience(folder: Path, work: Path) -> dict[str, Any]:
    db = work / "adience.db"
    t = time.monotonic()
    _scan(folder, db)
    labels, truth = adience_truth(db, folder)
    p, r = bcubed(labels, truth)
    return {"faces": len(labels), "people_true": len(set(truth)), "people_found": len(set(labels)),
            "bcubed_precision": round(p, 4), "bcubed_recall": round(r, 4), "scan_s": round(time.monotonic() - t, 1)}


def _fgnet_faces(db: Path, births: dict[str, dt.date]) -> list[dict[str, Any]]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    out = []
    for r in con.execute("SELECT p.path, p.taken_at, f.* FROM faces f JOIN photos p ON p.id = f.photo_id "
                         "WHERE f.idx = 0"):
        subject = Path(r["path"]).name[:3]
        taken = dt.date.fromisoformat(r["taken_at"][:10])
        out.append({**dict(r), "subject": subject, "true_age": (taken - births[subject]).days / YEAR})
    con.close()
    return out


def fgnet(folder: Path, work: Path) -> dict[str, Any]:
    from phototag.store.index import Index
    from phototag.people.update import PeopleError, name_person

    births = {r["subject"]: dt.date.fromisoformat(r["birth_date"]) for r in csv.DictReader(open(folder / "births.csv"))}
    db = work / "fgnet.db"
    _scan(folder, db)
    faces = _fgnet_faces(db, births)
    used = np.array([f["age"] for f in faces])
    own = np.array([f["age_photo"] for f in faces])
    true = np.array([f["true_age"] for f in faces])
    child = true < 13
    p, r = bcubed([f["person_id"] for f in faces], [f["subject"] for f in faces])
    out: dict[str, Any] = {
        "faces": len(faces), "people_true": len(births), "people_found": len({f["person_id"] for f in faces}),
        "bcubed_precision": round(p, 4), "bcubed_recall": round(r, 4),
        "mae_own": round(float(np.abs(own - true).mean()), 2), "mae_used": round(float(np.abs(used - true).mean()), 2),
        "bias_used": round(float((used - true).mean()), 2),
        "mae_own_0_12": round(float(np.abs(own - true)[child].mean()), 2),
        "mae_used_0_12": round(float(np.abs(used - true)[child].mean()), 2),
        "faces_person_age": int(sum(f["age_source"] == "person" for f in faces)),
    }
    # birth years of the people found with 5 or more dated faces, against their main subject's
    con = sqlite3.connect(db)
    people = con.execute("SELECT id, birth_est, birth_faces FROM people").fetchall()
    con.close()
    by_person: dict[int, list[str]] = {}
    for f in faces:
        by_person.setdefault(f["person_id"], []).append(f["subject"])
    close = [abs((dt.date.fromisoformat(est) - births[max(set(s := by_person[pid]), key=s.count)]).days) / YEAR <= 2
             for pid, est, n in people if est and n >= 5 and pid in by_person]
    out["people_5_dated"] = len(close)
    out["birth_within_2y"] = round(float(np.mean(close)), 3) if close else None
    # name every person found with the birth date of the subject most of their faces show
    refused = 0
    with Index(db) as index:
        for pid, subjects in sorted(by_person.items()):
            main = max(set(subjects), key=subjects.count)
            try:
                name_person(index, pid, f"S{main}-{pid}", births[main].isoformat())
            except PeopleError:
                refused += 1  # a face of someone else, taken before this subject was born
    named = _fgnet_faces(db, births)
    err = np.abs(np.array([f["age"] for f in named]) - np.array([f["true_age"] for f in named]))
    out.update(named_refused=refused, median_error_named=round(float(np.median(err)), 3),
               mae_named=round(float(err.mean()), 2))
    return out


SCALE_SCRIPT = """
import resource, sys, time, json
from phototag.store.index import Index
from phototag.people.update import update_people
with Index(sys.argv[1]) as index:
    t = time.perf_counter()
    u = update_people(index)
    secs = time.perf_counter() - t
print(json.dumps({"seconds": round(secs, 2), "grouped": u.grouped, "new_people": u.new_people,
                  "stages": {k: round(v, 2) for k, v in u.seconds.items()},
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def synthetic(db: Path, people: int, per_person: int, *, start: int = 0, seed: int = 5,
              centres: np.ndarray | None = None, births: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Faces of made-up people: descriptors spread as dlib's are (0.4 within a person, 0.9 between),
    one face per photo, taken over ten years, each with an age estimate centred on the true age (sd 3
    years), as the model's are. Returns the people's descriptor centres and birth days."""
    from phototag.ages.groups import pack_distribution
    from phototag.store.index import Index

    rng = np.random.default_rng(seed)
    if centres is None:
        centres = rng.normal(0, 1, (people, 128))
        centres *= 0.64 / np.linalg.norm(centres, axis=1, keepdims=True)
        births = rng.uniform(-20 * YEAR, 45 * YEAR, people)  # 1950 to 2015
    n = people * per_person
    who = np.repeat(np.arange(people), per_person)
    desc = centres[who] + rng.normal(0, 0.4 / 16, (n, 128))
    days = rng.uniform(45 * YEAR, 55 * YEAR, n)  # 2015 to 2025
    ages = (days - births[who]) / YEAR + rng.normal(0, 2, n)
    dist = np.exp(-0.5 * ((np.arange(101)[None, :] - ages[:, None]) / 3) ** 2) + 1e-6
    dist /= dist.sum(axis=1, keepdims=True)
    epoch = dt.date(1970, 1, 1)
    with Index(db) as index, index.transaction() as conn:
        conn.executemany(
            "INSERT INTO photos (id, path, status, taken_at, face_count, tags, scheme) VALUES (?, ?, 'ok', ?, 1, 'x', 'ten')",
            [(start + i + 1, f"/synthetic/{start + i}.jpg", (epoch + dt.timedelta(days=int(d))).isoformat() + "T12:00:00")
             for i, d in enumerate(days)])
        conn.executemany(
            "INSERT INTO faces (photo_id, idx, top, right, bottom, left, age, age_photo, age_low, age_high, "
            "age_photo_low, age_photo_high, distribution, descriptor, scheme, age_source) "
            "VALUES (?, 0, 0, 10, 10, 0, ?, ?, 0, 0, 0, 0, ?, ?, 'ten', 'photo')",
            [(start + i + 1, float(ages[i]), float(ages[i]), pack_distribution(dist[i]), desc[i].astype("<f4").tobytes())
             for i in range(n)])
    return centres, births


def scale(n: int, work: Path) -> dict[str, Any]:
    db = work / "scale.db"
    people = max(1, n // 50)
    centres, births = synthetic(db, people, n // people)
    run = lambda: json.loads(subprocess.run([sys.executable, "-c", SCALE_SCRIPT, str(db)], check=True,  # noqa: E731
                                            capture_output=True, text=True).stdout)
    first = run()
    synthetic(db, 20, 50, start=n, seed=6, centres=centres[:20], births=births[:20])  # 1,000 new faces, known people
    second = run()
    con = sqlite3.connect(db)
    per_person = con.execute("SELECT count(DISTINCT person_id) FROM faces WHERE photo_id > ?", (n,)).fetchone()[0]
    con.close()
    return {"faces": n, "people": people, "from_scratch": first, "add_1000": second,
            "new_faces_people": per_person}


def scan_speed(library: Path, work: Path) -> dict[str, Any]:
    """The bench/ library scanned with and without people, alternately, twice each."""
    from bench.run import run_scan
    from phototag.scan.pipeline import ScanOptions

    truth = json.loads((library / "truth.json").read_text())
    out: dict[str, list[float]] = {"people": [], "no_people": []}
    for i, people in enumerate([False, True, True, False]):
        lib = work / f"lib{i}"
        shutil.copytree(library, lib, ignore=shutil.ignore_patterns("truth*.json"))
        r = run_scan(lib, work / f"speed{i}.db", truth, ScanOptions(people=people))
        out["people" if people else "no_people"].append(r["photos_per_s"])
        shutil.rmtree(lib)
    mean = {k: float(np.mean(v)) for k, v in out.items()}
    return {**out, "ratio": round(mean["people"] / mean["no_people"], 3)}


def markdown(r: dict[str, Any]) -> str:
    lines = [f"# People benchmark\n\n{r['machine']}\n"]
    if "fgnet" in r:
        f = r["fgnet"]
        lines += ["## FG-NET (fgnet-dev)\n", "| | target | measured |", "|---|---|---|",
                  f"| MAE of the age used, all ages | <= 5.0 | {f['mae_used']} (own estimate {f['mae_own']}) |",
                  f"| MAE of the age used, ages 0-12 | <= 3.0 | {f['mae_used_0_12']} (own {f['mae_own_0_12']}) |",
                  f"| median error after naming every person found | <= 0.5 | {f['median_error_named']} "
                  f"(MAE {f['mae_named']}; {f['named_refused']} refused) |",
                  f"| birth within 2 years, people with >= 5 dated faces | report | {f['birth_within_2y']} "
                  f"of {f['people_5_dated']} |",
                  f"| BCubed precision / recall | | {f['bcubed_precision']} / {f['bcubed_recall']} "
                  f"({f['people_found']} people found, {f['people_true']} true) |", ""]
    if "adience" in r:
        a = r["adience"]
        lines += ["## Adience (adience-dev)\n", "| | target | measured |", "|---|---|---|",
                  f"| BCubed precision | >= 0.98 | {a['bcubed_precision']} |",
                  f"| BCubed recall | >= 0.93 | {a['bcubed_recall']} |",
                  f"| people | {a['people_true']} | {a['people_found']} found ({a['faces']} faces) |", ""]
    if "scale" in r:
        s = r["scale"]
        lines += [f"## Scale ({s['faces']:,} synthetic faces, {s['people']:,} people)\n",
                  "| | target | measured |", "|---|---|---|",
                  f"| from scratch | <= 60 s, < 1.5 GB | {s['from_scratch']['seconds']} s "
                  f"({s['from_scratch']['stages']}), peak {s['from_scratch']['peak_rss_mb']} MB |",
                  f"| 1,000 new faces | <= 5 s | {s['add_1000']['seconds']} s ({s['add_1000']['stages']}); "
                  f"they joined {s['new_faces_people']} people |", ""]
    if "scan_speed" in r:
        s = r["scan_speed"]
        lines += ["## Scan speed, bench/ library\n",
                  f"photos/s with people {s['people']}, without {s['no_people']}: ratio {s['ratio']}\n"]
    if "scan_speed_vs_before" in r:
        s = r["scan_speed_vs_before"]
        lines += [f"Against the code before the people feature ({s['before']}), same library, alternately: "
                  f"photos/s before {s['old']}, now {s['new']}: ratio {s['ratio']}\n"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from bench.run import machine, write_results

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fgnet", type=Path)
    ap.add_argument("--adience", type=Path)
    ap.add_argument("--scale", type=int, default=0, help="Synthetic faces to group (0: skip).")
    ap.add_argument("--library", type=Path, help="A bench/ library: scan speed with and without people.")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args(argv)
    result: dict[str, Any] = {"machine": machine()}
    work = Path(tempfile.mkdtemp(prefix="phototag-people-"))
    try:
        for key, fn, arg in (("fgnet", fgnet, args.fgnet), ("adience", adience, args.adience),
                             ("scale", scale, args.scale), ("scan_speed", scan_speed, args.library)):
            if arg:
                print(f"{key} ...", file=sys.stderr)
                result[key] = fn(arg, work)
                print(json.dumps(result[key]), file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return write_results(args.out, "people", result, markdown)


if __name__ == "__main__":
    raise SystemExit(main())
