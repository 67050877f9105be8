"""`scan --ray local` against a plain scan, and the driver's side of a scan alone, in one run.

    python -m bench.make_library --faces ../shared/datasets/utkface --out /tmp/library --n 200 --seed 7
    python -m bench.cluster --library /tmp/library --rounds 2

overhead: each round scans the library once plainly and once with `--ray local` (`python -m phototag`,
start-up included: Ray's own and its actors'), alternating which goes first, each into a fresh index
with `--no-exif`. It reports photos per second for each, their ratio, and whether the two indexes hold
the same faces (same boxes), ages within 1e-3 years and the same people up to their ids.

driver: what one machine must do whatever the size of the cluster: results in, rows, people and tags
out. The library's analyses (boxes, descriptors, distributions) are computed once, then a scan is timed
whose analysis only hands those back, on a copy of the library with tags written into the JPEGs, and
again with `--no-exif`. Photos per second there is the ceiling of a cluster this driver serves.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _scan(library: Path, db: Path, *extra: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "phototag", "scan", str(library), "--db", str(db), "--no-exif", "-q",
                    *extra], cwd=ROOT, check=True)
    return time.perf_counter() - start


def _faces(db: Path) -> tuple[dict, set]:
    con = sqlite3.connect(db)
    faces, people = {}, {}
    for path, idx, top, right, bottom, left, age, person in con.execute(
            "SELECT p.path, f.idx, f.top, f.right, f.bottom, f.left, f.age_photo, f.person_id "
            "FROM faces f JOIN photos p ON p.id = f.photo_id"):
        faces[(path, idx)] = ((top, right, bottom, left), age)
        people.setdefault(person, set()).add((path, idx))
    con.close()
    return faces, {frozenset(v) for v in people.values()}


def compare(a: Path, b: Path) -> dict:
    """Same faces (boxes), ages within 1e-3 years, same people up to their ids."""
    (fa, pa), (fb, pb) = _faces(a), _faces(b)
    same_keys = fa.keys() == fb.keys()
    common = fa.keys() & fb.keys()
    boxes = sum(fa[k][0] != fb[k][0] for k in common)
    worst = max((abs(fa[k][1] - fb[k][1]) for k in common), default=0.0)
    return {"faces": len(fa), "same_faces": same_keys, "boxes_differing": boxes, "max_age_difference": worst,
            "same_people": pa == pb}


def overhead(library: Path, rounds: int) -> dict:
    n = sum(1 for p in library.rglob("*.jpg"))
    times: dict[str, list[float]] = {"plain": [], "ray": []}
    with tempfile.TemporaryDirectory() as tmp:
        dbs = {}
        for r in range(rounds):
            order = [("plain", ()), ("ray", ("--ray", "local"))]
            for name, extra in (order if r % 2 == 0 else order[::-1]):
                db = Path(tmp) / f"{name}-{r}.db"
                times[name].append(_scan(library, db, *extra))
                dbs[name] = db
                print(f"round {r + 1}: {name} {n / times[name][-1]:.2f} photos/s", flush=True)
        same = compare(dbs["plain"], dbs["ray"])
    rate = {k: n * len(v) / sum(v) for k, v in times.items()}
    return {"photos": n, "rounds": rounds, "seconds": times, "photos_per_second": rate,
            "ratio_ray_to_plain": rate["ray"] / rate["plain"], "same_results": same}


def driver(library: Path) -> dict:
    """The driver's side alone: a scan whose analyses are handed back from a first scan's."""
    from phototag.ages.model import load_model
    from phototag.scan import pipeline
    from phototag.scan.analyse import age_faces
    from phototag.store.index import Index
    from phototag.tags.exif import ExifWriter, NullWriter

    model = load_model()
    cache: dict[str, object] = {}
    real = pipeline._local_analyses

    def recording(tasks, args, workers, engine=None):  # ages too, as a Ray actor gives them
        for a in real(tasks, args, workers, engine):
            age_faces(model, [a])
            cache[a.path] = a
            yield a

    def replaying(tasks, args, workers, engine=None):  # the analysis a cluster would have done, already done
        for path, _ in tasks:
            yield pipeline.Analysis(**cache[path].__dict__)

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "library"
        shutil.copytree(library, copy)
        pipeline._local_analyses = recording
        try:
            with Index(Path(tmp) / "first.db") as ix:
                pipeline.scan([copy], ix, model, writer=NullWriter("bench"))
            n = len(cache)
            pipeline._local_analyses = replaying
            for name, writer in (("index_only", NullWriter("bench")), ("index_and_exif", ExifWriter())):
                with Index(Path(tmp) / f"{name}.db") as ix:
                    t0 = time.perf_counter()
                    summary = pipeline.scan([copy], ix, model, writer=writer)
                    seconds = time.perf_counter() - t0
                assert summary.tagged == n and not summary.failures, summary.line()
                out[name] = {"photos": n, "faces": summary.faces, "seconds": seconds, "photos_per_second": n / seconds}
                print(f"driver, {name}: {n / seconds:.1f} photos/s", flush=True)
        finally:
            pipeline._local_analyses = real
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cluster.json")
    args = ap.parse_args(argv)
    result = {"machine": f"{platform.node()}: {os.cpu_count()} cores, {platform.processor() or platform.machine()}",
              "measured": time.strftime("%Y-%m-%d")}
    if not args.skip_overhead:
        result["overhead"] = overhead(args.library, args.rounds)
        o = result["overhead"]
        print(f"ray/plain: {o['ratio_ray_to_plain']:.3f}x; {o['same_results']}")
    result["driver"] = driver(args.library)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
