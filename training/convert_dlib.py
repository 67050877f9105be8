"""Convert dlib's face descriptor and CNN face detector into LiteRT files in `models/`, with a card.

    python -m training.convert_dlib [OUT_DIR]

The weights come from the installed `face_recognition_models` (nothing is downloaded): read by
`phototag.faces.dlib_dat`, rebuilt as Keras models by `phototag.faces.dlib_nets`, traced by TensorFlow at a
dynamic batch size (and, for the detector, a dynamic image size) and written as .tflite. Before the
card is written the converted files are checked against dlib itself on the astronaut photo: the
descriptors within 1e-3 and the detections equal. Needs TensorFlow (the `train` extra).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from phototag.faces import engine
from phototag.faces.dlib_dat import read_dat
from phototag.faces.engine import file_sha256


def _to_tflite(model: Any, spec: list[int | None]) -> bytes:
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    @tf.function(input_signature=[tf.TensorSpec(spec, tf.float32)])
    def serve(x):
        return model(x, training=False)

    frozen = convert_variables_to_constants_v2(serve.get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    return converter.convert()


def convert(out_dir: str | Path | None = None) -> Path:
    """Write the two .tflite files and their card into `out_dir` (default: models/); return the card's path."""
    from phototag.faces.dlib_nets import build_descriptor, build_detector
    from phototag.ages.model import MODELS_DIR
    from training.train import _git_commit

    out = Path(out_dir) if out_dir else MODELS_DIR
    out.mkdir(parents=True, exist_ok=True)
    sources = engine.source_files()
    desc_layers = read_dat(sources["descriptor"])
    det_layers = read_dat(sources["detector"])
    files = {
        "descriptor": (engine.DESCRIPTOR_FILE, _to_tflite(build_descriptor(desc_layers), [None, 150, 150, 3])),
        "detector": (engine.DETECTOR_FILE, _to_tflite(build_detector(det_layers), [None, None, None, 3])),
    }
    for name, blob in files.values():
        (out / name).write_bytes(blob)
    card = {
        "format": engine.CARD_FORMAT,
        "name": "dlib-face-engine",
        "what": "dlib's face descriptor ResNet and CNN face detector with dlib's own weights, "
                "for LiteRT; the card's checks were run on the converted files against dlib",
        "license": "public domain (Davis King released both models into the public domain)",
        "sources": {
            key: {"file": Path(path).name, "package": "face_recognition_models", "sha256": file_sha256(path)}
            for key, path in sources.items()
        },
        "files": {key: {"file": name, "sha256": file_sha256(out / name)} for key, (name, _) in files.items()},
        "descriptor": {"input": "150x150 RGB chip from dlib.get_face_chip, (pixel - mean) / 256, NHWC",
                       "mean_rgb": list(desc_layers[0].params["mean_rgb"]), "output": "128-d descriptor"},
        "detector": engine.detector_options_dict(det_layers),
        "converter": {"code": "training/convert_dlib.py", "commit": _git_commit(),
                      "tensorflow": _tf_version(), "python": platform.python_version()},
        "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    card["checks"] = _check_against_dlib(out, card)
    path = out / engine.CARD_FILE
    path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return path


def _tf_version() -> str:
    import tensorflow as tf

    return tf.__version__


def _check_against_dlib(out: Path, card: dict[str, Any]) -> dict[str, Any]:
    """Refuse to write a card for files that do not give dlib's results on a real face."""
    from skimage import data

    from phototag import faces
    from phototag.runtime import face_recognition_api
    img = data.astronaut()
    eng = engine.LiteRTEngine(out, card, threads=1)
    api = face_recognition_api()
    ref = [(d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), d.confidence)
           for d in api.cnn_face_detector(img, 0)]
    got = [(d.left, d.top, d.right, d.bottom, d.confidence) for d in eng.detect([img])[0]]
    if len(ref) != len(got) or any(a[:4] != b[:4] or abs(a[4] - b[4]) > 1e-3 for a, b in zip(ref, got)):
        raise SystemExit(f"converted detector disagrees with dlib on the astronaut: {got} against {ref}")
    box = faces.detect(img, model="hog", verify_faces=False)[0]
    chip = faces.align_and_crop(img, box).chip
    want = np.asarray(api.face_encoder.compute_face_descriptor(chip), np.float32)
    diff = float(np.linalg.norm(eng.describe([chip])[0] - want))
    if diff > 1e-3:
        raise SystemExit(f"converted descriptor is {diff} (L2) from dlib's on the astronaut")
    return {"astronaut_descriptor_l2": diff, "astronaut_detections": len(got)}


if __name__ == "__main__":
    print(convert(sys.argv[1] if len(sys.argv) > 1 else None))
