"""Fine-tune a copy of dlib's face descriptor network end to end for age, with the old-print augmentations.

    KERAS_BACKEND=jax python -m training.finetune --dat DIR --train utk.npz --extra fgnet.npz --out OUT \
        [--folds-run 0,1,2] [--no-final] [--mixed-bf16] [--train-from relu70]
    python -m training.finetune --pack-dat dlib-resnet.npz      # here: dlib's weights in half the bytes

Meant for a GPU machine that has neither dlib nor the data sets: the chips come from
training/chips.py and the starting weights from dlib's own .dat file (read by phototag.faces.dlib_dat).
The network is dlib's ResNet with every layer trainable, topped by the age head's outputs (a
distribution over 0..100 trained on Gaussian label distributions plus an L1 term, and gender),
with the same losses as training/train.py. Each epoch shows every face once: half of them as a
degraded copy (training/augment.py's "archive" policy, drawn in advance, several per face), half
clean, each mirrored at random.

The extra data (FG-NET) is measured by cross-validation over folds of people, as train.py does:
each fold's model never saw the people it predicts. The final model learns from all of them and
its weights come back at two epoch counts, to choose between on validation data elsewhere.
dlib's identity descriptor is not touched: the people feature keeps grouping by dlib's own network.

A device call has a time limit and a 64 MiB transfer: `--folds-run` and `--no-final` split one
training over several calls (training/ship.py merges their reports), and `--pack-dat` writes
dlib's starting weights as float16 (11 MB instead of the .dat's 22 MB) for `--dat`.

`--train-from LAYER` keeps dlib's weights up to LAYER and trains only what is above it, on the
frozen layers' features computed once (training/frozen.py): the CPU's way, where no GPU is lent.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["age_frequency", "balance_weights", "build_age_net", "weight_files", "load_weight_files", "pack_dat", "read_layers",
           "score_crossval"]

CROSSVAL_FILE = "fgnet-crossval.npz"  # the held-out age distributions (NaN where a call ran no fold)
FACE_WIDTH = 100  # about how wide the face is in a 150-px chip with dlib's padding of 0.25


def build_age_net(desc_layers: list, age_bins: int = 101, hidden: int = 256, dropout: float = 0.2) -> Any:
    """dlib's descriptor network (pixels in, 0..255) with an age distribution and P(female) on top."""
    from phototag.faces.dlib_nets import build_descriptor
    from phototag.ages.model import import_keras

    keras = import_keras()
    layers = keras.layers
    mean = np.asarray(desc_layers[0].params["mean_rgb"], np.float32)
    trunk = build_descriptor(desc_layers)
    inp = keras.Input((150, 150, 3), dtype="uint8", name="chip")  # a quarter of the bytes to the GPU
    x = layers.Rescaling(1 / 256, offset=(-mean / 256).tolist(), name="dlib_input")(inp)
    x = trunk(x)
    x = layers.Dense(hidden, activation="gelu", name="age_dense")(x)
    x = layers.Dropout(dropout, name="age_drop")(x)
    # the outputs stay float32 when the rest computes in bfloat16 (--mixed-bf16)
    age = layers.Dense(age_bins, activation="softmax", name="age", dtype="float32")(x)
    gender = layers.Dense(1, activation="sigmoid", name="gender", dtype="float32")(x)
    return keras.Model(inp, {"age": age, "gender": gender}, name="age_dlib_resnet")


def weight_files(weights: list[np.ndarray], out: Path, stem: str, max_bytes: int = 15 << 20) -> list[Path]:
    """The weights in as few .npz files as keep each under `max_bytes` (what a device run can send back)."""
    files, part, size = [], {}, 0
    for i, w in enumerate(weights):
        if part and size + w.nbytes > max_bytes:
            files.append(part)
            part, size = {}, 0
        part[f"w{i:04d}"] = w
        size += w.nbytes
    files.append(part)
    paths = []
    for j, p in enumerate(files):
        paths.append(out / f"{stem}-{j}.npz")
        np.savez(paths[-1], **p)
    return paths


def load_weight_files(paths: list[Path]) -> list[np.ndarray]:
    found: dict[str, np.ndarray] = {}
    for p in paths:
        found.update(dict(np.load(p)))
    return [found[k] for k in sorted(found)]


def pack_dat(dat: Path, out: Path) -> Path:
    """dlib's descriptor network (its .dat) as an .npz of float16 weights and the layers' settings."""
    from phototag.faces.dlib_dat import read_dat

    layers = read_dat(dat)
    head = [{"kind": layer.kind, "version": layer.version, "params": layer.params} for layer in layers]
    arrays = {f"l{i:03d}_{name}": w.astype(np.float16) for i, layer in enumerate(layers)
              for name, w in layer.weights.items()}
    np.savez(out, layers=np.array(json.dumps(head)), **arrays)
    return out


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def read_layers(path: Path) -> list:
    """The descriptor network's layers from a folder holding dlib's .dat, or from `pack_dat`'s .npz."""
    from phototag.faces.dlib_dat import Layer, read_dat
    from phototag.faces.engine import source_files

    if path.is_dir():
        return read_dat(source_files(path)["descriptor"])
    z = np.load(path)
    layers = [Layer(h["kind"], h["version"], {k: _tuples(v) for k, v in h["params"].items()})
              for h in json.loads(str(z["layers"]))]
    for key in z.files:
        if key != "layers":
            i, name = key[1:].split("_", 1)
            layers[int(i)].weights[name] = z[key].astype(np.float32)
    return layers


def score_crossval(cv: dict[str, Any]) -> int:
    """Set the cross-validated report's MAE and bias over the faces predicted so far; how many."""
    done = [(p, a) for p, a in zip(cv["predicted"], cv["ages"]) if p is not None]
    if done:
        err = np.array([p - a for p, a in done], float)
        cv["mae"], cv["bias"] = float(np.abs(err).mean()), float(err.mean())
    return len(done)


def age_frequency(ages: np.ndarray, weights: np.ndarray | None = None, sigma: float = 5.0,
                  bins: int = 101) -> np.ndarray:
    """How often each whole age 0..bins-1 occurs among `ages` (each counted its weight), smoothed by a
    Gaussian of `sigma` years: label distribution smoothing (Yang et al. 2021, "Delving into Deep
    Imbalanced Regression"), so that neighbouring years share a density."""
    a = np.clip(np.round(ages).astype(int), 0, bins - 1)
    hist = np.bincount(a, weights=weights, minlength=bins).astype(np.float64)
    grid = np.arange(bins)
    return np.exp(-0.5 * ((grid[:, None] - grid[None, :]) / sigma) ** 2) @ hist


def balance_weights(ages: np.ndarray, alpha: float, sigma: float = 5.0, bins: int = 101) -> np.ndarray:
    """Each face's weight against the imbalance of its age: its age's smoothed frequency
    (`age_frequency`) raised to -alpha and scaled to a mean of 1. UTKFace holds four faces of 20-39
    for every one over 60, and a network trained on it unweighted reads the old young."""
    a = np.clip(np.round(ages).astype(int), 0, bins - 1)
    if alpha == 0:
        return np.ones(len(a), np.float32)
    w = age_frequency(ages, sigma=sigma, bins=bins)[a] ** -alpha
    return (w / w.mean()).astype(np.float32)


def _degrade(args: tuple[np.ndarray, str, int]) -> np.ndarray:
    from training.augment import augment

    chip, key, seed = args
    return augment(chip, key, FACE_WIDTH, "archive", seed)[0]


def _variants(chips: np.ndarray, keys: np.ndarray, k: int, workers: int) -> np.ndarray:
    """k degraded copies of every chip (k x n x 150 x 150 x 3), each copy seeded apart."""
    jobs = [(chips[i], str(keys[i]), s) for s in range(k) for i in range(len(chips))]
    if workers <= 1:
        out = [_degrade(j) for j in jobs]
    else:  # spawn, not fork: the parent may hold a backend's threads
        with mp.get_context("spawn").Pool(workers) as pool:
            out = pool.map(_degrade, jobs, chunksize=64)
    return np.stack(out).reshape((k,) + chips.shape)


def _draw_epoch(n: int, copies: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """What each face shows this epoch: (source, mirrored), source 0 the clean chip and 1 + j its
    degraded copy j; half of them degraded, each mirrored at random."""
    degraded = rng.random(n) < 0.5
    pick = rng.integers(0, copies, n) if copies else np.zeros(n, int)
    flip = rng.random(n) < 0.5
    return np.where(degraded & (copies > 0), 1 + pick, 0), flip


def _epoch_inputs(chips: np.ndarray, variants: np.ndarray, source: np.ndarray, flip: np.ndarray) -> np.ndarray:
    x = chips.copy()
    degraded = np.flatnonzero(source)
    x[degraded] = variants[source[degraded] - 1, degraded]
    x[flip] = x[flip, :, ::-1]
    return x


def _targets(ages: np.ndarray, genders: np.ndarray) -> dict[str, np.ndarray]:
    from training.train import TrainConfig, soft_labels

    soft = soft_labels(ages, TrainConfig())
    return {"age": np.concatenate([soft, ages.astype(np.float32)[:, None]], axis=1),
            "gender": genders.astype(np.float32)[:, None]}


def _compile(model: Any, steps: int, lr: float, warmup: int, gender_weight: float) -> None:
    from phototag.ages.model import import_keras
    from training.train import TrainConfig, _losses

    keras = import_keras()
    age_loss, gender_loss, age_mae = _losses(TrainConfig())
    schedule = keras.optimizers.schedules.CosineDecay(0.0, max(steps - warmup, 1), warmup_target=lr,
                                                     warmup_steps=warmup)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=5e-5, clipnorm=1.0),
                  loss={"age": age_loss, "gender": gender_loss}, loss_weights={"age": 1.0, "gender": gender_weight},
                  metrics={"age": [age_mae]})


def _reset(model: Any, start: list[np.ndarray]) -> None:
    """Back to dlib's weights and a fresh optimizer, keeping the compiled step (no second compile)."""
    model.set_weights(start)
    for v in model.optimizer.variables:
        v.assign(np.zeros(v.shape, v.dtype))


def _age_distributions(model: Any, inputs: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(inputs, batch_size=256, verbose=0)["age"], np.float32)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from training.chips import load_chips
    from training.sets import person_folds

    t0 = time.time()
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "timings": {}}
    main, extra = load_chips(args.train), load_chips(args.extra)
    if args.limit:
        main = {k: v[: args.limit] for k, v in main.items()}
    chips = np.concatenate([main["chips"], extra["chips"]])
    keys = np.concatenate([main["keys"], extra["keys"]])
    ages = np.concatenate([main["ages"], extra["ages"]])
    genders = np.concatenate([main["genders"], extra["genders"]])
    is_extra = np.r_[np.zeros(len(main["keys"]), bool), np.ones(len(extra["keys"]), bool)]
    folds = np.full(len(keys), -1)
    folds[is_extra] = person_folds(extra["persons"], args.folds)
    weights = np.where(is_extra, args.extra_weight, 1.0).astype(np.float32)
    weights *= balance_weights(ages, getattr(args, "balance", 0.0))
    cache = getattr(args, "features_cache", None)
    if args.train_from and cache and _cache_matches(cache, args, keys):
        variants = None  # the frozen features are read back; the copies they came from are not needed
    else:
        variants = _variants(chips, keys, args.variants, args.workers or os.cpu_count() or 1)
    report["timings"]["data"] = round(time.time() - t0, 1)
    report["faces"] = {"main": int((~is_extra).sum()), "extra": int(is_extra.sum())}

    if args.mixed_bf16:  # weights stay float32; the convolutions run in bfloat16
        from phototag.ages.model import import_keras

        import_keras().mixed_precision.set_global_policy("mixed_bfloat16")
    model = build_age_net(read_layers(args.dat))
    fit_model, table, lower = model, None, None  # what trains, and (--train-from) the frozen layers' features
    if args.train_from:
        from training.frozen import epoch_features, feature_variants, split_at

        t = time.time()
        lower, fit_model = split_at(model, args.train_from)
        if variants is None:
            table = np.load(cache, mmap_mode="r")
        else:
            table = feature_variants(lower, chips, variants)
            if cache:
                _write_cache(cache, table, args, keys)
        del variants
        report["timings"]["features"] = round(time.time() - t, 1)
    val = _val_inputs(getattr(args, "val", None), lower if table is not None else None)
    start = fit_model.get_weights()
    steps_per_epoch = -(-len(keys) // args.batch)
    _compile(fit_model, steps_per_epoch * args.epochs, args.lr, steps_per_epoch, args.gender_weight)
    y_all = _targets(ages, genders)
    rng = np.random.default_rng(args.seed)

    def train(keep: np.ndarray, checkpoints: tuple[int, ...] = ()) -> None:
        _reset(fit_model, start)
        y = {k: v[keep] for k, v in y_all.items()}
        w = {"age": weights[keep], "gender": weights[keep]}
        for e in range(args.epochs):
            source, flip = _draw_epoch(int(keep.sum()), args.variants, rng)
            if table is None:
                x = _epoch_inputs(chips[keep], variants[:, keep], source, flip)
            else:
                x = epoch_features(table, np.flatnonzero(keep), source, flip)
            h = fit_model.fit(x, y, sample_weight=w, batch_size=args.batch, epochs=e + 1, initial_epoch=e,
                          shuffle=True, verbose=0)
            mae = next((v[-1] for k, v in h.history.items() if k.endswith("mae")), float("nan"))
            print(f"  epoch {e + 1}: loss {h.history['loss'][-1]:.4f} mae {mae:.2f} ({time.time() - t0:.0f} s)",
                  flush=True)
            if e + 1 in checkpoints:  # written at once: a run cut short keeps what it has
                files = weight_files(model.get_weights(), args.out, f"age-net-e{e + 1}")
                report["files"][str(e + 1)] = [p.name for p in files]
                if val is not None:
                    report.setdefault("val", {})[str(e + 1)] = _val_checkpoint(val, fit_model, args.out, e + 1)
                _save(report, args.out)

    report["fgnet_crossval"] = {"keys": [str(k) for k in keys[is_extra]], "ages": ages[is_extra].tolist(),
                                "predicted": [None] * int(is_extra.sum())}
    extra_idx = np.flatnonzero(is_extra)
    # the held-out distributions themselves, so that any point estimate (the mean, the median) can
    # be measured later without the fold networks
    cv_dist = np.full((len(extra_idx), model.get_layer("age").units), np.nan, np.float32)
    cv_mirrored = cv_dist.copy()  # the same faces mirrored: a point rule may average the two
    for f in args.folds_run if args.folds_run is not None else range(args.folds):
        t = time.time()
        pos = np.flatnonzero(folds[extra_idx] == f)  # the held-out faces' places among the extra faces
        held = extra_idx[pos]
        if len(held) == 0:  # few people: a fold may hold none, and has nothing to measure
            continue
        print(f"fold {f}", flush=True)
        train(folds != f)
        if table is None:
            dist = _age_distributions(model, chips[held])
            cv_mirrored[pos] = _age_distributions(model, chips[held][:, :, ::-1])
        else:
            dist = _age_distributions(fit_model, table[0, 0, held].astype(np.float32))
            cv_mirrored[pos] = _age_distributions(fit_model, table[1, 0, held].astype(np.float32))
        pred = dist @ np.arange(dist.shape[1])
        cv_dist[pos] = dist
        for j, p in zip(pos, pred):
            report["fgnet_crossval"]["predicted"][j] = round(float(p), 3)
        np.savez(args.out / CROSSVAL_FILE, keys=keys[is_extra].astype(str), distributions=cv_dist,
                 distributions_mirrored=cv_mirrored)
        err = pred - ages[held]
        print(f"fold {f}: {len(held)} faces, MAE {np.abs(err).mean():.2f}, bias {err.mean():+.2f}", flush=True)
        report["timings"][f"fold{f}"] = round(time.time() - t, 1)
        _save(report, args.out)  # what is done so far survives a run cut short
    cv = report["fgnet_crossval"]
    if done := score_crossval(cv):
        print(f"fgnet cross-validated ({done} faces): MAE {cv['mae']:.2f} bias {cv['bias']:+.2f}", flush=True)
    report["files"] = {}
    if not args.no_final:
        t = time.time()
        checkpoints = tuple(sorted({args.epochs, max(1, round(args.epochs * 2 / 3))}))
        train(np.ones(len(keys), bool), checkpoints)
        report["timings"]["final"] = round(time.time() - t, 1)
    report["timings"]["total"] = round(time.time() - t0, 1)
    _save(report, args.out)
    return report


def _val_inputs(path: Path | None, lower: Any) -> dict[str, np.ndarray] | None:
    """Validation faces, as the final network's inputs (the frozen features where `lower` is given),
    clean and mirrored, to measure each checkpoint on data that chose nothing else."""
    if path is None:
        return None
    from training.chips import load_chips
    from training.frozen import features

    z = load_chips(path)
    x = [z["chips"], z["chips"][:, :, ::-1]]
    if lower is not None:
        x = [features(lower, c).astype(np.float32) for c in x]
    return {"ages": z["ages"], "x": x[0], "x_mirrored": x[1]}


def _val_checkpoint(val: dict[str, np.ndarray], model: Any, out: Path, epochs: int) -> dict[str, float]:
    """The validation distributions of this checkpoint (val-eN.npz, clean and mirrored) and its
    MAE by the mode, alone and averaged with the mirror image."""
    from phototag.ages.groups import point_ages

    p, q = _age_distributions(model, val["x"]), _age_distributions(model, val["x_mirrored"])
    np.savez(out / f"val-e{epochs}.npz", distributions=p, distributions_mirrored=q, ages=val["ages"])
    mae = {"mode": float(np.abs(point_ages(p, "mode") - val["ages"]).mean()),
           "mode_mirror_averaged": float(np.abs(point_ages(p + q, "mode") - val["ages"]).mean())}
    print(f"  val after {epochs} epochs: MAE {mae['mode']:.3f}, mirror-averaged {mae['mode_mirror_averaged']:.3f}",
          flush=True)
    return mae


def _cache_id(args: argparse.Namespace, keys: np.ndarray) -> dict[str, Any]:
    """What the frozen features depend on: the faces, the degraded copies drawn, the layer."""
    import hashlib

    digest = hashlib.sha256("\n".join(map(str, keys)).encode()).hexdigest()
    return {"keys": digest, "variants": args.variants, "train_from": args.train_from,
            "train": Path(args.train).stat().st_size, "extra": Path(args.extra).stat().st_size}


def _cache_matches(cache: Path, args: argparse.Namespace, keys: np.ndarray) -> bool:
    meta = Path(cache).with_suffix(".json")
    return Path(cache).exists() and meta.exists() and json.loads(meta.read_text()) == _cache_id(args, keys)


def _write_cache(cache: Path, table: np.ndarray, args: argparse.Namespace, keys: np.ndarray) -> None:
    """The frozen features, for the next run on the same faces (research data: keep it outside git)."""
    Path(cache).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(cache).with_name(Path(cache).stem + ".tmp.npy")
    np.save(tmp, table)
    tmp.replace(cache)
    Path(cache).with_suffix(".json").write_text(json.dumps(_cache_id(args, keys)))


def _save(report: dict[str, Any], out: Path) -> None:
    (out / "finetune.json").write_text(json.dumps(report, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pack-dat", type=Path, metavar="OUT", help="write dlib's weights (float16) to OUT and stop")
    ap.add_argument("--dat", type=Path, help="folder holding dlib's descriptor .dat, or a --pack-dat file")
    ap.add_argument("--train", type=Path, help="chips of the main data (training/chips.py)")
    ap.add_argument("--extra", type=Path, help="chips of the extra data, cross-validated by person")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--variants", type=int, default=4, help="degraded copies drawn per face")
    ap.add_argument("--extra-weight", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--limit", type=int, help="use only this many main faces (a smoke test)")
    ap.add_argument("--workers", type=int, help="processes drawing the degraded copies (default: every core)")
    ap.add_argument("--folds-run", type=lambda v: [int(f) for f in v.split(",") if f.strip()],
                    help="only these folds, e.g. 0,1,2, or '' for none (default: every fold)")
    ap.add_argument("--no-final", action="store_true", help="cross-validate only; no final network")
    ap.add_argument("--gender-weight", type=float, default=0.1, help="the gender loss's weight (age's is 1)")
    ap.add_argument("--mixed-bf16", action="store_true", help="compute in bfloat16, keep weights in float32")
    ap.add_argument("--val", type=Path, help="chips of validation faces: each checkpoint's distributions on them")
    ap.add_argument("--balance", type=float, default=0.0, metavar="ALPHA",
                    help="weigh each face by its age's smoothed frequency to the power -ALPHA (0: unweighted)")
    ap.add_argument("--features-cache", type=Path, metavar="FILE.npy",
                    help="with --train-from: keep the frozen features here and reuse them when the faces match")
    ap.add_argument("--train-from", metavar="LAYER",
                    help="train only the layers after this one of dlib's (e.g. relu70), on features computed "
                         "once: a CPU's job (training/frozen.py)")
    args = ap.parse_args(argv)
    if args.pack_dat:
        from phototag.faces.engine import source_files

        print(pack_dat(source_files()["descriptor"], args.pack_dat))
        return 0
    if not (args.dat and args.train and args.extra and args.out):
        ap.error("--dat, --train, --extra and --out are needed to train")
    args.out.mkdir(parents=True, exist_ok=True)
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

