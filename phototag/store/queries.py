"""Questions asked of the index: `phototag query`, `export`, `contact-sheet` and `stats`.

Every filter becomes a bound parameter, never SQL text; a date that is not one is refused first.
Groups under another scheme are worked out from the stored distributions, without the model.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, replace
from typing import Any, Iterator

from ..ages.groups import get_scheme, unpack_distribution, used_estimate
from ..errors import PhototagError, SchemeError
from .dates import filter_date
from .index import Index, resolve_person, row_json

__all__ = ["QueryFilters", "query", "export", "faces_rows", "stats"]


@dataclass
class QueryFilters:
    """`phototag query` filters; every one becomes a bound parameter, never SQL text."""

    groups: tuple[str, ...] = ()
    min_age: float | None = None
    max_age: float | None = None
    since: str | None = None
    until: str | None = None
    path_glob: str | None = None
    min_faces: int | None = None
    scheme: str | None = None  # regroup under this scheme (from the stored distributions)
    person: str | None = None  # a person's name (any case) or id

    def checked(self) -> "QueryFilters":
        """These filters with their dates as the index compares them (`--since 2019` from 2019-01-01,
        `--until 2019-06` to 2019-06-30); a date that is not one (`2019-02-30`) is refused, since it
        would silently compare as text."""
        dates = {}
        for field_, option, end in (("since", "--since", False), ("until", "--until", True)):
            value = getattr(self, field_)
            if value is not None:
                try:
                    dates[field_] = filter_date(value, end=end)
                except ValueError as exc:
                    why = f" ({exc})" if str(exc) else ""
                    raise PhototagError(f"{option} {value!r} is not a date{why}: use YYYY-MM-DD, "
                                        "YYYY-MM or YYYY") from None
        return replace(self, **dates)


# -- queries -----------------------------------------------------------------------------

def faces_rows(index: Index, f: QueryFilters) -> Iterator[sqlite3.Row]:
    """Faces (joined to their photo) matching the photo-level and age filters."""
    where, params = _photo_where(f)
    _age_where(f, where, params)
    sql = (
        "SELECT p.id AS photo_id, p.path, p.taken_at, p.face_count, p.model_id, fa.idx, fa.top, fa.right, "
        "fa.bottom, fa.left, fa.age, fa.age_low, fa.age_high, fa.age_group, fa.group_prob, fa.scheme, "
        "fa.female_prob, fa.distribution, fa.person_distribution, fa.person_id, pe.name AS person, "
        "fa.age_photo, fa.age_source FROM photos p JOIN faces fa ON fa.photo_id = p.id "
        "LEFT JOIN people pe ON pe.id = fa.person_id "
        f"WHERE {' AND '.join(where)} ORDER BY p.taken_at, p.path, fa.idx"
    )
    # A plain loop, not `yield from`: a generator dropped after the index is closed would otherwise
    # close the cursor then, and Python prints that error's traceback while it exits.
    for row in index.conn.execute(sql, params):
        yield row

def _age_where(f: QueryFilters, where: list[str], params: list[Any]) -> None:
    """Add the face filters (age, person), on faces aliased `fa`."""
    if f.person is not None:
        where.append("fa.person_id IN (SELECT id FROM people WHERE name = ? OR CAST(id AS TEXT) = ?)")
        params += [f.person, f.person]
    if f.min_age is not None:
        where.append("fa.age >= ?"); params.append(float(f.min_age))
    if f.max_age is not None:
        where.append("fa.age <= ?"); params.append(float(f.max_age))

def _photo_where(f: QueryFilters, only_ok: bool = True) -> tuple[list[str], list[Any]]:
    """SQL conditions (with `?` parameters, never pasted values) for the photo-level filters."""
    where: list[str] = ["p.status = 'ok'"] if only_ok else []
    params: list[Any] = []
    if f.since:
        where.append("p.taken_at >= ?"); params.append(f.since)
    if f.until:
        where.append("p.taken_at < ?" if "T" in f.until else "substr(p.taken_at, 1, 10) <= ?")
        params.append(f.until)
    if f.path_glob:
        where.append("p.path GLOB ?"); params.append(f.path_glob)
    if f.min_faces is not None:
        where.append("p.face_count >= ?"); params.append(int(f.min_faces))
    return where, params

def stats(index: Index) -> dict[str, Any]:
    """What `phototag stats` shows: counts by status and group, people, schemes, models, the last scan."""
    c = index.conn
    by_status = {r[0]: r[1] for r in c.execute("SELECT status, count(*) FROM photos GROUP BY status")}
    groups = {r[0]: r[1] for r in c.execute(
        "SELECT fa.age_group, count(*) FROM faces fa JOIN photos p ON p.id = fa.photo_id "
        "WHERE p.status = 'ok' GROUP BY fa.age_group ORDER BY min(fa.age)")}
    last = c.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    models = [r[0] for r in c.execute("SELECT DISTINCT model_id FROM photos WHERE model_id IS NOT NULL")]
    schemes = [r[0] for r in c.execute("SELECT DISTINCT scheme FROM faces WHERE scheme IS NOT NULL")]
    return {
        "index": str(index.path),
        "photos": sum(by_status.values()),
        "photos_by_status": by_status,
        "photos_with_faces": c.execute("SELECT count(*) FROM photos WHERE status = 'ok' AND face_count > 0")
        .fetchone()[0],
        "faces": sum(groups.values()),
        "faces_by_group": groups,
        "people": c.execute("SELECT count(*) FROM people WHERE face_count >= 2 OR name IS NOT NULL")
        .fetchone()[0],
        "people_named": c.execute("SELECT count(*) FROM people WHERE name IS NOT NULL").fetchone()[0],
        "schemes": schemes,
        "models": models,
        "last_scan": dict(last) if last else None,
    }


class _FaceFilter:
    """The face-level part of the filters: groups (under `filters.scheme` when given), regrouping."""

    def __init__(self, index: Index, filters: QueryFilters) -> None:
        filters = filters.checked()

        self.scheme = get_scheme(filters.scheme) if filters.scheme else None
        self.filters = filters  # with the person named by id, once resolved the way `people` resolves them
        if filters.person is not None:
            self.filters = replace(filters, person=str(resolve_person(index, filters.person)["id"]))
        self.wanted: set[str] | None = None
        if filters.groups:
            names = self.scheme.names if self.scheme else sorted({r[0] for r in index.conn.execute(
                "SELECT DISTINCT age_group FROM faces")} | set(get_scheme(None).names))
            lookup = {n.lower(): n for n in names}
            self.wanted = set()
            for g in filters.groups:
                if g.lower() not in lookup:
                    where = f"scheme {self.scheme.name}" if self.scheme else "the index"
                    raise SchemeError(f"unknown group {g!r} in {where} (groups: {', '.join(names)})")
                self.wanted.add(lookup[g.lower()])

    def __call__(self, row: sqlite3.Row) -> dict[str, Any] | None:
        """The face as a dict (regrouped if asked), or None when it does not match."""
        item = row_json(row)
        if self.scheme is not None and row["scheme"] != self.scheme.name and row["distribution"]:
            e = used_estimate(row, self.scheme)
            item.update(age_group=e.group, group_prob=round(e.group_prob, 4), scheme=self.scheme.name,
                        age_low=e.low, age_high=e.high)
        if self.wanted is not None and item["age_group"] not in self.wanted:
            return None
        return item


def query(index: Index, filters: QueryFilters) -> list[dict[str, Any]]:
    """Matching faces, one dict each; groups recomputed from the distribution under `filters.scheme`."""
    keep = _FaceFilter(index, filters)
    return [item for item in map(keep, faces_rows(index, keep.filters)) if item is not None]


def export(index: Index, filters: QueryFilters) -> Iterator[dict[str, Any]]:
    """Every column of every matching photo, with a `faces` list holding every column of its matching
    faces (the age distribution as 101 probabilities). Streams, so 100,000 photos need little memory.

    Photo filters (dates, path, face count) apply as in `query`. With an age or group filter only
    photos with a matching face come out; without one, every photo does: failed and missing ones
    too (their `status` and `error` say why), since an export is a full record of the index."""
    keep = _FaceFilter(index, filters)
    filters = keep.filters
    face_filter = (filters.groups or filters.min_age is not None or filters.max_age is not None
                   or filters.person is not None)
    where, params = _photo_where(filters, only_ok=bool(face_filter))
    sql = f"SELECT * FROM photos p WHERE {' AND '.join(where) or '1'} ORDER BY p.taken_at, p.path"
    face_where: list[str] = ["fa.photo_id = ?"]
    face_params: list[Any] = []
    _age_where(filters, face_where, face_params)
    face_sql = (f"SELECT fa.*, pe.name AS person FROM faces fa LEFT JOIN people pe ON pe.id = fa.person_id "
                f"WHERE {' AND '.join(face_where)} ORDER BY fa.idx")
    for photo in index.conn.execute(sql, params):  # one read snapshot while the statement is open
        item = {k: photo[k] for k in photo.keys() if k != "path_bytes"}
        found = []
        for face in index.conn.execute(face_sql, [photo["id"], *face_params]):
            f = keep(face)
            if f is None:
                continue
            f["distribution"] = ([round(float(x), 5) for x in unpack_distribution(face["distribution"])]
                                 if face["distribution"] else None)
            found.append(f)
        if face_filter and not found:
            continue
        item["faces"] = found
        yield item

