import json
import shutil

import numpy as np
import pytest

from phototag.errors import ModelError
from phototag.ages.model import MODELS_DIR, DEFAULT_MODEL, load_model

MLP = "age-dlib-mlp"  # the previous default: a head on dlib's descriptor, still shipped and loadable


@pytest.mark.parametrize("name", [DEFAULT_MODEL, MLP])
def test_the_shipped_models_and_their_cards(name):
    import hashlib

    m = load_model(MODELS_DIR / name)
    card = m.card
    weights = MODELS_DIR / card["weights"]
    assert weights.stat().st_size < 25 * 1024 * 1024
    for key in ("preprocessing", "input", "outputs", "training", "metrics", "hardware", "git_commit", "config"):
        assert key in card, key
    assert card["training"]["split"].startswith("sha256(record key) % 100")
    assert isinstance(card["config"]["seed"], int)
    assert card["metrics"]["test"]["faces"] > 1000
    assert card["metrics"]["crossval"]["fgnet"]["faces"] == 474
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == card["weights_sha256"]


def test_the_default_reads_chips_and_the_previous_model_descriptors():
    assert load_model().input_kind == "chip" and load_model().card["input"]["dtype"] == "uint8"
    assert load_model(MODELS_DIR / MLP).input_kind == "descriptor"


def _real_chips(astronaut) -> np.ndarray:
    """Aligned chips of real faces: the astronaut, mirrored, shifted, in grey."""
    from PIL import Image

    from phototag import faces
    imgs = [astronaut, astronaut[:, ::-1], np.roll(astronaut, 9, axis=0),
            np.asarray(Image.fromarray(astronaut).convert("L").convert("RGB"))]
    chips = []
    for img in imgs:
        img = np.ascontiguousarray(img)
        box = faces.detect(img, upsample=1)[0]
        chips.append(faces.align_and_crop(img, box).chip)
    return np.stack(chips)


def test_predictions_are_distributions(astronaut):
    chips = _real_chips(astronaut)
    for m in (load_model(), load_model(MODELS_DIR / MLP)):
        p = m.predict_chips(chips)
        assert p.distribution.shape == (4, 101)
        assert np.allclose(p.distribution.sum(axis=1), 1, atol=1e-5)
        assert (p.female is None) == (not m.has_gender)
        ages = p.distribution @ np.arange(101)
        # The same adult face four ways (docs/model.md): each model reads a grown face
        # every time. The head reads 34-35; the network 19-31, its grey copy youngest.
        assert ages.min() >= 16 and ages.max() <= 45 and ages.max() - ages.min() < 13, (m.model_id, ages)
        assert m.runtime == "litert"


def test_a_chip_model_is_batched_and_refuses_descriptors(astronaut):
    from phototag.errors import ModelError as Err

    m = load_model()
    chips = _real_chips(astronaut)
    one = np.concatenate([m.predict_chips(c[None]).distribution for c in chips])
    assert np.abs(m.predict_chips(chips).distribution - one).max() < 1e-5
    with pytest.raises(Err, match="this model reads face chips, not descriptors"):
        m.predict_descriptors(np.zeros((1, 128), np.float32))


def test_a_card_that_asks_for_the_mirror_average_gets_it(tmp_path, astronaut):
    """outputs.age.mirror = "average": each chip's distribution is the mean of the chip's and of its
    mirror image's, and so is P(female); a face and its mirror image read the same age."""
    chips = _real_chips(astronaut)
    shipped = load_model()
    card = dict(shipped.card, outputs=json.loads(json.dumps(shipped.card["outputs"])))
    for key in ("mirror", "prior"):
        card["outputs"]["age"].pop(key, None)
    (tmp_path / "p.json").write_text(json.dumps(card))  # the network alone: no mirror, no prior
    (tmp_path / "p.tflite").symlink_to(MODELS_DIR / f"{DEFAULT_MODEL}.tflite")
    plain = load_model(tmp_path / "p")
    card = json.loads(json.dumps(card))
    card["outputs"]["age"]["mirror"] = "average"
    (tmp_path / "m.json").write_text(json.dumps(card))
    (tmp_path / "m.tflite").symlink_to(MODELS_DIR / f"{DEFAULT_MODEL}.tflite")
    mirrored = load_model(tmp_path / "m")
    assert mirrored.mirror_average and not plain.mirror_average
    got = mirrored.predict_chips(chips)
    a, b = plain.predict_chips(chips), plain.predict_chips(chips[:, :, ::-1])
    np.testing.assert_allclose(got.distribution, (a.distribution + b.distribution) / 2, atol=1e-6)
    np.testing.assert_allclose(got.female, (a.female + b.female) / 2, atol=1e-6)
    np.testing.assert_allclose(mirrored.predict_chips(chips[:, :, ::-1]).distribution, got.distribution, atol=1e-5)
    assert np.abs(a.distribution - b.distribution).max() > 1e-3  # the two images do disagree
    # and a prior correction, where the card has one, comes after the average
    from phototag.ages.groups import correct_prior

    freq = np.linspace(2.0, 0.5, 101)
    card["outputs"]["age"]["prior"] = {"frequency": freq.tolist(), "power": 0.5}
    (tmp_path / "m.json").write_text(json.dumps(card))
    corrected = load_model(tmp_path / "m").predict_chips(chips)
    want = (a.distribution + b.distribution) / 2 * freq ** -0.5
    np.testing.assert_allclose(corrected.distribution, want / want.sum(axis=1, keepdims=True), atol=1e-6)
    np.testing.assert_allclose(correct_prior(got.distribution, freq, 0.5), corrected.distribution, atol=1e-6)
    ages = np.arange(101)
    assert (corrected.distribution @ ages > got.distribution @ ages).all()  # rarer older years gain
    # the same weights read by other rules are another model to the index: a scan reads its photos again
    ids = {plain.model_id, mirrored.model_id, load_model(tmp_path / "m").model_id, shipped.model_id}
    assert len(ids) == 4 and plain.model_id == f"{card['name']}@{card['weights_sha256'][:12]}"
    assert load_model(MODELS_DIR / MLP).model_id.count("+") == 0


def test_a_chip_model_whose_tflite_is_not_its_cards_is_refused(tmp_path):
    shutil.copy(MODELS_DIR / f"{DEFAULT_MODEL}.json", tmp_path / "m.json")
    with pytest.raises(ModelError, match=r"model not found \(need m.json and m.tflite\)"):
        load_model(tmp_path / "m")
    data = (MODELS_DIR / f"{DEFAULT_MODEL}.tflite").read_bytes()
    (tmp_path / "m.tflite").write_bytes(data[:-10] + b"0123456789")
    with pytest.raises(ModelError, match=r"m.tflite: missing, or not the file its card describes \(checksum differs\)"):
        load_model(tmp_path / "m").predict_chips(np.zeros((1, 150, 150, 3), np.uint8))


def copy_model(tmp_path, **changes):
    for ext in ("keras", "json"):
        shutil.copy(MODELS_DIR / f"{MLP}.{ext}", tmp_path / f"m.{ext}")
    card = json.loads((tmp_path / "m.json").read_text())
    for path, value in changes.items():
        node = card
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    (tmp_path / "m.json").write_text(json.dumps(card))
    return tmp_path / "m"


@pytest.mark.parametrize("change,message", [
    ({"format": 99}, "card format 99 is not supported"),
    ({"preprocessing.chip_size": 112}, "preprocessing chip_size=112 is not supported (phototag does 150)"),
    ({"preprocessing.backbone": "arcface"}, "preprocessing backbone='arcface' is not supported"),
    ({"outputs.age.bins": 8}, "the age output must be a distribution over 101 bins"),
    ({"outputs.age.point": "middle"}, "the age output's point 'middle' is not supported (phototag shows one of "
                                      "mean, mode, median, mode-or-median)"),
    ({"outputs.age.prior": {"frequency": [1.0] * 100, "power": 0.5}},
     "the age output's prior needs 101 positive frequencies and a power from 0 to 1"),
    ({"outputs.age.prior": {"frequency": [0.0] + [1.0] * 100, "power": 0.5}},
     "the age output's prior needs 101 positive frequencies and a power from 0 to 1"),
    ({"outputs.age.prior": {"frequency": [1.0] * 101, "power": 2}},
     "the age output's prior needs 101 positive frequencies and a power from 0 to 1"),
    ({"outputs.age.mirror": "max"}, "the age output's mirror 'max' is not supported (phototag does 'average')"),
    ({"outputs.age.mirror": "average"}, "the age output's mirror needs a model that reads chips"),
])
def test_a_card_we_cannot_honour_is_refused(tmp_path, change, message):
    with pytest.raises(ModelError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_model(copy_model(tmp_path, **change))


def test_missing_and_broken_models(tmp_path):
    with pytest.raises(ModelError, match="model not found"):
        load_model(tmp_path / "nothing")
    (tmp_path / "x.json").write_text("{not json")
    (tmp_path / "x.keras").write_bytes(b"")
    with pytest.raises(ModelError, match="unreadable model card"):
        load_model(tmp_path / "x")
    path = copy_model(tmp_path)
    path.with_suffix(".keras").write_bytes(b"not a keras file")
    with pytest.raises(ModelError, match="cannot load the model"):
        load_model(path).predict_descriptors(np.zeros((1, 128), np.float32))


def _real_descriptors(astronaut) -> np.ndarray:
    """dlib descriptors of real faces: the astronaut, mirrored, shifted, in grey."""
    from phototag import faces
    return faces.describe(list(_real_chips(astronaut)))


def test_litert_gives_the_keras_ages_without_tensorflow(astronaut, monkeypatch):
    """The shipped .tflite (LiteRT, the fastest runtime) and the .keras agree to 0.1 year on real faces."""
    pytest.importorskip("tensorflow", reason="the .keras runs under TensorFlow: the train extra")
    import subprocess
    import sys

    x = _real_descriptors(astronaut)
    fast = load_model(MODELS_DIR / MLP)
    a = fast.predict_descriptors(x)
    assert fast.runtime == "litert"
    monkeypatch.setenv("PHOTOTAG_RUNTIME", "keras")
    slow = load_model(MODELS_DIR / MLP)
    b = slow.predict_descriptors(x)
    assert slow.runtime == "tf.function"
    ages = np.arange(101)
    assert np.abs(a.distribution @ ages - b.distribution @ ages).max() < 0.1
    assert np.abs(a.female - b.female).max() < 0.01
    code = ("import sys, numpy as np; from phototag.ages.model import load_model; m = load_model(); "
            "m.predict_chips(np.zeros((2, 150, 150, 3), np.uint8)); print(m.runtime, 'tensorflow' in sys.modules)")
    monkeypatch.delenv("PHOTOTAG_RUNTIME")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout == "litert False\n", r.stderr  # a scan never pays for importing TensorFlow


def test_a_tflite_the_card_does_not_vouch_for_is_not_used(tmp_path):
    copy_model(tmp_path)
    card = json.loads((tmp_path / "m.json").read_text())
    (tmp_path / "m.tflite").write_bytes((MODELS_DIR / f"{MLP}.tflite").read_bytes()[:-10] + b"0123456789")
    m = load_model(tmp_path / "m")
    m.predict_descriptors(np.zeros((2, 128), np.float32))
    assert card["tflite_sha256"] and m.runtime == "tf.function"


def test_a_card_names_how_its_distribution_becomes_an_age(tmp_path):
    """Cards written before the point estimate existed show the mean, as they were measured."""
    assert load_model(copy_model(tmp_path)).point == "mean"
    assert load_model(copy_model(tmp_path, **{"outputs.age.point": "mode"})).point == "mode"
