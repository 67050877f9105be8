"""Choose the scan's default detection on real photos: every arrangement measured in one run.

The `auto` row is `phototag.faces.detect`'s default itself: the CNN (above -0.2) on a detection
copy of up to 1.6 MP, else on a 0.5 MP copy, and HOG on the detection copy.

    python -m bench.detection --wider ../shared/datasets/wider-dev [--library /tmp/library] [--n 200]

For each photo the detection copy is decoded as a scan decodes it; HOG (confirmed by the CNN below
0.5, as `scan` does) and dlib's CNN detector (the face engine) run once at each scale; every
arrangement is then scored from those boxes, and its cost is the sum of the parts it uses, timed on
one core per worker. Recall counts faces of 80 px or more (WIDER's box width; the library's truth
width in full-resolution pixels); a detection is correct when it overlaps a true face (IoU 0.3 or
more, or one box's centre inside the other; WIDER's boxes are taller than dlib's), of any size.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# CNN scales tried: the long side of the copy the CNN sees (0: the detection copy itself); the
# library's 12 MP photos skip 0 (4.4 s a photo).
CNN_SIDES = (0, 1024, 800, 640)
# The CNN's detections are kept above each of these scores (dlib's default is 0). Greedy NMS keeps a
# box only for boxes scoring higher, so filtering one low-threshold run equals running at each.
THRESHOLDS = (0.0, -0.2, -0.4)


def read_wider(folder: Path) -> dict[str, list[list[int]]]:
    """WIDER FACE's ground_truth.txt: file, count, then x y w h and six attributes per face."""
    lines = (folder / "ground_truth.txt").read_text().split("\n")
    out: dict[str, list[list[int]]] = {}
    i = 0
    while i < len(lines) and lines[i].strip():
        name, n = lines[i].strip(), int(lines[i + 1])
        boxes = [[int(v) for v in lines[i + 2 + k].split()[:4]] for k in range(n)]
        out[name] = [[x, y, x + w, y + h] for x, y, w, h in boxes if w > 0 and h > 0]
        i += 2 + max(n, 1)
    return out


def _boxes_cnn(pixels: np.ndarray, side: int) -> tuple[list[list[float]], float]:
    from PIL import Image

    from phototag import faces
    h, w = pixels.shape[:2]
    f = 1.0 if not side or max(h, w) <= side else side / max(h, w)
    img = pixels if f == 1.0 else np.asarray(Image.fromarray(pixels).resize((round(w * f), round(h * f)), Image.BILINEAR))
    t = time.perf_counter()
    dets = faces.face_engine().detect([img], threshold=min(THRESHOLDS))[0]
    dt = time.perf_counter() - t
    return [[d.left / f, d.top / f, (d.right + 1) / f, (d.bottom + 1) / f, d.confidence] for d in dets], dt


def measure(path: str, detect_size: int, sides: tuple[int, ...]) -> dict[str, Any]:
    """One photo: the decode, HOG's boxes, and the CNN's boxes at each scale, with their seconds."""
    from phototag import faces
    from phototag.scan.decode import decode
    from phototag.scan.analyse import _upsample

    t = time.perf_counter()
    d = decode(path, detect_size)
    out: dict[str, Any] = {"decode": time.perf_counter() - t, "scale": d.scale}
    px = np.ascontiguousarray(d.pixels)
    t = time.perf_counter()
    boxes = faces.detect(px, model="hog", upsample=_upsample(px, detect_size), min_size=max(1, int(40 / d.scale)))
    out["hog"] = time.perf_counter() - t
    out["hog_boxes"] = [[b.left, b.top, b.right, b.bottom] for b in boxes]
    t = time.perf_counter()
    boxes = faces.detect(px, upsample=_upsample(px, detect_size), min_size=max(1, int(40 / d.scale)))
    out["auto"] = time.perf_counter() - t
    out["auto_boxes"] = [[b.left, b.top, b.right, b.bottom] for b in boxes]
    for side in sides:
        if side and max(px.shape[:2]) <= side and "cnn0" in out:  # no smaller than the detection copy: the same run
            out[f"cnn{side}_boxes"], out[f"cnn{side}"] = out["cnn0_boxes"], out["cnn0"]
        else:
            out[f"cnn{side}_boxes"], out[f"cnn{side}"] = _boxes_cnn(px, side)
    return out


def _init() -> None:
    """One engine thread per worker, and everything loaded before the first photo is timed."""
    os.environ["PHOTOTAG_ENGINE_THREADS"] = "1"
    from phototag import faces
    from phototag.runtime import face_recognition_api
    face_recognition_api()
    faces.face_engine().detect([np.zeros((100, 100, 3), np.uint8)])
    faces.face_engine().describe([np.zeros((150, 150, 3), np.uint8)])


def _overlap(a: list[float], b: list[float]) -> bool:
    """The same face, as `phototag.faces.detect` decides it (IoU 0.3, or a centre inside the other)."""
    from phototag.faces.detection import Box, _overlaps

    box = lambda v: Box(round(v[1]), round(v[2]), round(v[3]), round(v[0]))  # noqa: E731  (l, t, r, b)
    return _overlaps(box(a), box(b))


def merge(first: list[list[int]], second: list[list[int]]) -> list[list[int]]:
    """`first`'s boxes, and `second`'s where they overlap none of them."""
    return first + [b for b in second if not any(_overlap(a, b) for a in first)]


@dataclass
class Score:
    faces: int = 0
    found: int = 0
    detections: int = 0
    false: int = 0
    seconds: float = 0.0
    photos: int = 0
    misses: list[str] = field(default_factory=list)

    def add(self, truth: list[list[float]], min_width: float, found: list[list[int]], seconds: float, name: str) -> None:
        self.photos += 1
        self.seconds += seconds
        used: set[int] = set()
        for t in truth:
            if t[2] - t[0] < min_width:
                continue
            self.faces += 1
            j = next((j for j, f in enumerate(found) if j not in used and _overlap(t, f)), None)
            if j is not None:
                used.add(j)
                self.found += 1
            else:
                self.misses.append(name)
        self.detections += len(found)
        self.false += sum(not any(_overlap(t, f) for t in truth) for f in found)

    def row(self) -> dict[str, Any]:
        return {"faces": self.faces, "recall": round(self.found / self.faces, 4) if self.faces else None,
                "precision": round(1 - self.false / self.detections, 4) if self.detections else None,
                "s_per_photo": round(self.seconds / self.photos, 3) if self.photos else None}


def arrangements(m: dict[str, Any]) -> dict[str, tuple[list[list[int]], float]]:
    """Each arrangement's boxes and seconds for one measured photo."""
    out = {"**auto (the default)**": (m["auto_boxes"], m["auto"]), "hog (the previous default)": (m["hog_boxes"], m["hog"])}
    for side in CNN_SIDES:
        key = f"cnn{side}"
        if key not in m:
            continue
        label = "detection copy" if not side else f"{side} px"
        for t in THRESHOLDS:
            boxes = [b[:4] for b in m[key + "_boxes"] if b[4] > t]
            at = f"cnn > {t:g} at {label}"
            out[at] = (boxes, m[key])
            out[f"hog + {at}"] = (merge(m["hog_boxes"], boxes), m["hog"] + m[key])
    return out


def run_set(name: str, items: list[tuple[str, list[list[float]], float]], detect_size: int, workers: int,
            sides: tuple[int, ...] = CNN_SIDES) -> dict[str, Any]:
    """Measure every photo of one set; `items` are (path, true boxes, smallest true width counted)."""
    scores: dict[str, Score] = {}
    decode_s = 0.0
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init) as pool:
        futures = {pool.submit(measure, path, detect_size, sides): (path, truth, mw) for path, truth, mw in items}
        for fut in cf.as_completed(futures):
            path, truth, min_width = futures[fut]
            m = fut.result()
            decode_s += m["decode"]
            # truth is in full-resolution pixels; detections are in the detection copy's
            s = m["scale"]
            found_full = {k: ([[v * s for v in b] for b in boxes], secs) for k, (boxes, secs) in arrangements(m).items()}
            for k, (boxes, secs) in found_full.items():
                scores.setdefault(k, Score()).add(truth, min_width, boxes, secs, Path(path).name)
    return {"set": name, "photos": len(items), "decode_s_per_photo": round(decode_s / max(1, len(items)), 3),
            "arrangements": {k: v.row() for k, v in scores.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wider", type=Path)
    ap.add_argument("--library", type=Path)
    ap.add_argument("--n", type=int, default=0, help="photos per set (0: all)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=Path("bench/results/detection"))
    args = ap.parse_args(argv)
    from phototag.scan.decode import DEFAULT_DETECT_SIZE

    results = []
    if args.wider:
        truth = read_wider(args.wider)
        for folder in sorted({k.split("/")[0] for k in truth}):
            names = sorted(k for k in truth if k.startswith(folder + "/"))[: args.n or None]
            items = [(str(args.wider / "images" / k), truth[k], 80) for k in names]
            results.append(run_set(f"wider-dev {folder}", items, DEFAULT_DETECT_SIZE, args.workers))
            print(json.dumps(results[-1], indent=1), flush=True)
    if args.library:
        lib = json.loads((args.library / "truth.json").read_text())["photos"]
        names = sorted(lib)[: args.n or None]
        items = [(str(args.library / k), [[f["box"][3], f["box"][0], f["box"][1], f["box"][2]] for f in lib[k]["faces"]], 160)
                 for k in names]
        results.append(run_set("bench library (faces >= 160 px)", items, DEFAULT_DETECT_SIZE, args.workers,
                               tuple(s for s in CNN_SIDES if s)))
        print(json.dumps(results[-1], indent=1), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"# Detection arrangements on real photos ({os.cpu_count()} cores; seconds on one core per photo)", ""]
    for r in results:
        lines += [f"## {r['set']}: {r['photos']} photos (decode {r['decode_s_per_photo']} s/photo)", "",
                  "| arrangement | faces | recall | precision | s/photo |", "|---|---|---|---|---|"]
        for k, v in r["arrangements"].items():
            lines.append(f"| {k} | {v['faces']} | {v['recall']} | {v['precision']} | {v['s_per_photo']} |")
        lines.append("")
    args.out.with_suffix(".md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
