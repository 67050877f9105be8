"""Turn dataset records into model inputs through `phototag.faces`, caching the result outside git.

Each face goes through the very detect, align and crop code that `phototag scan` runs, then through
dlib's descriptor network. The arrays are cached under the user's cache folder, keyed by the data
and this code's version, so a second training run does no detection at all.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import sys
from dataclasses import dataclass
from pathlib import Path

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

    def subset(self, mask: np.ndarray) -> "Prepared":
        return Prepared(
            keys=self.keys[mask], ages=self.ages[mask], genders=self.genders[mask], groups=self.groups[mask],
            splits=self.splits[mask], detected=self.detected[mask], descriptors=self.descriptors[mask],
            thumbs=self.thumbs[mask], stats=self.stats,
        )

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


def prepare_one(record: FaceRecord) -> tuple[np.ndarray, np.ndarray, bool] | str:
    """(descriptor, thumbnail, detected) for one record, or the reason it cannot be used."""
    try:
        rgb = _load_rgb(record.image)
    except Exception as exc:  # noqa: BLE001 - any unreadable image is counted, never fatal
        return f"unreadable image ({type(exc).__name__})"
    # Dataset images hold one known face: HOG alone (threshold 0.15, no CNN check), the fallback box
    # where it misses. The crop is made by the same align_and_crop that a scan uses.
    boxes = faces.detect(rgb, upsample=_upsample_for(rgb.shape), min_score=0.15, verify_faces=False)
    detected = bool(boxes)
    if detected:
        box = boxes[0]
    elif record.fallback_box is not None:
        h, w = rgb.shape[:2]
        t, r, b, l = record.fallback_box
        box = faces.Box(round(t * h), round(r * w), round(b * h), round(l * w))
    else:
        return "no face found"
    crop = faces.align_and_crop(rgb, box)
    descriptor = faces.describe([crop.chip])[0]
    from PIL import Image

    thumb = np.asarray(Image.fromarray(crop.chip).resize((THUMB, THUMB), Image.BILINEAR))
    return descriptor, thumb, detected


def _cache_key(spec: str, records: list[FaceRecord]) -> str:
    h = hashlib.sha256(f"v{PREP_VERSION}|{faces.CHIP_SIZE}|{faces.CHIP_PADDING}".encode())
    for r in records:
        h.update(r.key.encode("utf-8", "surrogateescape"))
        h.update(b"\0")
    name = spec.partition(":")[0]
    return f"{name}-{len(records)}-{h.hexdigest()[:16]}"


def prepare(spec: str, *, workers: int | None = None, limit: int | None = None, quiet: bool = False) -> Prepared:
    """Read `spec`, prepare every face (or the first `limit` by a stable order), cached on disk."""
    records, stats = open_data(spec)
    if limit is not None and limit < len(records):
        records = sorted(records, key=lambda r: hashlib.sha256(r.key.encode()).hexdigest())[:limit]
    path = cache_dir() / f"{_cache_key(spec, records)}.npz"
    if path.exists():
        return _load(path)
    workers = workers or os.cpu_count() or 1
    import time

    from tqdm import tqdm

    started = time.time()

    results: list = []
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers) as pool:
        it = pool.imap(prepare_one, [r for r in records], chunksize=16)
        for res in tqdm(it, total=len(records), desc="prepare", disable=quiet or not sys.stderr.isatty(), unit="face"):
            results.append(res)
    keep = [i for i, r in enumerate(results) if not isinstance(r, str)]
    skipped: dict[str, int] = dict(stats.skipped)
    for r in results:
        if isinstance(r, str):
            skipped[r] = skipped.get(r, 0) + 1
    kept = [records[i] for i in keep]
    res = [results[i] for i in keep]
    prep = Prepared(
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
            "workers": workers,
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, keys=prep.keys, ages=prep.ages, genders=prep.genders, groups=prep.groups, splits=prep.splits,
             detected=prep.detected, descriptors=prep.descriptors, thumbs=prep.thumbs,
             stats=np.array(__import__("json").dumps(prep.stats)))
    os.replace(tmp, path)
    return prep


def _load(path: Path) -> Prepared:
    import json

    z = np.load(path, allow_pickle=False)
    return Prepared(
        keys=z["keys"], ages=z["ages"], genders=z["genders"], groups=z["groups"], splits=z["splits"],
        detected=z["detected"], descriptors=z["descriptors"], thumbs=z["thumbs"], stats=json.loads(str(z["stats"])),
    )
