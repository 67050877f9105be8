"""Fixtures: real photographs (scikit-image's astronaut), real JPEGs with real EXIF, real dlib."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import piexif
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
UTKFACE = ROOT.parent / "shared" / "datasets" / "utkface"
# Where dlib's HOG detector finds the astronaut's face (upsample 0), measured once by hand.
ASTRONAUT_BOX = (83, 266, 170, 179)  # top, right, bottom, left
# Where dlib's CNN detector finds it (upsample 0).
ASTRONAUT_BOX_CNN = (69, 263, 164, 168)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def exif_bytes(make: bytes = b"NASA", taken: bytes = b"1984:02:07 10:00:00", keywords: list[str] | None = None,
               orientation: int | None = None, comment: bytes | None = None) -> bytes:
    zeroth: dict = {piexif.ImageIFD.Make: make, piexif.ImageIFD.Model: b"Hasselblad"}
    if keywords:
        zeroth[piexif.ImageIFD.XPKeywords] = tuple((";".join(keywords)).encode("utf-16-le") + b"\0\0")
    if orientation:
        zeroth[piexif.ImageIFD.Orientation] = orientation
    exif = {piexif.ExifIFD.DateTimeOriginal: taken}
    if comment is not None:
        exif[piexif.ExifIFD.UserComment] = comment
    return piexif.dump({"0th": zeroth, "Exif": exif, "GPS": {}, "1st": {}, "thumbnail": None})


def save_jpeg(path: Path, pixels: np.ndarray, exif: bytes | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(pixels)
    args = {"quality": 90, **kw}
    if exif is not None:
        args["exif"] = exif
    im.save(path, "JPEG", **args)
    return path


def group_photo(astronaut: np.ndarray, n: int = 2, size: tuple[int, int] = (1600, 900)) -> np.ndarray:
    """A composite 'family photo': `n` copies of the astronaut's head on a grey background."""
    canvas = np.full((size[1], size[0], 3), 120, dtype=np.uint8)
    head = astronaut[20:260, 120:330]
    for i in range(n):
        x = 80 + i * (head.shape[1] + 120)
        canvas[200 : 200 + head.shape[0], x : x + head.shape[1]] = head
    return canvas


@pytest.fixture
def library(tmp_path: Path, astronaut: np.ndarray) -> Path:
    """A small photo library with good photos and every kind of bad input, in nested folders."""
    lib = tmp_path / "photos"
    save_jpeg(lib / "2019" / "wedding" / "astronaut.jpg", astronaut,
              exif_bytes(keywords=["Holiday", "Grandma"]))
    save_jpeg(lib / "2019" / "GROUP.JPG", group_photo(astronaut), exif_bytes(taken=b"2019:06:01 14:03:00"))
    save_jpeg(lib / "2020" / "landscape.jpeg", np.full((300, 400, 3), 200, np.uint8),
              exif_bytes(taken=b"2020:01:01 00:00:00"))
    Image.fromarray(astronaut).save(lib / "2020" / "astronaut.png")
    (lib / "bad").mkdir()
    (lib / "bad" / "empty.jpg").write_bytes(b"")
    (lib / "bad" / "notes.jpg").write_text("this is not a photo\n")
    good = (lib / "2019" / "wedding" / "astronaut.jpg").read_bytes()
    (lib / "bad" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (lib / ".hidden").mkdir()
    save_jpeg(lib / ".hidden" / "secret.jpg", astronaut)
    (lib / "readme.txt").write_text("not a photo, not looked at\n")
    return lib


def exiftool(*args: str) -> str:
    exe = shutil.which("exiftool")
    if exe is None:
        pytest.fail("exiftool is not installed (apt-get install libimage-exiftool-perl; .ci/run does this)")
    return subprocess.run([exe, *args], capture_output=True, text=True, check=True).stdout


def jpeg_bytes(pixels: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", **kw)
    return buf.getvalue()

# The same face as found by a scan's default detection (`auto`: HOG's box, upsample 1 for a photo
# this small; the CNN finds the same face).
ASTRONAUT_BOX_SCAN = (76, 265, 166, 175)


def tree_digest(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under root (hidden ones too): content hash and mtime."""
    import hashlib

    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


_RELIABILITY: list[dict] = []


@pytest.fixture
def reliability():
    """Record a fault or bad input that a test tried, how often, and the outcome (for docs/reliability.md's table)."""

    def record(fault: str, tries: int, outcome: str) -> None:
        _RELIABILITY.append({"fault": fault, "tries": tries, "outcome": outcome})

    return record


def pytest_sessionfinish(session, exitstatus):
    if _RELIABILITY:
        import json

        out = ROOT / "reports" / "reliability.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(sorted(_RELIABILITY, key=lambda r: r["fault"]), indent=1) + "\n")


def unprivileged():
    """A preexec_fn under which file permissions bind, as they do for a user's cron job.

    Root reads everything through CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, and CI runs as root; the
    child drops both from its bounding set before exec, so it runs as uid 0 without them. A non-root
    user needs nothing dropped."""
    if os.geteuid() != 0:
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2

    def drop() -> None:
        for cap in (cap_dac_override, cap_dac_read_search):
            if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    probe = subprocess.run(["true"], preexec_fn=drop, capture_output=True)  # raises if it cannot drop
    assert probe.returncode == 0
    return drop


@pytest.fixture(autouse=True)
def _no_user_settings(monkeypatch):
    """A developer's own ~/.config/phototag/config.toml must not change what the tests see."""
    monkeypatch.setenv("PHOTOTAG_CONFIG", os.devnull)


def copy_scanned(lib: Path, db: Path, dest: Path) -> tuple[Path, Path]:
    """A scanned library and its index, copied into `dest` (mtimes kept), the index's paths moved along:
    a module's one scan, given fresh to each test."""
    import sqlite3

    new_lib, new_db = dest / lib.name, dest / db.name
    shutil.copytree(lib, new_lib, copy_function=shutil.copy2)
    src, dst = sqlite3.connect(db), sqlite3.connect(new_db)
    try:
        src.backup(dst)
        dst.execute("UPDATE photos SET path = replace(path, ?, ?)", (str(lib), str(new_lib)))
        dst.commit()
    finally:
        src.close()
        dst.close()
    return new_lib, new_db
