"""Detection settings against a benchmark library's truth: recall by face width, precision, seconds.

    python -m bench.tune_detection --library /tmp/library [--n 40]

Chose the defaults of `phototag scan` and `--thorough` (see docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench.run import Accuracy

CONFIGS = [  # (detect_size, upsample, verify below this HOG score; None: verify none, 9: verify all)
    (1600, 1, 9), (2000, 0, 9), (2000, 0, 0.5), (2000, 0, None), (2400, 0, 0.5), (2400, 1, 0.5), (3000, 0, 0.5),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", type=Path, required=True)
    ap.add_argument("--n", type=int, default=40)
    args = ap.parse_args(argv)
    from phototag import faces
    from phototag.runtime import face_recognition_api
    from phototag.scan.decode import decode

    api = face_recognition_api()
    truth = json.loads((args.library / "truth.json").read_text())
    names = sorted(truth["photos"])[: args.n]
    for size, up, below in CONFIGS:
        acc, hog_s, cnn_s, verified = Accuracy(), 0.0, 0.0, 0
        for rel in names:
            d = decode(args.library / rel, size)
            img = np.ascontiguousarray(d.pixels)
            c = time.perf_counter()
            rects, scores, _ = api.face_detector.run(img, up, 0.0)
            hog_s += time.perf_counter() - c
            found = []
            for r, s in zip(rects, scores):
                b = faces.Box(max(0, r.top()), min(img.shape[1], r.right()), min(img.shape[0], r.bottom()),
                              max(0, r.left()))
                if b.width <= 0 or min(b.width, b.height) < 40 / d.scale:
                    continue
                if below is not None and s < below:
                    c = time.perf_counter()
                    ok = faces.verify(img, b) > 0
                    cnn_s += time.perf_counter() - c
                    verified += 1
                    if not ok:
                        continue
                fb = b.scaled(d.scale, d.width, d.height)
                found.append((fb.as_list(), 0.0))
            acc.add(truth["photos"][rel]["faces"], found)
        s = acc.summary()
        print(f"size {size} up {up} verify<{below}: hog {hog_s / len(names):.3f}s cnn {cnn_s / len(names):.3f}s "
              f"({verified} checked) recall>=160 {s['recall_160']} >=80 {s['recall_80']} "
              f"precision>=160 {s['precision_160']} all {s['precision']} by width {s['recall_by_width']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
