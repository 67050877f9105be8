"""The face engine gives dlib's results: descriptors within 1e-3 (L2) and the same CNN detections, on
real faces (the astronaut, composites of it, and wider-dev's photos when ../shared is there)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from phototag import faces

from phototag.faces import engine
from phototag.runtime import pad_batch

from phototag.faces import mmod
from phototag.faces.dlib_dat import read_dat
from phototag.errors import ModelError
from phototag.ages.model import MODELS_DIR

from .conftest import ROOT, group_photo

WIDER = ROOT.parent / "shared" / "datasets" / "wider-dev"
HAS_KERAS_BACKEND = any(importlib.util.find_spec(m) is not None for m in ("tensorflow", "jax"))


@pytest.fixture(scope="module")
def litert() -> engine.LiteRTEngine:
    return engine.LiteRTEngine(threads=2)


@pytest.fixture(scope="module")
def reference() -> engine.DlibEngine:
    return engine.DlibEngine()


def _chips(astronaut: np.ndarray) -> list[np.ndarray]:
    """Real face chips: the astronaut as dlib aligns her, mirrored, darker, in grey, and from a smaller copy."""
    box = faces.detect(astronaut)[0]
    chip = faces.align_and_crop(astronaut, box).chip
    small = np.asarray(Image.fromarray(astronaut).resize((256, 256), Image.BILINEAR))
    small_chip = faces.align_and_crop(small, faces.detect(small, upsample=1)[0]).chip
    grey = np.repeat(chip.mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8)
    return [chip, np.ascontiguousarray(chip[:, ::-1]), (chip * 0.5).astype(np.uint8), grey, small_chip]


def _dets(found: list[mmod.Detection]) -> list[tuple[int, int, int, int]]:
    return [(d.left, d.top, d.right, d.bottom) for d in found]


def _same_detections(got: list[mmod.Detection], want: list[mmod.Detection]) -> None:
    assert _dets(got) == _dets(want)
    assert np.allclose([d.confidence for d in got], [d.confidence for d in want], atol=1e-3)


def test_the_dat_reader_finds_every_layer_of_both_networks():
    src = engine.source_files()
    desc = read_dat(src["descriptor"])
    kinds = [layer.kind for layer in desc]
    assert kinds.count("con") == 29 and kinds.count("add_prev") == 14 and kinds.count("avg_pool") == 5
    assert desc[0].params["size"] == (150, 150) and desc[-2].weights["weights"].shape == (256, 128)
    det = read_dat(src["detector"])
    opts = engine.detector_options_dict(det)
    assert opts["window"] == [80, 80] and (opts["scale"], opts["offset"]) == (8, 14)
    assert [layer.weights["filters"].shape[0] for layer in det if layer.kind == "con"] == [16, 32, 32, 45, 45, 45, 1]


def test_a_damaged_dat_file_is_one_clear_error(tmp_path):
    src = engine.source_files()["detector"]
    cut = tmp_path / "cut.dat"
    cut.write_bytes(src.read_bytes()[:300_000])
    with pytest.raises(ModelError, match=r"cut\.dat: not a dlib network file we can read"):
        read_dat(cut)


def test_descriptors_equal_dlibs_on_real_faces(astronaut, litert, reference):
    chips = _chips(astronaut)
    got, want = litert.describe(chips), reference.describe(chips)
    assert got.shape == (len(chips), 128) and got.dtype == np.float32
    assert np.linalg.norm(got - want, axis=1).max() < 1e-3
    # and the differences are real: the chips' descriptors are not all the same
    assert np.linalg.norm(want[0] - want[4]) > 0.05


def test_descriptors_of_many_photos_come_in_one_batched_call(astronaut, litert):
    chips = _chips(astronaut) * 20  # 100 faces, more than one batch
    one_by_one = np.concatenate([litert.describe([c]) for c in chips[:5]])
    batched = litert.describe(chips, batch_size=32)
    assert batched.shape == (100, 128)
    assert np.abs(batched[:5] - one_by_one).max() < 1e-5


def test_detections_equal_dlibs_on_the_astronaut_and_composites(astronaut, litert, reference):
    group = group_photo(astronaut, n=3)
    # faces at three sizes, so detections come from several pyramid levels
    canvas = np.full((900, 1400, 3), 90, np.uint8)
    head = astronaut[20:260, 120:330]
    for i, f in enumerate((1.0, 1.5, 2.2)):
        h = np.asarray(Image.fromarray(head).resize((round(210 * f), round(240 * f)), Image.BILINEAR))
        canvas[50 : 50 + h.shape[0], 40 + 420 * i : 40 + 420 * i + h.shape[1]] = h
    for image in (astronaut, group, canvas):
        got, want = litert.detect([image])[0], reference.detect([image])[0]
        assert got, "dlib finds faces here"
        _same_detections(got, want)
    assert len(litert.detect([canvas])[0]) == 3


def _iou(a: mmod.Detection, b: mmod.Detection) -> float:
    iw = min(a.right, b.right) - max(a.left, b.left) + 1
    ih = min(a.bottom, b.bottom) - max(a.top, b.top) + 1
    inter = max(iw, 0) * max(ih, 0)
    area = lambda d: (d.right - d.left + 1) * (d.bottom - d.top + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def test_upsampled_detection_matches_dlibs(astronaut, litert, reference):
    """dlib doubles the image with SIMD float code before detecting; ours may round a pixel the other
    way, so here the issue's bar applies: the same faces, IoU 0.9 or more, scores within 0.05."""
    for side in (200, 256):
        small = np.asarray(Image.fromarray(astronaut).resize((side, side), Image.BILINEAR))
        assert litert.detect([small], upsample=0)[0] == []  # her face is too small for the CNN at this size
        got, want = litert.detect([small], upsample=1)[0], reference.detect([small], upsample=1)[0]
        assert len(got) == len(want) == 1
        assert _iou(got[0], want[0]) >= 0.9 and abs(got[0].confidence - want[0].confidence) < 0.05


def test_a_blank_or_tiny_image_has_no_faces(litert):
    assert litert.detect([np.zeros((3, 3, 3), np.uint8), np.full((400, 300, 3), 128, np.uint8)]) == [[], []]


@pytest.mark.skipif(not WIDER.is_dir(), reason="../shared/datasets/wider-dev is not here")
def test_detections_equal_dlibs_on_real_wider_photos(litert, reference):
    for folder in ("1--Handshaking", "13--Interview"):
        for path in sorted((WIDER / "images" / folder).glob("*.jpg"))[:2]:
            image = np.asarray(Image.open(path).convert("RGB"))
            _same_detections(litert.detect([image])[0], reference.detect([image])[0])


@pytest.mark.skipif(not HAS_KERAS_BACKEND, reason="Keras needs TensorFlow or JAX (the train extra)")
def test_the_keras_engine_equals_dlib(astronaut, reference):
    keras_engine = engine.KerasEngine()
    chips = _chips(astronaut)[:2]
    assert np.linalg.norm(keras_engine.describe(chips) - reference.describe(chips), axis=1).max() < 1e-3
    _same_detections(keras_engine.detect([astronaut])[0], reference.detect([astronaut])[0])
    # three chips run padded to a batch of four (JAX compiles once per shape): the padding changes nothing
    three = keras_engine.describe(chips[:1] * 3)
    assert three.shape == (3, 128) and np.abs(three - keras_engine.describe(chips[:1])).max() < 1e-5


def test_batches_are_padded_to_a_few_sizes():
    sizes = {n: len(pad_batch(np.ones((n, 2), np.float32), 64)) for n in (1, 2, 3, 5, 33, 64, 65, 130)}
    assert sizes == {1: 1, 2: 2, 3: 4, 5: 8, 33: 64, 64: 64, 65: 128, 130: 192}
    padded = pad_batch(np.ones((3, 2), np.float32), 64)
    assert padded[:3].tolist() == [[1, 1]] * 3 and not padded[3:].any()


def test_the_converted_files_are_found_checked_and_used():
    card = engine.load_card()
    assert card["sources"]["descriptor"]["sha256"] == engine.file_sha256(engine.source_files()["descriptor"])
    for entry in card["files"].values():
        assert (MODELS_DIR / entry["file"]).stat().st_size < 25_000_000
    engine.get_engine.cache_clear()
    try:
        assert isinstance(engine.get_engine(), engine.LiteRTEngine)
        assert isinstance(faces.face_engine(), engine.LiteRTEngine)
    finally:
        engine.get_engine.cache_clear()


def _copy_engine(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    for name in (engine.CARD_FILE, engine.DESCRIPTOR_FILE, engine.DETECTOR_FILE):
        shutil.copy(MODELS_DIR / name, folder / name)
    return folder


def test_a_damaged_converted_file_is_refused_with_a_clear_message(tmp_path):
    folder = _copy_engine(tmp_path)
    assert isinstance(engine.LiteRTEngine(folder), engine.LiteRTEngine)  # the copy itself is fine
    blob = bytearray((folder / engine.DESCRIPTOR_FILE).read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (folder / engine.DESCRIPTOR_FILE).write_bytes(bytes(blob))
    with pytest.raises(ModelError) as err:
        engine.LiteRTEngine(folder)
    assert str(err.value) == (f"{folder / engine.DESCRIPTOR_FILE}: damaged (its checksum is not the one on its card); "
                              "make it again with `python -m training.convert_dlib` (needs the train extra)")


def test_a_missing_converted_file_is_refused_with_a_clear_message(tmp_path):
    folder = _copy_engine(tmp_path)
    (folder / engine.DETECTOR_FILE).unlink()
    with pytest.raises(ModelError, match=r"dlib-face-detector\.tflite: missing; make it again with"):
        engine.load_card(folder)
    (folder / engine.CARD_FILE).unlink()
    with pytest.raises(ModelError, match=r"the converted face engine is missing"):
        engine.load_card(folder)


def test_without_converted_files_the_scan_falls_back_to_dlib_with_one_warning(tmp_path, astronaut, capsys):
    folder = _copy_engine(tmp_path)
    (folder / engine.DESCRIPTOR_FILE).write_bytes(b"not a model")
    engine.get_engine.cache_clear()
    try:
        fallback = engine.get_engine("auto", folder=folder)
        again = engine.get_engine("auto", folder=folder)
    finally:
        engine.get_engine.cache_clear()
    assert isinstance(fallback, engine.DlibEngine) and again is fallback
    err = capsys.readouterr().err
    assert err.count("Warning: ") == 1
    assert "dlib-face-descriptor.tflite: damaged" in err and "using dlib, which gives the same faces more slowly" in err
    chips = _chips(astronaut)[:1]
    assert np.linalg.norm(fallback.describe(chips) - engine.LiteRTEngine().describe(chips)) < 1e-3


def test_an_unknown_engine_name_is_an_error():
    with pytest.raises(ModelError, match="unknown face engine 'cuda': use auto, litert, keras or dlib"):
        engine.get_engine("cuda")


def test_a_scan_never_imports_tensorflow(tmp_path, astronaut):
    """The default engine and the age head both run under LiteRT: a scan imports no TensorFlow or Keras."""
    photo = tmp_path / "photos" / "astronaut.jpg"
    photo.parent.mkdir()
    Image.fromarray(astronaut).save(photo, quality=92)
    code = (
        "import sys, json\n"
        "from pathlib import Path\n"
        "from phototag.scan.pipeline import scan, ScanOptions\n"
        "from phototag.store.index import Index\n"
        "from phototag.ages.model import load_model\n"
        "from phototag.tags.exif import ExifWriter\n"
        f"root = Path({str(tmp_path)!r})\n"
        "with Index(root / 'index.db') as index:\n"
        "    s = scan([root / 'photos'], index=index, model=load_model(), writer=ExifWriter(),"
        " options=ScanOptions(workers=1))\n"
        "print(json.dumps({'faces': s.faces, 'tf': 'tensorflow' in sys.modules, 'keras': 'keras' in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"faces": 1, "tf": False, "keras": False}
