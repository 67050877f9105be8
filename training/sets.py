"""The faces a training run learns from and is measured on.

The main data (UTKFace) gives train, val and test by a hash of each face's key; with an augmentation
policy, train and val gain each face's degraded copy, and the degraded test faces are measured apart.
Extra data (FG-NET) is few faces from the target domain: it is split into folds by person, so a
model is always measured on people it never saw, and the shipped model learns from all of them.
"""

from __future__ import annotations

import hashlib

import numpy as np

from training.prepare import Prepared, prepare, prepare_augmented
from training.readers import open_data

__all__ = ["main_sets", "extra_set", "with_extra", "person_folds"]


def _uses(augs: np.ndarray, skip: tuple[str, ...]) -> np.ndarray:
    """Which degraded copies used any of the operations in `skip`."""
    if not skip:
        return np.zeros(len(augs), bool)
    return np.array([bool(set(a.split("+")) & set(skip)) for a in augs], dtype=bool)


def main_sets(data: str, *, augment: str | None = None, augment_skip: tuple[str, ...] = (), limit: int | None = None,
              workers: int | None = None, quiet: bool = False) -> tuple[dict[str, Prepared], dict]:
    """{"train", "val", "test"} of the labelled faces, plus "test_degraded" with `augment`; and the
    preparation's statistics for the card."""
    prep = prepare(data, workers=workers, limit=limit, quiet=quiet)
    labelled = prep.ages >= 0
    parts = {s: prep.subset(labelled & (prep.splits == s)) for s in ("train", "val", "test")}
    if augment:
        worse = prepare_augmented(data, augment, workers=workers, limit=limit, quiet=quiet)
        ok = (worse.ages >= 0) & ~_uses(worse.augs, augment_skip)
        for s in ("train", "val"):
            parts[s] = parts[s].concat(worse.subset(ok & (worse.splits == s)))
        parts["test_degraded"] = worse.subset((worse.ages >= 0) & (worse.splits == "test"))
    return parts, prep.stats


def person_folds(persons: np.ndarray, k: int) -> np.ndarray:
    """A fold in 0..k-1 for each face from a hash of its person: one person's faces share a fold."""
    return np.array([int.from_bytes(hashlib.sha256(p.encode("utf-8")).digest()[:4], "big") % k for p in persons])


def extra_set(spec: str, folds: int, *, workers: int | None = None, quiet: bool = False
              ) -> tuple[Prepared, np.ndarray]:
    """The labelled faces of `spec` and each one's fold by person (the key where a data set names none)."""
    prep = prepare(spec, workers=workers, quiet=quiet)
    prep = prep.subset(prep.ages >= 0)
    if len(prep) == 0:
        raise ValueError(f"{spec}: no faces labelled with an age to train on")
    records, _ = open_data(spec)
    person = {r.key: r.person or r.key for r in records}
    return prep, person_folds(np.array([person[k] for k in prep.keys]), folds)


def with_extra(train: Prepared, extras: dict[str, tuple[Prepared, np.ndarray]], weight: float,
               leave_out: tuple[str, int] | None = None) -> tuple[Prepared, np.ndarray]:
    """The main training faces plus every extra face not in the left-out (spec, fold), with weights."""
    out = train
    weights = [np.ones(len(train), np.float32)]
    for spec, (prep, folds) in extras.items():
        keep = np.ones(len(prep), bool) if leave_out is None or leave_out[0] != spec else folds != leave_out[1]
        out = out.concat(prep.subset(keep))
        weights.append(np.full(int(keep.sum()), weight, np.float32))
    return out, np.concatenate(weights)
