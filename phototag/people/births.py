"""A person's birth date from the ages of their dated faces, and the age it implies on any date.

Each face's model output is a distribution over completed years (0..100). A face taken on day t says
that the birth day b satisfies floor((t - b) / year) = age, with that distribution's probabilities;
the faces of one person are multiplied on a grid of birth days. A small uniform floor under each face
keeps one face that is wrongly in the person (or one bad estimate) from dragging the date: its
likelihood can never fall below the floor. Faces without a usable date say nothing here.

On FG-NET's scanned family photos this cuts the age error from 7.1 to about 4.7 years (bench/people.py).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import numpy as np

__all__ = ["BirthEstimate", "estimate_birth", "year_loglik", "usable_day", "person_ages", "given_ages",
           "parse_date", "YEAR_DAYS", "day_to_iso"]

YEAR_DAYS = 365.2425
_EPOCH = dt.date(1970, 1, 1)
GRID_STEP_DAYS = 14.0
FLOOR = 0.02  # the uniform floor's share of each face's likelihood
MAX_AGE = 100
# Dates a camera shows when its clock was never set (or a scanner's default): they say nothing.
_CAMERA_DEFAULTS = {"1970-01-01", "1980-01-01", "2000-01-01", "2001-01-01", "2002-01-01", "1904-01-01",
                    "1900-01-01", "2004-01-01"}
_FIRST_PHOTO_YEAR = 1826


@dataclass(frozen=True)
class BirthEstimate:
    """The posterior over one person's birth day (days since 1970-01-01)."""

    grid: np.ndarray  # birth days
    prob: np.ndarray  # posterior probability of each
    faces: int  # dated faces used
    disagreeing: int  # faces whose own estimate cannot be reconciled with the birth date

    @property
    def median(self) -> float:
        """The birth day at the posterior's median: the estimate that makes the smallest error on
        average (absolute error), and the one phototag shows."""
        return self.quantile(0.5)

    def quantile(self, q: float) -> float:
        return float(self.grid[min(int(np.searchsorted(np.cumsum(self.prob), q)), len(self.grid) - 1)])

    @property
    def interval(self) -> tuple[float, float]:
        """The central 80 % interval of the birth day."""
        return self.quantile(0.1), self.quantile(0.9)

    @property
    def conflict(self) -> bool:
        """The faces cannot share one birth date: probably two people in one."""
        return self.disagreeing >= 2 and self.disagreeing >= 0.25 * self.faces


def parse_date(text: str) -> dt.date:
    """A YYYY-MM-DD date; ValueError with a clear reason otherwise."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text or ""):
        raise ValueError(f"malformed date {text!r}: use YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"malformed date {text!r}: {exc}") from None


def day_to_iso(day: float) -> str:
    return (_EPOCH + dt.timedelta(days=int(round(day)))).isoformat()


def usable_day(taken_at: str | None, today: dt.date | None = None) -> float | None:
    """The day (since 1970-01-01, with the time of day as a fraction) a photo was taken, or None when it
    has no date, a camera's default date, or a date in the future or before photography."""
    if not taken_at or len(taken_at) < 10:
        return None
    try:
        day = dt.date.fromisoformat(taken_at[:10])
    except ValueError:
        return None
    today = today or dt.date.today()
    if taken_at[:10] in _CAMERA_DEFAULTS or day > today or day.year < _FIRST_PHOTO_YEAR:
        return None
    frac = 0.0
    m = re.match(r"T?(\d{2}):(\d{2})", taken_at[10:].lstrip("T "))
    if m:
        frac = (int(m.group(1)) * 60 + int(m.group(2))) / 1440
    return (day - _EPOCH).days + frac


def _bins(days: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """(faces, grid) completed-year age bin of each face for each birth day."""
    age = np.floor((days[:, None] - grid[None, :]) / YEAR_DAYS)
    return np.clip(age, 0, MAX_AGE).astype(np.int64)


def estimate_birth(days: np.ndarray, distributions: np.ndarray, *, floor: float = FLOOR,
                   step: float = GRID_STEP_DAYS) -> BirthEstimate | None:
    """The birth posterior from faces taken on `days` with age `distributions` (n x 101); None without
    any dated face. Faces are taken a block at a time, so a person of 10,000 faces needs little memory."""
    days = np.asarray(days, np.float64)
    dist = np.asarray(distributions, np.float64)
    if len(days) == 0:
        return None
    dist = dist / dist.sum(axis=1, keepdims=True)
    first = days.min()
    # Born at most 100 years (and a bit) before the first photo, and not after it: a coarse look over
    # that century first, then `step` days over the stretch that holds the mass.
    coarse = _log_posterior(days, dist, np.arange(first - (MAX_AGE + 1) * YEAR_DAYS, first + 1, 8 * step), floor)
    span = coarse[0][coarse[1] > coarse[1].max() - 30]
    grid = np.arange(max(span.min() - 8 * step, first - (MAX_AGE + 1) * YEAR_DAYS), min(span.max() + 8 * step, first)
                     + step / 2, step)
    grid = grid[grid <= first]
    grid, logp = _log_posterior(days, dist, grid, floor)
    prob = np.exp(logp - logp.max())
    prob /= prob.sum()
    est = BirthEstimate(grid, prob, len(days), 0)
    # A face disagrees when the age the birth date gives it lies outside its own 98 % range.
    median_bins = _bins(days, np.array([est.quantile(0.5)]))[:, 0]
    cdf = np.cumsum(dist, axis=1)
    rows = np.arange(len(days))
    below = np.where(median_bins > 0, cdf[rows, np.maximum(median_bins - 1, 0)], 0.0)
    above = 1.0 - cdf[rows, median_bins]
    disagreeing = int(((below > 0.99) | (above > 0.99)).sum())
    return BirthEstimate(grid, prob, len(days), disagreeing)


def _log_posterior(days: np.ndarray, dist: np.ndarray, grid: np.ndarray, floor: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(grid, log posterior of each birth day on it), up to a constant."""
    logp = np.zeros(len(grid))
    for s in range(0, len(days), _BLOCK):
        bins = _bins(days[s : s + _BLOCK], grid)
        like = (1 - floor) * np.take_along_axis(dist[s : s + _BLOCK], bins, axis=1) + floor / dist.shape[1]
        logp += np.log(like).sum(axis=0)
    # No one lives past 100-and-a-bit: a birth date that makes any face older than the last bin holds
    # is impossible, not merely unlikely (unless the photos span more than that: then keep them all).
    too_old = (days.max() - grid) / YEAR_DAYS >= MAX_AGE + 1
    if not too_old.all():
        logp[too_old] = -np.inf
    return grid, logp


_BLOCK = 256


def person_ages(est: BirthEstimate, days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What the birth posterior says of the age on each of `days`: (distributions over completed years,
    n x 101; the median ages; the central 80 % intervals' low and high ends), in years."""
    days = np.asarray(days, np.float64)
    keep = est.prob > 1e-12 * est.prob.max()  # the grid where the posterior has any mass
    grid, prob = est.grid[keep], est.prob[keep]
    out = np.zeros((len(days), MAX_AGE + 1))
    for s in range(0, len(days), _BLOCK):
        block = days[s : s + _BLOCK]
        bins = np.clip(np.floor((block[:, None] - grid[None, :]) / YEAR_DAYS), 0, MAX_AGE).astype(np.int64)
        flat = (np.arange(len(block))[:, None] * (MAX_AGE + 1) + bins).ravel()
        out[s : s + len(block)] = np.bincount(flat, weights=np.tile(prob, len(block)),
                                              minlength=len(block) * (MAX_AGE + 1)).reshape(len(block), -1)
    # ages run opposite to birth days: the 90th percentile birth is the 10th percentile age
    lo_b, hi_b = est.interval
    middle = np.maximum(0.0, (days - est.median) / YEAR_DAYS)
    return out, middle, np.maximum(0.0, (days - hi_b) / YEAR_DAYS), np.maximum(0.0, (days - lo_b) / YEAR_DAYS)


def given_ages(birth: dt.date, days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A given birth date's exact ages on `days`: (one-hot completed-years distributions, ages in years)."""
    ages = np.maximum(0.0, (np.asarray(days, np.float64) - (birth - _EPOCH).days) / YEAR_DAYS)
    dist = np.zeros((len(ages), MAX_AGE + 1))
    dist[np.arange(len(ages)), np.clip(np.floor(ages), 0, MAX_AGE).astype(np.int64)] = 1.0
    return dist, ages


# Birth years from 1850 to 2050: what grouping compares groups on (a coarse grid is enough there).
YEAR_GRID = np.arange(1850, 2051) - 1970.0


def year_loglik(days: np.ndarray, distributions: np.ndarray, floor: float = FLOOR) -> np.ndarray:
    """(n, 201) each face's log-likelihood of a birth in each year 1850..2050 (mid-year); a row of zeros
    for a face without a usable day (NaN), which then says nothing about the birth."""
    days = np.asarray(days, np.float64)
    dist = np.asarray(distributions, np.float64)
    out = np.zeros((len(days), len(YEAR_GRID)), np.float32)
    dated = np.isfinite(days)
    if dated.any():
        d = dist[dated] / dist[dated].sum(axis=1, keepdims=True)
        grid = (YEAR_GRID + 0.5) * YEAR_DAYS
        age = np.floor((days[dated][:, None] - grid[None, :]) / YEAR_DAYS)
        bins = np.clip(age, 0, MAX_AGE).astype(np.int64)
        like = (1 - floor) * np.take_along_axis(d, bins, axis=1) + floor / d.shape[1]
        like[age < 0] = floor / d.shape[1]  # born after the photo: only the floor
        out[dated] = np.log(like)
    return out
