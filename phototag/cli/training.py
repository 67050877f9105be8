"""`phototag train` and `phototag evaluate`: the age model's commands (the train extra)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..errors import PhototagError
from .app import app
from .common import fatal as _fatal

DataOption = typer.Option(..., help="READER:PATH, e.g. utkface:../shared/datasets/utkface.")
LimitOption = typer.Option(None, help="Use only this many records (a stable sample).")
PrepWorkersOption = typer.Option(0, min=0, help="Processes for face preparation (0: one per core).")
QuietOption = typer.Option(False, "--quiet", "-q", help="No progress bar.")


def _training_call(fn, *args, **kwargs):
    """Run a training/ function; its ValueErrors (bad data specs, empty splits) become one Error line."""
    try:
        return fn(*args, **kwargs)
    except ValueError as exc:
        raise _fatal(PhototagError(str(exc))) from None
    except PhototagError as exc:
        raise _fatal(exc) from None


@app.command()
def train(
    data: str = DataOption,
    out: Path = typer.Option(..., help="Output base name: writes OUT.keras and OUT.json (the card)."),
    config: Optional[str] = typer.Option(None, help="Config file, or a name in training/configs (cpu, gpu)."),
    extra: List[str] = typer.Option([], help="More READER:PATH data to learn from (e.g. fgnet:DIR), measured by "
                                    "cross-validation over folds of people first. Repeatable."),
    limit: Optional[int] = LimitOption,
    workers: int = PrepWorkersOption,
    quiet: bool = QuietOption,
) -> None:
    """Train an age model from a dataset and write it with its card."""
    from training.train import train as run_train

    card = _training_call(run_train, data, out, config, extra=extra, limit=limit, workers=workers or None,
                          quiet=quiet)
    test = card["metrics"].get("test", {})
    typer.echo(f"wrote {out.with_suffix('.keras')} and {out.with_suffix('.json')}: test MAE "
               f"{test.get('mae', float('nan')):.2f} years on {test.get('faces', 0)} faces")
    for name, m in card["metrics"].get("crossval", {}).items():
        typer.echo(f"{name}, cross-validated over {m['folds']} folds of people: MAE {m['mae']:.2f}, "
                   f"bias {m['bias']:+.2f} on {m['faces']} faces")


@app.command()
def evaluate(
    data: str = DataOption,
    model: Optional[Path] = typer.Option(None, help="Model (models/NAME). Default: the shipped model."),
    split: str = typer.Option("test", help="train, val, test or all (all for dev sets such as fgnet and adience)."),
    report: Optional[Path] = typer.Option(None, help="Folder for metrics.json, report.md and plots."),
    limit: Optional[int] = LimitOption,
    workers: int = PrepWorkersOption,
    quiet: bool = QuietOption,
) -> None:
    """Measure a model on a split: MAE by age band, group accuracy, speed; optionally a report."""
    from training.evaluate import evaluate as run_eval

    m = _training_call(run_eval, model, data, split=split, report=report, limit=limit, workers=workers or None,
                       quiet=quiet)
    if "mae" not in m:  # data labelled with groups (Adience)
        typer.echo(f"{m['faces']} faces: {m['scheme']} groups exact {m['exact']:.1%}, one-off {m['one_off']:.1%}")
    else:
        g = m["groups"]["ten"]
        bw = m["by_colour"]["black_and_white"]
        typer.echo(f"{m['faces']} faces: MAE {m['mae']:.2f} years, bias {m['bias']:+.2f} (0-12: "
                   f"{m['mae_0_12'] or float('nan'):.2f}), ten groups exact {g['exact']:.1%}, one-off {g['one_off']:.1%}"
                   + (f"; black-and-white: {bw['faces']} faces, MAE {bw['mae']:.2f}, bias {bw['bias']:+.2f}"
                      if bw["faces"] else ""))
    if m.get("learned_from_these_faces"):
        cv = m.get("crossval") or {}
        typer.echo("note: this model learned from these faces, so the figures above flatter it; its card's "
                   "cross-validated figure, on people each fold model never saw: "
                   + (f"MAE {cv['mae']:.2f}, bias {cv['bias']:+.2f} on {cv['faces']} faces" if cv else "none"))
    if report:
        typer.echo(f"report: {report / 'report.md'}")
