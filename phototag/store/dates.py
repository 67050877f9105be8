"""Dates: a photo's EXIF date and a query's date filters, checked in one place.

EXIF writes `2019:06:01 14:03:00`, and cameras with no clock write `0000:00:00 00:00:00`; damaged
files hold anything (`2019:13:45 99:00:00`). The index keeps a date only when it is a real one, as
ISO 8601 (`2019-06-01T14:03:00`, or `2019-06-01` when only the time is unknown or broken), so every
comparison, sort and birth-date estimate sees real dates or none.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re

__all__ = ["from_exif", "valid_taken_at", "filter_date"]

_EXIF = re.compile(r"(\d{4}):(\d{2}):(\d{2})(?:[ T](.*))?$")
_TIME = re.compile(r"(\d{2}):(\d{2}):(\d{2})")
_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}:\d{2}:\d{2}))?$")
_FILTER = re.compile(r"(\d{4})(?:-(\d{2}))?(-\d{2}(?:T\d{2}:\d{2}(?::\d{2})?)?)?$")


def _day(y: str, m: str, d: str) -> str | None:
    try:
        return dt.date(int(y), int(m), int(d)).isoformat()
    except ValueError:  # month 13, 30 February, year 0
        return None


def _time(text: str | None) -> str | None:
    m = _TIME.match(text or "")
    if m is None:
        return None
    try:
        return dt.time(*(int(g) for g in m.groups())).isoformat()
    except ValueError:  # 99:00:00
        return None


def _parsed(m: re.Match[str] | None) -> str | None:
    """(year, month, day, time) matched -> ISO: the day and time when both are real, the day alone when
    only the time is not, None when the day is not a real one."""
    day = _day(*m.groups()[:3]) if m else None
    if m is None or day is None:
        return None
    time = _time(m[4])
    return f"{day}T{time}" if time else day


def from_exif(value: object) -> str | None:
    """EXIF `2019:06:01 14:03:00` -> `2019-06-01T14:03:00`; a real day with a broken or blank time ->
    `2019-06-01`; anything that is not a real day (`0000:00:00`, month 13, 30 February) -> None."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    return _parsed(_EXIF.match(value.strip().rstrip("\x00").strip()))


def valid_taken_at(text: str | None) -> str | None:
    """A stored `taken_at` as it should be: itself when real, its day when only the time is broken,
    None when the day is not a real one (indexes made before dates were checked hold such values)."""
    return _parsed(_ISO.match(text)) if isinstance(text, str) else None


def filter_date(text: str, *, end: bool = False) -> str:
    """A date filter as the index compares it: `2019-06-01` or `2019-06-01T14:03[:00]` as given; a year
    (`2019`) or a month (`2019-06`) as its first day, or with `end` its last. ValueError saying why not."""
    m = _FILTER.match(text)
    if not m:
        raise ValueError("")
    year, month = int(m[1]), int(m[2] or (12 if end else 1))
    if m[3] is None:
        if not 1 <= month <= 12 or year < 1:
            raise ValueError("month must be in 1..12" if year else "year 0 does not exist")
        last = calendar.monthrange(year, month)[1]
        return f"{year:04d}-{month:02d}-{last if end else 1:02d}"
    try:
        dt.date.fromisoformat(text[:10])
        if len(text) > 10:
            dt.time.fromisoformat(text[11:])
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    return text
