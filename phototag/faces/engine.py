"""The face engine: dlib's CNN face detector and face descriptor, batched, in the fastest runtime at hand.

Three engines give the same results (tests/test_engine.py holds them to dlib's):
- `LiteRTEngine`, the default on a CPU: the converted files in `models/` (training/convert_dlib.py
  makes them from the installed dlib weights), checked against their card's checksums when loaded.
  No TensorFlow is imported.
- `KerasEngine` (PHOTOTAG_ENGINE=keras): the same networks built in Keras straight from dlib's .dat
  files, for a GPU under JAX or TensorFlow. Needs Keras and a backend (the `gpu` extra).
- `DlibEngine` (PHOTOTAG_ENGINE=dlib): dlib itself, the reference; also what a scan falls back to,
  with one warning, when the converted files are missing or damaged.

dlib stays for the 5-point landmarks and the aligned chip (`phototag.faces`) and for HOG.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from . import mmod
from .dlib_dat import Layer
from ..errors import DependencyError, ModelError
from ..runtime import (MODELS_DIR, Runner, dlib_model_file, engine_threads, face_recognition_api, file_sha256,
                       import_keras, native_stderr_silenced, pad_batch, ready_for_inference)

__all__ = ["Engine", "LiteRTEngine", "KerasEngine", "DlibEngine", "get_engine", "source_files", "load_card",
           "CARD_FILE", "DESCRIPTOR_FILE", "DETECTOR_FILE", "CHIP_SIZE", "DESCRIPTOR_SIZE", "file_sha256"]

CARD_FORMAT = 1
CHIP_SIZE = 150  # the descriptor network's input: an aligned face chip, CHIP_SIZE x CHIP_SIZE RGB
DESCRIPTOR_SIZE = 128  # and its output
CARD_FILE = "dlib-face-engine.json"
DESCRIPTOR_FILE = "dlib-face-descriptor.tflite"
DETECTOR_FILE = "dlib-face-detector.tflite"
_SOURCES = {"descriptor": "dlib_face_recognition_resnet_model_v1.dat", "detector": "mmod_human_face_detector.dat"}


class Engine(Protocol):
    """What the scan asks of an engine."""

    name: str

    def describe(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """128-d descriptors (n x 128 float32) of aligned 150x150 RGB chips."""

    def detect(self, images: Sequence[np.ndarray], upsample: int = 0, threshold: float = 0.0) -> list[list[mmod.Detection]]:
        """dlib's CNN detections scoring above `threshold` in each RGB uint8 image, best first; `upsample`
        doubles the image first, as dlib's `cnn_face_detection_model_v1(image, upsample)` does."""


def source_files(folder: Path | None = None) -> dict[str, Path]:
    """dlib's .dat files in `folder`, else in the installed face_recognition_models (found without
    importing it)."""
    if folder is not None:
        return {key: Path(folder) / name for key, name in _SOURCES.items()}
    return {key: dlib_model_file(name) for key, name in _SOURCES.items()}


def detector_options_dict(layers: list[Layer]) -> dict[str, Any]:
    """The detector's settings from its layers: window, NMS, input mean, pyramid padding, and where each
    output point falls in the input (dlib's map_output_to_input through every convolution)."""
    loss, inp = layers[-1].params, layers[0].params
    scale, offset, min_input, margin = 1, 0, 1, 0
    for layer in reversed(layers):
        if layer.kind == "con":  # p -> p * stride - padding + size // 2
            (kh, _), (s, _), (p, _) = layer.params["size"], layer.params["stride"], layer.params["padding"]
            scale, offset = scale * s, offset * s - p + kh // 2
            min_input = (min_input - 1) * s + kh - 2 * p  # the smallest input with one output
            if p:
                if scale != 1:
                    raise ModelError("a padded convolution before a strided one: phototag cannot run it in bands")
                margin += p  # output rows a band's zero padding reaches
    window = loss["windows"][0]
    if len(loss["windows"]) != 1 or loss.get("bbox_regression"):
        raise ModelError("the detector has several windows or box regression, which phototag does not decode")
    return {"window": [window[0], window[1]], "nms_iou": loss["nms_iou"], "nms_covered": loss["nms_covered"],
            "mean_rgb": list(inp["mean_rgb"]), "padding": inp["pyramid_padding"],
            "outer_padding": inp["pyramid_outer_padding"], "scale": scale, "offset": offset,
            "min_input": min_input, "margin": margin}


def _options(d: dict[str, Any]) -> mmod.Options:
    return mmod.Options(window=tuple(d["window"]), nms_iou=d["nms_iou"], nms_covered=d["nms_covered"],
                        mean_rgb=tuple(d["mean_rgb"]), padding=d["padding"], outer_padding=d["outer_padding"],
                        scale=d["scale"], offset=d["offset"], min_input=d["min_input"], margin=d["margin"])


def _chip_tensor(chips: Sequence[np.ndarray], mean_rgb: Sequence[float]) -> np.ndarray:
    x = np.stack([np.asarray(c) for c in chips]).astype(np.float32)
    if x.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
        raise ValueError(f"face chips must be {CHIP_SIZE}x{CHIP_SIZE} RGB, got {x.shape[1:]}")
    return (x - np.asarray(mean_rgb, np.float32)) / np.float32(256.0)


def _detect_one(image: np.ndarray, upsample: int, threshold: float, options: mmod.Options, run: Any) -> list[mmod.Detection]:
    """One photo: dlib's pyramid_up `upsample` times, the tiled pyramid, the network, the detections, and
    their rectangles taken back down (pyramid_down<2>::rect_down), as dlib's Python binding does."""
    image = np.ascontiguousarray(image)
    for _ in range(upsample):
        image = mmod.pyramid_up(image)
    tensor, rects = mmod.tiled_pyramid(image, options)
    if not rects or min(tensor.shape[:2]) < options.min_input:  # dlib's output would be empty
        return []
    dets = mmod.decode(_run_in_bands(tensor, options, run), rects, options, threshold)
    return [mmod.rect_down(d, upsample) for d in dets] if upsample else dets


# The network runs on horizontal bands of the tiled pyramid of at most this many output rows, so a
# worker's memory stays bounded (a 1 MP photo's whole pyramid at once took 300 MB more than in bands).
BAND_ROWS = 96


def _outputs(rows: int, options: mmod.Options) -> int:
    """Output rows (or columns) of the network for this many input rows: the strided convolutions
    give one per `scale` rows, once `min_input` rows are there."""
    return (rows - options.min_input) // options.scale + 1


def _run_in_bands(tensor: np.ndarray, options: mmod.Options, run: Any) -> np.ndarray:
    """The network's score map for the whole tiled image, computed band by band with the same result.

    Output row j sees input rows [scale*j, scale*j + min_input) through the strided (unpadded)
    convolutions; the padded ones after them reach `margin` rows further. A band starts on a
    multiple of `scale`, computes `margin` extra rows on each side, and keeps its middle."""
    s, support, margin = options.scale, options.min_input, options.margin
    total = _outputs(tensor.shape[0], options)
    if total <= BAND_ROWS + 2 * margin:
        return run(tensor)
    parts = []
    for a in range(0, total, BAND_ROWS):
        b = min(a + BAND_ROWS, total)
        lo, hi = max(a - margin, 0), min(b + margin, total)
        scores = run(tensor[s * lo : s * (hi - 1) + support])
        parts.append(scores[a - lo : b - lo])
    return np.concatenate(parts)


def load_card(folder: Path | None = None) -> dict[str, Any]:
    """The converted engine's card, after checking that its files are there and are what it says.

    Raises ModelError naming the file and what is wrong, and how to make it again."""
    folder = folder or MODELS_DIR
    card_path = folder / CARD_FILE
    remedy = "make it again with `python -m training.convert_dlib` (needs the train extra)"
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{card_path}: the converted face engine is missing; {remedy}") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{card_path}: unreadable ({exc}); {remedy}") from exc
    if card.get("format") != CARD_FORMAT:
        raise ModelError(f"{card_path}: card format {card.get('format')!r} is not supported (expected {CARD_FORMAT})")
    for key, entry in card.get("files", {}).items():
        path = folder / entry["file"]
        if not path.is_file():
            raise ModelError(f"{path}: missing; {remedy}")
        if file_sha256(path) != entry["sha256"]:
            raise ModelError(f"{path}: damaged (its checksum is not the one on its card); {remedy}")
    if set(card.get("files", {})) != set(_SOURCES):
        raise ModelError(f"{card_path}: the card does not list both networks; {remedy}")
    return card


class LiteRTEngine:
    """The converted networks under LiteRT: no TensorFlow, XNNPACK on `threads` cores."""

    name = "litert"

    def __init__(self, folder: Path | None = None, card: dict[str, Any] | None = None, threads: int | None = None):
        folder = folder or MODELS_DIR
        self.card = card or load_card(folder)
        self.options = _options(self.card["detector"])
        self.mean = self.card["descriptor"]["mean_rgb"]
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise DependencyError(f"cannot load LiteRT (ai-edge-litert): {exc}") from exc
        threads = threads or engine_threads()
        self._runners: dict[str, Runner] = {}
        with native_stderr_silenced():  # LiteRT announces its XNNPACK delegate on stderr
            for key in _SOURCES:
                path = folder / self.card["files"][key]["file"]
                try:
                    self._runners[key] = Runner(Interpreter(model_path=str(path), num_threads=threads))
                except Exception as exc:  # noqa: BLE001 - any load failure is one clear error
                    raise ModelError(f"{path}: cannot load: {exc}") from exc

    def _run(self, key: str, x: np.ndarray) -> np.ndarray:
        return self._runners[key](x)[0]

    def describe(self, chips: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, DESCRIPTOR_SIZE), np.float32)
        x = _chip_tensor(chips, self.mean)
        return np.concatenate([self._run("descriptor", x[i : i + batch_size]) for i in range(0, len(x), batch_size)])

    def detect(self, images: Sequence[np.ndarray], upsample: int = 0, threshold: float = 0.0) -> list[list[mmod.Detection]]:
        run = lambda t: self._run("detector", t[None])[0, :, :, 0]  # noqa: E731
        return [_detect_one(image, upsample, threshold, self.options, run) for image in images]


# The Keras engine pads each tiled image to a multiple of this many pixels on each side (at most 10 %
# more work on a 12 MP photo's): JAX compiles once per input shape, in every worker.
PAD_STEP = 128


class KerasEngine:
    """The networks in Keras, built from dlib's .dat files at start (0.4 s under TensorFlow, 7-10 s
    under JAX, which traces every layer): for a GPU under JAX or TF.

    `sources` names the two .dat files where face_recognition_models is not installed (a GPU machine
    that has Keras but not dlib); the default is that package's."""

    name = "keras"

    def __init__(self, sources: dict[str, Path] | None = None) -> None:
        from .dlib_dat import read_dat
        from .dlib_nets import build_descriptor, build_detector

        sources = sources or source_files()
        ready_for_inference(import_keras())  # on JAX: the descriptors stay dlib's
        desc, det = read_dat(sources["descriptor"]), read_dat(sources["detector"])
        self.options = _options(detector_options_dict(det))
        self.mean = desc[0].params["mean_rgb"]
        self._descriptor, self._detector = build_descriptor(desc), build_detector(det, masked=True)

    def describe(self, chips: Sequence[np.ndarray], batch_size: int = 256) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, DESCRIPTOR_SIZE), np.float32)
        x = _chip_tensor(chips, self.mean)
        out = self._descriptor.predict(pad_batch(x, batch_size), batch_size=batch_size, verbose=0)
        return np.asarray(out[: len(x)], np.float32)

    def detect(self, images: Sequence[np.ndarray], upsample: int = 0, threshold: float = 0.0) -> list[list[mmod.Detection]]:
        return [_detect_one(image, upsample, threshold, self.options, self._scores) for image in images]

    def _scores(self, tensor: np.ndarray) -> np.ndarray:
        """The score map of one tiled image, run padded to a multiple of PAD_STEP on each side: the
        network is compiled once per shape, and a library's photos then share a few."""
        o = self.options
        h, w = tensor.shape[:2]
        hp, wp = -(-h // PAD_STEP) * PAD_STEP, -(-w // PAD_STEP) * PAD_STEP
        x = np.zeros((1, hp, wp, 3), np.float32)
        x[0, :h, :w] = tensor
        oh, ow = _outputs(h, o), _outputs(w, o)
        mask = np.zeros((1, _outputs(hp, o), _outputs(wp, o), 1), np.float32)
        mask[0, :oh, :ow] = 1.0
        return np.asarray(self._detector.predict_on_batch([x, mask]))[0, :oh, :ow, 0]


class DlibEngine:
    """dlib itself (through face_recognition): the reference the others are held to."""

    name = "dlib"

    def describe(self, chips: Sequence[np.ndarray], batch_size: int = 0) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, DESCRIPTOR_SIZE), np.float32)
        out = face_recognition_api().face_encoder.compute_face_descriptor([np.ascontiguousarray(c) for c in chips])
        return np.asarray([np.asarray(d) for d in out], dtype=np.float32)

    def detect(self, images: Sequence[np.ndarray], upsample: int = 0, threshold: float = 0.0) -> list[list[mmod.Detection]]:
        if threshold != 0.0:
            raise ValueError("dlib's Python binding detects at threshold 0 only")
        det = face_recognition_api().cnn_face_detector
        return [[mmod.Detection(d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), d.confidence)
                 for d in det(np.ascontiguousarray(image), upsample)] for image in images]


_warned: set[str] = set()


@functools.lru_cache(maxsize=4)
def get_engine(name: str | None = None, threads: int | None = None, folder: Path | None = None) -> Engine:
    """The engine `name` names (else PHOTOTAG_ENGINE, else 'auto'): 'auto' is LiteRT from `models/`,
    or dlib, with one warning on stderr, when the converted files are missing or damaged. LiteRT runs on
    `threads` cores (else PHOTOTAG_ENGINE_THREADS, else all): a scan's workers use one each."""
    name = name or os.environ.get("PHOTOTAG_ENGINE", "auto")
    if name == "litert":
        return LiteRTEngine(folder, threads=threads)
    if name == "keras":
        return KerasEngine()
    if name == "dlib":
        return DlibEngine()
    if name != "auto":
        raise ModelError(f"unknown face engine {name!r}: use auto, litert, keras or dlib")
    try:
        return LiteRTEngine(folder, threads=threads)
    except (ModelError, DependencyError) as exc:
        if str(exc) not in _warned:
            _warned.add(str(exc))
            print(f"Warning: {exc}; using dlib, which gives the same faces more slowly", file=sys.stderr)
        return DlibEngine()
