"""The face engine against dlib-bin, in one run: descriptors per second by batch size, CNN detection
seconds per photo, and how far each engine's results are from dlib's.

    python -m bench.engine [--wider ../shared/datasets/wider-dev] [--engines dlib,litert,keras]

Faces are real: the astronaut's chip (and, with --wider, the first photos of wider-dev). A GPU
machine may have Keras but neither dlib nor the data: there, run it on inputs saved here,

    python -m bench.engine --wider ../shared/datasets/wider-dev --save-inputs inputs.npz   # here, with dlib
    KERAS_BACKEND=jax python -m bench.engine --inputs inputs.npz --dat DIR --engines keras  # there

where DIR holds dlib's two .dat files; dlib's results saved with the inputs are the reference.
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
    eng.describe(chips[:batch])  # warm up at this very shape (allocations, tracing, a GPU's compilation)
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < budget or done == 0:
        eng.describe(chips[:batch])
        done += batch
        if done >= 4 * batch and time.perf_counter() - t0 > budget / 4:
            break
    return done / (time.perf_counter() - t0)


def _real_inputs(wider: Path | None) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """The astronaut's aligned chip, and the photos to detect in: the astronaut and wider-dev's first four."""
    from PIL import Image
    from skimage import data

    from phototag import faces
    img = data.astronaut()
    chip = faces.align_and_crop(img, faces.detect(img, model="hog")[0]).chip
    photos = [("astronaut 512x512", img)]
    if wider:
        for p in sorted((wider / "images").glob("*/*.jpg"))[:4]:
            photos.append((p.name, np.asarray(Image.open(p).convert("RGB"))))
    return chip, photos


def _machine() -> str:
    gpu = ""
    if os.environ.get("KERAS_BACKEND") == "jax":
        import jax

        gpu = ", " + ", ".join(d.device_kind for d in jax.devices())
    return f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}{gpu}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wider", type=Path)
    ap.add_argument("--engines", default="dlib,litert")
    ap.add_argument("--threads", type=int, default=1, help="LiteRT threads (a scan gives each worker 1)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/engine"))
    ap.add_argument("--save-inputs", type=Path, help="save the chips, photos and dlib's results here, and stop")
    ap.add_argument("--inputs", type=Path, help="use inputs saved by --save-inputs (no dlib needed)")
    ap.add_argument("--dat", type=Path, help="folder of dlib's .dat files, for --engines keras without dlib")
    ap.add_argument("--budget", type=float, default=8.0, help="seconds to time each batch size")
    ap.add_argument("--precision", choices=("default", "highest"), default="default",
                    help="JAX's float32 matrix precision (on a GPU 'default' may use TF32)")
    args = ap.parse_args(argv)
    if args.precision == "highest":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")
    from phototag.faces import engine
    if args.inputs:
        saved = np.load(args.inputs)
        chip, want = saved["chip"], saved["want"]
        labels = [str(x) for x in saved["labels"]]
        photos = [(label, saved[f"photo{i}"]) for i, label in enumerate(labels)]
        ref_det = json.loads(str(saved["dlib_detect"]))
    else:
        chip, photos = _real_inputs(args.wider)
    rng = np.random.default_rng(0)
    # real chips, each a little different so no cache can help: brightness and a mirror
    chips = [np.clip(chip.astype(np.int16)[:, :: 1 if i % 2 else -1] + int(rng.integers(-20, 20)), 0, 255)
             .astype(np.uint8) for i in range(max(BATCHES))]
    if not args.inputs:
        ref = engine.DlibEngine()
        want = ref.describe(chips[:16])
        ref_det = {label: [[d.left, d.top, d.right, d.bottom, round(d.confidence, 4)] for d in ref.detect([photo])[0]]
                   for label, photo in photos}
    if args.save_inputs:
        np.savez_compressed(args.save_inputs, chip=chip, want=want, labels=np.array([lb for lb, _ in photos]),
                            dlib_detect=json.dumps(ref_det), **{f"photo{i}": ph for i, (_, ph) in enumerate(photos)})
        return 0
    engines = {}
    for name in args.engines.split(","):
        sources = engine.source_files(args.dat) if args.dat else None
        engines[name] = {"dlib": engine.DlibEngine, "keras": lambda: engine.KerasEngine(sources),
                         "litert": lambda: engine.LiteRTEngine(threads=args.threads)}[name]()
    result: dict[str, Any] = {"machine": _machine(), "litert_threads": args.threads, "precision": args.precision,
                              "describe": {}, "detect": {}}
    for name, eng in engines.items():
        got = eng.describe(chips[:16])
        row = {"max_l2_to_dlib": float(np.linalg.norm(got - want, axis=1).max())}
        for b in BATCHES:
            if name == "dlib" and b > 32:
                continue  # dlib's rate does not change with the batch: it runs one face at a time
            row[f"batch {b}"] = round(_faces_per_second(eng, chips, b, args.budget), 1)
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
    lines = [f"# Face engine against dlib-bin ({result['machine']}; LiteRT on {args.threads} thread(s);"
             f" JAX precision {args.precision})", "",
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
    for n in engines:
        agree = all(
            len(a := result["detect"][n][label]["boxes"]) == len(b := ref_det[label])
            and all(x[:4] == y[:4] and abs(x[4] - y[4]) <= 1e-3 for x, y in zip(a, b)) for label, _ in photos)
        result.setdefault("same_detections_as_dlib", {})[n] = agree
    lines += ["", f"The same boxes as dlib, scores within 0.001, on every photo: {result['same_detections_as_dlib']}", ""]
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
