"""Evaluate an age model on a split: metrics.json, report.md and PNG plots.

Metrics: MAE overall and by age band, exact and one-off group accuracy for the default scheme and
every preset (one-off: the predicted group is the true one or a neighbour), gender accuracy when the
model has a gender head, and faces per second for the head and for the whole model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from phototag.ages.groups import DEFAULT_SCHEME, PRESETS, Scheme, point_ages

BANDS = [("0-2", 0, 2), ("3-12", 3, 12), ("13-19", 13, 19), ("20-39", 20, 39), ("40-59", 40, 59), ("60+", 60, 200)]


def group_indices(ages: np.ndarray, scheme: Scheme) -> np.ndarray:
    """The index of each whole age's group."""
    m = scheme.matrix()
    return np.argmax(m[np.clip(np.round(ages).astype(int), 0, 100)], axis=1)


def group_accuracy(dist: np.ndarray, true_ages: np.ndarray, scheme: Scheme, point: str = "mean") -> dict[str, float]:
    """Exact and one-off accuracy of the group phototag assigns: the group holding the age shown
    (`point`: the model's rule, phototag.ages.groups.point_ages)."""
    pred = group_indices(point_ages(dist, point), scheme)
    true = group_indices(true_ages, scheme)
    off = np.abs(pred - true)
    return {"exact": float(np.mean(off == 0)), "one_off": float(np.mean(off <= 1))}


# A face whose channels differ by less than this on average (0-255) is a black-and-white print. On
# fgnet-dev the greys sit under 2 and the colour photos above 8, faded and sepia-toned ones included.
GREY_CHROMA = 6.0


def black_and_white(thumbs: np.ndarray) -> np.ndarray:
    """Which faces are black-and-white, decided from their pixels: the mean spread between the
    brightest and darkest channel of each pixel, which a grey print (scanned in colour or not) lacks."""
    t = np.asarray(thumbs, dtype=np.int16)
    return (t.max(axis=-1) - t.min(axis=-1)).reshape(len(t), -1).mean(axis=1) < GREY_CHROMA


def metrics_for(prep: Any, dist: np.ndarray, female: np.ndarray | None = None, point: str = "mean"
                ) -> dict[str, Any]:
    """Every metric for predicted distributions against a Prepared split's labels, for the age
    phototag shows (`point`: the model's rule)."""
    ages = prep.ages.astype(np.float64)
    dist = np.asarray(dist, dtype=np.float64)
    pred = point_ages(dist, point)
    err = np.abs(pred - ages)
    out: dict[str, Any] = {
        "faces": int(len(ages)),
        "point": point,
        "mae": float(err.mean()),
        "bias": float((pred - ages).mean()),
        "mae_0_12": float(err[ages <= 12].mean()) if np.any(ages <= 12) else None,
        "mae_by_band": {},
        "groups": {name: group_accuracy(dist, ages, s, point) for name, s in PRESETS.items()},
    }
    for name, lo, hi in BANDS:
        sel = (ages >= lo) & (ages <= hi)
        out["mae_by_band"][name] = {"mae": float(err[sel].mean()) if sel.any() else None, "faces": int(sel.sum()),
                                    "bias": float((pred - ages)[sel].mean()) if sel.any() else None}
    grey = black_and_white(prep.thumbs)
    out["by_colour"] = {
        kind: {"faces": int(sel.sum()), "mae": float(err[sel].mean()) if sel.any() else None,
               "bias": float((pred - ages)[sel].mean()) if sel.any() else None}
        for kind, sel in (("black_and_white", grey), ("colour", ~grey))}
    cdf = np.cumsum(dist, axis=1)
    low = np.argmax(cdf >= 0.1, axis=1)
    high = np.argmax(cdf >= 0.9, axis=1)
    clipped = np.clip(ages, 0, 100)
    out["interval_80_coverage"] = float(np.mean((clipped >= low) & (clipped <= high)))
    if female is not None:
        known = prep.genders >= 0
        if known.any():
            guess = (np.asarray(female).reshape(-1) >= 0.5).astype(int)
            out["gender_accuracy"] = float(np.mean(guess[known] == prep.genders[known]))
    return out


def group_metrics(prep: Any, dist: np.ndarray, point: str = "mean") -> dict[str, Any]:
    """For data labelled with groups, not ages (Adience): exact and one-off accuracy of the group
    phototag assigns (the one holding the age shown), under the preset whose groups the labels name."""
    labels = set(prep.groups.tolist())
    scheme = next((s for s in PRESETS.values() if labels <= set(s.names)), None)
    if scheme is None:
        raise ValueError(f"no preset scheme has the groups {sorted(labels)}")
    pred = group_indices(point_ages(dist, point), scheme)
    true = np.array([scheme.names.index(g) for g in prep.groups])
    off = np.abs(pred - true)
    by_group = {g: {"faces": int((true == i).sum()), "exact": float(np.mean(off[true == i] == 0))}
                for i, g in enumerate(scheme.names) if (true == i).any()}
    return {"faces": int(len(true)), "scheme": scheme.name, "point": point, "exact": float(np.mean(off == 0)),
            "one_off": float(np.mean(off <= 1)), "by_group": by_group}


def dev_metrics(distributions: Callable[[np.ndarray], np.ndarray], spec: str, point: str = "mean") -> dict[str, Any]:
    """A model's figures on a whole development set (`distributions`: descriptors to age
    distributions): by age where its faces have ages (FG-NET), else by group (Adience)."""
    from training.prepare import prepare

    prep = prepare(spec)
    if (prep.ages >= 0).any():
        part = prep.subset(prep.ages >= 0)
        return metrics_for(part, distributions(part.descriptors), point=point)
    part = prep.subset(prep.groups != "")
    return group_metrics(part, distributions(part.descriptors), point)


def _predict(model: Any, data: str, part: Any) -> Any:
    """The model's prediction for a prepared part: from its descriptors, or from its chips (cut once
    and cached) for a model that reads chips."""
    if model.input_kind == "chip":
        from training.chips import chips_for

        return model.predict_chips(chips_for(data, part.keys))
    return model.predict_descriptors(part.descriptors)


def faces_per_second(model: Any, descriptors: np.ndarray, chips: list[np.ndarray] | None = None) -> dict[str, float]:
    """Throughput of the head alone (batch of 64, warm) and of descriptor plus head; for a model that
    reads chips, of the model on 64 chips (the identity descriptor is the scan's, not the model's)."""
    if model.input_kind == "chip":
        x = np.resize(np.stack(chips), (64, *np.shape(chips[0]))).astype(np.uint8)
        model.predict_chips(x)  # warm up
        t = time.perf_counter()
        model.predict_chips(x)
        batch = time.perf_counter() - t
        return {"batch64_seconds": batch, "faces_per_second": 64 / batch}
    x = np.resize(descriptors, (64, descriptors.shape[1])).astype(np.float32)
    model.predict_descriptors(x)  # warm up
    t = time.perf_counter()
    reps = 10
    for _ in range(reps):
        model.predict_descriptors(x)
    head = (time.perf_counter() - t) / reps
    out = {"head_batch64_seconds": head, "head_faces_per_second": 64 / head}
    if chips:
        from phototag import faces
        faces.describe(chips[:1])  # warm up: dlib allocates on its first call
        t = time.perf_counter()
        faces.describe(chips)
        per_face = (time.perf_counter() - t) / len(chips)
        out["descriptor_seconds_per_face"] = per_face
        out["faces_per_second_one_core"] = 1.0 / (per_face + head / 64)
        out["batch64_seconds_one_core"] = 64 * per_face + head
    return out


def _plots(report: Path, ages: np.ndarray, pred: np.ndarray, metrics: dict[str, Any], scheme: Scheme) -> list[str]:
    """The scatter, off-by-N, confusion and by-band plots of the ages shown (`pred`) against the true."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.scatter(ages, pred, s=3, alpha=0.3)
    ax.plot([0, 100], [0, 100], "k--", lw=1)
    ax.set(xlabel="true age", ylabel="predicted age", title=f"Predicted vs true (MAE {metrics['mae']:.2f})",
           xlim=(0, 100), ylim=(0, 100))
    fig.tight_layout(); fig.savefig(report / "scatter.png"); plt.close(fig); made.append("scatter.png")

    pg = group_indices(pred, scheme)
    tg = group_indices(ages, scheme)
    off = pg - tg
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    rng = np.arange(-len(scheme.groups) + 1, len(scheme.groups))
    ax.bar(rng, [np.sum(off == k) for k in rng])
    ax.set(xlabel="predicted group - true group", ylabel="faces", title="Off-by-N groups (default scheme)")
    fig.tight_layout(); fig.savefig(report / "off_by_n.png"); plt.close(fig); made.append("off_by_n.png")

    n = len(scheme.groups)
    cm = np.zeros((n, n), dtype=int)
    np.add.at(cm, (tg, pg), 1)
    fig, ax = plt.subplots(figsize=(7, 6), dpi=100)
    ax.imshow(cm / np.maximum(cm.sum(axis=1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7)
    ax.set_xticks(range(n), scheme.names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), scheme.names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (rows normalised)")
    fig.tight_layout(); fig.savefig(report / "confusion.png"); plt.close(fig); made.append("confusion.png")

    bands = [b for b in metrics["mae_by_band"] if metrics["mae_by_band"][b]["mae"] is not None]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.bar(bands, [metrics["mae_by_band"][b]["mae"] for b in bands])
    ax.set(xlabel="true age band", ylabel="MAE (years)", title="MAE by age band")
    fig.tight_layout(); fig.savefig(report / "mae_by_band.png"); plt.close(fig); made.append("mae_by_band.png")

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.bar(bands, [metrics["mae_by_band"][b]["bias"] for b in bands])
    ax.axhline(0, color="k", lw=1)
    ax.set(xlabel="true age band", ylabel="bias (years, + = too old)", title="Bias by age band")
    fig.tight_layout(); fig.savefig(report / "bias_by_band.png"); plt.close(fig); made.append("bias_by_band.png")
    return made


def _markdown(model_id: str, data: str, split: str, m: dict[str, Any], plots: list[str]) -> str:
    lines = [
        f"# Evaluation of `{model_id}`", "",
        f"Data: `{data}`, split `{split}`, {m['faces']} faces.", "",
        "| metric | value |", "|---|---|",
        f"| MAE (years) | {m['mae']:.2f} |",
        f"| bias (years, + = too old) | {m['bias']:+.2f} |",
        f"| MAE ages 0-12 | {m['mae_0_12']:.2f} |" if m.get("mae_0_12") is not None else "| MAE ages 0-12 | n/a |",
        f"| 80% interval covers the true age | {m['interval_80_coverage']:.1%} |",
    ]
    if "gender_accuracy" in m:
        lines.append(f"| gender accuracy | {m['gender_accuracy']:.1%} |")
    for k, v in m.get("speed", {}).items():
        lines.append(f"| {k.replace('_', ' ')} | {v:.4g} |")
    lines += ["", "| photos | faces | MAE | bias |", "|---|---|---|---|"]
    for kind, v in m["by_colour"].items():
        if v["faces"]:
            lines.append(f"| {kind.replace('_', ' ')} | {v['faces']} | {v['mae']:.2f} | {v['bias']:+.2f} |")
    lines += ["", "| age band | faces | MAE | bias |", "|---|---|---|---|"]
    for band, v in m["mae_by_band"].items():
        mae = "n/a" if v["mae"] is None else f"{v['mae']:.2f}"
        bias = "n/a" if v["bias"] is None else f"{v['bias']:+.2f}"
        lines.append(f"| {band} | {v['faces']} | {mae} | {bias} |")
    lines += ["", "| scheme | exact | one-off |", "|---|---|---|"]
    for name, v in m["groups"].items():
        lines.append(f"| {name}{' (default)' if name == DEFAULT_SCHEME else ''} | {v['exact']:.1%} | {v['one_off']:.1%} |")
    lines.append("")
    lines += [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def evaluate(model_path: str | Path | None, data: str, *, split: str = "test", report: str | Path | None = None,
             limit: int | None = None, workers: int | None = None, quiet: bool = False) -> dict[str, Any]:
    """Metrics of a shipped model on one split of `data`; with `report`, also report.md and plots."""
    from phototag.ages.model import load_model
    from training.prepare import prepare

    model = load_model(model_path)
    prep = prepare(data, workers=workers, limit=limit, quiet=quiet)
    source = data.split(":", 1)[0]
    learned = source in model.card.get("training", {}).get("extra", {})
    in_split = (prep.splits == split) if split != "all" else np.ones(len(prep), bool)
    if not (prep.ages >= 0).any() and (prep.groups != "").any():
        return _evaluate_groups(model, data, prep.subset(in_split & (prep.groups != "")), split, report)
    part = prep.subset((prep.ages >= 0) & in_split)
    if len(part) == 0:
        raise ValueError(f"{data}: no labelled faces in split {split!r}")
    pred = _predict(model, data, part)
    m = metrics_for(part, pred.distribution, pred.female, model.point)
    from PIL import Image

    chips = [np.asarray(Image.fromarray(t).resize((150, 150))) for t in part.thumbs[:16]]
    m["speed"] = faces_per_second(model, part.descriptors, chips)
    m["model"] = model.model_id
    m["data"] = source
    m["split"] = split
    if learned:
        # Its card holds the honest figure: cross-validated over people the fold models never saw.
        held = model.card.get("metrics", {}).get("crossval", {}).get(source)
        m["learned_from_these_faces"] = True
        m["crossval"] = {k: held[k] for k in ("faces", "folds", "mae", "bias", "mae_0_12", "by_colour")
                         if held and k in held}
    if report is not None:
        rdir = Path(report)
        rdir.mkdir(parents=True, exist_ok=True)
        plots = _plots(rdir, part.ages.astype(np.float64), point_ages(pred.distribution, model.point), m,
                       PRESETS[DEFAULT_SCHEME])
        (rdir / "metrics.json").write_text(json.dumps(m, indent=2) + "\n", encoding="utf-8")
        (rdir / "report.md").write_text(_markdown(model.model_id, m["data"], split, m, plots), encoding="utf-8")
    return m


def _evaluate_groups(model: Any, data: str, part: Any, split: str, report: str | Path | None) -> dict[str, Any]:
    """Group-labelled data (Adience): exact and one-off group accuracy, in metrics.json and report.md."""
    if len(part) == 0:
        raise ValueError(f"{data}: no labelled faces in split {split!r}")
    m = group_metrics(part, _predict(model, data, part).distribution, model.point)
    m.update(model=model.model_id, data=data.split(":", 1)[0], split=split)
    if report is not None:
        rdir = Path(report)
        rdir.mkdir(parents=True, exist_ok=True)
        (rdir / "metrics.json").write_text(json.dumps(m, indent=2) + "\n", encoding="utf-8")
        lines = [f"# Evaluation of `{model.model_id}`", "", f"Data: `{m['data']}`, split `{split}`, {m['faces']} "
                 f"faces labelled with the `{m['scheme']}` scheme's groups.", "", "| metric | value |", "|---|---|",
                 f"| exact | {m['exact']:.1%} |", f"| one-off | {m['one_off']:.1%} |", "",
                 "| group | faces | exact |", "|---|---|---|"]
        lines += [f"| {g} | {v['faces']} | {v['exact']:.1%} |" for g, v in m["by_group"].items()]
        (rdir / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return m
