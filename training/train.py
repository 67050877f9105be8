"""Train the age head on prepared faces and ship it: `<out>.keras` plus its card `<out>.json`.

The head reads dlib's 128-d descriptor (pretrained on millions of faces) and outputs a distribution
over ages 0..100: DEX-style softmax trained on Gaussian label distributions plus an L1 term on the
expected age, or CORAL's ordinal thresholds. Early stopping and model selection use the validation
split only; the test split is reported, never selected on.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from phototag.ages.model import AGE_BINS, CARD_FORMAT
from training.evaluate import metrics_for
from training.augment import AUGMENT_VERSION, POLICIES
from training.prepare import Prepared
from training.sets import extra_set, main_sets, with_extra

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class TrainConfig:
    name: str = "age-dlib-mlp"
    head: str = "dex"  # "dex" | "coral"
    members: int = 5  # an ensemble of this many heads, averaged inside the model
    hidden: tuple[int, ...] = (512, 256)
    dropout: float = 0.3
    input_noise: float = 0.02
    sigma0: float = 1.0  # label distribution width at age 0 ...
    sigma_slope: float = 0.06  # ... growing with age: a year matters more for a toddler
    l1_weight: float = 0.05
    gender: bool = True
    epochs: int = 150
    batch_size: int = 256
    learning_rate: float = 1e-3
    patience: int = 20
    seed: int = 20261122
    # A policy of training/augment.py: every face is also seen degraded as an old print would be.
    augment: str | None = None
    augment_skip: tuple[str, ...] = ()  # leave out degraded copies that used any of these (ablation)
    extra_weight: float = 1.0  # each face of the extra data (few, from the target domain) counts this many times
    folds: int = 5  # extra data is measured by cross-validation over this many folds of people

    @classmethod
    def load(cls, path: str | Path | None) -> "TrainConfig":
        if path is None:
            path = CONFIG_DIR / "cpu.json"
        elif not Path(path).exists() and (CONFIG_DIR / f"{path}.json").exists():
            path = CONFIG_DIR / f"{path}.json"
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{path}: unknown config keys: {', '.join(sorted(unknown))}")
        for key in ("hidden", "augment_skip"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


def soft_labels(ages: np.ndarray, cfg: TrainConfig) -> np.ndarray:
    """Gaussian label distributions over 0..100, narrow for children, wider for adults."""
    bins = np.arange(AGE_BINS, dtype=np.float32)
    a = np.clip(ages.astype(np.float32), 0, AGE_BINS - 1)[:, None]
    sigma = cfg.sigma0 + cfg.sigma_slope * a
    p = np.exp(-0.5 * ((bins[None, :] - a) / sigma) ** 2)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def _keras():
    from phototag.ages import model
    keras = model.import_keras()
    from phototag.ages import layers  # noqa: F401

    return keras


def build_model(cfg: TrainConfig, train_x: np.ndarray):
    """The head: normalise, then `members` MLPs whose distributions are averaged."""
    keras = _keras()
    from phototag.ages.layers import CoralBias, CoralToDistribution

    layers = keras.layers
    inp = keras.Input(shape=(train_x.shape[1],), name="descriptor")
    norm = layers.Normalization(name="standardise")
    norm.adapt(train_x)
    x0 = norm(inp)
    dists, genders = [], []
    for m in range(cfg.members):
        x = layers.GaussianNoise(cfg.input_noise, name=f"noise_{m}")(x0) if cfg.input_noise else x0
        for i, width in enumerate(cfg.hidden):
            x = layers.Dense(width, activation="gelu", name=f"m{m}_dense{i}")(x)
            x = layers.Dropout(cfg.dropout, name=f"m{m}_drop{i}")(x)
        if cfg.head == "coral":
            logits = CoralBias(AGE_BINS - 1, name=f"m{m}_coral")(x)
            dists.append(CoralToDistribution(name=f"m{m}_age")(logits))
        elif cfg.head == "dex":
            dists.append(layers.Dense(AGE_BINS, activation="softmax", name=f"m{m}_age")(x))
        else:
            raise ValueError(f"unknown head {cfg.head!r}: use 'dex' or 'coral'")
        if cfg.gender:
            genders.append(layers.Dense(1, activation="sigmoid", name=f"m{m}_gender")(x))
    age = layers.Average(name="age")(dists) if len(dists) > 1 else layers.Identity(name="age")(dists[0])
    outputs = {"age": age}
    if cfg.gender:
        outputs["gender"] = (
            layers.Average(name="gender")(genders) if len(genders) > 1 else layers.Identity(name="gender")(genders[0])
        )
    return keras.Model(inp, outputs, name=cfg.name)


def _losses(cfg: TrainConfig):
    keras = _keras()
    from keras import ops

    bins = ops.arange(AGE_BINS, dtype="float32")

    def age_loss(y_true, y_pred):
        soft, age = y_true[:, :AGE_BINS], y_true[:, AGE_BINS]
        p = ops.clip(y_pred, 1e-7, 1.0)
        ce = -ops.sum(soft * ops.log(p), axis=1)
        expected = ops.sum(y_pred * bins, axis=1)
        return ce + cfg.l1_weight * ops.abs(expected - age)

    def gender_loss(y_true, y_pred):
        known = ops.cast(y_true >= 0, "float32")
        y = ops.maximum(y_true, 0.0)
        bce = keras.losses.binary_crossentropy(y, y_pred)
        return bce * ops.reshape(known, ops.shape(bce))

    def age_mae(y_true, y_pred):
        return ops.mean(ops.abs(ops.sum(y_pred * bins, axis=1) - y_true[:, AGE_BINS]))

    return age_loss, gender_loss, age_mae


def _targets(prep: Prepared, cfg: TrainConfig) -> dict[str, np.ndarray]:
    soft = soft_labels(prep.ages, cfg)
    y = {"age": np.concatenate([soft, prep.ages.astype(np.float32)[:, None]], axis=1)}
    if cfg.gender:
        y["gender"] = prep.genders.astype(np.float32)[:, None]
    return y


def fit(cfg: TrainConfig, train: Prepared, val: Prepared, *, weights: np.ndarray | None = None, verbose: int = 0):
    """Train with early stopping on validation MAE; return the best model and its history.

    `weights` counts some training faces more than others (the few from the target domain)."""
    keras = _keras()
    keras.utils.set_random_seed(cfg.seed)
    model = build_model(cfg, train.descriptors)
    age_loss, gender_loss, age_mae = _losses(cfg)
    losses = {"age": age_loss}
    metrics = {"age": [age_mae]}
    if cfg.gender:
        losses["gender"] = gender_loss
    steps = max(1, int(np.ceil(len(train) / cfg.batch_size))) * cfg.epochs
    schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, steps, alpha=0.05)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4), loss=losses,
                  loss_weights={"age": 1.0, "gender": 0.2} if cfg.gender else None, metrics=metrics)
    monitor = "val_age_age_mae" if cfg.gender else "val_age_mae"
    stop = keras.callbacks.EarlyStopping(monitor=monitor, patience=cfg.patience, restore_best_weights=True, mode="min")
    history = model.fit(
        train.descriptors, _targets(train, cfg), validation_data=(val.descriptors, _targets(val, cfg)),
        epochs=cfg.epochs, batch_size=cfg.batch_size, callbacks=[stop], verbose=verbose, shuffle=True,
        sample_weight=weights,
    )
    return model, history.history


def _git_commit() -> str:
    try:
        root = Path(__file__).parents[1]  # the paths below are the repository's, not training/'s
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=root)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "training", "phototag"], capture_output=True,
                               text=True, cwd=root).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def hardware() -> dict[str, Any]:
    """Where this ran: CPU model and count, and any accelerator the backend sees."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    accel = []
    try:
        keras = _keras()
        if keras.backend.backend() == "jax":
            import jax

            accel = [str(d) for d in jax.devices() if d.platform != "cpu"]
        elif keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            accel = [d.name for d in tf.config.list_physical_devices("GPU")]
    except Exception:  # noqa: BLE001 - hardware description is best effort
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "accelerators": accel, "backend": _keras().backend.backend(),
            "platform": platform.platform()}


_CREDITS = {
    "utkface": "UTKFace (Zhang, Song and Qi, CVPR 2017)",
    "fgnet": "FG-NET (Lanitis, Taylor and Cootes, 2002)",
    "adience": "Adience (Eidinger, Enbar and Hassner, 2014)",
}


def _licence(specs: list[str]) -> str:
    names = [_CREDITS.get(s.split(":", 1)[0], s.split(":", 1)[0]) for s in specs]
    return f"Weights trained on {' and '.join(names)}: non-commercial research use only."


def _export_tflite(weights: Path) -> Path | None:
    """The same head as a .tflite for LiteRT, phototag's fastest runtime (bench/runtimes.py); only
    under the TensorFlow backend, which holds the converter."""
    from phototag.ages.model import import_keras

    if import_keras().backend.backend() != "tensorflow":
        return None
    from training.export_tflite import export_tflite

    return export_tflite(weights)


def _predict(model, x: np.ndarray) -> dict[str, np.ndarray]:
    return model.predict(x, batch_size=1024, verbose=0)


def crossvalidate(cfg: TrainConfig, parts: dict[str, Prepared], extras: dict[str, tuple[Prepared, np.ndarray]],
                  ) -> dict[str, dict[str, Any]]:
    """Metrics on each extra data set from models that never saw the people they are measured on:
    one model per fold, trained on the main faces and every other fold."""
    out = {}
    for spec, (prep, folds) in extras.items():
        dist = np.zeros((len(prep), AGE_BINS), np.float32)
        for k in range(cfg.folds):
            held = folds == k
            if not held.any():
                continue
            train_k, weights = with_extra(parts["train"], extras, cfg.extra_weight, leave_out=(spec, k))
            model, _ = fit(cfg, train_k, parts["val"], weights=weights)
            dist[held] = _predict(model, prep.descriptors[held])["age"]
        out[spec.split(":", 1)[0]] = {"folds": cfg.folds, "people_split": True, **metrics_for(prep, dist)}
    return out


def fit_all(cfg: TrainConfig, parts: dict[str, Prepared], extras: dict[str, tuple[Prepared, np.ndarray]], *,
            verbose: int = 0):
    """The extras' cross-validated figures first, then the model that learns from every face:
    (model, history, crossval)."""
    crossval = crossvalidate(cfg, parts, extras) if extras else {}
    train_all, weights = with_extra(parts["train"], extras, cfg.extra_weight)
    model, history = fit(cfg, train_all, parts["val"], weights=weights if extras else None, verbose=verbose)
    return model, history, crossval


def train(data: str, out: str | Path, config: str | Path | None = None, *, extra: tuple[str, ...] | list[str] = (),
          limit: int | None = None, workers: int | None = None, quiet: bool = False) -> dict[str, Any]:
    """Prepare `data` (and `extra`), train, evaluate, write `<out>.keras` and `<out>.json`.

    Faces of `extra` (e.g. fgnet:DIR) join training; they are measured by cross-validation over folds
    of people before the shipped model learns from all of them."""
    cfg = TrainConfig.load(config)
    t0 = time.time()
    parts, prep_stats = main_sets(data, augment=cfg.augment, augment_skip=cfg.augment_skip, limit=limit,
                                  workers=workers, quiet=quiet)
    extras = {spec: extra_set(spec, cfg.folds, workers=workers, quiet=quiet) for spec in extra}
    t_prep = time.time() - t0
    if len(parts["train"]) == 0 or len(parts["val"]) == 0:
        raise ValueError(f"{data}: not enough labelled faces to train "
                         f"({sum(len(p) for p in parts.values())} usable)")
    t1 = time.time()
    model, history, crossval = fit_all(cfg, parts, extras, verbose=0 if quiet else 2)
    t_fit = time.time() - t1
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    weights = out.with_suffix(".keras")
    # An uncompiled copy: the file holds the weights alone, not AdamW's two moments per weight (3x the size).
    shipped = model.__class__.from_config(model.get_config())
    shipped.set_weights(model.get_weights())
    shipped.save(weights)
    tflite = _export_tflite(weights)
    metrics: dict[str, Any] = {}
    for split in ("val", "test", "test_degraded"):
        if split in parts and len(parts[split]):
            pred = _predict(model, parts[split].descriptors)
            metrics[split] = metrics_for(parts[split], pred["age"], pred.get("gender"))
    if crossval:
        metrics["crossval"] = crossval
    card = {
        "format": CARD_FORMAT,
        "name": cfg.name,
        "description": "Age (and gender) from dlib's 128-d face descriptor: a Keras head over a pretrained backbone.",
        "weights": weights.name,
        "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "size_bytes": weights.stat().st_size,
        **({"tflite": tflite.name, "tflite_sha256": hashlib.sha256(tflite.read_bytes()).hexdigest()} if tflite else {}),
        "preprocessing": {
            "align": "phototag.faces.align_and_crop",
            "landmarks": "dlib shape_predictor_5_face_landmarks",
            "chip_size": 150,
            "chip_padding": 0.25,
            "color": "RGB uint8",
            "backbone": "dlib_face_recognition_resnet_model_v1",
            "backbone_package": "face_recognition_models",
            "backbone_output": 128,
        },
        "input": {"name": "descriptor", "shape": [128], "dtype": "float32"},
        "outputs": {
            "age": {"type": "distribution", "bins": AGE_BINS, "ages": "0..100 (last bin: 100 and older)"},
            **({"gender": {"type": "sigmoid", "meaning": "P(female)"}} if cfg.gender else {}),
        },
        "config": asdict(cfg),
        "training": {
            "data": data.split(":", 1)[0],
            "split": "sha256(record key) % 100: 0-9 test, 10-19 val, 20-99 train",
            "faces": {k: len(v) for k, v in parts.items()},
            "preparation": prep_stats,
            **({"augment": {"policy": cfg.augment, "version": AUGMENT_VERSION, "operations": POLICIES[cfg.augment],
                            "skipped": list(cfg.augment_skip),
                            "note": "train and val hold each face and one degraded copy"}} if cfg.augment else {}),
            **({"extra": {spec.split(":", 1)[0]: {"faces": len(p), "weight": cfg.extra_weight,
                                                   "folds": cfg.folds} for spec, (p, f) in extras.items()}}
               if extras else {}),
            "epochs_run": len(history.get("loss", [])),
            "best_val_mae": float(min(history.get("val_age_age_mae", history.get("val_age_mae", [float("nan")])))),
            "seconds_prepare": round(t_prep, 1),
            "seconds_fit": round(t_fit, 1),
        },
        "metrics": metrics,
        "hardware": hardware(),
        "git_commit": _git_commit(),
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "licence": _licence([data, *extra]),
    }
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card
