"""A whole scan with `--device gpu` against `--device cpu`, on the same photos, in one run.

    python -m bench.make_library --faces ../shared/datasets/utkface --out /tmp/library --n 480 --seed 7
    python -m bench.gpu --library /tmp/library

Each scan is `python -m phototag scan` as a user runs it (start-up included: the workers, the networks,
JAX's compiling), with tags written into the photos, on its own fresh copy of the library and into its
own fresh index. It reports photos and faces per second for each device, their ratio, and whether
the two indexes hold the same faces (same boxes), ages within 1e-3 years and the same people up to
their ids, and how busy the GPU was (nvidia-smi, once a second). `--workers` adds GPU scans with
fewer worker processes sharing the GPU; `--detector cnn` scans without HOG. On the `device` tool's
GPU machine: bench/device/ (docs/cluster.md says how).
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
import threading
import time
from pathlib import Path

from bench.cluster import compare

ROOT = Path(__file__).resolve().parents[1]


def _scan(library: Path, db: Path, device: str, workers: int, log: Path, detector: str | None) -> dict:
    """One timed scan of a fresh copy of `library`."""
    with tempfile.TemporaryDirectory(dir=library.parent) as tmp:
        copy = Path(tmp).resolve() / "library"
        shutil.copytree(library, copy)
        cmd = [sys.executable, "-m", "phototag", "scan", str(copy), "--db", str(db), "-q", "--device", device,
               "--workers", str(workers)] + (["--detector", detector] if detector else [])
        busy = _GpuBusy()
        start = time.perf_counter()
        with open(log, "a") as err, busy:
            done = subprocess.run(cmd, cwd=ROOT, stderr=err, stdout=err)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)}: exit {done.returncode} (see {log})")
    # the index stores the copy's paths: name them as the library's, so two scans compare
    con = sqlite3.connect(db)
    con.execute("UPDATE photos SET path = replace(path, ?, ?)", (str(copy), str(library)))
    con.commit()
    photos, faces = con.execute("SELECT (SELECT count(*) FROM photos), (SELECT count(*) FROM faces)").fetchone()
    con.close()
    return {"device": device, "workers": workers, "detector": detector or "auto", "seconds": seconds,
            "photos": photos, "faces": faces, "photos_per_second": photos / seconds,
            "faces_per_second": faces / seconds, "gpu_busy_percent": busy.summary()}


class _GpuBusy:
    """nvidia-smi's GPU utilisation, read once a second while a scan runs (None without nvidia-smi)."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> "_GpuBusy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _read(self) -> None:
        while not self._stop.wait(1.0):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5)
                self.samples.append(int(out.stdout.split()[0]))
            except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
                return

    def summary(self) -> dict | None:
        if not self.samples:
            return None
        return {"mean": round(sum(self.samples) / len(self.samples), 1), "max": max(self.samples),
                "samples": len(self.samples)}


def _gpu_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library", type=Path, required=True)
    ap.add_argument("--devices", default="gpu,cpu", help="Devices to scan with, in this order (default gpu,cpu).")
    ap.add_argument("--workers", default="", help="Also scan on the GPU with these worker counts (as 8,4).")
    ap.add_argument("--detector", help="scan --detector for every scan (default: the scan's own, auto)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu.json")
    args = ap.parse_args(argv)
    args.library = args.library.resolve()
    cores = os.cpu_count() or 1
    card = json.loads((ROOT / "models" / "age-dlib-resnet.json").read_text())
    result = {"machine": f"{platform.node()}: {cores} cores, {platform.processor() or platform.machine()}",
              "gpu": _gpu_name(), "measured": time.strftime("%Y-%m-%d"), "age_model": card.get("name"),
              "library": str(args.library), "scans": []}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log = args.out.with_suffix(".log")
    dbs = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = [(d, cores) for d in args.devices.split(",")] + [("gpu", int(w)) for w in args.workers.split(",") if w]
        for device, workers in runs:
            db = Path(tmp) / f"{device}-{workers}.db"
            scan = _scan(args.library, db, device, workers, log, args.detector)
            dbs.setdefault(device, db)
            result["scans"].append(scan)
            print(f"{device}, {workers} workers: {scan['photos_per_second']:.1f} photos/s, "
                  f"{scan['faces_per_second']:.1f} faces/s ({scan['seconds']:.1f} s)", flush=True)
            args.out.write_text(json.dumps(result, indent=1) + "\n")
        if "gpu" in dbs and "cpu" in dbs:
            first = {s["device"]: s for s in reversed(result["scans"])}
            result["ratio_gpu_to_cpu"] = first["gpu"]["photos_per_second"] / first["cpu"]["photos_per_second"]
            result["same_results"] = compare(dbs["cpu"], dbs["gpu"])
            print(f"gpu/cpu: {result['ratio_gpu_to_cpu']:.2f}x; {result['same_results']}")
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
