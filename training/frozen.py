"""Train only the upper layers of the age network: the frozen lower layers run once per input.

Fine-tuning all of dlib's ResNet takes a GPU. With every layer up to `cut` kept at dlib's weights,
the lower layers' output for each training input (every degraded copy, mirrored and not) is
computed once, and the layers above the cut and the head train on those features: minutes per
network on two CPU cores (training/finetune.py's `--train-from`). The upper model shares its layers
with the age network, so the age network's weights come out whole, for training/ship.py.

The lower layers stay dlib's own, trained for identity on faces that are not FG-NET's: a network
trained this way and cross-validated on FG-NET by person has seen no held-out face anywhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["epoch_features", "feature_variants", "features", "split_at"]


def split_at(model: Any, cut: str) -> tuple[Any, Any]:
    """(lower, upper): chips to the output of trunk layer `cut`, and that output to the age network's
    outputs, with the upper layers shared with `model` (training one trains the other)."""
    from phototag.ages.model import import_keras

    keras = import_keras()
    trunk = model.get_layer("dlib_face_descriptor")
    try:
        edge = trunk.get_layer(cut).output
    except ValueError:
        names = [layer.name for layer in trunk.layers if layer.name.startswith("relu")]
        raise ValueError(f"no layer {cut!r} in dlib's network; a block ends at one of {', '.join(names)}") from None
    try:
        above = keras.Model(edge, trunk.output, name="trained_upper")
    except ValueError:  # a skip connection crosses the cut: the layers above need more than its output
        ends = [n for n in (layer.name for layer in trunk.layers if layer.name.startswith("relu"))
                if _cuttable(keras, trunk, n)]
        raise ValueError(f"{cut!r} is inside a residual block of dlib's network: cut where a block ends, "
                         f"at one of {', '.join(ends)}") from None
    below = keras.Model(trunk.input, edge, name="frozen_lower")
    lower = keras.Model(model.input, below(model.get_layer("dlib_input")(model.input)), name="lower")
    feats = keras.Input(edge.shape[1:], name="features")
    x = model.get_layer("age_drop")(model.get_layer("age_dense")(above(feats)))
    upper = keras.Model(feats, {"age": model.get_layer("age")(x), "gender": model.get_layer("gender")(x)},
                        name="upper")
    return lower, upper


def _cuttable(keras: Any, trunk: Any, name: str) -> bool:
    try:
        keras.Model(trunk.get_layer(name).output, trunk.output)
    except ValueError:
        return False
    return True


def features(lower: Any, chips: np.ndarray, batch: int = 128, chunk: int = 4096) -> np.ndarray:
    """The frozen layers' output for uint8 chips, as float16 (half the memory; dlib's own precision
    is float32, and the difference is far below what training notices). `chunk` faces at a time
    bound the float32 copy that predict returns."""
    out = [np.asarray(lower.predict(chips[i:i + chunk], batch_size=batch, verbose=0), np.float16)
           for i in range(0, len(chips), chunk)]
    return np.concatenate(out) if out else np.zeros((0,) + tuple(lower.output.shape[1:]), np.float16)


def feature_variants(lower: Any, chips: np.ndarray, variants: np.ndarray) -> np.ndarray:
    """Features of every input an epoch may show: (2, 1 + k, n, ...), [mirrored, clean or degraded copy]."""
    sets = [chips] + list(variants)
    return np.stack([np.stack([features(lower, s[:, :, ::-1] if flip else s) for s in sets])
                     for flip in (False, True)])


def epoch_features(table: np.ndarray, rows: np.ndarray, source: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """One epoch's inputs for the faces `rows`: each face's `source` (0 clean, 1 + j its degraded
    copy j), mirrored where `flip`, as finetune draws them for chips."""
    return table[flip.astype(int), source, rows].astype(np.float32)
