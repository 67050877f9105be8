"""UTKFace "Aligned & Cropped Faces": labels in the file name `age_gender_race_datetime.jpg.chip.jpg`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from . import FaceRecord, ReadStats

# The dataset's own crop puts the face here (measured: dlib's HOG box on 193 of 200 random chips,
# mean top/right/bottom/left of 10/179/176/12 px in 200 px); used when the detector misses a face.
FALLBACK_BOX = (0.05, 0.895, 0.88, 0.06)

_NAME = re.compile(r"^(?P<age>\d{1,3})_(?P<gender>[01])_(?P<race>[0-4])_(?P<stamp>\d{14,18})\.jpg\.chip\.jpg$")


def parse_name(name: str) -> tuple[int, int, int] | str:
    """(age, gender, race) from a UTKFace file name, or the reason the name is malformed."""
    m = _NAME.match(name)
    if m is None:
        fields = name.split("_")
        if len(fields) < 4:
            return "missing field"
        if " " in name:
            return "stray space"
        return "malformed name"
    age = int(m["age"])
    if not 0 <= age <= 116:
        return "age out of range"
    return age, int(m["gender"]), int(m["race"])


def read(root: Path, stats: ReadStats) -> Iterator[FaceRecord]:
    for path in sorted(root.iterdir()):
        if not path.name.lower().endswith(".jpg") or not path.is_file():
            continue
        parsed = parse_name(path.name)
        if isinstance(parsed, str):
            stats.skip(parsed, path.name)
            continue
        age, gender, _race = parsed
        yield FaceRecord(
            key=f"utkface/{path.name}",
            image=path,
            source="utkface",
            age=age,
            gender=gender,
            fallback_box=FALLBACK_BOX,
        )
