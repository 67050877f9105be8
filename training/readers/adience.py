"""Adience (Eidinger, Enbar and Hassner, 2014): aligned face crops and a fold file in Adience's format.

`labels.tsv` (or any fold `.txt`/`.tsv` in the folder): user_id, original_image, face_id, age, gender,
... A crop is `coarse_tilt_aligned_face.{face_id}.{original_image}`. Adience labels a group, not an
age: one of its eight bins, which phototag's `adience` scheme names.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Iterator

from . import FaceRecord, ReadStats

# Adience's bins as its folds write them, and the group of the `adience` scheme each one is.
GROUPS = {(0, 2): "0-2", (4, 6): "4-6", (8, 12): "8-13", (8, 13): "8-13", (15, 20): "15-20", (25, 32): "25-32",
          (38, 43): "38-43", (48, 53): "48-53", (60, 100): "60+"}
_BIN = re.compile(r"^\(\s*(\d+)\s*,\s*(\d+)\s*\)$")


def _fold(root: Path) -> Path:
    if root.is_file():
        return root
    for name in ("labels.tsv", "labels.txt"):
        if (root / name).is_file():
            return root / name
    found = sorted(root.glob("fold_*.txt"))
    if not found:
        raise ValueError(f"{root}: no labels.tsv or fold_*.txt")
    return found[0]


def read(root: Path, stats: ReadStats) -> Iterator[FaceRecord]:
    fold = _fold(root)
    with open(fold, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            image = fold.parent / f"coarse_tilt_aligned_face.{row.get('face_id', '').strip()}.{row.get('original_image', '').strip()}"
            m = _BIN.match((row.get("age") or "").strip())
            bin_ = (int(m[1]), int(m[2])) if m else None
            if bin_ not in GROUPS:
                stats.skip("no age group (None, an exact age, or an unknown bin)", image.name)
                continue
            if not image.is_file():
                stats.skip("image missing", image.name)
                continue
            gender = {"m": 0, "f": 1}.get((row.get("gender") or "").strip().lower())
            yield FaceRecord(key=f"adience/{image.name}", image=image, source="adience", group=GROUPS[bin_],
                             gender=gender, person=f"adience/{row.get('user_id', '').strip()}/{row['face_id'].strip()}")
