"""IMDB-WIKI `wiki_crop/` with `wiki.mat`: age = photo_taken - year of birth (Matlab datenum)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Iterator

import numpy as np

from . import FaceRecord, ReadStats

MIN_FACE_SCORE = 1.0


def _birth_year(datenum: float) -> int:
    """Matlab datenum (days from year 0) to a calendar year; out-of-range dates give -1."""
    try:
        day = dt.date.fromordinal(int(datenum)) - dt.timedelta(days=366)
    except (ValueError, OverflowError):
        return -1
    return day.year + (1 if day.month >= 7 else 0)


def read(root: Path, stats: ReadStats) -> Iterator[FaceRecord]:
    from scipy.io import loadmat  # only this reader needs scipy

    mat_path = root / "wiki.mat" if root.is_dir() else root
    meta = loadmat(mat_path)["wiki"][0, 0]
    folder = mat_path.parent
    full_path = meta["full_path"][0]
    dob = meta["dob"][0]
    taken = meta["photo_taken"][0]
    score = meta["face_score"][0]
    second = meta["second_face_score"][0]
    gender = meta["gender"][0]
    for i in range(len(full_path)):
        rel = str(full_path[i][0])
        if not np.isfinite(score[i]):
            stats.skip("no face", rel)
            continue
        if np.isfinite(second[i]):
            stats.skip("two faces", rel)
            continue
        if score[i] < MIN_FACE_SCORE:
            stats.skip("face_score below threshold", rel)
            continue
        age = int(taken[i]) - _birth_year(float(dob[i]))
        if not 0 <= age <= 100:
            stats.skip("age outside 0-100", rel)
            continue
        g = None if not np.isfinite(gender[i]) else (0 if gender[i] == 1 else 1)  # wiki: 1 male
        yield FaceRecord(key=f"wiki/{rel}", image=folder / rel, source="wiki", age=age, gender=g)
