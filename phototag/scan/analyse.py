"""One photo, in a worker process: decode it, find its faces, align them, describe them.

It returns only small things (boxes, chips, descriptors), never the decoded photo, and turns every
problem into the photo's reason to fail, so one bad photo never stops a scan.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import faces
from ..errors import PhotoError
from ..runtime import share_gpu_memory
from ..tags.exif import content_hash
from .decode import CROP_FACE_PX, decode, load_face_regions, pixel_budget

__all__ = ["Analysis", "analyse", "age_faces", "file_hashes", "sha256_file", "prepare_process"]


@dataclass
class Analysis:
    """What a worker found in one photo."""

    path: str
    format: str = ""
    width: int = 0
    height: int = 0
    taken_at: str | None = None
    boxes: list[faces.Box] = field(default_factory=list)
    descriptors: np.ndarray | None = None
    chips: np.ndarray | None = None  # the aligned chips, kept only for a model that reads them
    error: str | None = None
    seen: tuple[int, int] | None = None  # (size, mtime_ns) when the worker opened it
    content: str | None = None  # SHA-256 of its bytes outside EXIF, then
    digest: str | None = None  # SHA-256 of the whole file, then
    # Filled where the age model runs beside the analysis (a Ray actor); else the driver batches them.
    distribution: np.ndarray | None = None  # faces x 101
    female: np.ndarray | None = None


def _upsample(pixels: np.ndarray, detect_size: int) -> int:
    """Upsample once when the detection copy is at most a quarter of the pixel budget (a small photo):
    it then costs no more than a large photo, and finds faces down to about 40 px."""
    return 1 if pixels.shape[0] * pixels.shape[1] * 4 <= pixel_budget(detect_size) else 0


def analyse(path: str, detect_size: int, detector: str, upsample: int | None, min_face: int,
            min_score: float = faces.DEFAULT_MIN_SCORE, verify: bool = True, keep_chips: bool = False,
            known: list[faces.Box] | None = None) -> Analysis:
    """Decode, detect, align and describe every face of one photo (runs in a worker). With `known`
    (full-resolution boxes from the index) nothing is detected: those faces are described again.
    With `keep_chips` the aligned chips come back too, for an age model that reads them."""
    try:
        try:  # what the file is now, to tell at write time whether it changed under us
            st = os.stat(path)
            digest, content = file_hashes(path)
        except OSError as exc:
            raise PhotoError(f"cannot read: {exc.strerror or exc}") from exc
        seen = (st.st_size, st.st_mtime_ns)
        d = decode(path, detect_size)
        if upsample is None:
            upsample = _upsample(d.pixels, detect_size)
        if known is not None:
            boxes = [b.scaled(1 / d.scale, d.pixels.shape[1], d.pixels.shape[0]) for b in known]
        else:
            boxes = faces.detect(d.pixels, model=detector, upsample=upsample,
                                 min_size=max(1, math.floor(min_face / d.scale)), min_score=min_score,
                                 verify_faces=verify)
        full_boxes: list[faces.Box] = []
        chips = []
        if boxes:
            full_boxes = list(known) if known is not None else [b.scaled(d.scale, d.width, d.height) for b in boxes]
            if d.scale > 1.0001 and min(b.width for b in boxes) < CROP_FACE_PX:
                # cut the faces from a copy only as large as they need, each from its own neighbourhood
                regions = load_face_regions(path, [(b.top, b.right, b.bottom, b.left) for b in full_boxes])
                for fb, pixels, (x0, y0) in zip(full_boxes, regions.pixels, regions.origins):
                    b = fb.scaled(1 / regions.factor, *regions.size)
                    local = faces.Box(b.top - y0, b.right - x0, b.bottom - y0, b.left - x0)
                    chips.append(faces.align_and_crop(pixels, local).chip)
            else:  # the detection copy holds every face large enough: no second decode
                for fb in full_boxes:
                    box = fb.scaled(1 / d.scale, d.pixels.shape[1], d.pixels.shape[0])
                    chips.append(faces.align_and_crop(d.pixels, box).chip)
        kept = np.stack(chips) if keep_chips and chips else None
        return Analysis(path, d.format, d.width, d.height, d.taken_at, full_boxes, faces.describe(chips), kept,
                        seen=seen, content=content, digest=digest)
    except PhotoError as exc:
        return Analysis(path, error=str(exc))
    except MemoryError:
        return Analysis(path, error="out of memory while decoding")
    except Exception as exc:  # noqa: BLE001 - one bad photo never stops a scan
        return Analysis(path, error=f"unexpected error: {type(exc).__name__}: {exc}")


def age_faces(model: Any, found: list[Analysis]) -> None:
    """Every face of these photos through the age model `model` at once, batched across photos: each
    photo that did not fail gets its faces' `distribution` (and `female`), and its chips are let go.
    The scan's main process does this for the local workers' photos, a Ray actor for its own."""
    ok = [a for a in found if a.error is None]
    if model.input_kind == "chip":
        chips = [a.chips for a in ok if a.chips is not None and len(a.chips)]
        pred = model.predict_chips(np.concatenate(chips)) if chips else None
    else:
        descs = [a.descriptors for a in ok if a.descriptors is not None and len(a.descriptors)]
        pred = model.predict_descriptors(np.concatenate(descs)) if descs else None
    at = 0
    for a in found:
        a.chips = None
        if a.error is None:
            n = len(a.boxes)
            a.distribution = pred.distribution[at:at + n] if pred is not None else np.zeros((0, 101), np.float32)
            a.female = pred.female[at:at + n] if pred is not None and pred.female is not None else None
            at += n


def known_boxes(boxes: list[faces.Box] | None) -> dict[str, Any]:
    return {} if boxes is None else {"known": boxes}


def stat_key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def prepare_process(engine: str | None = None) -> None:
    """Set up a process that analyses photos beside others (a scan worker, a Ray actor): the face
    engine on one thread, since there is one such process per core or they would fight for the cores;
    on the Keras engine (a GPU shared by several of them) GPU memory taken as needed."""
    os.environ.setdefault("PHOTOTAG_ENGINE_THREADS", "1")
    if engine == "keras":
        share_gpu_memory()
    faces.use_engine(engine)


def warm_worker(engine: str | None = None) -> None:
    """Workers leave Ctrl-C to the main process, which commits what is done and stops them."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    prepare_process(engine)
    faces.warm()


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_hashes(path: str) -> tuple[str, str]:
    """(SHA-256 of the file, SHA-256 of its bytes outside EXIF), from one read."""
    with open(path, "rb") as f:
        data = f.read()
    return hashlib.sha256(data).hexdigest(), content_hash(data)
