"""Average linkage in which the pairs of faces photographed close in time count most.

One person's dlib descriptors drift apart over the years (fgnet-dev's labelled faces: 0.39 apart within
a year, 0.60 at 15 to 25 years), while two people's stay about 0.72 apart however many years lie
between their photos. So the linkage between two groups weighs each pair of their faces by
exp(-years apart / scale): a child at three and at fifteen is linked through the years in between,
and two people are as far apart as before. A pair with an undated photo counts fully, so an undated
album is grouped by the plain average linkage.

The weighted mean of squared distances follows from running sums kept per group and per quarter of a
year (the dates quantised to quarters, a small fraction of the scale), so a group of ten thousand faces
costs what its number of quarters costs, not its number of faces.
"""

from __future__ import annotations

import numpy as np

__all__ = ["QUARTER_DAYS", "TimeWeighted"]

# the width of a time bin, not a year's length (that is births.YEAR_DAYS): a pair of faces is weighed by the
# gap between their bins, within a quarter of a year of their own gap, a small fraction of the scale
QUARTER_DAYS = 365.25 / 4
_BLOCK = 1 << 15  # pairs of (group, quarter) rows computed at once (32,768 x 128 x 8 bytes each side)


class TimeWeighted:
    """Running sums per (group, quarter): the time-weighted mean squared distance between groups."""

    def __init__(self, x: np.ndarray, g_of_face: np.ndarray, groups: int, days: np.ndarray,
                 scale_days: float) -> None:
        dated = np.isfinite(days)
        quarter = np.zeros(len(days), np.int64)  # 0: undated, which weighs 1 against anything
        if dated.any():
            q = np.floor(days[dated] / QUARTER_DAYS).astype(np.int64)
            quarter[dated] = q - q.min() + 1
        self.scale_quarters = scale_days / QUARTER_DAYS
        self.groups = groups
        self.group = np.asarray(g_of_face, np.int64).copy()
        self.quarter = quarter
        self.sums = np.asarray(x, np.float64).copy()
        self.sq = np.einsum("ij,ij->i", self.sums, self.sums)
        self.n = np.ones(len(days))
        self._compact()

    def merge(self, a: np.ndarray, b: np.ndarray) -> None:
        """Each group b is now part of its a."""
        into = np.arange(self.groups)
        into[b] = a
        self.group = into[self.group]
        self._dirty = True

    def _compact(self) -> None:
        """One row per (group, quarter), sorted by group; where each group's rows start and how many."""
        width = int(self.quarter.max()) + 1 if len(self.quarter) else 1
        key = self.group * width + self.quarter
        order = np.argsort(key, kind="stable")
        key = key[order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, np.int64)
        if len(order):
            self.sums = np.add.reduceat(self.sums[order], starts, axis=0)
            self.sq = np.add.reduceat(self.sq[order], starts)
            self.n = np.add.reduceat(self.n[order], starts)
            self.group, self.quarter = self.group[order][starts], self.quarter[order][starts]
        self.count = np.bincount(self.group, minlength=self.groups)
        self.start = np.concatenate([[0], np.cumsum(self.count)[:-1]]).astype(np.int64)
        self._dirty = False

    def mean_square(self, a: np.ndarray, b: np.ndarray, plain: np.ndarray) -> np.ndarray:
        """The weighted mean squared distance between the faces of each pair of groups; `plain` (the
        unweighted one) where neither group spans more than one quarter, as the weights cancel there."""
        if self._dirty:
            self._compact()
        out = np.asarray(plain, np.float64).copy()
        if len(a) == 0:
            return out
        ca, cb = self.count[a], self.count[b]
        todo = np.flatnonzero((ca > 1) | (cb > 1))
        cells = ca[todo] * cb[todo]
        edges = np.searchsorted(np.cumsum(cells), np.arange(_BLOCK, int(cells.sum()) + _BLOCK, _BLOCK), "right")
        lo = 0
        for hi in np.unique(np.r_[edges, len(todo)]).tolist():
            if hi > lo:
                k = todo[lo:hi]
                out[k] = self._block(a[k], b[k])
            lo = hi
        return out

    def _block(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ca, cb = self.count[a], self.count[b]
        cells = ca * cb
        pair = np.repeat(np.arange(len(a)), cells)
        t = np.arange(int(cells.sum())) - np.repeat(np.cumsum(cells) - cells, cells)
        ia = self.start[a][pair] + t // cb[pair]
        ib = self.start[b][pair] + t % cb[pair]
        na, nb = self.n[ia], self.n[ib]
        total = nb * self.sq[ia] + na * self.sq[ib] - 2.0 * np.einsum("ij,ij->i", self.sums[ia], self.sums[ib])
        qa, qb = self.quarter[ia], self.quarter[ib]
        w = np.where((qa == 0) | (qb == 0), 1.0, np.exp(-np.abs(qa - qb) / self.scale_quarters))
        num = np.bincount(pair, weights=w * total, minlength=len(a))
        den = np.bincount(pair, weights=w * na * nb, minlength=len(a))
        return num / den
