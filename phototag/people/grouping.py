"""Group face descriptors into people: the clustering alone, no SQL and no files.

Nearest neighbours come from faiss (exact search on small sets and for the new faces of a nightly run,
an inverted-file index for a large library grouped from scratch: 100,000 faces in 8 s on two cores,
where HNSW took 20 s and exact search 25 s). On that sparse graph, groups merge by average linkage:
the root mean squared distance between every face of one group and every face of the other, which
follows exactly from each group's sum, sum of squared norms and size, so a merge costs the same for a
group of one face or of ten thousand. With dated photos each pair of faces counts by how near in time
they were taken (exp(-years apart / 8 years), `timed.py`): one person's faces drift apart over the
years while two people's do not, so a child is linked across the years through the photos between.
Merges happen in rounds: every pair of groups that are each other's best partner merges at once (for
average linkage that gives the same groups as merging the closest pair one at a time), so each round
is a few numpy operations over all the links.

No library does average linkage with the constraints a photo library needs, so this part is ours:
- two faces of one photo are never one person (cannot-link);
- groups that are already people (`fixed`) keep their faces and ids: new faces may join one of them,
  but two existing people are never merged, and a face the user took out of a person never goes back;
- groups whose photos were taken within `near_days` of each other, each within one season, link a
  little more easily (a child's face changes within months, so a link between photos days apart is
  worth more than one across ten years);
- with dated faces and their age estimates, two groups merge only if one birth date can explain both:
  two babies photographed ten years apart look alike to the descriptor, but are not one person;
- two groups that each hold a child's face (more likely under 13 than not) merge under a stricter
  threshold than other pairs: dlib's descriptors of different children sit closer together than those
  of different adults, while one adult's faces across the years sit further apart. One threshold for
  both gave away either a class album's precision or a family's recall (docs/people.md);
- a child's group whose faces' neighbours outside it all lie in one other group (`support`) may join
  it under a slightly looser threshold (`support_threshold`): a baby photographed hundreds of times is
  one dense group, and a few of its faces, turned or blurred, sit just outside the children's threshold
  while every face near them is that baby's. A child seen a few times, as in a class album, cannot send
  all of its sixteen neighbours' links into one other child. The neighbour links are counted per pair of
  groups as they merge, so a group of ten thousand faces costs no more than one;
- optionally (`single_threshold`), two single faces (not both a child's) merge under a stricter
  threshold than groups: among hundreds of people seen once the nearest stranger is often as close as
  one person's faces, while a face joining a group of several is measured against all of them.

Precision first: a group that is two people is worse than two groups for one person.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .births import YEAR_DAYS
from .timed import TimeWeighted

__all__ = ["GroupingOptions", "group_faces", "neighbours"]


@dataclass(frozen=True)
class GroupingOptions:
    """Chosen on adience-dev, fgnet-dev, a class-like composite of fgnet-dev's children and both albums with
    strangers among their faces, each set's figure measured with the thresholds the other sets chose
    (bench/grouping.py, bench/strangers.py, docs/people.md)."""

    threshold: float = 0.58  # groups merge while their RMS descriptor distance is below this ...
    child_threshold: float = 0.48  # ... or below this when both hold a child's face (without ages: every pair)
    # ... or below this when both are one face and not both a child's (None: like any pair). Measured with
    # strangers among the faces (bench/strangers.py) and not shipped: it costs a family album's recall
    single_threshold: float | None = None
    # two children's groups merge under support_threshold instead of child_threshold when the smaller one's
    # faces send at least this share of their neighbour links that leave it into the other (None: never).
    # Chosen on adience-dev and composites made from it, precision first (bench/support.py): no other set
    # reacts, so adience-dev's figure with it is not held out
    support: float | None = 1.0
    support_threshold: float = 0.49
    child_age: int = 13  # a face is a child's when its age distribution puts more than half below this
    k: int = 16  # nearest neighbours a face is linked to
    near_days: float = 45.0  # photos this close in time ...
    near_bonus: float = 0.03  # ... lower the linkage by this much
    season_days: float = 365.0  # and only for groups whose photos all fall within this span
    birth_tolerance: float = 2.0  # nats: how much worse one shared birth date may explain two groups
    exact_below: int = 30_000  # exact nearest neighbours up to this many faces, an inverted file beyond
    # pairs of faces weigh exp(-days apart / this) in the linkage (None: the plain average). Chosen on
    # fgnet-dev, the only dated set (bench/grouping_scale.py): the best recall where precision stays 0.95
    # and `people suggest` keeps 16 of its top 20 right (shorter scales link what it would offer first)
    time_scale_days: float | None = 8 * YEAR_DAYS


def neighbours(base: np.ndarray, queries: np.ndarray, k: int, *, approximate: bool = False
               ) -> tuple[np.ndarray, np.ndarray]:
    """(distances, indices) of the `k` nearest rows of `base` for each query row (Euclidean, -1 when
    there are fewer than k)."""
    import faiss

    base = np.ascontiguousarray(base, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(k, len(base))
    if k == 0 or len(queries) == 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    if approximate:
        # about 3 sqrt(n) cells, 16 searched: on 100,000 clustered faces it finds the exact neighbours
        lists = max(1, int(3 * np.sqrt(len(base))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(base.shape[1]), base.shape[1], lists)
        sample = np.random.default_rng(0).choice(len(base), min(len(base), 40 * lists), replace=False)
        index.train(base[np.sort(sample)])
        index.add(base)
        index.nprobe = 16
    else:
        index = faiss.IndexFlatL2(base.shape[1])
        index.add(base)
    d2, idx = index.search(queries, k)
    return np.sqrt(np.clip(d2, 0, None)), idx


class _Groups:
    """Running sums per group: what average linkage and the constraints need, whatever its size."""

    def __init__(self, x: np.ndarray, g_of_face: np.ndarray, g: int, photos: np.ndarray, days: np.ndarray,
                 fixed_labels: np.ndarray, banned: dict[int, set[int]], birth_loglik: np.ndarray | None,
                 young: np.ndarray, options: GroupingOptions, leaving: np.ndarray | None = None) -> None:
        self.o = options
        # neighbour links from each group's faces to faces outside it (none known for an existing person)
        self.leaving = np.zeros(g) if leaving is None else np.asarray(leaving, np.float64).copy()
        self.young = np.zeros(g, bool)
        np.logical_or.at(self.young, g_of_face, young)
        self.sums = _group_sum(x, g_of_face, g)
        self.sq = np.bincount(g_of_face, weights=np.einsum("ij,ij->i", x, x), minlength=g)
        self.n = np.bincount(g_of_face, minlength=g).astype(np.float64)
        self.fixed = np.zeros(g, bool)
        self.fixed[: len(fixed_labels)] = True
        self.label = np.full(g, -1, np.int64)
        self.label[: len(fixed_labels)] = fixed_labels
        self.first = np.full(g, np.inf)
        self.last = np.full(g, -np.inf)
        dated = np.isfinite(days)
        np.minimum.at(self.first, g_of_face[dated], days[dated])
        np.maximum.at(self.last, g_of_face[dated], days[dated])
        self.photos: list[set[int]] = [set() for _ in range(g)]
        self.banned: list[set[int]] = [set() for _ in range(g)]
        for i, (gi, p) in enumerate(zip(g_of_face.tolist(), photos.tolist())):
            self.photos[gi].add(p)
            if i in banned:
                self.banned[gi] |= banned[i]
        self.birth = None if birth_loglik is None else _group_sum(birth_loglik, g_of_face, g)
        self.parent = np.arange(g)
        scale = options.time_scale_days
        self.timed = TimeWeighted(x, g_of_face, g, days, scale) if scale and np.isfinite(days).any() else None

    def scores(self, a: np.ndarray, b: np.ndarray, ab: np.ndarray, ba: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        """Each pair of groups' score and the part of it held back. The score: their linkage, less the date
        bonus where their dates are near, plus the children's margin where both groups hold a child's face
        (unless the smaller one's neighbours lie in the other: `ab`, `ba` are the neighbour links from a's
        faces into b and back) and the single faces' margin where both are one face (so one threshold
        compares every pair). Held back: the margins a later merge may take away, so such a link is kept
        for later rounds: the single faces' (gone once either side holds two faces) and, with `support`,
        the children's (the link carries the neighbour links counted between its two groups, which
        support needs once they grow, and their linkage moves as they grow)."""
        # Near in time: both groups' photos fit in one season (a year at most) and lie within
        # near_days of each other. A group spanning years is not near anything: its faces changed.
        nd, season = self.o.near_days, self.o.season_days
        near = ((self.first[a] <= self.last[b] + nd) & (self.first[b] <= self.last[a] + nd)
                & (self.last[a] - self.first[a] <= season) & (self.last[b] - self.first[b] <= season))
        children, single = self._children_margin(a, b, ab, ba), self._single_margin(a, b)
        held = single + children if self.o.support is not None else single
        return self.linkage(a, b) + children + single - self.o.near_bonus * near, held

    def linkage(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The RMS distance between the faces of each pair of groups, time-weighted where dated."""
        out = np.empty(len(a))
        for lo in range(0, len(a), 65536):  # in blocks: the gathered sums of a million pairs would not fit
            sa, sb = a[lo : lo + 65536], b[lo : lo + 65536]
            ms = (self.sq[sa] / self.n[sa] + self.sq[sb] / self.n[sb]
                  - 2.0 * np.einsum("ij,ij->i", self.sums[sa], self.sums[sb]) / (self.n[sa] * self.n[sb]))
            if self.timed is not None:
                ms = self.timed.mean_square(sa, sb, ms)
            out[lo : lo + 65536] = np.sqrt(np.maximum(ms, 0.0))
        return out

    def _children_margin(self, a: np.ndarray, b: np.ndarray, ab: np.ndarray, ba: np.ndarray) -> np.ndarray:
        """How much stricter than `threshold` a pair of children's groups is held: to the children's threshold,
        or to support_threshold where the smaller one's neighbours lie in the other."""
        children = self.young[a] & self.young[b]
        strict = self.o.threshold - self.o.child_threshold
        if self.o.support is None:
            return strict * children
        loose = max(0.0, self.o.threshold - max(self.o.support_threshold, self.o.child_threshold))
        return np.where(self._supported(a, b, ab, ba), loose, strict) * children

    def _supported(self, a: np.ndarray, b: np.ndarray, ab: np.ndarray, ba: np.ndarray) -> np.ndarray:
        """Whether the smaller group of each pair sends at least `support` of its neighbour links that leave
        it into the other. Links are counted as groups merge and never overcounted, so this errs towards no."""
        a_small = self.n[a] <= self.n[b]
        into = np.where(a_small, ab, ba)
        leaving = np.where(a_small, self.leaving[a], self.leaving[b])
        return (leaving > 0) & (into >= self.o.support * leaving)

    def _single_margin(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Two faces seen once each (not both a child's) are held to the stricter single_threshold, as two
        strangers are often as close as one person's faces."""
        if self.o.single_threshold is None:
            return np.zeros(len(a))
        single = (self.n[a] <= 1) & (self.n[b] <= 1) & ~(self.young[a] & self.young[b])
        return max(0.0, self.o.threshold - self.o.single_threshold) * single

    def allowed(self, a: int, b: int) -> bool:
        if self.fixed[a] and self.fixed[b]:
            return False  # two existing people: only the user merges them
        if self.fixed[a] and self.label[a] in self.banned[b] or self.fixed[b] and self.label[b] in self.banned[a]:
            return False
        pa, pb = self.photos[a], self.photos[b]
        small, big = (pa, pb) if len(pa) <= len(pb) else (pb, pa)
        if any(p in big for p in small):
            return False
        if self.birth is not None:
            la, lb = self.birth[a], self.birth[b]
            if la.max() + lb.max() - (la + lb).max() > self.o.birth_tolerance:
                return False  # no one birth date fits both
        return True

    def merge(self, a: np.ndarray, b: np.ndarray, between: np.ndarray) -> None:
        """Merge each b into its a (the pairs are disjoint); `between`: the neighbour links between the two."""
        self.leaving[a] += self.leaving[b] - between
        self.sums[a] += self.sums[b]
        self.sq[a] += self.sq[b]
        self.n[a] += self.n[b]
        self.young[a] |= self.young[b]
        self.first[a] = np.minimum(self.first[a], self.first[b])
        self.last[a] = np.maximum(self.last[a], self.last[b])
        if self.birth is not None:
            self.birth[a] += self.birth[b]
        for ai, bi in zip(a.tolist(), b.tolist()):
            self.photos[ai] |= self.photos[bi]
            self.banned[ai] |= self.banned[bi]
            self.photos[bi] = self.banned[bi] = set()
        self.parent[b] = a
        if self.timed is not None:
            self.timed.merge(a, b)


def _group_sum(values: np.ndarray, groups: np.ndarray, g: int) -> np.ndarray:
    """Row sums of `values` per group (np.add.at, but sorted and reduced: ten times faster)."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    out = np.zeros((g, values.shape[1]), values.dtype)
    if len(order):
        out[sorted_groups[starts]] = np.add.reduceat(values[order], starts, axis=0)
    return out


def group_faces(descriptors: np.ndarray, photos: np.ndarray, days: np.ndarray | None = None,
                fixed: np.ndarray | None = None, banned: dict[int, set[int]] | None = None,
                ages: np.ndarray | None = None, options: GroupingOptions = GroupingOptions()
                ) -> np.ndarray:
    """A person label for every face.

    descriptors: (n, 128) dlib descriptors; photos: (n,) photo id of each face; days: (n,) date of each
    face in days (NaN: unknown); fixed: (n,) the existing person label of each face, -1 for a face not in
    a person (a new face); banned: face index -> person labels it must not join; ages: (n, 101) each
    face's age distribution, for the birth-date check (None: no check).
    Faces with a label keep it. Every other face gets an existing label (it joined that person) or a new
    one, counting up from one above the largest existing label (a new person, perhaps of one face).
    """
    n = len(descriptors)
    fixed = np.full(n, -1, np.int64) if fixed is None else np.asarray(fixed, np.int64)
    if n == 0:
        return fixed.copy()
    x = np.asarray(descriptors, np.float64)
    days = np.full(n, np.nan) if days is None else np.asarray(days, np.float64)
    new = np.flatnonzero(fixed < 0)
    labels_fixed = np.unique(fixed[fixed >= 0])
    # Groups: one per existing person, then one per new face.
    g_of_face = np.empty(n, np.int64)
    g_of_face[fixed >= 0] = np.searchsorted(labels_fixed, fixed[fixed >= 0])
    g_of_face[new] = len(labels_fixed) + np.arange(len(new))
    g = len(labels_fixed) + len(new)
    pairs, ab, ba, leaving = _candidate_pairs(x, new, g_of_face, g, options)
    # Only the groups a new face may join take part: a nightly run of 1,000 new faces in a library of
    # 100,000 looks at the people near them, not at everyone.
    involved = np.zeros(g, bool)
    involved[pairs.ravel()] = True
    involved[len(labels_fixed):] = True
    compact = np.cumsum(involved) - 1
    faces_in = np.flatnonzero(involved[g_of_face])
    part_fixed = labels_fixed[involved[: len(labels_fixed)]]
    loglik = None
    young = np.ones(len(faces_in), bool)  # without ages every pair is held to the children's threshold
    if ages is not None:
        from .births import year_loglik

        part = np.asarray(ages, np.float64)[faces_in]
        loglik = year_loglik(days[faces_in], part)
        young = _young(part, options.child_age)
    position = {int(f): k for k, f in enumerate(faces_in)}
    state = _Groups(x[faces_in], compact[g_of_face[faces_in]], int(involved.sum()), np.asarray(photos)[faces_in],
                    days[faces_in], part_fixed,
                    {position[i]: v for i, v in (banned or {}).items() if i in position}, loglik, young, options,
                    leaving[involved])
    if len(pairs):
        _agglomerate(state, compact[pairs], ab, ba)
    # Each group's label: its person's, or a new one.
    root = state.parent.copy()
    while not np.array_equal(root[root], root):
        root = root[root]
    next_label = int(labels_fixed.max()) + 1 if len(labels_fixed) else 0
    out = fixed.copy()
    new_label: dict[int, int] = {}
    for i in new.tolist():
        r = root[compact[g_of_face[i]]]
        if state.fixed[r]:
            out[i] = state.label[r]
        else:
            if r not in new_label:
                new_label[r] = next_label
                next_label += 1
            out[i] = new_label[r]
    return out


def _young(distributions: np.ndarray, child_age: int) -> np.ndarray:
    """Whether each face's age distribution (one bin per year) puts more than half below `child_age`."""
    total = distributions.sum(axis=1)
    return distributions[:, :child_age].sum(axis=1) > 0.5 * np.where(total > 0, total, 1.0)


def _candidate_pairs(x: np.ndarray, new: np.ndarray, g_of_face: np.ndarray, g: int, o: GroupingOptions
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Group pairs (a < b) linked by a new face's near neighbour, closer than the threshold allows; for each
    pair the neighbour links from a's faces into b and from b's into a (near or not); and each group's
    neighbour links that leave it."""
    if not len(new):
        return np.zeros((0, 2), np.int64), np.zeros(0), np.zeros(0), np.zeros(g)
    approximate = len(x) > o.exact_below and len(new) > o.exact_below // 4
    dist, idx = neighbours(x, x[new], o.k + 1, approximate=approximate)
    src = np.repeat(new, idx.shape[1])
    dst = idx.ravel()
    real = (dst >= 0) & (dst != src)
    ga, gb, near = g_of_face[src[real]], g_of_face[dst[real]], dist.ravel()[real] < o.threshold + o.near_bonus
    apart = ga != gb
    leaving = np.bincount(ga[apart], minlength=g).astype(np.float64)
    directed, counts = np.unique(ga[apart] * g + gb[apart], return_counts=True)
    a, b = ga[apart & near], gb[apart & near]
    pairs = np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], 1), axis=0)

    def links(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        if not len(directed):
            return np.zeros(len(p))
        at = np.minimum(np.searchsorted(directed, p * g + q), len(directed) - 1)
        return np.where(directed[at] == p * g + q, counts[at], 0).astype(np.float64)

    return pairs, links(pairs[:, 0], pairs[:, 1]), links(pairs[:, 1], pairs[:, 0]), leaving


def _agglomerate(s: _Groups, pairs: np.ndarray, ab: np.ndarray, ba: np.ndarray) -> None:
    """Merge along the links, in rounds of mutual best partners, while the linkage stays under the
    threshold. A pair the constraints forbid loses its link, and both look again next round. A link
    held over the threshold only by a margin that a later merge may take away stays (`scores`).
    Each link carries the neighbour links between its two groups (`ab` from a's faces, `ba` back)."""
    a, b = pairs[:, 0].copy(), pairs[:, 1].copy()
    ab, ba = np.asarray(ab, np.float64).copy(), np.asarray(ba, np.float64).copy()
    score, held = s.scores(a, b, ab, ba)
    g = len(s.n)
    while len(a):
        keep = score - held < s.o.threshold
        a, b, ab, ba, score, held = a[keep], b[keep], ab[keep], ba[keep], score[keep], held[keep]
        ready = np.flatnonzero(score < s.o.threshold)
        if not len(ready):
            return
        # each group's best partner: sort the ready links by score and take the first for each end
        ra, rb = a[ready], b[ready]
        ends = np.concatenate([ra, rb])
        others = np.concatenate([rb, ra])
        both = np.concatenate([score[ready], score[ready]])
        order = np.lexsort((others, both, ends))
        firsts = order[np.r_[True, ends[order][1:] != ends[order][:-1]]]
        best = np.full(g, -1, np.int64)
        best[ends[firsts]] = others[firsts]
        mutual = (best[ra] == rb) & (best[rb] == ra)
        ma, mb = ra[mutual], rb[mutual]
        between = (ab + ba)[ready][mutual]
        ok = np.array([s.allowed(i, j) for i, j in zip(ma.tolist(), mb.tolist())], bool)
        forbidden = ready[mutual][~ok]
        ma, mb, between = ma[ok], mb[ok], between[ok]
        swap = s.fixed[mb] & ~s.fixed[ma]  # the existing person absorbs the new faces and keeps its label
        ma, mb = np.where(swap, mb, ma), np.where(swap, ma, mb)
        if not len(ma) and not len(forbidden):
            return
        s.merge(ma, mb, between)
        drop = np.zeros(len(a), bool)
        drop[forbidden] = True
        a, b, ab, ba, score, held = a[~drop], b[~drop], ab[~drop], ba[~drop], score[~drop], held[~drop]
        # relink to the merged groups (the neighbour links of links that become one add up); recompute the
        # links that touch them
        changed = np.zeros(g, bool)
        changed[ma] = True
        a, b = s.parent[a], s.parent[b]
        flip = a > b
        a, b = np.where(flip, b, a), np.where(flip, a, b)
        ab, ba = np.where(flip, ba, ab), np.where(flip, ab, ba)
        live = a != b
        a, b, ab, ba, score, held = a[live], b[live], ab[live], ba[live], score[live], held[live]
        key, first, inverse = np.unique(a * g + b, return_index=True, return_inverse=True)
        ab, ba = np.bincount(inverse, ab, len(key)), np.bincount(inverse, ba, len(key))
        a, b, score, held = a[first], b[first], score[first], held[first]
        touched = changed[a] | changed[b]
        score[touched], held[touched] = s.scores(a[touched], b[touched], ab[touched], ba[touched])
