"""What old family photos do to a face, applied to clean training photos: black-and-white, sepia and
faded prints, colour casts, film grain, blur, small faces brought back up, JPEG artefacts.

Each face gets one degraded copy whose operations are drawn at random (seeded by the face's key, so
a preparation is reproducible) and recorded by name, so training can leave any one operation out and
measure what it does (training/ablate.py). The image is degraded whole, before the face is aligned,
so the landmarks and the crop see what a scan of an old print would give them.
"""

from __future__ import annotations

import hashlib
import io
from typing import Callable

import numpy as np

__all__ = ["OPERATIONS", "POLICIES", "AUGMENT_VERSION", "augment", "draw", "apply"]

AUGMENT_VERSION = 1

# Rec. 601 luma, what a black-and-white film or a greyscale scan records.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# The classic sepia toning matrix (rows: output R, G, B from input R, G, B).
_SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], dtype=np.float32)


def _grey(img: np.ndarray, rng: np.random.Generator, face: int) -> np.ndarray:
    y = img @ _LUMA
    return np.repeat(y[..., None], 3, axis=-1)


def _sepia(img: np.ndarray, rng: np.random.Generator, face: int) -> np.ndarray:
    toned = np.clip(img @ _SEPIA.T, 0, 255)
    strength = rng.uniform(0.6, 1.0)
    return strength * toned + (1 - strength) * _grey(img, rng, face)


def _fade(img: np.ndarray, rng: np.random.Generator, face: int) -> np.ndarray:
    """An aged colour print: colours washed out, blacks lifted, whites dulled, a yellow-orange drift."""
    sat = rng.uniform(0.2, 0.7)
    y = (img @ _LUMA)[..., None]
    out = y + sat * (img - y)
    lo, hi = rng.uniform(20, 70), rng.uniform(200, 245)
    out = lo + out * (hi - lo) / 255.0
    drift = np.array([rng.uniform(1.0, 1.12), rng.uniform(0.95, 1.05), rng.uniform(0.75, 0.95)], np.float32)
    return out * drift


def _cast(img: np.ndarray, rng: np.random.Generator, face: int) -> np.ndarray:
    """A colour cast from film stock, a lamp or a scanner: each channel scaled on its own."""
    gains = rng.uniform(0.75, 1.25, size=3).astype(np.float32)
    return img * (gains / gains.mean())


def _grain(img: np.ndarray, rng: np.random.Generator, face: int) -> np.ndarray:
    """Film grain: noise clumped over a pixel or two, mostly in brightness."""
    h, w = img.shape[:2]
    sigma = rng.uniform(4, 16)
    noise = rng.normal(0, sigma, size=(h, w, 1)).astype(np.float32)
    if rng.random() < 0.5:
        from PIL import Image, ImageFilter

        n = Image.fromarray(np.clip(noise[..., 0] + 128, 0, 255).astype(np.uint8))
        noise = (np.asarray(n.filter(ImageFilter.GaussianBlur(0.7)), np.float32)[..., None] - 128) * 1.8
    chroma = rng.normal(0, sigma * 0.25, size=(h, w, 3)).astype(np.float32)
    return img + noise + chroma


def _blur(img: np.ndarray, rng: np.random.Generator, face: int) -> np.ndarray:
    """Out of focus or a soft lens: a Gaussian blur of 0.5 to 2.5 % of the face's width."""
    from PIL import ImageFilter

    radius = rng.uniform(0.005, 0.025) * face
    return np.asarray(_pil(img).filter(ImageFilter.GaussianBlur(radius)), np.float32)


def _lowres(img: np.ndarray, rng: np.random.Generator, face: int) -> np.ndarray:
    """A small face in a big photo: the face brought down to 40-80 px wide and back up."""
    from PIL import Image

    target = rng.uniform(40, 80)
    f = min(1.0, target / max(face, 1))
    h, w = img.shape[:2]
    small = _pil(img).resize((max(1, round(w * f)), max(1, round(h * f))), Image.BILINEAR)
    return np.asarray(small.resize((w, h), Image.BICUBIC), np.float32)


def _jpeg(img: np.ndarray, rng: np.random.Generator, face: int) -> np.ndarray:
    """A heavily compressed copy: quality 15 to 50."""
    from PIL import Image

    buf = io.BytesIO()
    _pil(img).save(buf, format="JPEG", quality=int(rng.integers(15, 51)))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), np.float32)


def _pil(img: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8))


Op = Callable[[np.ndarray, np.random.Generator, int], np.ndarray]
# In the order they are applied: the print's colour first, then the optics, then the scan and the file.
OPERATIONS: dict[str, Op] = {
    "grey": _grey, "sepia": _sepia, "fade": _fade, "cast": _cast,
    "blur": _blur, "lowres": _lowres, "grain": _grain, "jpeg": _jpeg,
}
_COLOUR = ("grey", "sepia", "fade", "cast")

# A policy: the chance of each colour treatment (at most one) and of each other operation. "archive"
# follows fgnet-dev, where 18 % of the faces are black-and-white prints and most others are faded.
POLICIES: dict[str, dict[str, float]] = {
    "archive": {"grey": 0.35, "sepia": 0.15, "fade": 0.2, "cast": 0.15,
                "blur": 0.35, "lowres": 0.35, "grain": 0.5, "jpeg": 0.35},
}


def _rng(key: str, policy: str, seed: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{policy}|{seed}|{key}".encode("utf-8", "surrogateescape")).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def draw(key: str, policy: str = "archive", seed: int = 0) -> tuple[list[str], np.random.Generator]:
    """The operations this face gets under `policy` (never none), and the generator for their strengths."""
    p = POLICIES[policy]
    rng = _rng(key, policy, seed)
    ops: list[str] = []
    while not ops:
        u = rng.random()
        acc = 0.0
        for name in _COLOUR:
            acc += p.get(name, 0.0)
            if u < acc:
                ops.append(name)
                break
        ops += [name for name in OPERATIONS if name not in _COLOUR and rng.random() < p.get(name, 0.0)]
    return [name for name in OPERATIONS if name in ops], rng


def apply(image: np.ndarray, ops: list[str], rng: np.random.Generator, face_width: int) -> np.ndarray:
    """`image` (RGB uint8) with `ops` applied in OPERATIONS' order; `face_width` scales blur and size."""
    img = np.asarray(image, np.float32)
    for name in OPERATIONS:
        if name in ops:
            img = OPERATIONS[name](img, rng, face_width)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def augment(image: np.ndarray, key: str, face_width: int, policy: str = "archive", seed: int = 0
            ) -> tuple[np.ndarray, list[str]]:
    """The degraded copy of one face's photo, and the names of what was done to it."""
    ops, rng = draw(key, policy, seed)
    return apply(image, ops, rng, face_width), ops
