"""Merge suggestions: pairs of people that are probably one, best first, and the user's "these are two".

Grouping puts precision first, so one person is often split into several entries (a family album:
about 43 entries for 12 people). `suggest_merges` finds the pairs a user should look at: people whose
faces are close on average, who never share a photo, whose birth dates can be one (their 80 %
intervals overlap), that the user has not already said are two, and none of whose faces the user
took out of the other. `reject_pair` records "these are two people": suggest never shows the pair
again, and grouping never merges existing people anyway, through re-scans and `scan --force`.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import PeopleError
from ..store.index import Index, resolve_person
from .grouping import GroupingOptions, neighbours

__all__ = ["Suggestion", "suggest_merges", "reject_pair", "MAX_DISTANCE"]

MAX_DISTANCE = 0.70  # average descriptor distance beyond which two entries are not suggested
_SAMPLE = 48  # faces of each person compared, at most: enough for an average, bounded for large people
_NEIGHBOURS = 24  # candidate people per person, by their mean descriptors
# Two people whose 80 % birth intervals do not overlap are not suggested: no one birth date explains
# both. Chosen on fgnet-dev: a slack of 0 put 16 of its top 20 right, against 12 at two years (the
# children of different families born a year or two apart sit close); adience-dev gave 15 of 20 at
# every slack from 0 to 3 years, so it could not choose, and its figure is the held-out one.
_BIRTH_SLACK_DAYS = 0


@dataclass(frozen=True)
class Suggestion:
    """One pair: `score` is 1 minus the average distance between their faces (higher: more likely one)."""

    person_a: int
    person_b: int
    score: float
    distance: float
    faces_a: int
    faces_b: int
    name_a: str | None
    name_b: str | None
    why: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Person:
    id: int
    name: str | None
    descriptors: np.ndarray
    photos: set[int]
    faces: set[int]
    born: tuple[dt.date, dt.date] | None  # the 80 % interval (a given date: that day twice)


def _day(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text[:10]) if text else None
    except ValueError:
        return None


def _people(conn: sqlite3.Connection) -> dict[int, _Person]:
    rows: dict[int, list[Any]] = {}
    for person_id, face_id, photo_id, desc in conn.execute(
            "SELECT fa.person_id, fa.id, fa.photo_id, fa.descriptor FROM faces fa JOIN photos p ON p.id = fa.photo_id "
            "WHERE fa.person_id IS NOT NULL AND fa.descriptor IS NOT NULL AND p.status = 'ok' ORDER BY fa.id"):
        rows.setdefault(person_id, []).append((face_id, photo_id, desc))
    people = {}
    for r in conn.execute("SELECT id, name, birth_given, birth_low, birth_high FROM people"):
        if r["id"] not in rows:
            continue
        given = _day(r["birth_given"])
        low, high = (given, given) if given else (_day(r["birth_low"]), _day(r["birth_high"]))
        faces = rows[r["id"]]
        people[r["id"]] = _Person(r["id"], r["name"], np.stack([np.frombuffer(d, "<f4") for _, _, d in faces]),
                                  {p for _, p, _ in faces}, {f for f, _, _ in faces},
                                  (low, high) if low and high else None)
    return people


def _candidates(people: dict[int, _Person]) -> set[tuple[int, int]]:
    """Pairs worth measuring: each person and the people nearest to it by mean descriptor."""
    ids = sorted(people)
    means = np.stack([people[i].descriptors.mean(axis=0) for i in ids]).astype(np.float32)
    k = min(len(ids), _NEIGHBOURS + 1)
    _, idx = neighbours(means, means, k, approximate=len(ids) > GroupingOptions().exact_below)
    pairs = set()
    for row, near in enumerate(idx):
        for j in near:
            if j >= 0 and j != row:
                a, b = ids[row], ids[j]
                pairs.add((min(a, b), max(a, b)))
    return pairs


def _average_distance(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a[:_SAMPLE], b[:_SAMPLE]
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return float(np.sqrt(np.maximum(d2, 0)).mean())


def _births_apart(a: _Person, b: _Person, slack_days: float) -> bool:
    if a.born is None or b.born is None:
        return False
    gap = max((a.born[0] - b.born[1]).days, (b.born[0] - a.born[1]).days)
    return gap > slack_days


def _why(a: _Person, b: _Person, distance: float) -> str:
    o = GroupingOptions()
    parts = [f"their faces are {distance:.2f} apart on average (grouping joins below {o.threshold:.2f}, "
             f"{o.child_threshold:.2f} for two children)", f"{len(a.faces)} and {len(b.faces)} faces, never in one photo"]
    if a.born and b.born:
        parts.append(f"born ~{a.born[0].year}-{a.born[1].year} and ~{b.born[0].year}-{b.born[1].year}")
    return "; ".join(parts)


def suggest_merges(index: Index, *, limit: int = 20, max_distance: float = MAX_DISTANCE,
                   birth_slack_days: float = _BIRTH_SLACK_DAYS) -> list[Suggestion]:
    """The `limit` pairs of people most probably one, closest first (an empty list with fewer than two)."""
    conn = index.conn
    people = _people(conn)
    if len(people) < 2:
        return []
    rejected = {(r[0], r[1]) for r in conn.execute("SELECT person_a, person_b FROM person_rejections")}
    excluded: dict[int, set[int]] = {}
    for face_id, person_id in conn.execute("SELECT face_id, person_id FROM face_exclusions"):
        excluded.setdefault(person_id, set()).add(face_id)
    found = []
    for a_id, b_id in _candidates(people):
        a, b = people[a_id], people[b_id]
        if (a_id, b_id) in rejected or a.photos & b.photos or _births_apart(a, b, birth_slack_days):
            continue
        if excluded.get(a_id, set()) & b.faces or excluded.get(b_id, set()) & a.faces:
            continue  # the user took one's face out of the other
        d = _average_distance(a.descriptors, b.descriptors)
        if d <= max_distance:
            found.append(Suggestion(a_id, b_id, round(1 - d, 4), round(d, 4), len(a.faces), len(b.faces),
                                    a.name, b.name, _why(a, b, d)))
    found.sort(key=lambda s: (s.distance, s.person_a, s.person_b))
    return found[:limit]


def reject_pair(index: Index, a_ref: str | int, b_ref: str | int) -> tuple[int, int]:
    """Record that two people are two: suggest never shows them again. PeopleError when one is unknown,
    they are one person, or the pair is already recorded."""
    a, b = resolve_person(index, a_ref), resolve_person(index, b_ref)
    if a["id"] == b["id"]:
        raise PeopleError(f"person {a['id']} is one person: name two")
    pair = (min(a["id"], b["id"]), max(a["id"], b["id"]))
    if index.conn.execute("SELECT 1 FROM person_rejections WHERE person_a = ? AND person_b = ?", pair).fetchone():
        raise PeopleError(f"person {pair[0]} and person {pair[1]} are already recorded as two people")
    with index.transaction() as conn:
        conn.execute("INSERT INTO person_rejections (person_a, person_b) VALUES (?, ?)", pair)
    return pair
