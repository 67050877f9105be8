"""`phototag query`, `export`, `contact-sheet`, `stats` and `show`: reading the index."""

from __future__ import annotations

import csv
import functools
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from ..errors import PhototagError
from .app import EXIT_CODES, app
from .app import report_failure as _report_failure
from .common import DbOption, printable
from .common import db_path as _db
from .common import fatal as _fatal
from .people import age_range

# The filters query, export and contact-sheet share: (name, type, option), in --help's order.
_FILTERS = [
    ("group", List[str], typer.Option([], "--group", help="Age group (repeatable): faces in any of these groups.")),
    ("min_age", Optional[float], typer.Option(None, "--min-age", help="Faces estimated at least this old.")),
    ("max_age", Optional[float], typer.Option(None, "--max-age", help="Faces estimated at most this old.")),
    ("since", Optional[str], typer.Option(None, "--since", help="Photos taken on or after this date (YYYY-MM-DD; "
                                                                 "YYYY-MM or YYYY: from its first day).")),
    ("until", Optional[str], typer.Option(None, "--until", help="Photos taken on or before this date (YYYY-MM-DD; "
                                                                 "YYYY-MM or YYYY: to its last day).")),
    ("path", Optional[str], typer.Option(None, "--path", help="Photo paths matching this glob (e.g. '*/2019/*').")),
    ("min_faces", Optional[int], typer.Option(None, "--min-faces", help="Photos with at least this many faces.")),
    ("scheme", Optional[str], typer.Option(None, "--scheme", help="Regroup under this scheme (no model needed).")),
    ("person", Optional[str], typer.Option(None, "--person", help="Faces of this person (name or id; see phototag "
                                                                   "people).")),
]


def _with_filters(command: Callable[..., None]) -> Callable[..., None]:
    """Give a command the shared filter options (after its --db) and call it with one QueryFilters as
    `filters`: one definition of the options, so the three commands cannot drift apart."""
    signature = inspect.signature(command)
    own = [p for p in signature.parameters.values() if p.name != "filters"]
    at = next(i for i, p in enumerate(own) if p.name == "db") + 1
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
             for name, kind, option in _FILTERS]
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]

    @functools.wraps(command)
    def run(**options: Any) -> None:
        from ..store.queries import QueryFilters

        values = {name: options.pop(name) for name, _, _ in _FILTERS}
        values["groups"] = tuple(values.pop("group"))
        values["path_glob"] = values.pop("path")
        command(filters=QueryFilters(**values), **options)

    run.__signature__ = signature.replace(parameters=own[:at] + added + own[at:])  # type: ignore[attr-defined]
    return run


@app.command(epilog=EXIT_CODES)
@_with_filters
def query(
    filters: Any,
    db: Optional[Path] = DbOption,
    format: str = typer.Option("table", "--format", "-f", help="Output: table, csv, json or paths."),
) -> None:
    """List the faces (or, with --format paths, the photos) that match every filter."""
    from ..store.index import Index
    from ..store.queries import query as run_query

    if format not in ("table", "csv", "json", "paths"):
        raise _fatal(PhototagError(f"unknown format {format!r}: use table, csv, json or paths"))
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
@_with_filters
def export(
    filters: Any,
    db: Optional[Path] = DbOption,
    format: str = typer.Option("jsonl", "--format", "-f", help="csv (a row per face), json or jsonl (an "
                                                               "object per photo, its faces inside)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file (replaced "
                                          "atomically) instead of standard output.", show_default=False),
) -> None:
    """Every column of the matching photos and their faces, as CSV, JSON or JSON lines.

    Takes the same filters as query. Without an age or group filter every photo is exported, failed
    and missing ones included; with one, only photos with a matching face."""
    from ..store.export import FORMATS, write_export
    from ..store.index import Index
    from ..store.queries import export as run_export

    if format not in FORMATS:
        raise _fatal(PhototagError(f"unknown format {format!r}: use {', '.join(FORMATS)}"))
    try:
        with Index(_db(db), create=False) as index:
            n = write_export(run_export(index, filters), format, output)
    except PhototagError as exc:
        raise _fatal(exc) from None
    if output is not None:
        typer.echo(f"{n} photos written to {printable(str(output))}", err=True)


@app.command("contact-sheet", epilog=EXIT_CODES)
@_with_filters
def contact_sheet(
    filters: Any,
    out: Path = typer.Option(..., "--out", "-o", help="The sheet to write (.jpg or .png)."),
    db: Optional[Path] = DbOption,
    size: int = typer.Option(160, min=32, max=1024, help="Thumbnail side in pixels."),
    columns: int = typer.Option(8, min=1, max=100, help="Thumbnails per row."),
    limit: int = typer.Option(500, min=1, help="At most this many faces (the first by date)."),
) -> None:
    """Lay out the matching faces as a grid of thumbnails, each with its age and date, framed in its
    group's colour. Takes the same filters as query."""
    from ..ages.groups import get_scheme
    from ..store.index import Index
    from ..store.queries import query as run_query
    from ..render.sheet import SheetOptions, contact_sheet as draw_sheet

    try:
        with Index(_db(db), create=False) as index:
            faces = run_query(index, filters)
            names = get_scheme(filters.scheme or (faces[0]["scheme"] if faces else None)).names
        lookup = {n.lower(): n for n in names}
        title = ", ".join(lookup.get(g.lower(), g) for g in filters.groups) if filters.groups else None
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
    from ..store.index import Index
    from ..store.queries import stats as index_stats

    try:
        with Index(_db(db), create=False) as index:
            s = index_stats(index)
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
    from ..ages.groups import get_scheme
    from ..store.index import Index, row_json

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
        from ..render.annotate import annotate as draw

        try:
            names = get_scheme(row["scheme"]).names if row["scheme"] else []
        except PhototagError:
            names = sorted({f["age_group"] for f in faces})
        draw(path, faces, annotate, names)
        typer.echo(f"annotated copy: {annotate}")
