"""Open a photo: EXIF orientation applied, a reduced copy for detection, the full image for crops.

JPEGs are decoded with Pillow's draft mode, which lets libjpeg scale by 1/2, 1/4 or 1/8 while
decoding: a 12-megapixel photo reaches detection size at a fraction of the cost of a full decode.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..store.dates import from_exif
from ..errors import PhotoError

__all__ = ["Decoded", "decode", "load_full", "load_for_crops", "load_face_regions", "FaceRegions", "pixel_budget",
           "DEFAULT_DETECT_SIZE", "MAX_CROP_PIXELS"]

DEFAULT_DETECT_SIZE = 2000  # bench/tune_detection.py: faces of 160 px and more in 4000 x 3000
# Faces are cut out of a copy decoded at 1/2, 1/4 or 1/8 where every face stays at least this wide:
# libjpeg's DCT scaling is cheaper than a full decode and filters better than the chip resampler.
# The chip holds the face at about 100 px, so 150 px leaves the resampler only shrinking to do.
CROP_FACE_PX = 150
# The most pixels decoded at once for cropping: a 100-megapixel panorama is decoded at 1/2 or less, so
# a worker's memory stays bounded whatever the photo's size.
MAX_CROP_PIXELS = 50_000_000
_TRANSPOSE = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_270,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_90,),
}


@dataclass(frozen=True)
class Decoded:
    """The pixels detection needs, and what the index keeps about the photo."""

    pixels: np.ndarray  # RGB uint8, oriented, at most detect_size² × 3/4 pixels (see detect_scale)
    scale: float  # full-resolution pixels per detection pixel
    width: int  # full resolution, as shown (oriented)
    height: int
    format: str
    orientation: int
    taken_at: str | None  # EXIF DateTimeOriginal as ISO 8601, no time zone


@functools.lru_cache(maxsize=1)
def _register_heif() -> None:
    try:
        from pillow_heif import register_heif_opener

        register_heif_opener()
    except ImportError:  # pragma: no cover - pillow-heif is a dependency
        pass


def _exif_facts(im: Image.Image) -> tuple[int, str | None]:
    """(orientation, DateTimeOriginal); broken EXIF reads as (1, None): the pixels still count."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns on corrupt EXIF; the tag writer reports it
            exif = im.getexif()
            orientation = int(exif.get(0x0112, 1) or 1)
            taken = from_exif(exif.get_ifd(0x8769).get(0x9003)) or from_exif(exif.get(0x0132))
    except Exception:  # noqa: BLE001 - EXIF is optional; a photo with broken EXIF is still a photo
        return 1, None
    return (orientation if orientation in range(1, 9) else 1), taken


def _open(path: Path) -> Image.Image:
    _register_heif()
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise PhotoError(f"cannot read: {exc.strerror or exc}") from exc
    if size == 0:
        raise PhotoError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below, our way
            im = Image.open(path)
    except Image.DecompressionBombError as exc:
        import re

        m = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(m[1]):,} pixels" if m else "too many pixels"
        raise PhotoError(f"image too large to decode safely ({size}; the limit is "
                         f"{_pixel_limit(_head(path)):,})") from exc
    except UnidentifiedImageError as exc:
        try:
            with open(path, "rb") as f:
                head = f.read(16)
        except OSError:
            head = b""
        kind = "text" if head and all(32 <= b < 127 or b in b"\r\n\t" for b in head) else "unknown data"
        raise PhotoError(f"not an image (content is {kind})") from exc
    except OSError as exc:
        raise PhotoError(f"cannot read: {exc.strerror or exc}") from exc
    pixels, limit = im.width * im.height, _pixel_limit(b"\xff\xd8\xff" if im.format == "JPEG" else b"")
    if pixels > limit:
        im.close()
        raise PhotoError(f"image too large to decode safely ({pixels:,} pixels; the limit is {limit:,})")
    return im


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(4)
    except OSError:
        return b""


def _pixel_limit(head: bytes) -> int:
    """Pillow's decompression-bomb limit; twice that for JPEGs, which are never decoded whole when large
    (draft mode), so a 100-megapixel panorama is a photo, not an attack."""
    return Image.MAX_IMAGE_PIXELS * (2 if head.startswith(b"\xff\xd8\xff") else 1)


# Pillow modes of 16-bit (or float) samples, which its convert would clip at 255
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "F")


def _finish(im: Image.Image, orientation: int) -> Image.Image:
    for op in _TRANSPOSE.get(orientation, ()):
        im = im.transpose(op)
    if im.mode in _WIDE_MODES:
        # 16-bit (or float) samples: Pillow's convert would clip them at 255, leaving a white image
        arr = np.asarray(im, dtype=np.float32)
        top = 65535.0 if im.mode != "F" and arr.max(initial=0) > 255 else 255.0
        im = Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8), "L")
    return im.convert("RGB") if im.mode != "RGB" else im


def _load(im: Image.Image, path: Path) -> None:
    try:
        im.load()
    except (OSError, SyntaxError, ValueError) as exc:
        msg = str(exc)
        if "truncated" in msg:
            raise PhotoError("truncated image data") from exc
        raise PhotoError(f"corrupt image data ({msg})") from exc


def _quiet(fn):
    """Pillow warns (on stderr) about corrupt EXIF and the like; our caller reports what matters."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return fn(*args, **kwargs)

    return wrapper


def pixel_budget(detect_size: int) -> float:
    """The pixels of a detection copy: those of a 4:3 photo whose long side is `detect_size`."""
    return detect_size * detect_size * 3 / 4


def detect_scale(width: int, height: int, detect_size: int) -> float:
    """How much to shrink a photo for detection: to `pixel_budget`. A 4:3 photo gets exactly that long
    side; a panorama keeps the same pixel count, so its faces are not shrunk out of sight by its length."""
    return min(1.0, (pixel_budget(detect_size) / (width * height)) ** 0.5, detect_size * 4 / max(width, height))


@_quiet
def taken_at(path: str | Path) -> str | None:
    """The photo's EXIF DateTimeOriginal (ISO 8601), read from its header alone; None without one."""
    try:
        with _open(Path(path)) as im:
            return _exif_facts(im)[1]
    except (PhotoError, OSError):
        return None


def decode(path: str | Path, detect_size: int = DEFAULT_DETECT_SIZE) -> Decoded:
    """Decode `path` oriented, reduced to the pixel budget of a 4:3 photo `detect_size` long."""
    path = Path(path)
    im = _open(path)
    with im:
        fmt = im.format or "unknown"
        orientation, taken = _exif_facts(im)
        w0, h0 = im.size  # as stored
        if orientation >= 5:
            full_w, full_h = h0, w0
        else:
            full_w, full_h = w0, h0
        f = detect_scale(w0, h0, detect_size)
        if f < 1 and fmt == "JPEG":
            im.draft("RGB", (max(1, int(w0 * f)), max(1, int(h0 * f))))
        _load(im, path)
        out = _finish(im, orientation)
        f = detect_scale(out.width, out.height, detect_size)
        if f < 1:
            out = out.resize((max(1, round(out.width * f)), max(1, round(out.height * f))), Image.BILINEAR,
                             reducing_gap=2.0)
        pixels = np.asarray(out, dtype=np.uint8)
    return Decoded(
        pixels=pixels,
        scale=full_w / pixels.shape[1],
        width=full_w,
        height=full_h,
        format=fmt,
        orientation=orientation,
        taken_at=taken,
    )


@_quiet
def load_full(path: str | Path) -> np.ndarray:
    """The whole photo at full resolution, oriented as shown, RGB uint8."""
    path = Path(path)
    im = _open(path)
    with im:
        orientation, _ = _exif_facts(im)
        _load(im, path)
        return np.asarray(_finish(im, orientation), dtype=np.uint8)



def _crop_reduction(w0: int, h0: int, face_widths: list[int], face_px: int, max_pixels: int) -> int:
    """1, 2, 4 or 8: how much a JPEG's crop copy is reduced (see load_for_crops)."""
    narrowest = min(face_widths, default=w0)
    r = 1
    while r < 8 and (narrowest / (2 * r) >= face_px or w0 * h0 / (r * r) > max_pixels):
        r *= 2
    return r


def _load_reduced(im: Image.Image, path: Path, face_widths: list[int], face_px: int,
                  max_pixels: int) -> tuple[int, float]:
    """Load `im` as small as its faces allow (JPEGs only; see load_for_crops): (orientation, factor)."""
    orientation, _ = _exif_facts(im)
    w0, h0 = im.size
    if im.format == "JPEG":
        r = _crop_reduction(w0, h0, face_widths, face_px, max_pixels)
        if r > 1:
            im.draft("RGB", (-(-w0 // r), -(-h0 // r)))
    _load(im, path)
    return orientation, w0 / im.size[0]


@_quiet
def load_for_crops(path: str | Path, face_widths: list[int], *, face_px: int = CROP_FACE_PX,
                   max_pixels: int = MAX_CROP_PIXELS) -> tuple[np.ndarray, float]:
    """The photo as shown, decoded as small as its faces allow, and full-resolution pixels per pixel.

    JPEGs are reduced by 1/2, 1/4 or 1/8 while the narrowest face (`face_widths`, full-resolution
    pixels) stays `face_px` wide, and further while the copy would exceed `max_pixels`; other formats
    are decoded whole."""
    path = Path(path)
    with _open(path) as im:
        orientation, factor = _load_reduced(im, path, face_widths, face_px, max_pixels)
        return np.asarray(_finish(im, orientation), dtype=np.uint8), factor


@dataclass(frozen=True)
class FaceRegions:
    """Each face's neighbourhood, cut from the copy `load_for_crops` would decode, never the whole copy."""

    pixels: list[np.ndarray]  # RGB uint8, as shown
    origins: list[tuple[int, int]]  # (x, y) of each region in the copy
    factor: float  # full-resolution pixels per pixel of the copy
    size: tuple[int, int]  # the copy's (width, height), as shown


@_quiet
def load_face_regions(path: str | Path, boxes: list[tuple[int, int, int, int]], *, margin: float = 1.0,
                      face_px: int = CROP_FACE_PX, max_pixels: int = MAX_CROP_PIXELS) -> FaceRegions:
    """The same copy as `load_for_crops`, of which only each face's neighbourhood becomes an array: its
    box (top, right, bottom, left in full-resolution pixels as shown) grown by `margin` box sizes on
    every side, room enough for the landmarks and the aligned chip, which come out as from the whole
    copy. A 100-megapixel panorama's copy at 1/2 (25 MP) is decoded once and never copied whole."""
    path = Path(path)
    with _open(path) as im:
        orientation, factor = _load_reduced(im, path, [b[1] - b[3] for b in boxes], face_px, max_pixels)
        shown: Image.Image = im
        for op in _TRANSPOSE.get(orientation, ()):
            shown = shown.transpose(op)
        if shown.mode in _WIDE_MODES:
            shown = _finish(shown, 1)  # 16-bit samples are scaled by the whole image's range
        width, height = shown.size
        pixels, origins = [], []
        for top, right, bottom, left in boxes:
            t, r_, b, l = top / factor, right / factor, bottom / factor, left / factor
            mx, my = (r_ - l) * margin, (b - t) * margin
            x0, y0 = max(0, math.floor(l - mx)), max(0, math.floor(t - my))
            x1, y1 = min(width, math.ceil(r_ + mx)), min(height, math.ceil(b + my))
            pixels.append(np.asarray(_finish(shown.crop((x0, y0, x1, y1)), 1), dtype=np.uint8))
            origins.append((x0, y0))
        return FaceRegions(pixels, origins, factor, (width, height))
