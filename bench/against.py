"""Scan speed and index content of this checkout against another one (a commit before), in one run.

    git worktree add /tmp/before HEAD~1
    python -m bench.make_library --faces ../shared/datasets/utkface --out /tmp/library --n 60 --seed 7
    python -m bench.against --before /tmp/before --library /tmp/library --rounds 2

Each round scans the library once with each checkout's code (`python -m phototag`, run from that
checkout), alternating which goes first, each into a fresh index and with `--no-exif`, so no photo
changes between scans. It reports photos per second for each and their ratio, and whether the two
indexes hold the same rows: every column of every photo and face but the ids and timestamps (faces
keyed by photo path and index), and the same people up to their ids.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_TIMES = {"scanned_at"}
_IDS = {"id", "photo_id", "person_id"}


def _scan(code: Path, library: Path, db: Path, workers: int) -> float:
    """Seconds for one scan of `library` by the phototag in `code`."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "phototag", "scan", str(library), "--db", str(db), "--no-exif", "-q",
                    "--workers", str(workers)], cwd=code, check=True)
    return time.perf_counter() - start


def _content(db: Path) -> dict:
    """The index's rows without ids and timestamps, and its people as sets of (photo path, face index)."""
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        photos = {r["path"]: {k: r[k] for k in r.keys() if k not in _IDS | _TIMES}
                  for r in con.execute("SELECT * FROM photos")}
        faces, people = {}, {}
        for r in con.execute("SELECT f.*, p.path AS photo FROM faces f JOIN photos p ON p.id = f.photo_id"):
            key = (r["photo"], r["idx"])
            faces[key] = {k: r[k] for k in r.keys() if k not in _IDS | _TIMES | {"photo"}}
            people.setdefault(r["person_id"], set()).add(key)
        return {"photos": photos, "faces": faces, "people": {frozenset(v) for v in people.values()}}
    finally:
        con.close()


def _differences(a: dict, b: dict) -> list[str]:
    out = []
    for table in ("photos", "faces"):
        if set(a[table]) != set(b[table]):
            out.append(f"{table}: {len(set(a[table]) ^ set(b[table]))} keys in one index only")
        for key in sorted(set(a[table]) & set(b[table]), key=str):
            cols = [c for c in a[table][key] if a[table][key][c] != b[table][key].get(c)]
            if cols:
                out.append(f"{table} {key}: {', '.join(cols)} differ")
    if a["people"] != b["people"]:
        out.append("people: the faces are grouped differently")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, required=True, help="The other checkout (a git worktree).")
    ap.add_argument("--library", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "against.json")
    args = ap.parse_args(argv)
    n = sum(1 for p in args.library.rglob("*.jpg"))
    times: dict[str, list[float]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        dbs = {}
        for r in range(args.rounds):
            order = [("before", args.before), ("after", ROOT)]
            for name, code in (order if r % 2 == 0 else order[::-1]):
                db = Path(tmp) / f"{name}-{r}.db"
                times[name].append(_scan(code, args.library, db, args.workers))
                dbs[name] = db
                print(f"round {r + 1}: {name} {n / times[name][-1]:.2f} photos/s", flush=True)
        diff = _differences(_content(dbs["before"]), _content(dbs["after"]))
    rate = {k: n * len(v) / sum(v) for k, v in times.items()}
    result = {"photos": n, "rounds": args.rounds, "seconds": times, "photos_per_second": rate,
              "ratio_after_to_before": rate["after"] / rate["before"], "identical_rows": not diff,
              "differences": diff[:50]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"after/before: {result['ratio_after_to_before']:.3f}x; rows identical: {not diff}")
    for line in diff[:20]:
        print("  " + line)
    return 0 if not diff else 1


if __name__ == "__main__":
    sys.exit(main())
