#!/usr/bin/env bash
# Packs what bench/gpu.py needs on the GPU machine of the `device` tool into .dev/ (git-ignored), in
# two parts of under 64 MiB each (the most one call carries): .dev/a for call1.sh, .dev/b for call2.sh.
# The machine reaches no package registry and has JAX with CUDA, numpy and Pillow but not phototag's
# other packages, so they go as Python 3.12 wheels. UTKFace test-split faces (research use only)
# go along to make the photo library there: .dev/ must never be committed.
#   bash bench/device/prepare.sh ../shared/datasets/utkface
set -euo pipefail
UTK=${1:?usage: prepare.sh UTKFACE_FOLDER}
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
rm -rf .dev/a .dev/b && mkdir -p .dev/a/whl .dev/b
ver() { $PY -c "import importlib.metadata as m; print(m.version('$1'))"; }
plat="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
get() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $plat -d "$1" "${@:2}"; }
get .dev/a/whl "dlib-bin==$(ver dlib-bin)" "keras==$(ver keras)" "optree==$(ver optree)" "namex==$(ver namex)" \
    "piexif==$(ver piexif)" "sqlite-utils==$(ver sqlite-utils)" "sqlite-fts4==$(ver sqlite-fts4)" \
    "click-default-group==$(ver click-default-group)" "typer==$(ver typer)" "click==$(ver click)" \
    "pydantic==$(ver pydantic)" "pydantic-core==$(ver pydantic-core)" "annotated-types==$(ver annotated-types)" \
    "typing-inspection==$(ver typing-inspection)" "platformdirs==$(ver platformdirs)" "faiss-cpu==$(ver faiss-cpu)"
# dlib's three model files a scan uses (not the 100 MB 68-point one), as face_recognition_models lays them out
frm=$($PY -c "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('face_recognition_models').origin))")
tmp=$(mktemp -d); mkdir -p "$tmp/face_recognition_models/models"
cp "$frm/__init__.py" "$tmp/face_recognition_models/"
cp "$frm"/models/{dlib_face_recognition_resnet_model_v1,mmod_human_face_detector,shape_predictor_5_face_landmarks}.dat \
   "$tmp/face_recognition_models/models/"
tar -C "$tmp" -cf - face_recognition_models | xz -T0 -6 > .dev/a/frm.tar.xz
# 700 test-split faces for bench.make_library
mkdir -p "$tmp/faces"
$PY - "$UTK" "$tmp/faces" <<'PY'
import random, shutil, sys
from pathlib import Path
sys.path.insert(0, ".")
from bench.make_library import test_faces
faces = test_faces(Path(sys.argv[1]))
random.Random(1).shuffle(faces)
for p, _ in faces[:700]:
    shutil.copy(p, sys.argv[2])
PY
tar -C "$tmp" -cf .dev/a/faces.tar faces
# call 2: LiteRT's interpreter alone (the wheel is 22 MB), the .tflite files and the age network's Keras copy
get "$tmp" "ai-edge-litert==$(ver ai-edge-litert)"
(cd "$tmp" && unzip -q ai_edge_litert-*.whl 'ai_edge_litert/__init__.py' 'ai_edge_litert/interpreter.py' \
    'ai_edge_litert/metrics_interface.py' 'ai_edge_litert/metrics_portable.py' \
    'ai_edge_litert/_pywrap_litert_interpreter_wrapper.so' 'ai_edge_litert/libpywrap_litert_common.so' \
    && tar -cf - ai_edge_litert | xz -T0 -6) > .dev/b/litert.tar.xz
tar -cf - models/age-dlib-resnet.tflite models/dlib-face-descriptor.tflite models/dlib-face-detector.tflite \
    | xz -T0 -6 > .dev/b/tflite.tar.xz
tar -cf - models/age-dlib-resnet.keras | xz -T0 -6 > .dev/b/keras.tar.xz
rm -rf "$tmp"
du -sh .dev/a .dev/b
