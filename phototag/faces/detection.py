"""Finding faces: dlib's HOG and its CNN face detector (in the face engine) together, the CNN
confirming HOG's doubtful boxes; and describing aligned chips with dlib's descriptor network.

Everything dlib-related loads lazily: importing this module costs nothing, so `phototag --help`
stays instant.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from .engine import CHIP_SIZE, DESCRIPTOR_SIZE, get_engine
from ..runtime import load_dlib

__all__ = ["Box", "detect", "verify", "describe", "face_engine", "use_engine", "hog_detector", "CHIP_SIZE",
           "DESCRIPTOR_SIZE", "DETECTORS", "DEFAULT_MIN_SCORE"]

@dataclass(frozen=True)
class Box:
    """A face box in pixels of the image it was found in, face_recognition's (top, right, bottom, left)."""

    top: int
    right: int
    bottom: int
    left: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def scaled(self, factor: float, width: int, height: int) -> "Box":
        """The same box in an image `factor` times larger, clipped to that image."""
        return Box(
            top=max(0, round(self.top * factor)),
            right=min(width, round(self.right * factor)),
            bottom=min(height, round(self.bottom * factor)),
            left=max(0, round(self.left * factor)),
        )

    def as_list(self) -> list[int]:
        return [self.top, self.right, self.bottom, self.left]


@functools.lru_cache(maxsize=1)
def hog_detector() -> Any:
    """dlib's HOG face detector (face_recognition's `face_detector`), loaded once."""
    return load_dlib().get_frontal_face_detector()


# dlib's HOG detector scores its boxes; face_recognition keeps everything above 0. Weak HOG boxes are
# where its false faces are: the mission patch on the astronaut's suit scores 0.12 in the PNG and 0.19
# in a JPEG of the same photo. So HOG proposes and dlib's CNN face detector confirms, on a small crop
# around each box: measured on 375 UTKFace faces HOG found, the CNN confirmed all of them (lowest
# confidence 0.83) and rejected the patch. The crop is 160 px: at 100 px the CNN missed the
# astronaut's real face, at 120 px it passed with only 0.61.
DEFAULT_MIN_SCORE = 0.0
# HOG boxes scoring at least this are faces (bench/tune_detection.py: of 121 faces in 40 photos, every
# HOG box was one); below it dlib's CNN must confirm. The mission patch on the astronaut's suit, HOG's
# false face, scores 0.13. Checking only the doubtful boxes cuts the CNN's cost about sevenfold.
VERIFY_BELOW = 0.5
VERIFY_SIDE = 160
VERIFY_MARGIN = 0.5


_ENGINE: list[str | None] = [None]  # this process's engine name; None: PHOTOTAG_ENGINE, else auto


def use_engine(name: str | None) -> str | None:
    """Run this process's detection and descriptors on the engine `name` ('keras' for a GPU; None: the
    default). Returns the name it replaces, so a caller can put it back."""
    old, _ENGINE[0] = _ENGINE[0], name
    return old


def face_engine() -> Any:
    """The face engine this process uses (phototag.faces.engine): dlib's CNN detector and descriptor."""
    return get_engine(_ENGINE[0])


def verify(image: np.ndarray, box: Box) -> float:
    """dlib's CNN detector's confidence that `box` holds a face (-inf when it finds none there)."""
    h, w = image.shape[:2]
    bw, bh = box.width, box.height
    top, left = max(0, int(box.top - VERIFY_MARGIN * bh)), max(0, int(box.left - VERIFY_MARGIN * bw))
    bottom, right = min(h, int(box.bottom + VERIFY_MARGIN * bh)), min(w, int(box.right + VERIFY_MARGIN * bw))
    crop = image[top:bottom, left:right]
    if crop.size == 0:
        return float("-inf")
    from PIL import Image

    f = VERIFY_SIDE / max(crop.shape[:2])
    size = (max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f)))
    crop = np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize(size, Image.BILINEAR))
    return max((d.confidence for d in face_engine().detect([crop])[0]), default=float("-inf"))


# The CNN keeps boxes scoring above this (dlib's own default is 0). On wider-dev it finds faces in
# profile and blurred that score just under 0, with no false face down to -0.2 (bench/detection.py).
CNN_THRESHOLD = -0.2
# `auto`: the CNN costs about 1 s a megapixel on one core, HOG about 0.1 s. A detection copy of up to
# CNN_WHOLE_PIXELS (a photo 1024 px wide of any usual shape, portrait too) is the CNN's whole input. A
# larger one is shrunk to CNN_PIXELS for the CNN, which then finds its larger faces (in profile too),
# and HOG covers it whole for the smaller, frontal ones (bench/results/detection.md).
CNN_WHOLE_PIXELS = 1_600_000
CNN_PIXELS = 500_000
DETECTORS = ("auto", "hog", "cnn")


def _cnn_boxes(image: np.ndarray, upsample: int = 0, max_pixels: int | None = None) -> list[tuple[Box, float]]:
    """The CNN's faces in `image`, on a copy of at most `max_pixels`, as boxes in `image`'s pixels."""
    h, w = image.shape[:2]
    f = 1.0 if not max_pixels or h * w <= max_pixels else (max_pixels / (h * w)) ** 0.5
    small = image
    if f < 1.0:
        from PIL import Image

        small = np.asarray(Image.fromarray(image).resize((max(1, round(w * f)), max(1, round(h * f))), Image.BILINEAR))
    out = []
    for d in face_engine().detect([small], upsample, CNN_THRESHOLD)[0]:
        box = Box(round(d.top / f), round((d.right + 1) / f) - 1, round((d.bottom + 1) / f) - 1, round(d.left / f))
        out.append((Box(max(box.top, 0), min(box.right, w), min(box.bottom, h), max(box.left, 0)), d.confidence))
    return out


def _overlaps(a: Box, b: Box) -> bool:
    """The same face: IoU 0.3 or more, or one box's centre inside the other (HOG's and the CNN's boxes
    frame a face differently)."""
    iw = min(a.right, b.right) - max(a.left, b.left)
    ih = min(a.bottom, b.bottom) - max(a.top, b.top)
    if iw > 0 and ih > 0 and iw * ih / (a.width * a.height + b.width * b.height - iw * ih) >= 0.3:
        return True
    return any(q.left <= (p.left + p.right) / 2 <= q.right and q.top <= (p.top + p.bottom) / 2 <= q.bottom
               for p, q in ((a, b), (b, a)))


def detect(image: np.ndarray, *, model: str = "auto", upsample: int = 0, min_size: int = 0,
           min_score: float = DEFAULT_MIN_SCORE, verify_faces: bool = True) -> list[Box]:
    """Face boxes in `image` (RGB uint8), largest first; faces smaller than `min_size` px are dropped.

    - `hog`: dlib's HOG detector (`upsample` times doubled); boxes scoring below `min_score` are
      dropped and, with `verify_faces`, so is every box scoring under VERIFY_BELOW that dlib's CNN
      detector does not confirm.
    - `cnn`: dlib's CNN detector on the whole image, keeping boxes above CNN_THRESHOLD.
    - `auto` (the default, chosen on real photos: bench/results/detection.md): both. The CNN on the
      image when it has at most CNN_WHOLE_PIXELS, else on a copy of CNN_PIXELS; HOG on the image as
      above, except that a box the CNN also found needs no confirming. Each face is reported once.
    """
    if model not in DETECTORS:
        raise ValueError(f"unknown detector {model!r}: use auto, hog or cnn")
    image = np.ascontiguousarray(image)
    h, w = image.shape[:2]
    cnn: list[tuple[Box, float]] = []
    if model in ("cnn", "auto"):
        whole = model == "cnn" or h * w <= CNN_WHOLE_PIXELS
        cnn = _cnn_boxes(image, upsample if model == "cnn" else 0, None if whole else CNN_PIXELS)
    scored = cnn
    if model in ("hog", "auto"):
        rects, scores, _kinds = hog_detector().run(image, upsample, min_score)
        hog = [(Box(max(r.top(), 0), min(r.right(), w), min(r.bottom(), h), max(r.left(), 0)), s)
               for r, s in zip(rects, scores)]
        hog = [(b, s) for b, s in hog if b.width > 0 and b.height > 0]  # before any overlap test
        # A face both found keeps HOG's box, which the age model's training crops were cut from; the
        # CNN has confirmed it. Faces only the CNN found (in profile, blurred) keep the CNN's box.
        confirmed = [any(_overlaps(b, c) for c, _ in cnn) for b, _ in hog]
        if verify_faces:
            hog = [(b, s) for (b, s), ok in zip(hog, confirmed) if ok or s >= VERIFY_BELOW or verify(image, b) > 0]
        scored = hog + [(c, s) for c, s in cnn if not any(_overlaps(c, b) for b, _ in hog)]
    scored = [(b, s) for b, s in scored if b.width > 0 and b.height > 0 and min(b.width, b.height) >= min_size]
    return sorted((b for b, _ in scored), key=lambda b: -(b.width * b.height))


def describe(chips: list[np.ndarray]) -> np.ndarray:
    """dlib's 128-d face descriptors of aligned chips (n x 128, float32): the model's backbone and what
    people are grouped by. Computed by the face engine, which gives dlib's own values (within 1e-3)."""
    if not chips:
        return np.zeros((0, DESCRIPTOR_SIZE), dtype=np.float32)
    return face_engine().describe(chips)
