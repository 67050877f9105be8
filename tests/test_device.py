"""`scan --device`: the networks under Keras (a GPU's runtime) give LiteRT's faces and ages.

Run here on the CPU, under Keras on TensorFlow and on JAX (both in the train extra): the Keras graph is
the one a GPU runs, and JAX is what ran it on the GPU measured. A machine with no GPU answers
`--device gpu` with one Error line; auto is the CPU.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from phototag import faces
from phototag.ages.model import load_model
from phototag.cli import app
from phototag.errors import ModelError
from phototag.runtime import MODELS_DIR, find_gpu, runtime_for_device
from phototag.scan.pipeline import ScanOptions, scan
from phototag.store.index import Index

from .conftest import ASTRONAUT_BOX_SCAN, ROOT, group_photo, save_jpeg
from .people_photos import make_family

needs_keras = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None and importlib.util.find_spec("jax") is None,
                                 reason="Keras needs a backend: the train extra (uv sync --extra train)")
runner = CliRunner()


def _chips(astronaut: np.ndarray) -> np.ndarray:
    box = faces.Box(*ASTRONAUT_BOX_SCAN)
    chip = faces.align_and_crop(astronaut, box).chip
    dark = (chip * 0.5).astype(np.uint8)
    return np.stack([chip, dark, chip[::-1], np.ascontiguousarray(chip.transpose(1, 0, 2))])


@needs_keras
def test_the_keras_copy_of_the_age_network_gives_the_tflites_ages(astronaut):
    chips = _chips(astronaut)
    lite, ker = load_model(runtime="litert"), load_model(runtime="keras")
    a, b = lite.predict_chips(chips), ker.predict_chips(chips)
    assert lite.runtime == "litert" and ker.runtime in ("tf.function", "keras")
    assert np.abs(a.distribution - b.distribution).max() <= 1e-4
    assert np.abs(a.female - b.female).max() <= 1e-4
    assert lite.model_id == ker.model_id  # the same network: an index scanned by either is not redone


def test_a_keras_copy_that_is_not_the_cards_is_refused(tmp_path):
    for f in MODELS_DIR.glob("age-dlib-resnet.*"):
        shutil.copy(f, tmp_path / f.name)
    keras_file = tmp_path / "age-dlib-resnet.keras"
    keras_file.write_bytes(keras_file.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelError, match="age-dlib-resnet.keras: not the file its card describes"):
        load_model(tmp_path / "age-dlib-resnet", runtime="keras")
    keras_file.unlink()
    with pytest.raises(ModelError, match="no Keras copy of this model"):
        load_model(tmp_path / "age-dlib-resnet", runtime="keras")
    assert load_model(tmp_path / "age-dlib-resnet").card["name"] == "age-dlib-resnet"  # LiteRT still works


@needs_keras
@pytest.mark.slow
def test_a_scan_on_the_keras_runtime_finds_litert_faces_and_ages(tmp_path, astronaut):
    lib = make_family(tmp_path / "lib", astronaut)
    save_jpeg(lib / "group.jpg", group_photo(astronaut, 3))
    model = load_model()
    for runtime in ("litert", "keras"):
        with Index(tmp_path / f"{runtime}.db") as ix:
            s = scan([lib], ix, model, options=ScanOptions(workers=1, runtime=runtime))
        assert s.exit_code == 0 and s.faces == 11, s.line()
    _same_faces_and_ages(tmp_path / "litert.db", tmp_path / "keras.db")
    assert faces.face_engine().name != "keras"  # the in-process engine was put back


def _same_faces_and_ages(a_db, b_db) -> None:
    rows = []
    for db in (a_db, b_db):
        con = sqlite3.connect(db)
        rows.append({(p, i): (t, r, b, l, age) for p, i, t, r, b, l, age in con.execute(
            "SELECT p.path, f.idx, f.top, f.right, f.bottom, f.left, f.age_photo FROM faces f "
            "JOIN photos p ON p.id = f.photo_id")})
        con.close()
    assert rows[0] and rows[0].keys() == rows[1].keys()
    for key, a in rows[0].items():
        b = rows[1][key]
        assert a[:4] == b[:4], key
        assert abs(a[4] - b[4]) <= 1e-3, key


_JAX_SCAN = """
import json, sys
from pathlib import Path
from phototag.ages.model import load_model
from phototag.scan.pipeline import ScanOptions, scan
from phototag.store.index import Index
import keras
with Index(Path(sys.argv[2])) as ix:
    s = scan([Path(sys.argv[1])], ix, load_model(runtime="keras"), options=ScanOptions(workers=1, runtime="keras"))
print(json.dumps({"backend": keras.backend.backend(), "faces": s.faces, "exit": s.exit_code}))
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is in the train extra (uv sync --extra train)")
@pytest.mark.slow
def test_the_gpu_runtime_under_jax_finds_litert_faces_and_ages(tmp_path, astronaut):
    """What `--device gpu` runs on a GPU, run here on the CPU: Keras on JAX, the detector's padded and
    masked tensors, padded batches, and JAX's compiles kept in phototag's cache folder."""
    lib = make_family(tmp_path / "lib", astronaut)
    save_jpeg(lib / "group.jpg", group_photo(astronaut, 3))
    with Index(tmp_path / "litert.db") as ix:
        assert scan([lib], ix, load_model(), options=ScanOptions(workers=1)).faces == 11
    script = tmp_path / "jax_scan.py"
    script.write_text(_JAX_SCAN)
    env = {**os.environ, "KERAS_BACKEND": "jax", "XDG_CACHE_HOME": str(tmp_path / "cache"), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, str(script), str(lib), str(tmp_path / "jax.db")], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"backend": "jax", "faces": 11, "exit": 0}
    _same_faces_and_ages(tmp_path / "litert.db", tmp_path / "jax.db")
    assert any((tmp_path / "cache" / "phototag" / "jax").iterdir())  # the compiles were kept


@pytest.mark.skipif(find_gpu() is not None, reason="this machine has a GPU")
def test_device_gpu_without_a_gpu_is_one_error_line(tmp_path, astronaut):
    save_jpeg(tmp_path / "lib" / "a.jpg", astronaut)
    r = runner.invoke(app, ["scan", str(tmp_path / "lib"), "--db", str(tmp_path / "i.db"), "--device", "gpu"])
    assert r.exit_code == 2
    assert r.stderr == ("Error: --device gpu: no GPU that Keras can use (an NVIDIA GPU, and Keras with JAX or "
                        "TensorFlow built for CUDA: uv sync --extra train, or pip install 'jax[cuda12]' keras); "
                        "--device cpu runs everything on the CPU\n")
    assert runtime_for_device("auto") == "litert" and runtime_for_device("cpu") == "litert"
    r = runner.invoke(app, ["scan", str(tmp_path / "lib"), "--db", str(tmp_path / "i.db"), "--device", "auto",
                            "--workers", "1"])
    assert r.exit_code == 0, r.output


def test_an_unknown_device_and_a_local_ray_without_a_gpu_are_refused(tmp_path, astronaut):
    save_jpeg(tmp_path / "lib" / "a.jpg", astronaut)
    base = ["scan", str(tmp_path / "lib"), "--db", str(tmp_path / "i.db")]
    r = runner.invoke(app, [*base, "--device", "tpu"])
    assert r.exit_code == 2 and r.stderr == "Error: unknown device 'tpu': use auto, cpu or gpu\n"
    if importlib.util.find_spec("ray") is not None:
        r = runner.invoke(app, [*base, "--device", "tpu", "--ray", "local"])
        assert r.exit_code == 2 and r.stderr == "Error: unknown device 'tpu': use auto, cpu or gpu\n"
        if find_gpu() is None:  # --ray local is this machine: the same line as without Ray, before Ray starts
            r = runner.invoke(app, [*base, "--device", "gpu", "--ray", "local"])
            assert r.exit_code == 2
            assert r.stderr == ("Error: --device gpu: no GPU that Keras can use (an NVIDIA GPU, and Keras with JAX "
                                "or TensorFlow built for CUDA: uv sync --extra train, or pip install 'jax[cuda12]' "
                                "keras); --device cpu runs everything on the CPU\n")
    assert not (tmp_path / "i.db").exists()


def test_device_auto_is_the_cpu_and_never_probes_for_a_gpu(monkeypatch):
    """A GPU scan measured slower than the CPU's (bench/results/gpu.json): auto stays on the CPU."""
    import phototag.runtime as rt

    def probe():
        raise AssertionError("probed for a GPU")

    monkeypatch.setattr(rt, "find_gpu", probe)
    assert rt.runtime_for_device("auto") == "litert" and rt.runtime_for_device("cpu") == "litert"
    with pytest.raises(AssertionError, match="probed for a GPU"):
        rt.runtime_for_device("gpu")
