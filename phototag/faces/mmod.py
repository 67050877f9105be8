"""What dlib's CNN face detector does around its network, in NumPy: the tiled image pyramid going in,
and the detections coming out (window mapping and non-maximum suppression).

Followed line by line from dlib: `input_rgb_image_pyramid::to_tensor` and
`compute_tiled_image_pyramid_details` (levels 5/6 the size of the one before, each made by bilinear
resizing of the one before, tiled into one image so the network runs once), and
`loss_mmod_::to_label` (every output above 0 is a window centred on the point it maps to, taken
back to the image through the pyramid, then kept unless it overlaps a better one). Rectangles are
dlib's: inclusive integer corners, (left, top, right, bottom).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Options", "Detection", "tiled_pyramid", "to_tensor", "decode", "pyramid_rects", "pyramid_up", "rect_down"]

_RATE = 5.0 / 6.0  # pyramid_down<6>
_MIN_HEIGHT = 5


@dataclass(frozen=True)
class Options:
    """The detector's settings, read from its .dat file (loss_mmod_'s options and input layer)."""

    window: tuple[int, int]  # width, height of the detector window in pyramid pixels
    nms_iou: float
    nms_covered: float
    mean_rgb: tuple[float, float, float]
    padding: int = 10
    outer_padding: int = 11
    # The network's output point (c, r) sits at input point (scale * c + offset, scale * r + offset).
    scale: int = 8
    offset: int = 14
    min_input: int = 1  # the smallest tiled image the network gives any output for
    margin: int = 0  # output rows that the padded convolutions at the end reach beyond a band


@dataclass(frozen=True)
class Detection:
    """A face: dlib's integer rectangle (inclusive) and the network's score for it."""

    left: int
    top: int
    right: int
    bottom: int
    confidence: float


def pyramid_rects(nr: int, nc: int, padding: int, outer_padding: int) -> tuple[list[tuple[int, int, int, int]], int, int]:
    """Where each pyramid level sits in the tiled image (left, top, right, bottom, inclusive), and its size."""
    sizes = [(nc, nr)]
    while True:
        nr, nc = math.floor(_RATE * nr), math.floor(_RATE * nc)
        if nr * nc == 0 or nr < _MIN_HEIGHT:
            break
        sizes.append((nc, nr))
    if sizes[0][0] * sizes[0][1] == 0:
        return [], 0, 0
    w0, h0 = sizes[0]
    total_height = sum(h + padding for _, h in sizes) - padding * 2
    height, prev_width = 0, 0
    for w, h in sizes:
        if w <= w0 - prev_width - padding and (height - h0) * 2 >= (total_height - h0):
            break
        height += h + padding
        prev_width = w
    height -= padding
    out_nr, out_nc = height + outer_padding * 2, w0 + outer_padding * 2
    rects: list[tuple[int, int, int, int]] = []
    y, i = outer_padding, 0
    while y < height + outer_padding and i < len(sizes):
        w, h = sizes[i]
        rects.append((outer_padding, y, outer_padding + w - 1, y + h - 1))
        y += h + padding
        i += 1
    y -= padding
    r0 = rects[0]
    while i < len(sizes):
        w, h = sizes[i]
        # dlib: rectangle(p1, p1 - br_corner) with p1 the bottom right of the free column
        x1, y1 = outer_padding + w0 - 1, y - 1
        rect = (x1 - (w - 1), y1 - (h - 1), x1, y1)
        if not (rect[2] < r0[0] or rect[0] > r0[2] or rect[3] < r0[1] or rect[1] > r0[3]):
            break  # would overlap the original image
        rects.append(rect)
        y -= h + padding
        i += 1
    return rects, out_nr, out_nc


def _resize_bilinear(src: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """dlib's resize_image with bilinear interpolation: corners onto corners (rows, then columns)."""
    h, w = src.shape[:2]
    ys = np.arange(out_h) * ((h - 1) / max(out_h - 1, 1))
    xs = np.arange(out_w) * ((w - 1) / max(out_w - 1, 1))
    top = np.floor(ys).astype(np.intp)
    left = np.floor(xs).astype(np.intp)
    bottom, right = np.minimum(top + 1, h - 1), np.minimum(left + 1, w - 1)
    fy = (ys - top).astype(np.float32)[:, None, None]
    fx = (xs - left).astype(np.float32)[None, :, None]
    rows = np.take(src, top, axis=0)
    rows += (np.take(src, bottom, axis=0) - rows) * fy
    out = np.take(rows, left, axis=1)
    out += (np.take(rows, right, axis=1) - out) * fx
    return out


def to_tensor(image: np.ndarray, options: Options) -> np.ndarray:
    """dlib's input tensor for one RGB uint8 image: (pixel - mean) / 256 per channel."""
    return (image.astype(np.float32) - np.asarray(options.mean_rgb, np.float32)) / np.float32(256.0)


def tiled_pyramid(image: np.ndarray, options: Options) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """The tensor dlib's network sees for `image` (H x W x 3 RGB uint8), and where each level went."""
    rects, nr, nc = pyramid_rects(image.shape[0], image.shape[1], options.padding, options.outer_padding)
    out = np.zeros((nr, nc, 3), np.float32)
    if not rects:
        return out, rects
    level = to_tensor(image, options)
    left, top, right, bottom = rects[0]
    out[top : bottom + 1, left : right + 1] = level
    for left, top, right, bottom in rects[1:]:
        level = _resize_bilinear(level, bottom - top + 1, right - left + 1)
        out[top : bottom + 1, left : right + 1] = level
    return out, rects


def _nearest_rect(rects: list[tuple[int, int, int, int]], x: float, y: float) -> int:
    best, best_dist = 0, math.inf
    for i, (l, t, r, b) in enumerate(rects):
        if l <= x <= r and t <= y <= b:
            return i
        nx, ny = min(max(x, l), r), min(max(y, t), b)
        d = math.hypot(nx - x, ny - y)
        if d < best_dist:
            best, best_dist = i, d
    return best


def _lround(v: float) -> int:
    return int(math.floor(v + 0.5)) if v >= 0 else -int(math.floor(-v + 0.5))


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int], iou: float, covered: float) -> bool:
    """dlib's test_box_overlap (its 'outer' is the box around both, as dlib computes it)."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return False
    inner = iw * ih
    outer = (max(a[2], b[2]) - min(a[0], b[0]) + 1) * (max(a[3], b[3]) - min(a[1], b[1]) + 1)
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inner / outer > iou or inner / area_a > covered or inner / area_b > covered


def decode(scores: np.ndarray, rects: list[tuple[int, int, int, int]], options: Options,
           threshold: float = 0.0) -> list[Detection]:
    """The detections in one score map (rows x cols), best first, after dlib's non-maximum suppression."""
    rows, cols = np.nonzero(scores > threshold)
    order = np.argsort(-scores[rows, cols], kind="stable")
    ww, wh = options.window[0] - 1, options.window[1] - 1
    kept: list[Detection] = []
    boxes: list[tuple[int, int, int, int]] = []
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        px, py = options.scale * c + options.offset, options.scale * r + options.offset
        level = _nearest_rect(rects, px, py)
        ox, oy = rects[level][0], rects[level][1]
        corners = [px - ww / 2 - ox, py - wh / 2 - oy, px + ww / 2 - ox, py + wh / 2 - oy]
        for _ in range(level):  # pyramid_down<6>::point_up
            corners = [v * 1.2 + 0.3 for v in corners]
        box = tuple(_lround(v) for v in corners)
        if any(_overlaps(b, box, options.nms_iou, options.nms_covered) for b in boxes):
            continue
        boxes.append(box)  # type: ignore[arg-type]
        kept.append(Detection(box[0], box[1], box[2], box[3], float(scores[r, c])))
    return kept


def rect_down(d: Detection, levels: int) -> Detection:
    """A detection in an image doubled `levels` times by dlib's pyramid_up, back in the original image
    (pyramid_down<2>::point_down: p / 2 - (1.25, 0.75), each level; then rounded)."""
    l, t, r, b = float(d.left), float(d.top), float(d.right), float(d.bottom)
    for _ in range(levels):
        l, r = l / 2 - 1.25, r / 2 - 1.25
        t, b = t / 2 - 0.75, b / 2 - 0.75
    return Detection(_lround(l), _lround(t), _lround(r), _lround(b), d.confidence)


def pyramid_up(image: np.ndarray) -> np.ndarray:
    """dlib's pyramid_up(image, pyramid_down<2>) for RGB uint8: about twice the size (2 nr + 1 rows,
    2 nc + 2 columns: pyramid_down<2>::rect_up of the image's rectangle), bilinear with corners on
    corners, computed in float and truncated as dlib's SIMD path does (a pixel may differ by one)."""
    nr, nc = image.shape[:2]
    up = _resize_bilinear(image.astype(np.float32), 2 * nr + 1, 2 * nc + 2)
    return up.astype(np.uint8)
