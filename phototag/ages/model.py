"""Load an age model and its card from `models/`, and predict age distributions in batches.

A model is its card `<name>.json` and its weights. The card is the single source of truth for
preprocessing and input; we refuse a model whose card we cannot honour. Two kinds exist, and both
output a softmax over ages 0..100 (and, when present, a probability that the face is female):
- a head on dlib's 128-d descriptor (`"input": {"name": "descriptor"}`): `<name>.keras`, with an
  optional `<name>.tflite` the card vouches for;
- a network on the aligned 150x150 chip itself (`"input": {"name": "chip"}`), a fine-tuned copy of
  dlib's descriptor ResNet: `<name>.tflite` under LiteRT.
Either way the face is cut by `phototag.faces.align_and_crop`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import faces
from ..errors import DependencyError, ModelError
from .groups import POINTS, correct_prior
from ..runtime import (MODELS_DIR, Runner, engine_threads, file_sha256, import_keras, native_stderr_silenced,
                       pad_batch, ready_for_inference)

__all__ = ["AgeModel", "Prediction", "load_model", "default_model_path", "import_keras", "MODELS_DIR", "DEFAULT_MODEL"]

CARD_FORMAT = 1
DEFAULT_MODEL = "age-dlib-resnet"
AGE_BINS = 101
RUNTIMES = ("auto", "litert", "keras")


def default_model_path() -> Path:
    """The model `scan` uses unless told otherwise: `PHOTOTAG_MODEL`, else the shipped default."""
    env = os.environ.get("PHOTOTAG_MODEL")
    return Path(env) if env else MODELS_DIR / DEFAULT_MODEL


@dataclass
class Prediction:
    """Per face: the distribution over ages 0..100, and P(female) when the model has a gender head."""

    distribution: np.ndarray  # n x 101, rows sum to 1
    female: np.ndarray | None = None  # n


@dataclass
class AgeModel:
    """A loaded model: its card and its Keras head (loaded on first use)."""

    path: Path
    card: dict[str, Any]
    _keras_model: Any = field(default=None, repr=False)
    _runner: Any = field(default=None, repr=False)
    runtime: str = ""  # which runtime predicts: set on first use (see _predictor)
    prefer: str = "auto"  # 'litert', 'keras' (a GPU's: the card's Keras copy), or 'auto': the fastest on a CPU

    @property
    def model_id(self) -> str:
        """Name plus a short content hash: two different weights never share an id, and neither do the
        same weights read by other output rules (a card with a mirror or a prior adds a hash of its
        rules), so a scan re-reads the photos a changed card would read differently."""
        base = f"{self.card['name']}@{self.card.get('weights_sha256', '')[:12]}"
        age = self.card.get("outputs", {}).get("age", {})
        if "mirror" not in age and "prior" not in age:
            return base  # the ids cards had before output rules existed, kept
        import hashlib

        rules = {k: age.get(k) for k in ("point", "mirror", "prior")}
        return f"{base}+{hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest()[:8]}"

    @property
    def input_kind(self) -> str:
        """'chip' (the model reads aligned face chips) or 'descriptor' (dlib's 128-d descriptors)."""
        return _input_kind(self.card)

    @property
    def has_gender(self) -> bool:
        return "gender" in self.card.get("outputs", {})

    @property
    def point(self) -> str:
        """How this model's age distribution becomes the age shown (phototag.ages.groups.POINTS): its card's
        `outputs.age.point`, the mean where a card does not say (cards written before it could)."""
        return _point(self.card)

    @property
    def mirror_average(self) -> bool:
        """Whether a chip's distribution is averaged with its mirror image's (the card's
        `outputs.age.mirror: "average"`): a face and its mirror image disagree by about two years."""
        return _mirror(self.card) == "average"

    def _head(self) -> Any:
        if self._keras_model is None:
            keras = import_keras()
            from . import layers  # noqa: F401  registers the custom layers a model may use

            weights = self.path.with_suffix(".keras")
            if self.input_kind == "chip":
                self._check_keras_copy(weights)
            ready_for_inference(keras)  # on JAX: the card's figures hold at full precision
            try:
                self._keras_model = keras.saving.load_model(weights, compile=False)
            except Exception as exc:  # noqa: BLE001 - any load failure is one clear error
                raise ModelError(f"{weights}: cannot load the model: {exc}") from exc
        return self._keras_model

    def _predictor(self) -> Any:
        """The fastest runtime that gives the Keras model's ages (bench/runtimes.py measured them):
        LiteRT when the card vouches for a .tflite beside the weights (the training code exports it),
        else the Keras model traced once under tf.function, else called directly. A chip model is
        its .tflite: LiteRT or nothing."""
        if self._runner is not None:
            return self._runner
        tflite = self.path.with_suffix(".tflite")
        keras_wanted = self.prefer == "keras" or os.environ.get("PHOTOTAG_RUNTIME") == "keras"
        chip = self.input_kind == "chip" and not (keras_wanted and self.card.get("keras_sha256"))
        wanted = chip or not keras_wanted
        if self.card.get("tflite_sha256") and tflite.is_file() and wanted:
            try:
                from ai_edge_litert.interpreter import Interpreter
            except ImportError as exc:
                if chip:
                    raise DependencyError(f"{tflite}: LiteRT is not installed (pip install ai-edge-litert)") from exc
                Interpreter = None
            if Interpreter is not None and file_sha256(tflite) == self.card["tflite_sha256"]:
                dtype = self.card.get("input", {}).get("dtype", "float32")
                self._runner, self.runtime = _LiteRT(Interpreter, tflite, dtype), "litert"
                return self._runner
        if chip:
            raise ModelError(f"{tflite}: missing, or not the file its card describes (checksum differs)")
        head = self._head()
        keras = import_keras()
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            traced = tf.function(lambda x: head(x, training=False), reduce_retracing=True)
            self._runner, self.runtime = (lambda x: traced(tf.constant(x))), "tf.function"
        else:
            # compiled once per batch shape (pad_batch keeps them few), not run layer by layer
            self._runner, self.runtime = head.predict_on_batch, "keras"
        return self._runner

    def _check_keras_copy(self, weights: Path) -> None:
        """A chip model's Keras copy (training/keras_from_tflite.py) is the file its card vouches for."""
        if self.card.get("keras") != weights.name or not weights.is_file():
            raise ModelError(f"{self.path}: no Keras copy of this model (training/keras_from_tflite.py makes one)")
        if file_sha256(weights) != self.card.get("keras_sha256"):
            raise ModelError(f"{weights}: not the file its card describes (checksum differs)")

    def warm(self) -> None:
        """Load the weights and the runtime now (outside any timing, as a long scan would)."""
        if self.input_kind == "chip":
            self.predict_chips(np.zeros((1, faces.CHIP_SIZE, faces.CHIP_SIZE, 3), np.uint8))
        else:
            self.predict_descriptors(np.zeros((1, faces.DESCRIPTOR_SIZE), np.float32))

    def predict_descriptors(self, descriptors: np.ndarray, batch_size: int = 256) -> Prediction:
        """Distributions for a batch of descriptors (n x 128)."""
        if self.input_kind == "chip":
            raise ModelError(f"{self.path}: this model reads face chips, not descriptors (predict_chips)")
        x = np.asarray(descriptors, dtype=np.float32).reshape(-1, faces.DESCRIPTOR_SIZE)
        return self._finish(self._predict(x, batch_size))

    def _predict(self, x: np.ndarray, batch_size: int) -> Prediction:
        if len(x) == 0:
            return Prediction(np.zeros((0, AGE_BINS), np.float32), np.zeros(0, np.float32) if self.has_gender else None)
        run = self._predictor()
        dists, females = [], []
        for i in range(0, len(x), batch_size):
            chunk = x[i : i + batch_size]
            n = len(chunk)
            out = run(pad_batch(chunk, batch_size) if self.runtime == "keras" else chunk)  # JAX: few shapes
            if isinstance(out, dict):
                dists.append(np.asarray(out["age"])[:n])
                if "gender" in out:
                    females.append(np.asarray(out["gender"]).reshape(-1)[:n])
            else:
                dists.append(np.asarray(out)[:n])
        dist = np.concatenate(dists).astype(np.float32)
        dist /= dist.sum(axis=1, keepdims=True)
        return Prediction(dist, np.concatenate(females) if females else None)

    def _finish(self, pred: Prediction) -> Prediction:
        """The card's correction for the training ages' prior, if it asks for one (after the mirror average)."""
        prior = self.card.get("outputs", {}).get("age", {}).get("prior")
        if prior and len(pred.distribution):
            pred.distribution = correct_prior(pred.distribution, np.asarray(prior["frequency"]),
                                              float(prior["power"])).astype(np.float32)
        return pred

    def predict_chips(self, chips: list[np.ndarray] | np.ndarray, batch_size: int = 64) -> Prediction:
        """Distributions for aligned 150x150 RGB chips: the network itself for a chip model, else
        dlib's descriptor first, then the head."""
        if self.input_kind != "chip":
            return self.predict_descriptors(faces.describe(list(chips)))
        x = np.asarray(chips, dtype=np.uint8).reshape(-1, faces.CHIP_SIZE, faces.CHIP_SIZE, 3)
        if not self.mirror_average:
            return self._finish(self._predict(x, batch_size))
        n = len(x)
        both = self._predict(np.concatenate([x, x[:, :, ::-1]]), batch_size)
        dist = (both.distribution[:n] + both.distribution[n:]) / 2
        female = None if both.female is None else (both.female[:n] + both.female[n:]) / 2
        return self._finish(Prediction(dist, female))


class _LiteRT:
    """A .tflite age model under LiteRT: no TensorFlow import, no tracing; outputs named as Keras names them."""

    def __init__(self, interpreter_cls: Any, path: Path, dtype: str = "float32") -> None:
        try:
            with native_stderr_silenced():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
                interp = interpreter_cls(model_path=str(path), num_threads=engine_threads())
                interp.allocate_tensors()
        except Exception as exc:  # noqa: BLE001 - any load failure is one clear error
            raise ModelError(f"{path}: cannot load the LiteRT model: {exc}") from exc
        self.run = Runner(interp, dtype)
        self.names = ["age" if o["shape_signature"][-1] == AGE_BINS else "gender" for o in self.run.outputs]

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.names, self.run(x)))


def _input_kind(card: dict[str, Any]) -> str:
    """'chip' (the model reads aligned face chips) or 'descriptor' (dlib's 128-d descriptors)."""
    return "chip" if isinstance(card, dict) and card.get("input", {}).get("name") == "chip" else "descriptor"


def _point(card: dict[str, Any]) -> str:
    return str(card.get("outputs", {}).get("age", {}).get("point", "mean"))


def _mirror(card: dict[str, Any]) -> str | None:
    return card.get("outputs", {}).get("age", {}).get("mirror")


def _check_card(card: dict[str, Any], where: Path) -> None:
    """Refuse what we cannot honour, naming the field, rather than predict nonsense."""
    if card.get("format") != CARD_FORMAT:
        raise ModelError(f"{where}: card format {card.get('format')!r} is not supported (expected {CARD_FORMAT})")
    pre = card.get("preprocessing", {})
    wanted = {
        "align": "phototag.faces.align_and_crop",
        "chip_size": faces.CHIP_SIZE,
        "chip_padding": faces.CHIP_PADDING,
        "backbone": "dlib_face_recognition_resnet_model_v1",
    }
    for key, value in wanted.items():
        if pre.get(key) != value:
            raise ModelError(f"{where}: preprocessing {key}={pre.get(key)!r} is not supported (phototag does {value!r})")
    age = card.get("outputs", {}).get("age", {})
    if age.get("type") != "distribution" or age.get("bins") != AGE_BINS:
        raise ModelError(f"{where}: the age output must be a distribution over {AGE_BINS} bins (ages 0..100)")
    if (point := _point(card)) not in POINTS:
        raise ModelError(f"{where}: the age output's point {point!r} is not supported "
                         f"(phototag shows one of {', '.join(POINTS)})")
    prior = age.get("prior")
    if prior is not None:
        freq = prior.get("frequency") if isinstance(prior, dict) else None
        power = prior.get("power") if isinstance(prior, dict) else None
        if not (isinstance(freq, list) and len(freq) == AGE_BINS and all(isinstance(v, (int, float)) and v > 0
                                                                            for v in freq)
                and isinstance(power, (int, float)) and 0 <= power <= 1):
            raise ModelError(f"{where}: the age output's prior needs {AGE_BINS} positive frequencies and a power "
                             "from 0 to 1")
    if (mirror := _mirror(card)) not in (None, "average"):
        raise ModelError(f"{where}: the age output's mirror {mirror!r} is not supported (phototag does 'average')")
    if mirror and _input_kind(card) != "chip":
        raise ModelError(f"{where}: the age output's mirror needs a model that reads chips")


def load_model(path: str | Path | None = None, runtime: str = "auto") -> AgeModel:
    """The model at `path` (with or without extension; default: the shipped one). Weights load lazily.
    `runtime` 'keras' runs it under Keras (a GPU's runtime; a chip model needs its card's Keras copy)."""
    if runtime not in RUNTIMES:
        raise ModelError(f"unknown runtime {runtime!r}: use {', '.join(RUNTIMES)}")
    base = Path(path) if path is not None else default_model_path()
    if base.is_dir():
        cards = sorted(base.glob("*.json"))
        if len(cards) != 1:
            raise ModelError(f"{base}: expected one model card (*.json) in the folder, found {len(cards)}")
        base = cards[0]
    base = base.with_suffix("") if base.suffix in (".json", ".keras", ".tflite") else base
    card_path = base.with_suffix(".json")
    if not card_path.is_file():
        raise ModelError(f"{base}: model not found (need {card_path.name} and its weights)")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{card_path}: unreadable model card: {exc}") from exc
    weights = base.with_suffix(".tflite" if _input_kind(card) == "chip" else ".keras")
    if not weights.is_file():
        raise ModelError(f"{base}: model not found (need {card_path.name} and {weights.name})")
    _check_card(card, card_path)
    model = AgeModel(path=base, card=card, prefer=runtime)
    if runtime == "keras" and model.input_kind == "chip":
        model._check_keras_copy(base.with_suffix(".keras"))
    return model
