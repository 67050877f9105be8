"""`phototag people`: list, show, name, merge and correct the people phototag found, and suggest merges.

Each command parses its options, calls one function of `phototag.people` and prints. Changes take the
scan lock (exit code 3 while a scan runs) and are one transaction each; the photos' tags follow at the
next scan, from the index, without the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from .common import DbOption, db_path, fatal
from ..errors import PhototagError

people_app = typer.Typer(help="The people in your photos: list, show, name, merge, correct, suggest merges.",
                         invoke_without_command=True, no_args_is_help=False, rich_markup_mode=None)

FormatOption = typer.Option("table", "--format", "-f", help="Output: table or json.")


def _open(db: Optional[Path], *, write: bool = False):
    from ..store.index import Index

    index = Index(db_path(db), create=False)
    if write:
        try:
            index.lock()
        except PhototagError:
            index.close()
            raise
    return index


def _born(p: dict[str, Any]) -> str:
    if not p["born"]:
        return "-"
    if p["born_given"]:
        return f"{p['born']} (given)"
    text = f"~{p['born'][:7]} ({p['born_low'][:7]} to {p['born_high'][:7]})"
    return text + (" conflict: two people?" if p["conflict"] else "")


def _table(head: list[str], rows: list[list[str]]) -> None:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]
    typer.echo("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip())
    for r in rows:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())


def age_range(face: dict[str, Any]) -> str:
    """A face's 80 % age range as shown: 'exact' when its person's birth date was given."""
    if face.get("age_source") == "birth":
        return "exact"
    return f"{face['age_low']:g}-{face['age_high']:g}"


def _check_format(fmt: str) -> None:
    if fmt not in ("table", "json"):
        raise fatal(PhototagError(f"unknown format {fmt!r}: use table or json"))


@people_app.callback()
def people(ctx: typer.Context, db: Optional[Path] = DbOption,
           min_faces: int = typer.Option(2, "--min-faces", min=1, help="List people with at least this many "
                                         "faces (named people are always listed)."),
           format: str = FormatOption) -> None:
    """List the people found: id, name, faces, photos, first and last date, and the birth date (given,
    or estimated with its 80 % interval)."""
    if ctx.invoked_subcommand is not None:
        return
    from ..people.update import list_people

    _check_format(format)
    try:
        with _open(db) as index:
            rows = list_people(index, min_faces=min_faces)
    except PhototagError as exc:
        raise fatal(exc) from None
    if format == "json":
        typer.echo(json.dumps(rows, indent=2))
        return
    _table(["id", "name", "faces", "photos", "first", "last", "born"],
           [[str(p["id"]), p["name"] or "-", str(p["faces"]), str(p["photos"]), p["first"] or "-", p["last"] or "-",
             _born(p)] for p in rows])


@people_app.command("show")
def show(person: str = typer.Argument(..., help="The person's id or name."), db: Optional[Path] = DbOption,
         sheet: Optional[Path] = typer.Option(None, "--sheet", help="Also write their faces as a contact sheet "
                                              "(.jpg or .png), oldest first."),
         format: str = FormatOption) -> None:
    """One person's faces over the years, oldest first, each with its date and age."""
    from ..ages.groups import get_scheme
    from ..people.update import person_faces
    from ..render.sheet import SheetOptions, contact_sheet

    _check_format(format)
    try:
        with _open(db) as index:
            info, faces = person_faces(index, person)
        if format == "json":
            typer.echo(json.dumps({**info, "faces": faces}, indent=2))
        else:
            typer.echo(f"person {info['id']}: {info['name'] or '(no name)'}, {info['faces']} faces in "
                       f"{info['photos']} photos, born {_born(info)}")
            _table(["face", "taken", "age", "range", "group", "own estimate", "path"],
                   [[str(f["face_id"]), (f["taken_at"] or "-")[:10], f"{f['age']:.1f}",
                     age_range(f), f["age_group"] or "-", f"{f['age_photo']:.1f}",
                     f["path"]] for f in faces])
        if sheet is not None:
            names = get_scheme(faces[0]["scheme"] if faces else None).names
            title = info["name"] or f"person {info['id']}"
            result = contact_sheet(faces, sheet, names, SheetOptions(title=title),
                                   on_skip=lambda p, r: typer.echo(f"phototag: {p}: {r}", err=True))
            typer.echo(f"{result.faces} faces on {result.path}", err=format == "json")
    except PhototagError as exc:
        raise fatal(exc) from None


def _change(db: Optional[Path], fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run one change to people under the scan lock; its error becomes the `Error:` line."""
    try:
        with _open(db, write=True) as index:
            return fn(index, *args)
    except PhototagError as exc:
        raise fatal(exc) from None


def _done(info: dict[str, Any], what: str) -> None:
    typer.echo(f"person {info['id']}: {info['name'] or '(no name)'}, {info['faces']} faces, born {_born(info)}; "
               f"{what}; tags follow at the next scan")


@people_app.command("name")
def name(person: str = typer.Argument(..., help="The person's id or name."),
         new_name: Optional[str] = typer.Argument(None, metavar="NAME", help="Their name."),
         born: Optional[str] = typer.Option(None, "--born", help="Their birth date, YYYY-MM-DD: makes every "
                                            "age of theirs exact."),
         db: Optional[Path] = DbOption) -> None:
    """Give a person a name, a birth date, or both. Later scans never undo it."""
    from ..people.update import name_person

    info = _change(db, name_person, person, new_name, born)
    _done(info, "named" if born is None else "named and dated" if new_name else "dated")


@people_app.command("merge")
def merge(person: str = typer.Argument(..., help="The person to keep (id or name)."),
          others: List[str] = typer.Argument(..., help="The people who are the same person (ids or names)."),
          db: Optional[Path] = DbOption) -> None:
    """The others are the same person as the first: their faces join it, for good."""
    from ..people.update import merge_people

    info = _change(db, merge_people, person, others)
    _done(info, f"merged {len(others)} into it")


@people_app.command("remove")
def remove(person: str = typer.Argument(..., help="The person (id or name)."),
           face: List[int] = typer.Option(..., "--face", help="A face that is not this person (repeatable; "
                                          "`people show` lists face ids)."),
           db: Optional[Path] = DbOption) -> None:
    """Take faces out of a person: they never go back to them, and are grouped again elsewhere."""
    from ..people.update import remove_face

    info = _change(db, remove_face, person, face)
    _done(info, f"{len(face)} face{'s' if len(face) != 1 else ''} taken out")


@people_app.command("suggest")
def suggest(db: Optional[Path] = DbOption,
            limit: int = typer.Option(20, "--limit", min=1, help="At most this many pairs."),
            sheet: Optional[Path] = typer.Option(None, "--sheet", help="Also draw each pair's faces side by side "
                                                 "(.jpg or .png): a row per pair, the first person's faces then "
                                                 "the second's."),
            format: str = FormatOption) -> None:
    """Pairs of people that are probably one, best first, with how far apart their faces are (those
    photographed nearest in time counting most) and why.
    Accept one with `phototag people merge A B`; say they are two with `phototag people reject A B`."""
    from ..people.suggest import suggest_merges

    _check_format(format)
    try:
        with _open(db) as index:
            found = suggest_merges(index, limit=limit)
            few = not found and index.conn.execute(
                "SELECT count(*) FROM people WHERE face_count > 0").fetchone()[0] < 2
            if sheet is not None and found:
                _pair_sheet(index, found, sheet)
    except PhototagError as exc:
        raise fatal(exc) from None
    if format == "json":
        typer.echo(json.dumps([s.as_dict() for s in found], indent=2))
        return
    if not found:
        typer.echo("fewer than two people in the index: nothing to suggest" if few
                   else "no pairs to suggest: no two people are close enough to be one")
        return
    _table(["a", "b", "score", "why"], [[_who(s.person_a, s.name_a), _who(s.person_b, s.name_b), f"{s.score:.2f}",
                                         s.why] for s in found])


def _who(person_id: int, name: Optional[str]) -> str:
    return f"{person_id} ({name})" if name else str(person_id)


def _pair_sheet(index: Any, found: list, out: Path, per_person: int = 4) -> None:
    """A contact sheet with a row per pair: up to `per_person` faces of each, oldest first."""
    from ..ages.groups import get_scheme
    from ..people.update import person_faces
    from ..render.sheet import SheetOptions, contact_sheet

    faces: list[dict[str, Any]] = []
    for s in found:
        for person_id in (s.person_a, s.person_b):
            mine = person_faces(index, person_id)[1][:per_person]
            faces += [mine[i % len(mine)] for i in range(per_person)]  # a short row repeats its faces
    title = "suggested merges: each row, the first person's faces, then the second's"
    names = get_scheme(faces[0]["scheme"] if faces else None).names
    result = contact_sheet(faces, out, names, SheetOptions(columns=2 * per_person, title=title),
                           on_skip=lambda p, r: typer.echo(f"phototag: {p}: {r}", err=True))
    typer.echo(f"{len(found)} pairs on {result.path}", err=True)


@people_app.command("reject")
def reject(person_a: str = typer.Argument(..., help="One person (id or name)."),
           person_b: str = typer.Argument(..., help="The other (id or name)."),
           db: Optional[Path] = DbOption) -> None:
    """These are two people: `suggest` never shows the pair again (a later merge of the two takes it back)."""
    from ..people.suggest import reject_pair

    a, b = _change(db, reject_pair, person_a, person_b)
    typer.echo(f"person {a} and person {b}: recorded as two people; suggest will not show them again")
