"""The UTKFace pixels CSV (`age_gender.csv`): age, ethnicity, gender, img_name, pixels (48x48 grey)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

import numpy as np

from . import FaceRecord, ReadStats

SIDE = 48
# The CSV's faces are UTKFace chips scaled down, so the face sits where it does in the chips.
FALLBACK_BOX = (0.05, 0.895, 0.88, 0.06)


def read(root: Path, stats: ReadStats) -> Iterator[FaceRecord]:
    path = root / "age_gender.csv" if root.is_dir() else root
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            name = row.get("img_name") or f"row{stats.read}"
            try:
                age = int(row["age"])
                gender = int(row["gender"])
                pixels = np.array(row["pixels"].split(), dtype=np.uint8)
            except (KeyError, ValueError, TypeError, AttributeError):
                stats.skip("unreadable row", name)
                continue
            if pixels.size != SIDE * SIDE:
                stats.skip("wrong pixel count", name)
                continue
            if not 0 <= age <= 116 or gender not in (0, 1):
                stats.skip("label out of range", name)
                continue
            yield FaceRecord(
                key=f"utkface_csv/{name}",
                image=pixels.reshape(SIDE, SIDE),
                source="utkface_csv",
                age=age,
                gender=gender,
                fallback_box=FALLBACK_BOX,
            )
