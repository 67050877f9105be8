import json
import shutil

import numpy as np
import pytest

from phototag.errors import ModelError
from phototag.model import MODELS_DIR, DEFAULT_MODEL, load_model


def test_the_shipped_model_and_its_card():
    m = load_model()
    card = m.card
    assert (MODELS_DIR / f"{DEFAULT_MODEL}.keras").stat().st_size < 25 * 1024 * 1024
    for key in ("preprocessing", "input", "outputs", "training", "metrics", "hardware", "git_commit", "config"):
        assert key in card, key
    assert card["training"]["split"].startswith("sha256(record key) % 100")
    assert card["config"]["seed"] == card["config"]["seed"] and isinstance(card["config"]["seed"], int)
    assert card["metrics"]["test"]["faces"] > 1000
    import hashlib

    assert hashlib.sha256((MODELS_DIR / f"{DEFAULT_MODEL}.keras").read_bytes()).hexdigest() == card["weights_sha256"]


def test_predictions_are_distributions():
    m = load_model()
    rng = np.random.default_rng(0)
    p = m.predict_descriptors(rng.normal(0, 0.1, (3, 128)).astype(np.float32))
    assert p.distribution.shape == (3, 101)
    assert np.allclose(p.distribution.sum(axis=1), 1, atol=1e-5)
    assert (p.female is None) == (not m.has_gender)


def copy_model(tmp_path, **changes):
    for ext in ("keras", "json"):
        shutil.copy(MODELS_DIR / f"{DEFAULT_MODEL}.{ext}", tmp_path / f"m.{ext}")
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
