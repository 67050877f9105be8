"""Faces per second of the age head alone, by runtime and batch size.

    python -m bench.runtimes            # CPU, TensorFlow backend: predict, direct call, tf.function, LiteRT
    KERAS_BACKEND=jax python -m bench.runtimes --keras-only   # e.g. on the GPU machine

The head (`models/age-dlib-mlp`; the default model reads chips and runs under LiteRT alone) takes
dlib's 128-d descriptors; every runtime is fed the same descriptors and must give the same ages
(expected age from the distribution) as Keras `predict`, to 0.1 year.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

BATCHES = [1, 32, 256, 1024]


def _rate(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, seconds: float = 1.0) -> float:
    fn(x)  # warm up (tracing, allocation)
    times, t_end = [], time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(times) < 3:
        c = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - c)
    return len(x) / statistics.median(times)


def _ages(dist: np.ndarray) -> np.ndarray:
    dist = np.asarray(dist, np.float64)
    return (dist / dist.sum(axis=1, keepdims=True)) @ np.arange(dist.shape[1])


def _first(out: Any) -> np.ndarray:
    return np.asarray(out["age"] if isinstance(out, dict) else out)


def measure(keras_only: bool = False, model_path: Path | None = None) -> dict[str, Any]:
    from phototag.ages.model import MODELS_DIR, _LiteRT, import_keras, load_model

    keras = import_keras()
    model_path = model_path or MODELS_DIR / "age-dlib-mlp"
    model = load_model(model_path)._head()
    rng = np.random.default_rng(0)
    data = (rng.normal(0, 0.09, (max(BATCHES), 128))).astype(np.float32)  # dlib descriptors' scale
    runtimes: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "keras predict": lambda x: _first(model.predict(x, verbose=0, batch_size=len(x))),
        "keras direct call": lambda x: _first(model(x, training=False)),
    }
    if not keras_only and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        traced = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        runtimes["tf.function"] = lambda x: _first(traced(tf.constant(x)))
        try:
            from ai_edge_litert.interpreter import Interpreter

            from training.export_tflite import export_tflite

            path = export_tflite(Path(model_path).with_suffix(".keras"),
                                 Path(tempfile.mkdtemp()) / "head.tflite")
            litert = _LiteRT(Interpreter, path)  # the wrapper phototag itself runs
            runtimes["LiteRT (ai-edge-litert)"] = lambda x: litert(x)["age"]
        except ImportError as exc:
            print(f"LiteRT not measured: {exc}")
    reference = _ages(runtimes["keras predict"](data[:256]))
    results = {}
    for name, fn in runtimes.items():
        diff = float(np.abs(_ages(fn(data[:256])) - reference).max())
        results[name] = {"faces_per_s": {str(b): round(_rate(fn, data[:b])) for b in BATCHES},
                         "max_age_diff": round(diff, 6)}
        print(name, json.dumps(results[name]))
    return {"backend": keras.backend.backend(), "batches": BATCHES, "results": results}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keras-only", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    r = measure(args.keras_only)
    if args.out:
        args.out.write_text(json.dumps(r, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
