"""Merge suggestions: pairs of people that are probably one, best first, and the user's "these are two".

Grouping puts precision first, so one person is often split into several entries (a family album:
about 43 entries for 12 people). `suggest_merges` finds the pairs a user should look at: people whose
faces are close, who never share a photo, whose birth dates can be one (their 80 % intervals
overlap), that the user has not already said are two, and none of whose faces the user took out of
the other. "Close" weighs each pair of their faces by how near in time the two photos were taken: one
person's faces drift apart over the years (on FG-NET, 0.39 apart within a year, 0.60 at 15 to 25
years) while two people's stay as far apart whatever the years between, so the faces photographed
closest in time say most about whether two entries are one person. `reject_pair` records "these are
two people": suggest never shows the pair again, and grouping never merges existing people anyway,
through re-scans and `scan --force`.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import PeopleError
from ..store.index import Index, resolve_person
from .births import YEAR_DAYS, usable_day
from .grouping import GroupingOptions, neighbours

__all__ = ["Suggestion", "suggest_merges", "reject_pair", "MAX_DISTANCE"]

MAX_DISTANCE = 0.70  # descriptor distance (weighed by time, below) beyond which two entries are not suggested
# Each pair of faces counts exp(-years between the two photos / this) in a pair of entries' distance (a
# pair with an undated photo counts fully). Chosen on fgnet-dev's people in two halves, each half's
# figure measured with the scale the other half chose, over two runs of cross-validated ages
# (docs/people.md), with grouping time-weighted as shipped; adience-dev is undated. 1 to 8 years differ
# by about one pair in the top 20.
TIME_SCALE_YEARS = 1.0
_SAMPLE = 48  # faces of each person compared, at most: enough for an average, bounded for large people
_NEIGHBOURS = 24  # candidate people per person, by their mean descriptors
# Two people whose 80 % birth intervals do not overlap are not suggested: no one birth date explains
# both. Chosen on fgnet-dev: a slack of 0 put 16 of its top 20 right, against 12 at two years (the
# children of different families born a year or two apart sit close); adience-dev gave 15 of 20 at
# every slack from 0 to 3 years, so it could not choose, and its figure is the held-out one.
_BIRTH_SLACK_DAYS = 0


@dataclass(frozen=True)
class Suggestion:
    """One pair: `score` is 1 minus `distance`, the distance between their faces with the pairs photographed
    closest in time counting most (higher: more likely one)."""

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
    days: np.ndarray  # the day each face's photo was taken (NaN: undated), as descriptors are ordered
    photos: set[int]
    faces: set[int]
    born: tuple[dt.date, dt.date] | None  # the 80 % interval (a given date: that day twice)


def _day(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text[:10]) if text else None
    except ValueError:
        return None


def _people(conn: sqlite3.Connection, today: dt.date | None) -> dict[int, _Person]:
    rows: dict[int, list[Any]] = {}
    for person_id, face_id, photo_id, desc, taken in conn.execute(
            "SELECT fa.person_id, fa.id, fa.photo_id, fa.descriptor, p.taken_at FROM faces fa "
            "JOIN photos p ON p.id = fa.photo_id "
            "WHERE fa.person_id IS NOT NULL AND fa.descriptor IS NOT NULL AND p.status = 'ok' ORDER BY fa.id"):
        day = usable_day(taken, today)
        rows.setdefault(person_id, []).append((face_id, photo_id, desc, np.nan if day is None else day))
    people = {}
    for r in conn.execute("SELECT id, name, birth_given, birth_low, birth_high FROM people"):
        if r["id"] not in rows:
            continue
        given = _day(r["birth_given"])
        low, high = (given, given) if given else (_day(r["birth_low"]), _day(r["birth_high"]))
        faces = rows[r["id"]]
        people[r["id"]] = _Person(r["id"], r["name"], np.stack([np.frombuffer(d, "<f4") for _, _, d, _ in faces]),
                                  np.array([day for *_, day in faces]), {p for _, p, _, _ in faces},
                                  {f for f, _, _, _ in faces}, (low, high) if low and high else None)
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


def _distances(a: _Person, b: _Person, time_scale_years: float | None) -> tuple[float, float]:
    """(the distance between their faces weighed by how near in time the photos were, the plain average)."""
    x, y = a.descriptors[:_SAMPLE], b.descriptors[:_SAMPLE]
    d2 = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T
    d = np.sqrt(np.maximum(d2, 0))
    if not time_scale_years:
        return float(d.mean()), float(d.mean())
    years = np.abs(a.days[:_SAMPLE, None] - b.days[None, :_SAMPLE]) / YEAR_DAYS
    weight = np.exp(-np.nan_to_num(years, nan=0.0) / time_scale_years)
    return float((d * weight).sum() / weight.sum()), float(d.mean())


def _births_apart(a: _Person, b: _Person, slack_days: float) -> bool:
    if a.born is None or b.born is None:
        return False
    gap = max((a.born[0] - b.born[1]).days, (b.born[0] - a.born[1]).days)
    return gap > slack_days


def _why(a: _Person, b: _Person, distance: float, average: float) -> str:
    o = GroupingOptions()
    close = (f"their faces are {distance:.2f} apart, those photographed closest in time counting most "
             f"({average:.2f} on average)" if round(distance, 2) != round(average, 2)
             else f"their faces are {distance:.2f} apart on average")
    parts = [f"{close} (grouping joins below {o.threshold:.2f}, {o.child_threshold:.2f} for two children)",
             f"{len(a.faces)} and {len(b.faces)} faces, never in one photo"]
    if a.born and b.born:
        parts.append(f"born ~{a.born[0].year}-{a.born[1].year} and ~{b.born[0].year}-{b.born[1].year}")
    return "; ".join(parts)


def suggest_merges(index: Index, *, limit: int = 20, max_distance: float = MAX_DISTANCE,
                   birth_slack_days: float = _BIRTH_SLACK_DAYS, time_scale_years: float | None = TIME_SCALE_YEARS,
                   today: dt.date | None = None) -> list[Suggestion]:
    """The `limit` pairs of people most probably one, closest first (an empty list with fewer than two).
    `time_scale_years` None: every pair of faces counts the same."""
    conn = index.conn
    people = _people(conn, today)
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
        d, average = _distances(a, b, time_scale_years)
        if d <= max_distance:
            found.append(Suggestion(a_id, b_id, round(1 - d, 4), round(d, 4), len(a.faces), len(b.faces),
                                    a.name, b.name, _why(a, b, d, average)))
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
