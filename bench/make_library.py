"""Write a benchmark library of realistic "family photos" with a ground-truth file.

    python -m bench.make_library --faces ../shared/datasets/utkface --out /tmp/library --n 200

Large JPEGs (mostly 4000x3000, some 6000x4000 and portrait), 0 to 8 real faces each from a face
dataset folder (UTKFace names carry the age), pasted at 60 to 800 px with a feathered elliptical
edge onto varied backgrounds, real EXIF (camera, DateTimeOriginal, some with orientation 6 or 8 and
the pixels stored rotated), in year/month folders. `truth.json` holds every face's box, as the photo
is shown, and its true age. Faces come from the model's held-out test split, so the age error here
is comparable with the model card's.

The output is made from UTKFace (non-commercial research only): keep it out of git.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import piexif
from PIL import Image, ImageDraw, ImageFilter

# Where dlib's HOG box sits in a UTKFace chip (200 px), measured on 95 chips: (top, right, bottom,
# left) as fractions. The ground-truth box of a pasted chip is this box, scaled and moved.
CHIP_BOX = (0.047, 0.890, 0.882, 0.053)
CAMERAS = [(b"Canon", b"Canon EOS 80D"), (b"Apple", b"iPhone 12"), (b"SONY", b"ILCE-7M3"),
           (b"samsung", b"SM-G991B"), (b"NIKON CORPORATION", b"NIKON D7500"), (b"FUJIFILM", b"X-T30")]
SIZES = [((4000, 3000), 0.6), ((3000, 4000), 0.2), ((6000, 4000), 0.2)]  # as shown: (w, h), share


def test_faces(folder: Path, limit: int | None = None) -> list[tuple[Path, int]]:
    """UTKFace files of the model's test split, with their ages."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from training.readers import split_of
    from training.readers.utkface import parse_name

    out = []
    for p in sorted(folder.iterdir()):
        parsed = parse_name(p.name)
        if isinstance(parsed, str) or split_of(p.name) != "test":
            continue
        out.append((p, parsed[0]))
    if not out:
        raise SystemExit(f"{folder}: no UTKFace test-split faces found (names age_gender_race_date.jpg.chip.jpg)")
    return out[:limit] if limit else out


def background(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """A varied backdrop: a gradient, blurred blobs and shapes, sensor-like noise."""
    w, h = size
    small = (max(8, w // 16), max(8, h // 16))
    top = np.array([rng.randrange(256) for _ in range(3)], np.float32)
    bottom = np.array([rng.randrange(256) for _ in range(3)], np.float32)
    t = np.linspace(0, 1, small[1], dtype=np.float32)[:, None, None]
    arr = (top * (1 - t) + bottom * t) * np.ones((1, small[0], 1), np.float32)
    im = Image.fromarray(arr.astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(rng.randrange(3, 12)):
        x0, y0 = rng.randrange(small[0]), rng.randrange(small[1])
        x1, y1 = x0 + rng.randrange(4, small[0] // 2), y0 + rng.randrange(4, small[1] // 2)
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 3))).resize(size, Image.BILINEAR)
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0, 4, (h // 4, w // 4, 1)).astype(np.float32)
    arr = np.asarray(im, np.float32) + np.repeat(np.repeat(noise, 4, 0), 4, 1)[:h, :w]
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _mask(size: int) -> Image.Image:
    """An ellipse with a feathered rim: the chip's square corners never show."""
    m = Image.new("L", (size, size), 0)
    inset = size * 0.02
    ImageDraw.Draw(m).ellipse((inset, inset, size - inset, size - inset), fill=255)
    return m.filter(ImageFilter.GaussianBlur(size * 0.03))


def face_width(rng: random.Random) -> int:
    """Face widths from 60 to 800 px, log-uniform: as many small faces as large ones."""
    return int(round(np.exp(rng.uniform(np.log(60), np.log(800)))))


def make_photo(rng: random.Random, faces: list[tuple[Path, int]], size: tuple[int, int]) -> tuple[Image.Image, list]:
    """The photo as shown, and its faces' ground truth."""
    im = background(rng, size)
    w, h = size
    placed: list[tuple[int, int, int, int]] = []
    truth = []
    for path, age in faces:
        fw = min(face_width(rng), int(min(w, h) * 0.45))
        chip = int(round(fw / (CHIP_BOX[1] - CHIP_BOX[3])))
        for _ in range(50):  # somewhere it overlaps no other face
            x, y = rng.randrange(0, w - chip), rng.randrange(0, h - chip)
            if all(x + chip < a or a + c < x or y + chip < b or b + c < y for a, b, c, _ in placed):
                break
        else:
            continue
        face = Image.open(path).convert("RGB").resize((chip, chip), Image.LANCZOS)
        im.paste(face, (x, y), _mask(chip))
        placed.append((x, y, chip, chip))
        top, right, bottom, left = CHIP_BOX
        box = [y + round(top * chip), x + round(right * chip), y + round(bottom * chip), x + round(left * chip)]
        truth.append({"box": box, "age": age, "width": box[1] - box[3], "source": path.name})
    return im, truth


def exif(rng: random.Random, taken: str, orientation: int) -> bytes:
    make, model = rng.choice(CAMERAS)
    zeroth = {piexif.ImageIFD.Make: make, piexif.ImageIFD.Model: model, piexif.ImageIFD.Orientation: orientation}
    return piexif.dump({"0th": zeroth, "Exif": {piexif.ExifIFD.DateTimeOriginal: taken.encode()}, "GPS": {},
                        "1st": {}, "thumbnail": None})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=Path, required=True, help="A UTKFace folder.")
    ap.add_argument("--out", type=Path, required=True, help="Where to write the library (created).")
    ap.add_argument("--n", type=int, default=200, help="How many photos.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quality", type=int, default=90, help="JPEG quality.")
    ap.add_argument("--start", type=int, default=0, help="Number of the first photo (IMG_NNNNN).")
    ap.add_argument("--truth", default="truth.json", help="Name of the ground-truth file in --out.")
    args = ap.parse_args(argv)

    rng = random.Random(args.seed)
    pool = test_faces(args.faces)
    args.out.mkdir(parents=True, exist_ok=True)
    truth: dict[str, dict] = {}
    t0 = time.monotonic()
    for i in range(args.n):
        size = rng.choices([s for s, _ in SIZES], [p for _, p in SIZES])[0]
        n_faces = rng.choices(range(9), [10, 18, 20, 16, 12, 9, 7, 5, 3])[0]
        photo, faces = make_photo(rng, rng.sample(pool, n_faces), size)
        year, month, day = rng.randrange(2005, 2025), rng.randrange(1, 13), rng.randrange(1, 29)
        taken = f"{year}:{month:02d}:{day:02d} {rng.randrange(8, 20):02d}:{rng.randrange(60):02d}:00"
        orientation = rng.choices([1, 6, 8], [75, 15, 10])[0]
        # Stored pixels: what a camera held sideways writes; the viewer turns them back.
        stored = photo.transpose(Image.Transpose.ROTATE_90) if orientation == 6 else \
            photo.transpose(Image.Transpose.ROTATE_270) if orientation == 8 else photo
        rel = Path(f"{year}") / f"{month:02d}" / f"IMG_{args.start + i:05d}.jpg"
        (args.out / rel).parent.mkdir(parents=True, exist_ok=True)
        stored.save(args.out / rel, "JPEG", quality=args.quality, exif=exif(rng, taken, orientation))
        truth[str(rel)] = {"width": size[0], "height": size[1], "orientation": orientation, "faces": faces}
        if (i + 1) % 25 == 0:
            print(f"{i + 1}/{args.n} photos, {time.monotonic() - t0:.0f}s", file=sys.stderr)
    (args.out / args.truth).write_text(json.dumps({"seed": args.seed, "photos": truth}, indent=1))
    n_faces = sum(len(p["faces"]) for p in truth.values())
    print(f"{args.n} photos, {n_faces} faces in {args.out} ({time.monotonic() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
