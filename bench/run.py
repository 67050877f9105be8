"""Measure `phototag scan` on a benchmark library, beside a naive baseline, in one run.

    python -m bench.run --library /tmp/library [--naive 10] [--thorough] [--out bench/results]

Reports photos and faces per second, CPU use of all cores, peak memory of the whole process tree,
detection recall and precision against the library's truth.json (by face width), the age error of
the detected faces, a re-run over the unchanged library, and where the time goes per stage. The naive
baseline (full-resolution decode, face_recognition on the full image, the model called once per
face) runs in this same process on the first --naive photos. Writes results.json and results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BINS = [(0, 80), (80, 160), (160, 320), (320, 10**6)]


# -- measuring --------------------------------------------------------------------------------

def _tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and all its descendants, from /proc."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return total


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` and its live descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            total += (int(parts[11]) + int(parts[12])) / tick
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total


class Meter:
    """Samples the process tree's memory and CPU while a block runs."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval, self.peak_rss, self.busy = interval, 0, []
        self._stop = threading.Event()

    def __enter__(self) -> "Meter":
        self.t0 = time.monotonic()
        self.ru0 = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        pid, cores = os.getpid(), os.cpu_count() or 1
        last_t, last_cpu = time.monotonic(), _tree_cpu(pid)
        while not self._stop.wait(self.interval):
            self.peak_rss = max(self.peak_rss, _tree_rss(pid))
            now, cpu = time.monotonic(), _tree_cpu(pid)
            if now - last_t >= 1.0:
                self.busy.append(max(0.0, cpu - last_cpu) / (now - last_t) / cores)
                last_t, last_cpu = now, cpu

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.seconds = time.monotonic() - self.t0
        s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = sum(getattr(b, k) - getattr(a, k) for a, b in zip(self.ru0, (s, c)) for k in ("ru_utime", "ru_stime"))
        self.cpu_share = cpu / self.seconds / (os.cpu_count() or 1)


# -- truth ------------------------------------------------------------------------------------

def _iou(a: list[int], b: list[int]) -> float:
    top, right, bottom, left = max(a[0], b[0]), min(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])
    inter = max(0, right - left) * max(0, bottom - top)
    area = lambda x: (x[1] - x[3]) * (x[2] - x[0])  # noqa: E731
    return inter / (area(a) + area(b) - inter) if inter else 0.0


@dataclass
class Accuracy:
    truth_by_bin: list[int] = field(default_factory=lambda: [0] * len(BINS))
    found_by_bin: list[int] = field(default_factory=lambda: [0] * len(BINS))
    detections: int = 0
    false_160: int = 0  # unmatched detections 160 px or wider
    detections_160: int = 0
    false_all: int = 0
    age_errors: list[float] = field(default_factory=list)

    def add(self, truth: list[dict], found: list[tuple[list[int], float]]) -> None:
        """Greedy matching by IoU >= 0.4, largest overlaps first."""
        pairs = sorted(((_iou(t["box"], f[0]), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)),
                       reverse=True)
        used_t, used_f = set(), set()
        for iou, i, j in pairs:
            if iou < 0.4 or i in used_t or j in used_f:
                continue
            used_t.add(i), used_f.add(j)
            self.age_errors.append(abs(found[j][1] - truth[i]["age"]))
        for i, t in enumerate(truth):
            b = next(k for k, (lo, hi) in enumerate(BINS) if lo <= t["width"] < hi)
            self.truth_by_bin[b] += 1
            self.found_by_bin[b] += i in used_t
        for j, (box, _) in enumerate(found):
            wide = box[1] - box[3] >= 160
            self.detections += 1
            self.detections_160 += wide
            if j not in used_f:
                self.false_all += 1
                self.false_160 += wide

    def summary(self) -> dict[str, Any]:
        recall = {f"{lo}-{hi if hi < 10**6 else ''}px": (f / t if t else None, t)
                  for (lo, hi), f, t in zip(BINS, self.found_by_bin, self.truth_by_bin)}
        t160 = sum(self.truth_by_bin[2:])
        return {
            "recall_by_width": {k: round(v, 4) if v is not None else None for k, (v, _) in recall.items()},
            "faces_by_width": {k: n for k, (_, n) in recall.items()},
            "recall_160": round(sum(self.found_by_bin[2:]) / t160, 4) if t160 else None,
            "recall_80": round(sum(self.found_by_bin[1:]) / sum(self.truth_by_bin[1:]), 4)
            if sum(self.truth_by_bin[1:]) else None,
            "precision_160": round(1 - self.false_160 / self.detections_160, 4) if self.detections_160 else None,
            "precision": round(1 - self.false_all / self.detections, 4) if self.detections else None,
            "age_mae": round(float(np.mean(self.age_errors)), 2) if self.age_errors else None,
            "matched": len(self.age_errors),
        }


# -- the runs ---------------------------------------------------------------------------------

def run_scan(lib: Path, db: Path, truth: dict, options: Any, model_path: Path | None = None) -> dict[str, Any]:
    from phototag.store.index import Index
    from phototag.ages.model import load_model
    from phototag.scan.pipeline import scan
    from phototag.tags.exif import ExifWriter

    model = load_model(model_path)
    model.warm()  # load outside the timing, as a long scan would
    with Index(db) as index, Meter() as m:
        summary = scan([lib], index, model, writer=ExifWriter(), options=options)
    acc = Accuracy()
    with Index(db) as index:
        for rel, t in truth["photos"].items():
            found = [([f["top"], f["right"], f["bottom"], f["left"]], f["age"]) for f in index.faces_of(str(lib / rel))]
            acc.add(t["faces"], found)
    n = len(truth["photos"])
    return {"photos": n, "faces": summary.faces, "seconds": round(m.seconds, 2),
            "photos_per_s": round(n / m.seconds, 3), "faces_per_s": round(summary.faces / m.seconds, 2),
            "cpu_busy": round(m.cpu_share, 3), "cpu_busy_min_per_s": round(min(m.busy), 3) if m.busy else None,
            "cpu_busy_median": round(float(np.median(m.busy)), 3) if m.busy else None,
            "peak_rss_mb": round(m.peak_rss / 2**20), "failures": len(summary.failures), **acc.summary()}


def run_rescan(lib: Path, db: Path, options: Any) -> dict[str, Any]:
    from phototag.store.index import Index
    from phototag.ages.model import load_model
    from phototag.scan.pipeline import scan
    from phototag.tags.exif import ExifWriter

    with Index(db) as index, Meter() as m:
        summary = scan([lib], index, load_model(None), writer=ExifWriter(), options=options)
    return {"seconds": round(m.seconds, 3), "skipped": summary.skipped, "tagged": summary.tagged}


def run_naive(lib: Path, truth: dict, names: list[str]) -> dict[str, Any]:
    """What a first script would do: full decode, face_recognition on the full image, a face at a time."""
    import face_recognition
    from PIL import Image, ImageOps

    from phototag.ages.groups import point_ages
    from phototag.ages.model import load_model

    model = load_model(None)
    model.warm()
    acc, faces = Accuracy(), 0
    with Meter() as m:
        for rel in names:
            with Image.open(lib / rel) as im:
                img = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
            boxes = face_recognition.face_locations(img, 1, "hog")
            found = []
            for box in boxes:
                if model.input_kind == "chip":  # face_recognition's own chip: dlib's get_face_chip
                    import dlib

                    top, right, bottom, left = box
                    shape = face_recognition.api.pose_predictor_5_point(img, dlib.rectangle(left, top, right, bottom))
                    pred = model.predict_chips([dlib.get_face_chip(img, shape, 150, 0.25)])
                else:
                    desc = face_recognition.face_encodings(img, [box])[0]
                    pred = model.predict_descriptors(desc[None, :])
                found.append((list(box), float(point_ages(pred.distribution[0], model.point))))
            faces += len(found)
            acc.add(truth["photos"][rel]["faces"], found)
    n = len(names)
    return {"photos": n, "faces": faces, "seconds": round(m.seconds, 2), "photos_per_s": round(n / m.seconds, 4),
            "faces_per_s": round(faces / m.seconds, 3), "cpu_busy": round(m.cpu_share, 3),
            "peak_rss_mb": round(m.peak_rss / 2**20), **acc.summary()}


def profile(lib: Path, names: list[str], options: Any) -> dict[str, float]:
    """Seconds per photo in each stage, one process, on `names`."""
    from phototag import faces
    from phototag.runtime import face_recognition_api
    from phototag.scan.decode import CROP_FACE_PX, decode, load_for_crops
    from phototag.scan.analyse import _upsample
    from phototag.ages.model import load_model
    from phototag.tags.exif import ExifWriter, TagRecord

    model = load_model(None)
    model.warm()
    face_recognition_api()
    t = dict.fromkeys(["decode", "detect", "cnn_verify", "crop_decode", "align", "describe", "model", "exif_write"], 0.0)
    work = Path(tempfile.mkdtemp(prefix="phototag-profile-"))
    for rel in names:
        path = work / Path(rel).name
        shutil.copy2(lib / rel, path)
        c = time.perf_counter(); d = decode(path, options.detect_size); t["decode"] += time.perf_counter() - c
        min_size = max(1, int(options.min_face / d.scale))
        up = options.upsample if options.upsample is not None else _upsample(d.pixels, options.detect_size)
        c = time.perf_counter()
        boxes = faces.detect(d.pixels, model=options.detector, upsample=up, min_size=min_size, verify_faces=False)
        hog = time.perf_counter() - c
        t["detect"] += hog
        if options.verify:  # the same detection with doubtful boxes confirmed; the difference is the CNN's
            c = time.perf_counter()
            boxes = faces.detect(d.pixels, model=options.detector, upsample=up, min_size=min_size, verify_faces=True)
            t["cnn_verify"] += max(0.0, time.perf_counter() - c - hog)
        full = [b.scaled(d.scale, d.width, d.height) for b in boxes]
        chips = []
        if full and min(b.width for b in boxes) >= CROP_FACE_PX:
            c = time.perf_counter()
            chips = [faces.align_and_crop(d.pixels, b).chip for b in boxes]
            t["align"] += time.perf_counter() - c
        elif full:
            c = time.perf_counter(); image, f = load_for_crops(path, [b.width for b in full])
            t["crop_decode"] += time.perf_counter() - c
            c = time.perf_counter()
            chips = [faces.align_and_crop(image, b.scaled(1 / f, image.shape[1], image.shape[0])).chip for b in full]
            t["align"] += time.perf_counter() - c
        c = time.perf_counter(); desc = faces.describe(chips); t["describe"] += time.perf_counter() - c
        c = time.perf_counter()
        if model.input_kind == "chip":
            model.predict_chips(chips)
        else:
            model.predict_descriptors(desc)
        t["model"] += time.perf_counter() - c
        if full:
            rec = TagRecord(model=model.model_id, scheme="ten", keywords=["Age group: Adult"],
                            faces=[{"box": b.as_list()} for b in full])
            c = time.perf_counter(); ExifWriter().write(path, "JPEG", rec); t["exif_write"] += time.perf_counter() - c
    shutil.rmtree(work)
    return {k: round(v / len(names), 4) for k, v in t.items()}


def model_runtimes() -> dict[str, Any]:
    """Faces per second of the age head alone, by runtime and batch size, on this machine."""
    from bench.runtimes import measure

    return measure()


# -- report -----------------------------------------------------------------------------------

def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {cpu}, {mem:.0f} GiB RAM, Python {platform.python_version()}"


def write_results(out: Path, name: str, result: dict[str, Any], render: Any) -> int:
    """A bench's results as `out/name.json` and `out/name.md` (its markdown, also printed); exit code 0."""
    text = render(result)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{name}.md").write_text(text)
    print(text)
    return 0


def markdown(r: dict[str, Any]) -> str:
    ours, naive = r["scan"], r.get("naive")
    rows = [("photos per second", "photos_per_s"), ("faces per second", "faces_per_s"),
            ("CPU busy (all cores, whole run)", "cpu_busy"), ("peak memory, process tree (MB)", "peak_rss_mb"),
            ("recall, faces >= 160 px", "recall_160"), ("recall, faces >= 80 px", "recall_80"),
            ("precision, detections >= 160 px", "precision_160"), ("precision, all detections", "precision"),
            ("age MAE of detected faces (years)", "age_mae")]
    out = [f"Machine: {r['machine']}. Library: {ours['photos']} photos, {r['truth_faces']} faces "
           f"(bench/make_library.py, seed {r['seed']}).", "",
           "| | phototag scan | naive baseline | ratio |", "|---|---|---|---|"]
    for label, key in rows:
        a, b = ours.get(key), (naive or {}).get(key)
        ratio = f"{a / b:.1f}x" if key.endswith("_per_s") and a and b else ""
        out.append(f"| {label} | {a} | {b if naive else '-'} | {ratio} |")
    out += ["", f"Naive baseline: the first {naive['photos']} photos, in the same process." if naive else "",
            "", "Recall by face width (phototag scan):", "",
            "| width | faces | recall |", "|---|---|---|"]
    for k, v in ours["recall_by_width"].items():
        out.append(f"| {k} | {ours['faces_by_width'][k]} | {v} |")
    re = r["rescan"]
    out += ["", f"Re-run over the unchanged library: {re['seconds']} s ({re['skipped']} skipped), "
            f"{ours['seconds'] / max(re['seconds'], 1e-9):.0f}x faster than the first run.", ""]
    if r.get("compare"):
        out += ["", "The same library, other settings, in the same run:", "",
                "| scan | photos/s | recall >= 160 px | recall >= 80 px | precision | age MAE |", "|---|---|---|---|---|---|",
                f"| defaults (--detector auto) | {r['scan']['photos_per_s']} | {r['scan']['recall_160']} | "
                f"{r['scan']['recall_80']} | {r['scan'].get('precision')} | {r['scan'].get('age_mae')} |"]
        for label, c in r["compare"].items():
            out.append(f"| {label} | {c['photos_per_s']} | {c['recall_160']} | {c['recall_80']} | "
                       f"{c.get('precision')} | {c.get('age_mae')} |")
    if r.get("thorough"):
        t = r["thorough"]
        out += ["", f"--thorough: {t['photos_per_s']} photos/s, recall >= 80 px {t['recall_80']}, "
                f">= 160 px {t['recall_160']}, precision {t['precision']}.", ""]
    if r.get("profile"):
        out += ["Seconds per photo by stage (one process):", "", "| stage | s/photo |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in r["profile"].items()]
    if r.get("runtimes"):
        out += ["", "Age head alone, faces per second (CPU, this machine):", "",
                "| runtime | " + " | ".join(f"batch {b}" for b in r["runtimes"]["batches"]) + " | max age diff |",
                "|---|" + "---|" * (len(r["runtimes"]["batches"]) + 1)]
        for name, v in r["runtimes"]["results"].items():
            cells = [str(v["faces_per_s"].get(str(b), "-")) for b in r["runtimes"]["batches"]]
            out.append(f"| {name} | " + " | ".join(cells) + f" | {v.get('max_age_diff', '-')} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--library", type=Path, required=True)
    ap.add_argument("--naive", type=int, default=10, help="Photos for the naive baseline (0: skip it).")
    ap.add_argument("--thorough", action="store_true", help="Also measure scan --thorough.")
    ap.add_argument("--profile", type=int, default=10, help="Photos for the per-stage profile.")
    ap.add_argument("--runtimes", action="store_true", help="Also compare model runtimes.")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--compare", action="store_true",
                    help="Also scan with --detector hog, and with hog and dlib's own descriptor (the scan "
                         "before the face engine), each on a fresh copy, in this same run.")
    ap.add_argument("--compare-model", type=Path, metavar="MODEL",
                    help="Also scan with this age model, alternating twice with the default, each on a fresh copy.")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args(argv)

    from phototag.scan.pipeline import ScanOptions

    truth = json.loads((args.library / "truth.json").read_text())
    work = Path(tempfile.mkdtemp(prefix="phototag-bench-"))
    try:
        lib = work / "library"
        shutil.copytree(args.library, lib, ignore=shutil.ignore_patterns("truth*.json"))
        names = sorted(truth["photos"])
        opts = ScanOptions(workers=args.workers)
        result: dict[str, Any] = {"machine": machine(), "seed": truth.get("seed"),
                                  "truth_faces": sum(len(p["faces"]) for p in truth["photos"].values()),
                                  "options": asdict(opts)}
        print("phototag scan ...", file=sys.stderr)
        result["scan"] = run_scan(lib, work / "index.db", truth, opts)
        print(json.dumps(result["scan"]), file=sys.stderr)
        result["rescan"] = run_rescan(lib, work / "index.db", opts)
        if args.compare:
            result["compare"] = {}
            for label, detector, eng in (("--detector hog", "hog", "auto"),
                                         ("hog, dlib's descriptor (before the engine)", "hog", "dlib")):
                libc = work / f"library-{detector}-{eng}"
                shutil.copytree(args.library, libc, ignore=shutil.ignore_patterns("truth*.json"))
                os.environ["PHOTOTAG_ENGINE"] = eng  # the workers inherit it
                try:
                    print(f"phototag scan ({label}) ...", file=sys.stderr)
                    result["compare"][label] = run_scan(libc, work / f"{detector}-{eng}.db", truth,
                                                        ScanOptions(workers=args.workers, detector=detector))
                finally:
                    os.environ.pop("PHOTOTAG_ENGINE", None)
                print(json.dumps(result["compare"][label]), file=sys.stderr)
        if args.compare_model:
            runs: dict[str, list] = {"default": [], str(args.compare_model): []}
            for rep in range(2):
                for label, path in (("default", None), (str(args.compare_model), args.compare_model)):
                    libc = work / f"library-model-{rep}-{len(runs[label])}-{path is None}"
                    shutil.copytree(args.library, libc, ignore=shutil.ignore_patterns("truth*.json"))
                    print(f"phototag scan (model {label}, round {rep + 1}) ...", file=sys.stderr)
                    runs[label].append(run_scan(libc, libc.with_suffix(".db"), truth, opts, path))
                    print(json.dumps(runs[label][-1]), file=sys.stderr)
            result["models"] = {label: {"seconds": [r["seconds"] for r in rs], "photos_per_s": [r["photos_per_s"] for r in rs],
                                        "age_mae": [r.get("age_mae") for r in rs], "peak_rss_mb": [r.get("peak_rss_mb") for r in rs]}
                                for label, rs in runs.items()}
            a, b = (sum(r["seconds"] for r in rs) for rs in runs.values())
            result["models"]["default_time_over_compared"] = round(a / b, 3)
        if args.thorough:
            lib2 = work / "library-thorough"
            shutil.copytree(args.library, lib2, ignore=shutil.ignore_patterns("truth*.json"))
            result["thorough"] = run_scan(lib2, work / "thorough.db", truth, ScanOptions.thorough(workers=args.workers))
            print(json.dumps(result["thorough"]), file=sys.stderr)
        if args.naive:
            print("naive baseline ...", file=sys.stderr)
            fresh = work / "naive"
            shutil.copytree(args.library, fresh, ignore=shutil.ignore_patterns("truth*.json"))
            result["naive"] = run_naive(fresh, truth, names[: args.naive])
            print(json.dumps(result["naive"]), file=sys.stderr)
        if args.profile:
            result["profile"] = profile(args.library, names[: args.profile], opts)
        if args.runtimes:
            result["runtimes"] = model_runtimes()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return write_results(args.out, "results", result, markdown)


if __name__ == "__main__":
    raise SystemExit(main())
