"""Aligned 150x150 face chips of a data set in one compact file, for training the descriptor network
end to end (training/finetune.py) on a machine that has a GPU but neither dlib nor the data set.

    python -m training.chips utkface:../shared/datasets/utkface out.npz [--split train] [--limit N] [--quality Q]

Each chip is cut by `training.prepare.locate` and `phototag.faces.align_and_crop`, exactly as the
descriptors are, and stored as a WebP (quality 90 unless told) in one byte array. The file holds
research data: keep it out of git (it is made in an ignored folder and never shipped).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import multiprocessing as mp
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from phototag import faces
from training.readers import FaceRecord, open_data, split_of
from training.prepare import locate

__all__ = ["export_chips", "load_chips", "chips_for"]

QUALITY = 90


def _one(record: FaceRecord, quality: int = QUALITY) -> tuple[str, bytes, bool] | None:
    from PIL import Image

    found = locate(record)
    if isinstance(found, str):
        return None
    rgb, box, detected = found
    buf = io.BytesIO()
    Image.fromarray(faces.align_and_crop(rgb, box).chip).save(buf, format="WEBP", quality=quality, method=4)
    return record.key, buf.getvalue(), detected


def export_chips(spec: str, out: Path, *, split: str | None = None, limit: int | None = None,
                 workers: int | None = None, quality: int = QUALITY) -> dict[str, Any]:
    """Write the chips of `spec` (one split of it, the first `limit` by a stable hash) to `out`."""
    records, _ = open_data(spec)
    records = [r for r in records if (r.age is not None or r.group) and (split is None or split_of(r.key) == split)]
    if limit is not None and limit < len(records):
        records = sorted(records, key=lambda r: hashlib.sha256(r.key.encode()).hexdigest())[:limit]
    with mp.get_context("spawn").Pool(workers or mp.cpu_count()) as pool:
        done = [d for d in pool.imap(partial(_one, quality=quality), records, chunksize=32) if d is not None]
    by_key = {r.key: r for r in records}
    data = b"".join(d[1] for d in done)
    offsets = np.cumsum([0] + [len(d[1]) for d in done]).astype(np.int64)
    rec = [by_key[d[0]] for d in done]
    Path(out).parent.mkdir(parents=True, exist_ok=True)  # after minutes of work, not lost to a missing folder
    np.savez_compressed(out, data=np.frombuffer(data, np.uint8), offsets=offsets, keys=np.array([d[0] for d in done]),
             ages=np.array([-1 if r.age is None else r.age for r in rec], np.int16),
             groups=np.array([r.group or "" for r in rec]),
             genders=np.array([-1 if r.gender is None else r.gender for r in rec], np.int8),
             persons=np.array([r.person or r.key for r in rec]),
             splits=np.array([split_of(r.key) for r in rec]), detected=np.array([d[2] for d in done]))
    return {"faces": len(done), "skipped": len(records) - len(done), "bytes": len(data)}


def _decode(data: np.ndarray, offsets: np.ndarray, rows: list[int]) -> np.ndarray:
    """Chips `rows` of a file's byte array, decoded (n x 150 x 150 x 3 uint8)."""
    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(data[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB"))
                     for i in rows])


def load_chips(path: Path) -> dict[str, np.ndarray]:
    """The file's arrays, with `chips` (n x 150 x 150 x 3 uint8) decoded."""
    z = dict(np.load(path))
    data, off = z.pop("data"), z.pop("offsets")
    z["chips"] = _decode(data, off, list(range(len(off) - 1)))
    return z


def chips_for(spec: str, keys: np.ndarray, *, workers: int | None = None) -> np.ndarray:
    """The chips of these records of `spec`, in their order, cut once and cached beside the prepared
    descriptors (outside git), for evaluating a model that reads chips."""
    from training.prepare import _cache_key, cache_dir

    records, _ = open_data(spec)
    path = cache_dir() / f"{_cache_key(spec, records)}-chips.npz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npz")
        export_chips(spec, tmp, workers=workers)
        tmp.replace(path)
    z = np.load(path)
    where = {k: i for i, k in enumerate(z["keys"])}
    missing = [k for k in keys if k not in where]
    if missing:
        raise ValueError(f"{spec}: no chip for {len(missing)} faces (e.g. {missing[0]})")
    return _decode(z["data"], z["offsets"], [where[k] for k in keys])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("spec")
    ap.add_argument("out", type=Path)
    ap.add_argument("--split", choices=("train", "val", "test"))
    ap.add_argument("--limit", type=int)
    ap.add_argument("--workers", type=int)
    ap.add_argument("--quality", type=int, default=QUALITY, help="WebP quality (default %(default)s)")
    args = ap.parse_args(argv)
    print(export_chips(args.spec, args.out, split=args.split, limit=args.limit, workers=args.workers,
                       quality=args.quality))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
