"""Turn dataset records into model inputs through `phototag.faces`, caching the result outside git.

Each face goes through the very detect, align and crop code that `phototag scan` runs, then through
dlib's descriptor network. The arrays are cached under the user's cache folder, keyed by the data
and this code's version, so a second training run does no detection at all.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from phototag import faces
from training.readers import FaceRecord, open_data, split_of

PREP_VERSION = 1
THUMB = 64  # side of the small chip kept beside each descriptor (for plots and image models)


@dataclass
class Prepared:
    """Model inputs and labels for every face the preparation could use."""

    keys: np.ndarray  # str
    ages: np.ndarray  # int16, -1 where unknown
    genders: np.ndarray  # int8, -1 where unknown
    groups: np.ndarray  # str, "" where unknown
    splits: np.ndarray  # "train" | "val" | "test"
    detected: np.ndarray  # bool: False where the fallback box was used
    descriptors: np.ndarray  # float32 n x 128
    thumbs: np.ndarray  # uint8 n x THUMB x THUMB x 3
    stats: dict
    augs: np.ndarray | None = None  # str: what training/augment.py did to each face ("grey+grain"), "" for none

    def _arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "stats" and getattr(self, f.name) is not None}

    def subset(self, mask: np.ndarray) -> "Prepared":
        return Prepared(stats=self.stats, **{k: v[mask] for k, v in self._arrays().items()})

    def concat(self, other: "Prepared") -> "Prepared":
        """Both sets of faces in one, e.g. clean faces and their degraded copies for training."""
        mine, theirs = self._arrays(), other._arrays()
        if "augs" in mine or "augs" in theirs:  # a face with no record of degradation is a clean one
            mine.setdefault("augs", np.full(len(self), "", dtype=str))
            theirs.setdefault("augs", np.full(len(other), "", dtype=str))
        return Prepared(stats=self.stats, **{k: np.concatenate([mine[k], theirs[k]]) for k in mine})

    def __len__(self) -> int:
        return len(self.keys)


def cache_dir() -> Path:
    env = os.environ.get("PHOTOTAG_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("phototag")) / "prepared"


def _load_rgb(image: Path | np.ndarray) -> np.ndarray:
    if isinstance(image, np.ndarray):
        arr = image
    else:
        from PIL import Image, ImageOps

        with Image.open(image) as im:
            arr = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return np.ascontiguousarray(arr[..., :3], dtype=np.uint8)


def _upsample_for(shape: tuple[int, ...]) -> int:
    """dlib's HOG window is 80 px: small images need upsampling to find their face at all."""
    side = min(shape[:2])
    return 0 if side >= 160 else 1 if side >= 80 else 2


def _thumb(chip: np.ndarray) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(chip).resize((THUMB, THUMB), Image.BILINEAR))


def locate(record: FaceRecord) -> tuple[np.ndarray, "faces.Box", bool] | str:
    """The record's photo, its face's box and whether HOG found it; or the reason it cannot be used.

    Dataset images hold one known face: HOG alone (threshold 0.15, no CNN check), the record's
    fallback box where it misses. Training chips and descriptors are all cut from this box."""
    try:
        rgb = _load_rgb(record.image)
    except Exception as exc:  # noqa: BLE001 - any unreadable image is counted, never fatal
        return f"unreadable image ({type(exc).__name__})"
    boxes = faces.detect(rgb, model="hog", upsample=_upsample_for(rgb.shape), min_score=0.15, verify_faces=False)
    if boxes:
        return rgb, boxes[0], True
    if record.fallback_box is None:
        return "no face found"
    h, w = rgb.shape[:2]
    t, r, b, l = record.fallback_box
    return rgb, faces.Box(round(t * h), round(r * w), round(b * h), round(l * w)), False


def prepare_one(record: FaceRecord, augment: str | None = None, seed: int = 0) -> tuple | str:
    """(descriptor, thumbnail, detected) for one record, or the reason it cannot be used.

    With `augment` (a policy of training/augment.py), also (descriptor, thumbnail, detected,
    operations) of a degraded copy: the photo is degraded whole and aligned with the clean photo's box, as a scan of an
    old print would be found by a detector and then aligned on its own pixels.
    """
    found = locate(record)
    if isinstance(found, str):
        return found
    rgb, box, detected = found
    # The crop is made by the same align_and_crop that a scan uses.
    crop = faces.align_and_crop(rgb, box)
    if augment is None:
        return faces.describe([crop.chip])[0], _thumb(crop.chip), detected
    from training.augment import augment as degrade

    worse, ops = degrade(rgb, record.key, box.width, augment, seed)
    worse_crop = faces.align_and_crop(worse, box)
    descriptors = faces.describe([crop.chip, worse_crop.chip])
    return ((descriptors[0], _thumb(crop.chip), detected),
            (descriptors[1], _thumb(worse_crop.chip), detected, "+".join(ops)))


def _cache_key(spec: str, records: list[FaceRecord]) -> str:
    h = hashlib.sha256(f"v{PREP_VERSION}|{faces.CHIP_SIZE}|{faces.CHIP_PADDING}".encode())
    for r in records:
        h.update(r.key.encode("utf-8", "surrogateescape"))
        h.update(b"\0")
    name = spec.partition(":")[0]
    return f"{name}-{len(records)}-{h.hexdigest()[:16]}"


def _records(spec: str, limit: int | None) -> tuple[list[FaceRecord], Any]:
    records, stats = open_data(spec)
    if limit is not None and limit < len(records):
        records = sorted(records, key=lambda r: hashlib.sha256(r.key.encode()).hexdigest())[:limit]
    return records, stats


def _augmented_path(clean: Path, policy: str, seed: int) -> Path:
    from training.augment import AUGMENT_VERSION

    return clean.with_name(f"{clean.stem}-{policy}{AUGMENT_VERSION}-s{seed}.npz")


def prepare(spec: str, *, workers: int | None = None, limit: int | None = None, quiet: bool = False) -> Prepared:
    """Read `spec`, prepare every face (or the first `limit` by a stable order), cached on disk."""
    records, stats = _records(spec, limit)
    path = cache_dir() / f"{_cache_key(spec, records)}.npz"
    if path.exists():
        return _load(path)
    started = time.time()
    results = _run(records, prepare_one, workers, quiet)
    prep = _build(records, stats, results, started, workers)
    _save(path, prep)
    return prep


def prepare_augmented(spec: str, policy: str = "archive", *, seed: int = 0, workers: int | None = None,
                      limit: int | None = None, quiet: bool = False) -> Prepared:
    """A degraded copy of every face `prepare` keeps (training/augment.py's `policy`), cached on disk
    beside the clean faces; where those are not cached yet, both are made in one pass."""
    records, stats = _records(spec, limit)
    clean_path = cache_dir() / f"{_cache_key(spec, records)}.npz"
    path = _augmented_path(clean_path, policy, seed)
    if path.exists():
        return _load(path)
    started = time.time()
    results = _run(records, partial(prepare_one, augment=policy, seed=seed), workers, quiet)
    if not clean_path.exists():
        clean = [r if isinstance(r, str) else r[0] for r in results]
        _save(clean_path, _build(records, stats, clean, started, workers))
    worse = [r if isinstance(r, str) else r[1] for r in results]
    prep = _build(records, stats, worse, started, workers)
    _save(path, prep)
    return prep


def _run(records: list[FaceRecord], fn: Any, workers: int | None, quiet: bool) -> list:
    from tqdm import tqdm

    workers = workers or os.cpu_count() or 1
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers) as pool:
        it = pool.imap(fn, records, chunksize=16)
        return list(tqdm(it, total=len(records), desc="prepare", disable=quiet or not sys.stderr.isatty(), unit="face"))


def _build(records: list[FaceRecord], stats: Any, results: list, started: float, workers: int | None) -> Prepared:
    """Stack the usable results; count every record that was not, by its reason. A degraded copy's
    result has a fourth item, the operations that made it."""
    keep = [i for i, r in enumerate(results) if not isinstance(r, str)]
    skipped: dict[str, int] = dict(stats.skipped)
    for r in results:
        if isinstance(r, str):
            skipped[r] = skipped.get(r, 0) + 1
    kept = [records[i] for i in keep]
    res = [results[i] for i in keep]
    augmented = bool(res) and len(res[0]) == 4
    return Prepared(
        keys=np.array([r.key for r in kept]),
        ages=np.array([-1 if r.age is None else r.age for r in kept], dtype=np.int16),
        genders=np.array([-1 if r.gender is None else r.gender for r in kept], dtype=np.int8),
        groups=np.array([r.group or "" for r in kept]),
        splits=np.array([split_of(r.key) for r in kept]),
        detected=np.array([x[2] for x in res], dtype=bool),
        descriptors=np.stack([x[0] for x in res]).astype(np.float32) if res else np.zeros((0, 128), np.float32),
        thumbs=np.stack([x[1] for x in res]) if res else np.zeros((0, THUMB, THUMB, 3), np.uint8),
        stats={
            "records": len(records) + sum(stats.skipped.values()),
            "used": len(kept),
            "skipped": skipped,
            "skipped_examples": stats.examples,
            "detector_missed": int(len(kept) - sum(x[2] for x in res)),
            "seconds": round(time.time() - started, 1),
            "workers": workers or os.cpu_count() or 1,
        },
        augs=np.array([x[3] for x in res]) if augmented else None,
    )


def _save(path: Path, prep: Prepared) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    extra = {} if prep.augs is None else {"augs": prep.augs}
    np.savez(tmp, keys=prep.keys, ages=prep.ages, genders=prep.genders, groups=prep.groups, splits=prep.splits,
             detected=prep.detected, descriptors=prep.descriptors, thumbs=prep.thumbs,
             stats=np.array(json.dumps(prep.stats)), **extra)
    os.replace(tmp, path)


def _load(path: Path) -> Prepared:
    z = np.load(path, allow_pickle=False)
    return Prepared(
        keys=z["keys"], ages=z["ages"], genders=z["genders"], groups=z["groups"], splits=z["splits"],
        detected=z["detected"], descriptors=z["descriptors"], thumbs=z["thumbs"], stats=json.loads(str(z["stats"])),
        augs=z["augs"] if "augs" in z.files else None,
    )
