"""The command line: each command parses options, calls one library function, prints.

Library errors are PhototagError subclasses; they become one `Error: ...` line and an exit code.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer

from . import __version__
from .cli_common import DbOption, printable
from .cli_common import db_path as _db
from .cli_common import fatal as _fatal
from .cli_people import age_range, people_app  # light: typer only
from .errors import PhototagError

EXIT_CODES = """Exit codes: 0 all done; 1 some files failed (each named on stderr); 2 usage or fatal error;
3 another scan holds the index; 130 interrupted (SIGINT or SIGTERM)."""

app = typer.Typer(
    help="Tag family photos with the age group of every person in them: EXIF tags and a SQLite index.\n\n"
    + EXIT_CODES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

def _report_failure(path: str, reason: str) -> None:
    """One line per bad file, naming it and the reason; the run carries on."""
    typer.echo(f"phototag: {printable(path)}: {reason}", err=True)


def _finish(summary, *, dry_run: bool, quiet: bool) -> None:
    """The summary line (on stderr under --quiet, and only if something failed), then the exit code."""
    if not quiet or summary.exit_code:
        typer.echo(("dry run: " if dry_run else "") + summary.line(), err=summary.exit_code != 0 and quiet)
    raise typer.Exit(summary.exit_code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"phototag {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    config: Optional[Path] = typer.Option(None, "--config", show_default=False,
                                          help="Settings file (TOML; a table per command, e.g. [scan] "
                                               "sidecar = true). Default: $PHOTOTAG_CONFIG, else "
                                               "config.toml in the user config folder, if it exists."),
) -> None:
    """phototag."""
    from .config import config_path, load_config

    group = ctx.command
    commands = {name: {p.name for p in cmd.params if p.name}
                for name, cmd in getattr(group, "commands", {}).items()}
    try:
        ctx.default_map = load_config(config_path(config), commands)
    except PhototagError as exc:
        raise _fatal(exc) from None


app.add_typer(people_app, name="people")


def _raise_interrupt(signum: int, frame: object) -> None:
    from .pipeline import Interrupted

    raise Interrupted(signal.Signals(signum).name)


@app.command(epilog=EXIT_CODES)
def scan(
    paths: List[Path] = typer.Argument(..., help="Photos and folders to scan (folders recursively)."),
    db: Optional[Path] = DbOption,
    model: Optional[Path] = typer.Option(None, help="Model to use (models/NAME). Default: the shipped model."),
    scheme: str = typer.Option("ten", help="Age-group scheme: ten, three, four, adience, or a .toml file."),
    detector: str = typer.Option("auto", help="Face detector: auto (dlib's CNN on a detection copy of up to 1.6 "
                                              "megapixels; on a larger one, the CNN at 0.5 megapixel and HOG), hog "
                                              "(fastest; misses faces in profile) or cnn (the CNN on the whole "
                                              "detection copy; slowest)."),
    upsample: Optional[int] = typer.Option(None, min=0, max=3, show_default="once for small photos, else 0",
                                           help="Times to upsample before detecting (finds smaller faces, slower)."),
    detect_size: int = typer.Option(2000, min=200, help="Faces are detected in a copy with the pixels of a 4:3 photo this long (panoramas keep more length)."),
    thorough: bool = typer.Option(False, help="Find faces down to 80 px in 12 MP photos: --detect-size 2400 "
                                              "--upsample 1; scans about 3 times slower."),
    min_face: int = typer.Option(40, min=1, help="Ignore faces smaller than this, in full-resolution pixels."),
    min_score: float = typer.Option(0.0, help="Ignore HOG detections scoring below this."),
    verify: bool = typer.Option(True, help="Confirm doubtful HOG faces (score under 0.5) with dlib's CNN detector."),
    workers: int = typer.Option(0, min=0, help="Detection processes (0: one per core)."),
    batch_size: int = typer.Option(64, min=1, help="Faces per model batch, gathered across photos."),
    exclude: List[str] = typer.Option([], help="Skip paths matching this glob (repeatable)."),
    follow_symlinks: bool = typer.Option(False, help="Follow symbolic links to files and folders."),
    force: bool = typer.Option(False, help="Redo every photo, even unchanged ones."),
    no_exif: bool = typer.Option(False, "--no-exif", help="Never write tags into photos (index, and sidecars with --sidecar)."),
    sidecar: bool = typer.Option(False, help="Also write XMP sidecars (keywords and face regions); the only "
                                               "tags PNG and HEIC photos get."),
    sidecar_style: str = typer.Option("append", help="Sidecar names: append (IMG_0042.jpg.xmp: darktable, "
                                                      "digiKam) or replace (IMG_0042.xmp: Lightroom)."),
    dry_run: bool = typer.Option(False, help="Write nothing at all: no photo, no index."),
    prune: bool = typer.Option(False, help="Delete index rows of photos that have disappeared (default: mark missing)."),
    people: bool = typer.Option(True, help="Group faces into people, estimate their birth dates, and give "
                                           "each face the age its person implies (see phototag people)."),
    wait: float = typer.Option(0.0, min=0, help="Seconds to wait for another scan of the same index to finish."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only errors."),
) -> None:
    """Find faces, estimate ages, write EXIF tags and index every photo under PATHS."""
    from .index import Index
    from .model import load_model
    from .pipeline import ScanOptions, scan as run_scan

    try:
        if thorough:
            detect_size = max(detect_size, ScanOptions.THOROUGH["detect_size"])
            upsample = ScanOptions.THOROUGH["upsample"] if upsample is None else upsample
        options = ScanOptions(detector=detector, upsample=upsample, detect_size=detect_size, min_face=min_face,
                              min_score=min_score, verify=verify,
                              workers=workers, batch_size=batch_size, force=force, exclude=tuple(exclude),
                              follow_symlinks=follow_symlinks, scheme=scheme, prune=prune, people=people)
        from .groups import get_scheme

        get_scheme(scheme)
        age_model = load_model(model)
        writer = _writer(dry_run=dry_run, exif=not no_exif, sidecar=sidecar, sidecar_style=sidecar_style)
        index = Index(_db(db), in_memory=dry_run)
    except PhototagError as exc:
        raise _fatal(exc) from None
    with index:
        try:
            if not dry_run:
                index.lock(wait)
        except PhototagError as exc:
            raise _fatal(exc) from None
        old = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGTERM,)}
        from tqdm import tqdm

        bar = tqdm(total=0, unit="photo", disable=quiet or not sys.stderr.isatty(), file=sys.stderr)
        try:
            summary = run_scan(paths, index, age_model, writer=writer, options=options,
                               on_failure=_report_failure, progress=bar)
        except PhototagError as exc:
            raise _fatal(exc) from None
        finally:
            bar.close()
            for s, h in old.items():
                signal.signal(s, h)
    _finish(summary, dry_run=dry_run, quiet=quiet)


def _writer(*, dry_run: bool, exif: bool, sidecar: bool, sidecar_style: str):
    """The writer the options ask for: nothing (dry run), EXIF, sidecars, or both."""
    from .sidecar import STYLES, SidecarWriter
    from .tags import ExifWriter, MultiWriter, NullWriter

    if sidecar_style not in STYLES:
        raise PhototagError(f"unknown sidecar style {sidecar_style!r}: use append or replace")
    if dry_run:
        return NullWriter("dry run")
    writers = ([ExifWriter()] if exif else []) + ([SidecarWriter(sidecar_style)] if sidecar else [])
    if not writers:
        return NullWriter("--no-exif", tidy=True)
    return writers[0] if len(writers) == 1 else MultiWriter(*writers)


@app.command(epilog=EXIT_CODES)
def untag(
    paths: List[Path] = typer.Argument(..., help="Photos and folders to untag (folders recursively)."),
    db: Optional[Path] = typer.Option(None, "--db", help="Also note the change in this index (default: "
                                      "$PHOTOTAG_DB or the user data folder's index, when it exists).",
                                      show_default=False),
    exclude: List[str] = typer.Option([], help="Skip paths matching this glob (repeatable)."),
    follow_symlinks: bool = typer.Option(False, help="Follow symbolic links to files and folders."),
    dry_run: bool = typer.Option(False, help="Write nothing at all."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only errors."),
) -> None:
    """Remove exactly what phototag wrote: its keywords and UserComment record in the photos, and its
    entries in their XMP sidecars (a sidecar left with nothing else in it is deleted)."""
    from .index import Index
    from .pipeline import untag as run_untag
    from .sidecar import STYLES, SidecarWriter
    from .tags import ExifWriter, MultiWriter, NullWriter

    db_path = _db(db)
    try:
        index = Index(db_path) if db_path.exists() and not dry_run else None
        if index is not None:
            index.lock()
    except PhototagError as exc:
        raise _fatal(exc) from None
    try:
        writer = NullWriter("dry run") if dry_run else MultiWriter(ExifWriter(), *(SidecarWriter(s) for s in STYLES))
        summary = run_untag(paths, writer, index=index,
                            exclude=exclude, follow_symlinks=follow_symlinks, on_failure=_report_failure)
    finally:
        if index is not None:
            index.close()
    _finish(summary, dry_run=dry_run, quiet=quiet)


# The filters `query`, `export` and `contact-sheet` share.
GroupOption = typer.Option([], "--group", help="Age group (repeatable): faces in any of these groups.")
MinAgeOption = typer.Option(None, "--min-age", help="Faces estimated at least this old.")
MaxAgeOption = typer.Option(None, "--max-age", help="Faces estimated at most this old.")
SinceOption = typer.Option(None, "--since", help="Photos taken on or after this date (YYYY-MM-DD; YYYY-MM or "
                                                  "YYYY: from its first day).")
UntilOption = typer.Option(None, "--until", help="Photos taken on or before this date (YYYY-MM-DD; YYYY-MM or "
                                                  "YYYY: to its last day).")
PathOption = typer.Option(None, "--path", help="Photo paths matching this glob (e.g. '*/2019/*').")
MinFacesOption = typer.Option(None, "--min-faces", help="Photos with at least this many faces.")
SchemeFilterOption = typer.Option(None, "--scheme", help="Regroup under this scheme (no model needed).")
PersonOption = typer.Option(None, "--person", help="Faces of this person (name or id; see phototag people).")


def _filters(group, min_age, max_age, since, until, path, min_faces, scheme, person=None):
    from .index import QueryFilters

    return QueryFilters(groups=tuple(group), min_age=min_age, max_age=max_age, since=since, until=until,
                        path_glob=path, min_faces=min_faces, scheme=scheme, person=person)


@app.command(epilog=EXIT_CODES)
def query(
    db: Optional[Path] = DbOption,
    group: List[str] = GroupOption,
    min_age: Optional[float] = MinAgeOption,
    max_age: Optional[float] = MaxAgeOption,
    since: Optional[str] = SinceOption,
    until: Optional[str] = UntilOption,
    path: Optional[str] = PathOption,
    min_faces: Optional[int] = MinFacesOption,
    scheme: Optional[str] = SchemeFilterOption,
    person: Optional[str] = PersonOption,
    format: str = typer.Option("table", "--format", "-f", help="Output: table, csv, json or paths."),
) -> None:
    """List the faces (or, with --format paths, the photos) that match every filter."""
    from .index import Index, query as run_query

    if format not in ("table", "csv", "json", "paths"):
        raise _fatal(PhototagError(f"unknown format {format!r}: use table, csv, json or paths"))
    filters = _filters(group, min_age, max_age, since, until, path, min_faces, scheme, person)
    try:
        with Index(_db(db), create=False) as index:
            rows = run_query(index, filters)
    except PhototagError as exc:
        raise _fatal(exc) from None
    cols = ["path", "taken_at", "idx", "age", "age_low", "age_high", "age_group", "group_prob", "scheme",
            "person_id", "person", "age_photo"]
    if format == "paths":
        seen: set[str] = set()
        for r in rows:
            if r["path"] not in seen:
                seen.add(r["path"])
                typer.echo(printable(r["path"]))
    elif format == "json":
        typer.echo(json.dumps(rows, indent=2))
    elif format == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(cols)
        for r in rows:
            w.writerow([r[c] for c in cols])
    else:
        table = [[printable(str(r["path"])), r["taken_at"] or "", str(r["idx"]), f"{r['age']:.1f}",
                  age_range(r), r["age_group"], f"{r['group_prob']:.2f}",
                  r["person"] or (str(r["person_id"]) if r["person_id"] is not None else "-")] for r in rows]
        head = ["path", "taken", "face", "age", "80% range", "group", "p", "person"]
        widths = [max(len(head[i]), *(len(t[i]) for t in table)) if table else len(head[i]) for i in range(len(head))]
        typer.echo("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip())
        for t in table:
            typer.echo("  ".join(v.ljust(w) for v, w in zip(t, widths)).rstrip())


@app.command(epilog=EXIT_CODES)
def export(
    db: Optional[Path] = DbOption,
    group: List[str] = GroupOption,
    min_age: Optional[float] = MinAgeOption,
    max_age: Optional[float] = MaxAgeOption,
    since: Optional[str] = SinceOption,
    until: Optional[str] = UntilOption,
    path: Optional[str] = PathOption,
    min_faces: Optional[int] = MinFacesOption,
    scheme: Optional[str] = SchemeFilterOption,
    person: Optional[str] = PersonOption,
    format: str = typer.Option("jsonl", "--format", "-f", help="csv (a row per face), json or jsonl (an "
                                                               "object per photo, its faces inside)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file (replaced "
                                          "atomically) instead of standard output.", show_default=False),
) -> None:
    """Every column of the matching photos and their faces, as CSV, JSON or JSON lines.

    Takes the same filters as query. Without an age or group filter every photo is exported, failed
    and missing ones included; with one, only photos with a matching face."""
    from .export import FORMATS, write_export
    from .index import Index, export as run_export

    if format not in FORMATS:
        raise _fatal(PhototagError(f"unknown format {format!r}: use {', '.join(FORMATS)}"))
    filters = _filters(group, min_age, max_age, since, until, path, min_faces, scheme, person)
    try:
        with Index(_db(db), create=False) as index:
            n = write_export(run_export(index, filters), format, output)
    except PhototagError as exc:
        raise _fatal(exc) from None
    if output is not None:
        typer.echo(f"{n} photos written to {printable(str(output))}", err=True)


@app.command("contact-sheet", epilog=EXIT_CODES)
def contact_sheet(
    out: Path = typer.Option(..., "--out", "-o", help="The sheet to write (.jpg or .png)."),
    db: Optional[Path] = DbOption,
    group: List[str] = GroupOption,
    min_age: Optional[float] = MinAgeOption,
    max_age: Optional[float] = MaxAgeOption,
    since: Optional[str] = SinceOption,
    until: Optional[str] = UntilOption,
    path: Optional[str] = PathOption,
    min_faces: Optional[int] = MinFacesOption,
    scheme: Optional[str] = SchemeFilterOption,
    person: Optional[str] = PersonOption,
    size: int = typer.Option(160, min=32, max=1024, help="Thumbnail side in pixels."),
    columns: int = typer.Option(8, min=1, max=100, help="Thumbnails per row."),
    limit: int = typer.Option(500, min=1, help="At most this many faces (the first by date)."),
) -> None:
    """Lay out the matching faces as a grid of thumbnails, each with its age and date, framed in its
    group's colour. Takes the same filters as query."""
    from .groups import get_scheme
    from .index import Index, query as run_query
    from .sheet import SheetOptions, contact_sheet as draw_sheet

    filters = _filters(group, min_age, max_age, since, until, path, min_faces, scheme, person)
    try:
        with Index(_db(db), create=False) as index:
            faces = run_query(index, filters)
            names = get_scheme(scheme or (faces[0]["scheme"] if faces else None)).names
        lookup = {n.lower(): n for n in names}
        title = ", ".join(lookup.get(g.lower(), g) for g in group) if group else None
        result = draw_sheet(faces, out, names, SheetOptions(thumb=size, columns=columns, limit=limit, title=title),
                            on_skip=_report_failure)
    except PhototagError as exc:
        raise _fatal(exc) from None
    typer.echo(f"{result.faces} faces on {printable(str(result.path))}"
               + (f", {len(result.skipped)} photos unreadable" if result.skipped else ""))
    raise typer.Exit(1 if result.skipped else 0)


@app.command()
def stats(db: Optional[Path] = DbOption,
          as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Photos, faces, faces per age group, the last scan and the model."""
    from .index import Index

    try:
        with Index(_db(db), create=False) as index:
            s = index.stats()
    except PhototagError as exc:
        raise _fatal(exc) from None
    if as_json:
        typer.echo(json.dumps(s, indent=2))
        return
    typer.echo(f"index: {s['index']}")
    status = ", ".join(f"{n} {k}" for k, n in sorted(s["photos_by_status"].items()))
    typer.echo(f"photos: {s['photos']}" + (f" ({status})" if status else ""))
    typer.echo(f"photos with faces: {s['photos_with_faces']}")
    typer.echo(f"faces: {s['faces']}")
    for g, n in s["faces_by_group"].items():
        typer.echo(f"  {g}: {n}")
    typer.echo(f"people: {s['people']} ({s['people_named']} named)")
    typer.echo(f"models: {', '.join(s['models']) or '-'}")
    last = s["last_scan"]
    if last:
        typer.echo(f"last scan: {last['finished_at']}: {last['files_seen']} files seen, {last['tagged']} tagged, "
                   f"{last['faces']} faces, {last['failures']} failed (exit {last['exit_code']})")


@app.command()
def show(
    photo: Path = typer.Argument(..., help="A photo in the index."),
    db: Optional[Path] = DbOption,
    annotate: Optional[Path] = typer.Option(None, help="Write a copy with the faces boxed and labelled."),
    gender: bool = typer.Option(False, "--gender", help="Also show the model's P(female) for each face."),
) -> None:
    """The faces of one photo: boxes, ages, intervals and groups, from the index and the file's tags."""
    from .groups import get_scheme
    from .index import Index, row_json

    path = os.path.abspath(photo)
    try:
        with Index(_db(db), create=False) as index:
            row = index.photo(path)
            if row is None:
                raise PhototagError(f"{printable(path)} is not in the index (scan it first)")
            faces = [row_json(f) for f in index.faces_of(path)]
    except PhototagError as exc:
        raise _fatal(exc) from None
    typer.echo(f"{printable(path)}: {row['status']}, {row['face_count'] or 0} faces, taken {row['taken_at'] or '?'}, "
               f"tags {row['tags'] or '-'}" + (f", error: {row['error']}" if row["error"] else ""))
    for f in faces:
        who = f["person"] or (f"person {f['person_id']}" if f["person_id"] is not None else None)
        typer.echo(f"  face {f['idx']}: "
                   f"{f['age_group']} (p {f['group_prob']:.2f}), age ~{f['age']:.1f} "
                   f"(80%: {age_range(f)}), box top {f['top']} right {f['right']} "
                   f"bottom {f['bottom']} left {f['left']}"
                   + (f", P(female) {f['female_prob']:.2f}" if gender and f["female_prob"] is not None else "")
                   + (f", {who}" if who else ""))
    if annotate is not None:
        from .annotate import annotate as draw

        try:
            names = get_scheme(row["scheme"]).names if row["scheme"] else []
        except PhototagError:
            names = sorted({f["age_group"] for f in faces})
        draw(path, faces, annotate, names)
        typer.echo(f"annotated copy: {annotate}")


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


def run() -> None:
    """The `phototag` command: the app, where no traceback ever reaches the user. A library error is
    already one `Error:` line; anything else (a bug, an index another tool damaged) is said on one line
    too (PHOTOTAG_DEBUG=1 shows the traceback), so a cron job's log stays readable and its exit code
    means what EXIT_CODES says."""
    try:
        app()
    except Exception as exc:  # noqa: BLE001 - the last line of defence, not a way of handling errors
        if os.environ.get("PHOTOTAG_DEBUG"):
            raise
        text = " ".join(f"{type(exc).__name__}: {exc}".split())
        typer.echo(f"Error: unexpected {printable(text)} (phototag {__version__} did not expect this: a damaged "
                   "index, or a bug; PHOTOTAG_DEBUG=1 shows where, please report it)", err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    run()
