"""The face engine against dlib-bin, in one run: descriptors per second by batch size, CNN detection
seconds per photo, and how far each engine's results are from dlib's.

    python -m bench.engine [--wider ../shared/datasets/wider-dev] [--engines dlib,litert,keras]

Faces are real: the astronaut's chip (and, with --wider, the first photos of wider-dev). On a GPU
machine run it with PHOTOTAG_ENGINE unset and `--engines keras` to fill the GPU table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

BATCHES = (1, 32, 256, 1024)


def _faces_per_second(eng: Any, chips: list[np.ndarray], batch: int, budget: float = 8.0) -> float:
    eng.describe(chips[: min(batch, 8)])  # warm up (allocations, tracing)
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < budget or done == 0:
        eng.describe(chips[:batch])
        done += batch
        if done >= 4 * batch and time.perf_counter() - t0 > budget / 4:
            break
    return done / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wider", type=Path)
    ap.add_argument("--engines", default="dlib,litert")
    ap.add_argument("--threads", type=int, default=1, help="LiteRT threads (a scan gives each worker 1)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/engine"))
    args = ap.parse_args(argv)
    from PIL import Image
    from skimage import data

    from phototag import engine, faces

    img = data.astronaut()
    chip = faces.align_and_crop(img, faces.detect(img, model="hog")[0]).chip
    rng = np.random.default_rng(0)
    # real chips, each a little different so no cache can help: brightness and a mirror
    chips = [np.clip(chip.astype(np.int16)[:, :: 1 if i % 2 else -1] + int(rng.integers(-20, 20)), 0, 255)
             .astype(np.uint8) for i in range(max(BATCHES))]
    photos = [("astronaut 512x512", img)]
    if args.wider:
        for p in sorted((args.wider / "images").glob("*/*.jpg"))[:4]:
            photos.append((p.name, np.asarray(Image.open(p).convert("RGB"))))
    engines = {}
    for name in args.engines.split(","):
        engines[name] = {"dlib": engine.DlibEngine, "keras": engine.KerasEngine,
                         "litert": lambda: engine.LiteRTEngine(threads=args.threads)}[name]()
    ref = engines.get("dlib") or engine.DlibEngine()
    want = ref.describe(chips[:16])
    result: dict[str, Any] = {"machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
                              "litert_threads": args.threads, "describe": {}, "detect": {}}
    for name, eng in engines.items():
        got = eng.describe(chips[:16])
        row = {"max_l2_to_dlib": float(np.linalg.norm(got - want, axis=1).max())}
        for b in BATCHES:
            if name == "dlib" and b > 32:
                continue  # dlib's rate does not change with the batch: it runs one face at a time
            row[f"batch {b}"] = round(_faces_per_second(eng, chips, b), 1)
        result["describe"][name] = row
        det = {}
        for label, photo in photos:
            eng.detect([photo])
            t = time.perf_counter()
            found = eng.detect([photo])[0]
            det[label] = {"seconds": round(time.perf_counter() - t, 3), "faces": len(found),
                          "boxes": [[d.left, d.top, d.right, d.bottom, round(d.confidence, 4)] for d in found]}
        result["detect"][name] = det
        print(name, json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Face engine against dlib-bin ({result['machine']}; LiteRT on {args.threads} thread(s))", "",
             "Descriptors, faces per second:", "",
             "| engine | " + " | ".join(f"batch {b}" for b in BATCHES) + " | largest L2 to dlib |",
             "|---|" + "---|" * (len(BATCHES) + 1)]
    for name, row in result["describe"].items():
        lines.append(f"| {name} | " + " | ".join(str(row.get(f"batch {b}", "")) for b in BATCHES)
                     + f" | {row['max_l2_to_dlib']:.1e} |")
    lines += ["", "CNN detection, seconds per photo (and faces found):", "",
              "| photo | " + " | ".join(engines) + " |", "|---|" + "---|" * len(engines)]
    for label, _ in photos:
        lines.append(f"| {label} | " + " | ".join(
            f"{result['detect'][n][label]['seconds']} ({result['detect'][n][label]['faces']})" for n in engines) + " |")
    if "dlib" in engines:
        for n in engines:
            agree = all(
                len(a := result["detect"][n][label]["boxes"]) == len(b := result["detect"]["dlib"][label]["boxes"])
                and all(x[:4] == y[:4] and abs(x[4] - y[4]) <= 1e-3 for x, y in zip(a, b)) for label, _ in photos)
            result.setdefault("same_detections_as_dlib", {})[n] = agree
        lines += ["", f"The same boxes as dlib, scores within 0.001, on every photo: {result['same_detections_as_dlib']}", ""]
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
