"""The one alignment function, shared by scanning and training: 5 landmarks, then dlib's own
`get_face_chip` (150 px, 25 % padding), exactly what dlib's face-descriptor network was trained on,
so the age model sees at prediction time the crops it learned from."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..runtime import dlib_model_file, load_dlib
from .detection import Box, face_engine, hog_detector
from .engine import CHIP_SIZE

__all__ = ["FaceCrop", "align_and_crop", "CHIP_PADDING", "warm"]

CHIP_PADDING = 0.25


@dataclass(frozen=True)
class FaceCrop:
    """An aligned face: where it was, its five landmarks, and the chip the model sees."""

    box: Box
    landmarks: tuple[tuple[int, int], ...]
    chip: np.ndarray  # CHIP_SIZE x CHIP_SIZE x 3, uint8 RGB


def align_and_crop(image: np.ndarray, box: Box, *, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> FaceCrop:
    """Find 5 landmarks inside `box` and cut the face out upright, eyes level, at a fixed size.

    The single function used by `phototag scan` and by `training/`, so the model sees at prediction
    time exactly the crops it was trained on.
    """
    dlib = load_dlib()
    image = np.ascontiguousarray(image)
    rect = dlib.rectangle(box.left, box.top, box.right, box.bottom)
    shape = _landmark_model()(image, rect)
    chip = dlib.get_face_chip(image, shape, size=size, padding=padding)
    landmarks = tuple((p.x, p.y) for p in shape.parts())
    return FaceCrop(box=box, landmarks=landmarks, chip=np.asarray(chip, dtype=np.uint8))


@functools.lru_cache(maxsize=1)
def _landmark_model() -> Any:
    """dlib's 5-point landmark model (the one face_recognition calls pose_predictor_5_point)."""
    return load_dlib().shape_predictor(str(dlib_model_file("shape_predictor_5_face_landmarks.dat")))


def warm() -> None:
    """Load the HOG detector, the landmark model and the face engine now, not at the first photo."""
    hog_detector()
    _landmark_model()
    face_engine()
