"""Draw faces, ages and groups on a copy of a photo: readable at any size, one colour per group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from ..scan.decode import load_full

# Colour-blind-safe palette (Okabe-Ito, then Tol): neighbouring groups differ.
PALETTE = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#882255", "#44AA99",
           "#999933", "#AA4499", "#DDDDDD"]


def _font(size: int) -> ImageFont.ImageFont:
    for name in ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf", "Arial.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def annotate(photo: str | Path, faces: list[dict[str, Any]], out: str | Path, group_names: list[str]) -> Path:
    """Write `out`: the photo as shown, each face boxed and labelled `Group ~age`."""
    img = Image.fromarray(load_full(photo))
    draw = ImageDraw.Draw(img)
    unit = max(img.size) / 1000
    width = max(2, round(3 * unit))
    font = _font(max(12, round(22 * unit)))
    for f in faces:
        group = f["age_group"]
        colour = PALETTE[group_names.index(group) % len(PALETTE)] if group in group_names else "#FFFFFF"
        box = (f["left"], f["top"], f["right"], f["bottom"])
        draw.rectangle(box, outline=colour, width=width)
        label = f"{group} ~{f['age']:.0f}"
        tb = draw.textbbox((0, 0), label, font=font)
        tw, th = tb[2] - tb[0], tb[3] - tb[1]
        x = min(max(0, box[0]), max(0, img.width - tw - 2 * width))
        y = box[1] - th - 2 * width if box[1] - th - 2 * width >= 0 else box[3]
        draw.rectangle((x, y, x + tw + 2 * width, y + th + 2 * width), fill=colour)
        draw.text((x + width - tb[0], y + width - tb[1]), label, fill="black", font=font)
    out = Path(out)
    img.save(out, quality=92)
    return out
