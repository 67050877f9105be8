"""Device call 1's check of the GPU path below the scan: dlib's landmarks and HOG, and the Keras face
engine under JAX, on real library photos; a first pass (compiling) and a second (warm), timed."""

import sys
import time
from pathlib import Path

from phototag import faces
from phototag.runtime import find_gpu
from phototag.scan.decode import decode

if __name__ == "__main__":
    print("find_gpu:", find_gpu())
    faces.use_engine("keras")
    t = time.perf_counter()
    faces.warm()
    print(f"warm (engine built): {time.perf_counter() - t:.2f}s")
    pixels = [decode(str(p), 1600).pixels for p in sorted(Path(sys.argv[1]).rglob("*.jpg"))[:12]]
    for rnd in range(2):
        t, n, chips = time.perf_counter(), 0, []
        for px in pixels:
            boxes = faces.detect(px)
            n += len(boxes)
            chips += [faces.align_and_crop(px, b).chip for b in boxes]
        td = time.perf_counter() - t
        t = time.perf_counter()
        faces.describe(chips)
        print(f"pass {rnd}: detect and align {td / len(pixels):.3f}s a photo ({n} faces), "
              f"describe {time.perf_counter() - t:.3f}s for {len(chips)}")
