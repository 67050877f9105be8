"""People: faces grouped into persons, each person's birth date, and the age every face gets from it.

`update_people` runs at the end of every scan (and after each decision a user makes): new faces join
existing people or form new ones (`grouping`), each person whose faces changed gets a new birth
posterior (`births`), and each of their faces the age phototag uses: exact when the user gave the
birth date, the person's when the person's posterior is sharper than the face's own estimate, else
the face's own. Photos whose tags change are marked for the retag step.

The user's decisions (names, birth dates, merges, faces taken out of a person) are rows in the index;
no later update undoes them: grouping never moves a face that has a person, never merges two existing
people, and never puts a removed face back.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .births import BirthEstimate, day_to_iso, estimate_birth, given_ages, parse_date, person_ages, usable_day
from ..errors import PeopleError
from .grouping import GroupingOptions, group_faces
from ..ages.groups import estimate_many, get_scheme, pack_distribution
from ..store.index import Index, resolve_person
from ..tags.retag import UNTAGGED
from ..tags.names import name_problem

__all__ = ["PeopleError", "resolve_person", "PeopleUpdate", "update_people", "list_people", "person_faces", "name_person",
           "merge_people", "remove_face"]


@dataclass
class PeopleUpdate:
    """What one update did."""

    grouped: int = 0  # faces that were not in a person and now are
    new_people: int = 0
    dated: int = 0  # people whose birth and ages were recomputed
    faces_changed: int = 0  # faces whose age, group or person changed
    photos_marked: int = 0  # photos marked for new tags
    seconds: dict[str, float] = field(default_factory=dict)


def _days(taken: list[str | None], today: dt.date) -> np.ndarray:
    return np.array([np.nan if (d := usable_day(t, today)) is None else d for t in taken], np.float64)


def update_people(index: Index, *, today: dt.date | None = None,
                  options: GroupingOptions = GroupingOptions()) -> PeopleUpdate:
    """Group the faces without a person, then re-date every person whose faces changed. One
    transaction: a kill leaves the index as it was before, or with the whole update."""
    today = today or dt.date.today()
    out = PeopleUpdate()
    with index.transaction() as conn:
        t = time.perf_counter()
        _group_new_faces(conn, today, options, out)
        out.seconds["group"] = time.perf_counter() - t
        t = time.perf_counter()
        _date_dirty_people(conn, today, out)
        conn.execute("DELETE FROM people WHERE face_count = 0 AND name IS NULL AND birth_given IS NULL")
        out.seconds["date"] = time.perf_counter() - t
    return out


def _group_new_faces(conn: sqlite3.Connection, today: dt.date, options: GroupingOptions, out: PeopleUpdate) -> None:
    new_count = conn.execute(
        "SELECT count(*) FROM faces fa JOIN photos p ON p.id = fa.photo_id "
        "WHERE fa.person_id IS NULL AND fa.descriptor IS NOT NULL AND p.status = 'ok'").fetchone()[0]
    if not new_count:
        return
    cols: tuple[list[Any], ...] = ([], [], [], [], [], [])  # id, photo, descriptor, person, distribution, taken
    for row in conn.execute(
            "SELECT fa.id, fa.photo_id, fa.descriptor, fa.person_id, fa.distribution, p.taken_at FROM faces fa "
            "JOIN photos p ON p.id = fa.photo_id WHERE fa.descriptor IS NOT NULL AND p.status = 'ok' "
            "ORDER BY fa.id"):
        for col, value in zip(cols, row):
            col.append(value)
    ids = np.array(cols[0], np.int64)
    photos = np.array(cols[1], np.int64)
    x = np.frombuffer(b"".join(cols[2]), "<f4").reshape(len(ids), -1)
    fixed = np.array([-1 if p is None else p for p in cols[3]], np.int64)
    dist = np.frombuffer(b"".join(cols[4]), "<f2").reshape(len(ids), -1)
    days = _days(cols[5], today)
    del cols
    position = {int(i): n for n, i in enumerate(ids)}
    banned: dict[int, set[int]] = {}
    for face_id, person_id in conn.execute("SELECT face_id, person_id FROM face_exclusions"):
        if face_id in position:
            banned.setdefault(position[face_id], set()).add(person_id)
    labels = group_faces(x, photos, days, fixed, banned, dist, options)
    new = np.flatnonzero(fixed < 0)
    person_of: dict[int, int] = {}
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    existing = set(int(v) for v in np.unique(fixed[fixed >= 0]))
    for label in sorted({int(v) for v in labels[new]}):
        if label in existing:
            person_of[label] = label
        else:
            person_of[label] = conn.execute("INSERT INTO people (created_at, dirty) VALUES (?, 1)", (now,)).lastrowid
            out.new_people += 1
    conn.executemany("UPDATE faces SET person_id = ? WHERE id = ?",
                     [(person_of[int(labels[i])], int(ids[i])) for i in new])
    out.grouped += len(new)


def _date_dirty_people(conn: sqlite3.Connection, today: dt.date, out: PeopleUpdate) -> None:
    dirty = [r[0] for r in conn.execute("SELECT id FROM people WHERE dirty = 1")]
    face_updates: list[tuple[Any, ...]] = []
    marked: set[int] = set()
    for person_id in dirty:
        person = conn.execute("SELECT * FROM people WHERE id = ?", (person_id,)).fetchone()
        faces = conn.execute(
            "SELECT fa.id, fa.photo_id, fa.scheme, fa.distribution, fa.age, fa.age_low, fa.age_high, fa.age_group, "
            "fa.group_prob, fa.age_source, fa.person_distribution, fa.age_photo, p.taken_at, p.tags "
            "FROM faces fa JOIN photos p ON p.id = fa.photo_id "
            "WHERE fa.person_id = ? AND p.status = 'ok' ORDER BY p.taken_at, fa.id", (person_id,)).fetchall()
        days = _days([f["taken_at"] for f in faces], today)
        dated = np.isfinite(days)
        dist = (np.frombuffer(b"".join(f["distribution"] for f in faces), "<f2").reshape(len(faces), -1)
                .astype(np.float64) if faces else np.zeros((0, 101)))
        est = estimate_birth(days[dated], dist[dated]) if dated.any() else None
        born = parse_date(person["birth_given"]) if person["birth_given"] else None
        taken = [f["taken_at"] for f in faces if f["taken_at"]]
        conn.execute(
            "UPDATE people SET birth_est = ?, birth_low = ?, birth_high = ?, birth_faces = ?, birth_conflict = ?, "
            "face_count = ?, photo_count = ?, first_taken = ?, last_taken = ?, dirty = 0 WHERE id = ?",
            (day_to_iso(est.median) if est else None, day_to_iso(est.interval[0]) if est else None,
             day_to_iso(est.interval[1]) if est else None, est.faces if est else 0,
             int(bool(est and est.conflict)), len(faces), len({f["photo_id"] for f in faces}),
             min(taken) if taken else None, max(taken) if taken else None, person_id))
        for scheme_name in {f["scheme"] for f in faces}:
            rows = [i for i, f in enumerate(faces) if f["scheme"] == scheme_name]
            new = _face_ages(get_scheme(scheme_name), dist[rows], days[rows],
                             [faces[i]["age_photo"] for i in rows], born, est)
            for i, values in zip(rows, new):
                f = faces[i]
                if values != (f["age"], f["age_low"], f["age_high"], f["age_group"], f["group_prob"],
                              f["age_source"], f["person_distribution"]):
                    face_updates.append((*values, f["id"]))
                    if f["tags"] != UNTAGGED:
                        marked.add(f["photo_id"])
        out.dated += 1
    conn.executemany("UPDATE faces SET age = ?, age_low = ?, age_high = ?, age_group = ?, group_prob = ?, "
                     "age_source = ?, person_distribution = ? WHERE id = ?", face_updates)
    conn.executemany("UPDATE photos SET retag = 1 WHERE id = ?", [(p,) for p in sorted(marked)])
    out.faces_changed += len(face_updates)
    out.photos_marked += len(marked)


def _face_ages(scheme: Any, dist: np.ndarray, days: np.ndarray, own_ages: list[float | None],
               born: dt.date | None, est: BirthEstimate | None) -> list[tuple[Any, ...]]:
    """For each face of one person: (age, low, high, group, group probability, source, person's
    distribution) phototag uses. Exact from a given birth date; the person's when their posterior is
    sharper than the face's own estimate (and rests on two dated faces or more); else the face's own.
    An undated face always keeps its own."""
    if len(dist) == 0:
        return []
    given = np.array([np.nan if a is None else a for a in own_ages], np.float64)
    ages, lows, highs, groups, probs = estimate_many(dist, scheme, ages=given)
    rows: list[tuple[Any, ...]] = [
        (own if own is not None else round(float(a), 2), int(lo), int(hi), scheme.names[g], round(float(p), 4),
         "photo", None) for own, a, lo, hi, g, p in zip(own_ages, ages, lows, highs, groups, probs)]
    dated = np.flatnonzero(np.isfinite(days))
    if len(dated) == 0:
        return rows
    if born is not None:
        pdist, page = given_ages(born, days[dated])
        plow = phigh = page
        source = "birth"
    elif est is not None and not est.conflict and est.faces >= 2:
        pdist, page, plow, phigh = person_ages(est, days[dated])
        source = "person"
    else:
        return rows
    _, _, _, pgroups, pprobs = estimate_many(pdist, scheme, ages=page)
    for k, i in enumerate(dated):
        if source == "person" and phigh[k] - plow[k] >= highs[i] - lows[i] + 1:
            continue  # the face alone is as sharp: it keeps its own estimate
        exact = source == "birth"
        rows[i] = (round(float(page[k]), 2), round(float(plow[k]), 2 if exact else 1),
                   round(float(phigh[k]), 2 if exact else 1), scheme.names[pgroups[k]], round(float(pprobs[k]), 4),
                   source, pack_distribution(pdist[k]))
    return rows


# -- what the user sees and decides ----------------------------------------------------------------

def list_people(index: Index, *, min_faces: int = 2) -> list[dict[str, Any]]:
    """Every person with at least `min_faces` faces, and every named one; most faces first."""
    rows = index.conn.execute(
        "SELECT * FROM people WHERE face_count >= ? OR name IS NOT NULL OR birth_given IS NOT NULL "
        "ORDER BY face_count DESC, id", (min_faces,)).fetchall()
    return [_person_dict(r) for r in rows]


def _person_dict(r: sqlite3.Row) -> dict[str, Any]:
    return {"id": r["id"], "name": r["name"], "faces": r["face_count"], "photos": r["photo_count"],
            "first": (r["first_taken"] or "")[:10] or None, "last": (r["last_taken"] or "")[:10] or None,
            "born": r["birth_given"] or r["birth_est"], "born_given": r["birth_given"] is not None,
            "born_low": None if r["birth_given"] else r["birth_low"],
            "born_high": None if r["birth_given"] else r["birth_high"],
            "birth_faces": r["birth_faces"], "conflict": bool(r["birth_conflict"])}


def person_faces(index: Index, ref: str | int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A person and their faces, oldest photo first (undated last), each with its date and ages."""
    person = resolve_person(index, ref)
    faces = index.conn.execute(
        "SELECT fa.id AS face_id, p.path, p.taken_at, fa.top, fa.right, fa.bottom, fa.left, fa.age, fa.age_low, "
        "fa.age_high, fa.age_group, fa.group_prob, fa.scheme, fa.age_photo, fa.age_source, pe.name AS person "
        "FROM faces fa JOIN photos p ON p.id = fa.photo_id JOIN people pe ON pe.id = fa.person_id "
        "WHERE fa.person_id = ? AND p.status = 'ok' ORDER BY p.taken_at IS NULL, p.taken_at, fa.id",
        (person["id"],)).fetchall()
    return _person_dict(person), [dict(f) for f in faces]


def _mark_photos(conn: sqlite3.Connection, person_id: int) -> None:
    """The person's photos need new tags (a name or birth date changed)."""
    conn.execute("UPDATE photos SET retag = 1 WHERE tags IS NOT ? AND id IN "
                 "(SELECT photo_id FROM faces WHERE person_id = ?)", (UNTAGGED, person_id))


def name_person(index: Index, ref: str | int, name: str | None = None, born: str | None = None, *,
                today: dt.date | None = None) -> dict[str, Any]:
    """Give a person a name and/or a birth date (which makes every dated face's age exact)."""
    today = today or dt.date.today()
    person = resolve_person(index, ref)
    if name is None and born is None:
        raise PeopleError("nothing to change: give a name, --born YYYY-MM-DD, or both")
    if name is not None:
        name = " ".join(name.split())
        if not name:
            raise PeopleError("a name cannot be empty")
        if name.isdigit():
            raise PeopleError(f"a name cannot be a number ({name!r} would read as a person's id)")
        if problem := name_problem(name):
            raise PeopleError(f"the name {name!r} {problem}; choose another")
        other = index.conn.execute("SELECT id, name FROM people WHERE name = ? AND id != ?",
                                   (name, person["id"])).fetchone()
        if other is not None:
            raise PeopleError(f"person {other['id']} is already called {other['name']!r}: if they are one, merge them "
                              f"(phototag people merge {other['id']} {person['id']}) or choose another name")
    if born is not None:
        try:
            day = parse_date(born)
        except ValueError as exc:
            raise PeopleError(str(exc)) from None
        if day > today:
            raise PeopleError(f"birth date {born} is in the future")
        first = index.conn.execute(
            "SELECT p.taken_at, p.path FROM faces fa JOIN photos p ON p.id = fa.photo_id "
            "WHERE fa.person_id = ? AND p.status = 'ok' ORDER BY p.taken_at", (person["id"],)).fetchall()
        for row in first:
            d = usable_day(row["taken_at"], today)
            if d is not None and (day - dt.date(1970, 1, 1)).days > d:
                raise PeopleError(f"birth date {born} is after one of their photos ({row['taken_at'][:10]}, "
                                  f"{row['path']})")
    with index.transaction() as conn:
        if name is not None:
            conn.execute("UPDATE people SET name = ? WHERE id = ?", (name, person["id"]))
        if born is not None:
            conn.execute("UPDATE people SET birth_given = ?, dirty = 1 WHERE id = ?", (born, person["id"]))
        _mark_photos(conn, person["id"])
    update_people(index, today=today)
    return _person_dict(resolve_person(index, person["id"]))


def merge_people(index: Index, keep_ref: str | int, other_refs: list[str | int], *,
                 today: dt.date | None = None) -> dict[str, Any]:
    """The others are the same person as `keep_ref`: their faces move to it and they are gone."""
    keep = resolve_person(index, keep_ref)
    others = [resolve_person(index, r) for r in other_refs]
    if not others:
        raise PeopleError("name at least one other person to merge into it")
    for o in others:
        if o["id"] == keep["id"]:
            raise PeopleError(f"cannot merge person {keep['id']} with itself")
    names = {p["name"] for p in [keep, *others] if p["name"]}
    if len({n.lower() for n in names}) > 1:
        raise PeopleError(f"these people have different names ({', '.join(sorted(names))}): "
                          "rename one first, or merge the other way round after renaming")
    births = {p["birth_given"] for p in [keep, *others] if p["birth_given"]}
    if len(births) > 1:
        raise PeopleError(f"these people have different birth dates ({', '.join(sorted(births))})")
    shared = index.conn.execute(
        f"SELECT p.path FROM faces a JOIN faces b ON a.photo_id = b.photo_id JOIN photos p ON p.id = a.photo_id "
        f"WHERE a.person_id = ? AND b.person_id IN ({', '.join('?' for _ in others)}) LIMIT 1",
        (keep["id"], *(o["id"] for o in others))).fetchone()
    if shared is not None:
        raise PeopleError(f"they are two faces in one photo ({shared['path']}): not one person")
    with index.transaction() as conn:
        for o in others:
            # "These are two people", said of the one merged in, now speaks for the one kept; said of the
            # two themselves, it is taken back: a merge is the user's latest word.
            conn.execute("INSERT OR IGNORE INTO person_rejections (person_a, person_b) "
                         "SELECT min(?, x), max(?, x) FROM (SELECT person_b AS x FROM person_rejections "
                         "WHERE person_a = ? UNION SELECT person_a FROM person_rejections WHERE person_b = ?) "
                         "WHERE x != ?", (keep["id"], keep["id"], o["id"], o["id"], keep["id"]))
            conn.execute("UPDATE faces SET person_id = ? WHERE person_id = ?", (keep["id"], o["id"]))
            conn.execute("INSERT OR IGNORE INTO face_exclusions (face_id, person_id) "
                         "SELECT face_id, ? FROM face_exclusions WHERE person_id = ?", (keep["id"], o["id"]))
            conn.execute("DELETE FROM people WHERE id = ?", (o["id"],))
        name = next(iter(names), None)
        born = next(iter(births), None)
        conn.execute("UPDATE people SET name = ?, birth_given = ?, dirty = 1 WHERE id = ?", (name, born, keep["id"]))
        _mark_photos(conn, keep["id"])
    update_people(index, today=today)
    return _person_dict(resolve_person(index, keep["id"]))


def remove_face(index: Index, ref: str | int, face_ids: list[int], *, today: dt.date | None = None
                ) -> dict[str, Any]:
    """These faces are not this person, and stay out of them for good; each is grouped again."""
    person = resolve_person(index, ref)
    if not face_ids:
        raise PeopleError("name the faces to take out with --face ID (phototag people show lists them)")
    for face_id in face_ids:
        row = index.conn.execute("SELECT person_id FROM faces WHERE id = ?", (face_id,)).fetchone()
        if row is None:
            raise PeopleError(f"no face {face_id} in the index")
        if row["person_id"] != person["id"]:
            raise PeopleError(f"face {face_id} is not in person {person['id']}")
    with index.transaction() as conn:
        _mark_photos(conn, person["id"])
        for face_id in face_ids:
            conn.execute("INSERT OR IGNORE INTO face_exclusions (face_id, person_id) VALUES (?, ?)",
                         (face_id, person["id"]))
            conn.execute("UPDATE faces SET person_id = NULL, age = age_photo, age_low = age_photo_low, "
                         "age_high = age_photo_high, age_source = 'photo', person_distribution = NULL WHERE id = ?",
                         (face_id,))
    update_people(index, today=today)
    return _person_dict(resolve_person(index, person["id"]))
