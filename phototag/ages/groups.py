"""Age-group schemes as data, and what follows from an age distribution: age, interval, group.

The model predicts a probability for every age 0..100, so a group's probability is the sum over its
ages and any scheme works without retraining. Schemes are presets or a user's TOML file:

    name = "school"
    [[groups]]
    name = "Preschool"
    min = 0
    max = 5
    [[groups]]
    name = "School age"
    min = 6          # `max` omitted on the last group: open-ended
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SchemeError

__all__ = ["AgeGroup", "Scheme", "Estimate", "PRESETS", "DEFAULT_SCHEME", "get_scheme", "estimate", "estimate_many",
           "pack_distribution", "unpack_distribution", "used_estimate",
           "point_ages", "POINTS", "MAX_AGE", "correct_prior"]

MAX_AGE = 100  # the distribution's last bin holds 100 and older
INTERVAL = 0.80
# How a model's distribution becomes the one age phototag shows; the model's card names it
# (phototag.ages.model). "mean": the expected age. "mode": the most probable whole year, which the
# fine-tuned network's children need: their distributions are sharp at the true age with a long tail
# towards older ages, which drags the mean up (docs/model.md: UTKFace validation, ages 0-12).
# "median": the first year by which half the mass is reached. "mode-or-median": the mode where the
# mode is a child's age (under CHILD_MODE_BELOW), else the median: an adult's distribution is wide,
# and its mode sits on whichever year the network favours, while its median reads the whole spread.
POINTS = ("mean", "mode", "median", "mode-or-median")
CHILD_MODE_BELOW = 13


@dataclass(frozen=True)
class AgeGroup:
    name: str
    min: int
    max: int  # inclusive; MAX_AGE for an open-ended last group


@dataclass(frozen=True)
class Scheme:
    name: str
    groups: tuple[AgeGroup, ...]

    def __post_init__(self) -> None:
        if not self.groups:
            raise SchemeError(f"scheme {self.name!r} has no groups")
        expected = 0
        for g in self.groups:
            if g.min != expected or g.max < g.min:
                raise SchemeError(
                    f"scheme {self.name!r}: group {g.name!r} ({g.min}-{g.max}) must start at {expected} "
                    "and groups must cover ages 0 to 100 without gaps or overlaps"
                )
            expected = g.max + 1
        if expected != MAX_AGE + 1:
            raise SchemeError(f"scheme {self.name!r}: the last group must be open-ended or end at {MAX_AGE}")
        if len({g.name for g in self.groups}) != len(self.groups):
            raise SchemeError(f"scheme {self.name!r}: group names must be unique")

    @property
    def names(self) -> list[str]:
        return [g.name for g in self.groups]

    def group_of(self, age: float) -> str:
        """The group that contains a whole age in years."""
        a = int(min(max(round(age), 0), MAX_AGE))
        for g in self.groups:
            if g.min <= a <= g.max:
                return g.name
        raise AssertionError("schemes cover 0..MAX_AGE")  # pragma: no cover

    def matrix(self) -> np.ndarray:
        """(101 x n_groups) 0/1 matrix: distribution @ matrix = group probabilities."""
        m = np.zeros((MAX_AGE + 1, len(self.groups)), dtype=np.float32)
        for j, g in enumerate(self.groups):
            m[g.min : g.max + 1, j] = 1.0
        return m

    def label(self, group: str) -> str:
        g = next(x for x in self.groups if x.name == group)
        span = f"{g.min}+" if g.max == MAX_AGE else f"{g.min}-{g.max}"
        return f"{g.name} ({span})"


def _scheme(name: str, *spec: tuple[str, int]) -> Scheme:
    """A scheme from (name, first age) pairs; each group ends where the next begins."""
    groups = []
    for i, (gname, lo) in enumerate(spec):
        hi = spec[i + 1][1] - 1 if i + 1 < len(spec) else MAX_AGE
        groups.append(AgeGroup(gname, lo, hi))
    return Scheme(name, tuple(groups))


PRESETS: dict[str, Scheme] = {
    # The ten groups of the reference study this project grew from.
    "ten": _scheme(
        "ten", ("Baby", 0), ("Toddler", 2), ("Child", 4), ("Adolescent", 9), ("Teenager", 14),
        ("Young Adult", 19), ("Adult", 25), ("Mature Adult", 35), ("Middle Age", 45), ("Senior", 59),
    ),
    "three": _scheme("three", ("Young", 0), ("Middle", 30), ("Old", 60)),
    "four": _scheme("four", ("Minor", 0), ("Young Adult", 18), ("Adult", 30), ("Elderly", 80)),
    # Adience's eight bins (0-2, 4-6, 8-13, 15-20, 25-32, 38-43, 48-53, 60+), gaps closed at midpoints.
    "adience": _scheme(
        "adience", ("0-2", 0), ("4-6", 3), ("8-13", 7), ("15-20", 14), ("25-32", 23), ("38-43", 35),
        ("48-53", 46), ("60+", 57),
    ),
}
DEFAULT_SCHEME = "ten"


def load_scheme_file(path: Path) -> Scheme:
    """A scheme from a TOML file (see the module docstring)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SchemeError(f"{path}: cannot read scheme file: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SchemeError(f"{path}: not valid TOML: {exc}") from exc
    name = data.get("name") or Path(path).stem
    rows = data.get("groups")
    if not isinstance(rows, list) or not rows:
        raise SchemeError(f"{path}: needs a [[groups]] table with name, min and max")
    groups = []
    for i, row in enumerate(rows):
        try:
            lo = int(row["min"])
            hi = int(row.get("max", MAX_AGE)) if i < len(rows) - 1 or "max" in row else MAX_AGE
            groups.append(AgeGroup(str(row["name"]), lo, min(hi, MAX_AGE)))
        except (KeyError, TypeError, ValueError) as exc:
            raise SchemeError(f"{path}: group {i + 1} needs a name and whole-number min/max") from exc
    return Scheme(str(name), tuple(groups))


def get_scheme(name_or_path: str | None) -> Scheme:
    """A preset by name, or a scheme from a TOML file path."""
    key = name_or_path or DEFAULT_SCHEME
    if key in PRESETS:
        return PRESETS[key]
    if key.endswith(".toml") or Path(key).is_file():
        return load_scheme_file(Path(key))
    raise SchemeError(f"unknown scheme {key!r}: use one of {', '.join(PRESETS)} or a .toml file")


@dataclass(frozen=True)
class Estimate:
    """What one face's distribution says under one scheme."""

    age: float
    low: int
    high: int
    group: str
    group_prob: float
    group_probs: dict[str, float]


def _quantile(cdf: np.ndarray, q: float) -> int:
    return int(np.searchsorted(cdf, q, side="left"))


def point_ages(distributions: np.ndarray, point: str = "mean") -> np.ndarray:
    """The age shown for each row of `distributions` (n x bins, normalised or not) under rule `point`."""
    p = np.clip(np.asarray(distributions, dtype=np.float64), 0, None)
    if point == "mode":
        return p.argmax(axis=-1).astype(np.float64)
    if point in ("median", "mode-or-median"):
        cdf = np.cumsum(p, axis=-1)
        median = (cdf < 0.5 * cdf[..., -1:]).sum(axis=-1).astype(np.float64)
        if point == "median":
            return median
        mode = p.argmax(axis=-1).astype(np.float64)
        return np.where(mode < CHILD_MODE_BELOW, mode, median)
    if point != "mean":
        raise ValueError(f"unknown point estimate {point!r}: use one of {', '.join(POINTS)}")
    return (p @ np.arange(p.shape[-1])) / p.sum(axis=-1)


def correct_prior(distributions: np.ndarray, prior: np.ndarray, power: float) -> np.ndarray:
    """Distributions divided by the training ages' frequency to the power `power`, renormalised.

    A network trained on faces that are mostly 20 to 39 learns that prior: it reads a 60-year-old
    younger because more training faces were younger. Dividing by the prior (power 1) would give
    the distribution a network trained on every age equally often would; power 0.5 goes half way,
    the inverse square root that imbalanced-regression work weighs by."""
    p = np.asarray(distributions, np.float64) * np.asarray(prior, np.float64) ** -power
    return p / p.sum(axis=-1, keepdims=True)


def estimate(distribution: np.ndarray, scheme: Scheme, interval: float = INTERVAL, *, point: str = "mean",
             age: float | None = None) -> Estimate:
    """The age shown (by rule `point`, or `age` where it was chosen before, as the index stores it), the
    central `interval` range, the group that holds the age shown, and that group's probability.

    The group is the one containing the age we show, not the group with the largest probability mass:
    on UTKFace's validation split that gives 94.2% one-off accuracy (57.2% exact) for the ten groups,
    against 92.9% (58.1%) for the most probable group, and a face shown as "~3" is always a Toddler.
    """
    p = np.asarray(distribution, dtype=np.float64)
    p = np.clip(p, 0, None)
    total = p.sum()
    if total <= 0 or not np.isfinite(total):
        raise ValueError("distribution has no mass")
    p = p / total
    cdf = np.cumsum(p)
    tail = (1.0 - interval) / 2
    gp = p @ scheme.matrix()[: len(p)]
    shown = float(point_ages(p, point)) if age is None else float(age)
    j = scheme.names.index(scheme.group_of(shown))
    return Estimate(
        age=shown,
        low=_quantile(cdf, tail),
        high=min(_quantile(cdf, 1 - tail), len(p) - 1),
        group=scheme.groups[j].name,
        group_prob=float(gp[j]),
        group_probs={g.name: float(v) for g, v in zip(scheme.groups, gp)},
    )


def estimate_many(distributions: np.ndarray, scheme: Scheme, interval: float = INTERVAL, *, point: str = "mean",
                  ages: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`estimate` for many distributions at once: (ages, lows, highs, group indices, group probabilities),
    the same values `estimate` gives one by one (tests/test_groups.py checks it). `ages`, where given,
    are the ages already chosen (NaN: choose by `point`)."""
    p = np.clip(np.asarray(distributions, dtype=np.float64), 0, None)
    p = p / p.sum(axis=1, keepdims=True)
    cdf = np.cumsum(p, axis=1)
    tail = (1.0 - interval) / 2
    last = p.shape[1] - 1
    lows = (cdf < tail).sum(axis=1)
    highs = np.minimum((cdf < 1 - tail).sum(axis=1), last)
    shown = point_ages(p, point)
    if ages is not None:
        given = np.asarray(ages, dtype=np.float64)
        shown = np.where(np.isnan(given), shown, given)
    of_age, matrix = _tables(scheme)
    idx = of_age[np.clip(np.round(shown), 0, MAX_AGE).astype(int)]
    probs = (p @ matrix[: p.shape[1]])[np.arange(len(p)), idx]
    return shown, lows, highs, idx, probs


@functools.lru_cache(maxsize=16)
def _tables(scheme: Scheme) -> tuple[np.ndarray, np.ndarray]:
    """(group index of each whole age, the age-to-group matrix) of a scheme."""
    return np.array([scheme.names.index(scheme.group_of(a)) for a in range(MAX_AGE + 1)]), scheme.matrix()


# -- the distribution as the index stores it -------------------------------------------------------

def pack_distribution(p: np.ndarray) -> bytes:
    """101 probabilities as little-endian float16: 202 bytes a face."""
    return np.asarray(p, dtype="<f2").tobytes()


def unpack_distribution(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f2").astype(np.float32)


def used_estimate(face: Any, scheme: Scheme) -> Estimate:
    """The estimate phototag uses for a face under `scheme`: its person's when the index says so
    (age and interval as stored, group from the person's distribution), else its own. The age is the
    stored one either way: the model's point estimate chose it at scan time, and a scheme only regroups."""
    if face["person_distribution"] is not None and face["age_source"] in ("person", "birth"):
        e = estimate(unpack_distribution(face["person_distribution"]), scheme, age=float(face["age"]))
        return replace(e, low=face["age_low"], high=face["age_high"])
    return estimate(unpack_distribution(face["distribution"]), scheme, age=face["age"])
