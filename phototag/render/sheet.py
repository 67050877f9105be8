"""`phototag contact-sheet`: the matching faces as a grid of labelled thumbnails.

Each photo is decoded once, only as large as its faces need (`decode.load_for_crops`), so a sheet of
hundreds of faces from 24-megapixel photos takes seconds and little memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from PIL import Image, ImageDraw

from .annotate import PALETTE, _font
from ..errors import PhotoError, PhototagError

__all__ = ["SheetOptions", "SheetResult", "contact_sheet"]


@dataclass(frozen=True)
class SheetOptions:
    thumb: int = 160  # thumbnail side, pixels
    columns: int = 8
    limit: int = 500  # faces at most: a sheet is for looking at
    margin: float = 0.35  # context around the face box, as a share of its size
    title: str | None = None


@dataclass
class SheetResult:
    path: Path
    faces: int
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (photo, why)
    cells: list[tuple[int, int, int, int]] = field(default_factory=list)  # thumbnails' (left, top, right, bottom)


def _label(face: dict[str, Any]) -> str:
    date = (face.get("taken_at") or "")[:10]
    return f"~{face['age']:.0f}" + (f"  {date}" if date else "")


def contact_sheet(faces: Iterable[dict[str, Any]], out: str | Path, group_names: list[str],
                  options: SheetOptions | None = None,
                  on_skip: Callable[[str, str], None] | None = None) -> SheetResult:
    """Write `out` (JPEG or PNG by extension): a grid of the faces, each labelled with its age and date,
    framed in its group's colour. Faces whose photo cannot be read any more are skipped and reported."""
    from ..scan.decode import load_for_crops

    o = options or SheetOptions()
    if o.columns < 1 or o.thumb < 32:
        raise PhototagError("a contact sheet needs at least 1 column and thumbnails of at least 32 px")
    chosen = list(faces)[: o.limit]
    by_photo: dict[str, list[dict[str, Any]]] = {}
    for f in chosen:
        by_photo.setdefault(f["path"], []).append(f)
    result = SheetResult(Path(out), 0)
    thumbs: list[tuple[Image.Image, dict[str, Any]]] = []
    for photo, fs in by_photo.items():
        try:
            image, factor = load_for_crops(photo, [f["right"] - f["left"] for f in fs], face_px=o.thumb)
        except PhotoError as exc:
            result.skipped.append((photo, str(exc)))
            if on_skip:
                on_skip(photo, str(exc))
            continue
        im = Image.fromarray(image)
        for f in fs:
            w, h = f["right"] - f["left"], f["bottom"] - f["top"]
            side = max(w, h) * (1 + 2 * o.margin)
            cx, cy = (f["left"] + f["right"]) / 2, (f["top"] + f["bottom"]) / 2
            box = [round(v / factor) for v in (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)]
            thumbs.append((im.crop(box).resize((o.thumb, o.thumb), Image.LANCZOS), f))
    # back in the order asked for (by date, then path), not the order photos were decoded
    order = {id(f): i for i, f in enumerate(chosen)}
    thumbs.sort(key=lambda t: order[id(t[1])])

    pad, size = max(4, o.thumb // 20), max(8, o.thumb // 9)
    font = _font(size)
    while size > 8 and font.getlength("~88  2000-00-00") > o.thumb:  # the label fits under its thumbnail
        size -= 1
        font = _font(size)
    label_h = font.getbbox("~88  2000-00-00")[3] + pad
    title_h = (font.getbbox("Ag")[3] + 2 * pad) if o.title else 0
    cols = max(1, min(o.columns, len(thumbs)))
    rows = max(1, math.ceil(len(thumbs) / cols))
    cell_w, cell_h = o.thumb + 2 * pad, o.thumb + label_h + 2 * pad
    sheet = Image.new("RGB", (cols * cell_w + pad, rows * cell_h + pad + title_h), (250, 250, 248))
    draw = ImageDraw.Draw(sheet)
    if o.title:
        draw.text((pad * 2, pad), o.title, fill=(30, 30, 30), font=font)
    for i, (thumb, f) in enumerate(thumbs):
        x = pad + (i % cols) * cell_w
        y = title_h + pad + (i // cols) * cell_h
        group = f["age_group"]
        colour = PALETTE[group_names.index(group) % len(PALETTE)] if group in group_names else "#888888"
        draw.rectangle((x, y, x + o.thumb + 2 * pad - 2, y + o.thumb + label_h + pad), fill=colour)
        sheet.paste(thumb, (x + pad // 2, y + pad // 2))
        result.cells.append((x + pad // 2, y + pad // 2, x + pad // 2 + o.thumb, y + pad // 2 + o.thumb))
        draw.text((x + pad // 2, y + o.thumb + pad // 2 + 1), _label(f), fill="black", font=font)
    if not thumbs:
        draw.text((pad, title_h + pad), "no faces", fill=(120, 120, 120), font=font)
    out = Path(out)
    try:
        sheet.save(out, quality=90) if out.suffix.lower() in (".jpg", ".jpeg") else sheet.save(out)
    except (OSError, ValueError) as exc:
        raise PhototagError(f"cannot write {out}: {exc}") from exc
    result.faces = len(thumbs)
    return result
