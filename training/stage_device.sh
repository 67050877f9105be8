#!/usr/bin/env bash
# Stage what training/finetune.py needs on a GPU machine that has neither dlib, the data sets nor
# Keras, within its 64 MiB transfer: every UTKFace train face as a WebP chip at quality 80 (17,112
# faces, 37 MB), fgnet-dev's chips (1.5 MB), dlib's descriptor weights as float16 (11 MB) and the
# Keras wheels. Everything lands in .ft/ and .whl/, which git ignores: the chips are research data.
#
#   training/stage_device.sh [DATASETS]        # default ../shared/datasets
#
# The code and these 53 MB fit the transfer only without the tracked .tflite files (50 MB), which the
# device does not need: `git rm --cached -q models/*.tflite; echo '/models/*.tflite' >> .git/info/exclude`
# before, `git reset -q HEAD models/` and that line removed after.
# Then, on the device (`run`, carry [".ft", ".whl"]), in two calls under its time limit:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
#   KERAS_BACKEND=jax python3 -m training.finetune --dat .ft/dlib-resnet.npz --train .ft/utk-train.npz \
#       --extra .ft/fgnet.npz --out $OUT/ft --epochs 25 --mixed-bf16 --folds-run 0,1,2,3,4 --no-final
#   ... the same with --folds-run '' (the final network only)
# and here: python -m training.ship --run CALL1 CALL2 ... (README, Model).
set -euo pipefail
data=${1:-../shared/datasets}
mkdir -p .ft .whl
uv run --extra train python -m training.chips "utkface:$data/utkface" .ft/utk-train.npz --split train --quality 80
uv run --extra train python -m training.chips "fgnet:$data/fgnet-dev" .ft/fgnet.npz
uv run --extra train python -m training.finetune --pack-dat .ft/dlib-resnet.npz
for wheel in keras==3.15.1 namex optree; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$wheel"
done
du -ch .ft .whl | tail -1
