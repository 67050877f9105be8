"""A labelled-folder CSV such as the Indian-actors data: `ID,Class` with YOUNG, MIDDLE, OLD.

Group labels, not ages: used to measure group accuracy against the `three` preset.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

from . import FaceRecord, ReadStats

# The dataset's classes, named as the `three` preset names them.
CLASSES = {"YOUNG": "Young", "MIDDLE": "Middle", "OLD": "Old"}


def read(root: Path, stats: ReadStats) -> Iterator[FaceRecord]:
    csv_path = root if root.is_file() else next(iter(sorted(root.glob("*.csv"))), root / "train.csv")
    folder = csv_path.parent
    images = folder / "Train" if (folder / "Train").is_dir() else folder
    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            ident, label = (row.get("ID") or "").strip(), (row.get("Class") or "").strip().upper()
            if not ident or label not in CLASSES:
                stats.skip("unknown class" if ident else "missing ID", ident or str(row))
                continue
            path = images / ident
            if not path.is_file():
                stats.skip("image missing", ident)
                continue
            yield FaceRecord(key=f"labelled/{ident}", image=path, source="labelled_csv", group=CLASSES[label])
