"""Real faces of two real people, on real dates: scikit-image's astronaut (Eileen Collins) and its
cameraman, composed into a small family library the people tests scan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .conftest import exif_bytes, save_jpeg


def cameraman() -> np.ndarray:
    """scikit-image's cameraman, in colour and three times as large: dlib finds his face (186 px)."""
    from skimage import data

    grey = np.asarray(Image.fromarray(data.camera()).resize((1536, 1536), Image.BICUBIC))
    return np.stack([grey] * 3, axis=-1)


def heads(astronaut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the astronaut's head, the cameraman's head), the same size: faces of about 150 px."""
    size = (340, 360)
    cam = np.asarray(Image.fromarray(cameraman()[300:660, 560:900]).resize(size, Image.LANCZOS))
    return np.asarray(Image.fromarray(astronaut[20:260, 120:330]).resize(size, Image.LANCZOS)), cam


def canvas(*parts: np.ndarray, size: tuple[int, int] = (1400, 800), shade: int = 120) -> np.ndarray:
    out = np.full((size[1], size[0], 3), shade, np.uint8)
    for i, head in enumerate(parts):
        x = 80 + i * (head.shape[1] + 160)
        out[150 : 150 + head.shape[0], x : x + head.shape[1]] = head
    return out


# name -> (who is in it, left to right; EXIF date or None)
FAMILY = {
    "2019/01/alice-new-year.jpg": ("A", "2019:01:01 10:00:00"),
    "2019/06/alice-garden.jpg": ("A", "2019:06:01 15:30:00"),
    "2020/01/alice-winter.jpg": ("A", "2020:01:12 09:00:00"),
    "2019/03/bob-portrait.jpg": ("B", "2019:03:03 12:00:00"),
    "2019/09/bob-office.jpg": ("B", "2019:09:20 08:45:00"),
    "2019/08/together.jpg": ("AB", "2019:08:01 18:00:00"),
    "scans/alice-undated.jpg": ("A", None),
}


def make_family(root: Path, astronaut: np.ndarray) -> Path:
    """The library: 7 photos, 8 faces, 2 people (A: 5 faces, one undated; B: 3 faces)."""
    a, b = heads(astronaut)
    for i, (name, (who, taken)) in enumerate(sorted(FAMILY.items())):
        pixels = canvas(*(a if w == "A" else b for w in who), shade=100 if i % 2 else 130)
        exif = exif_bytes(taken=taken.encode()) if taken else None  # a scan with no EXIF at all
        save_jpeg(root / name, pixels, exif)
    return root
