"""Group face descriptors into people: the clustering alone, no SQL and no files.

Nearest neighbours come from faiss (exact search on small sets and for the new faces of a nightly run,
HNSW for a large library grouped from scratch). On that sparse graph, groups merge by average linkage:
the root mean squared distance between every face of one group and every face of the other, which
follows exactly from each group's sum, sum of squared norms and size, so a merge costs the same for a
group of one face or of ten thousand. No library does average linkage with the constraints a photo
library needs, so this part is ours:

- two faces of one photo are never one person (cannot-link);
- groups that are already people (`fixed`) keep their faces and ids: new faces may join one of them,
  but two existing people are never merged, and a face the user took out of a person never goes back;
- faces taken within `near_days` of each other link a little more easily (a child's face changes within
  months, so a link between photos days apart is worth more than one across ten years);
- with dated faces and their age estimates, two groups merge only if one birth date can explain both:
  two babies photographed ten years apart look alike to the descriptor, but are not one person.

Precision first: a group that is two people is worse than two groups for one person.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

__all__ = ["GroupingOptions", "group_faces", "neighbours"]


@dataclass(frozen=True)
class GroupingOptions:
    """Chosen on the real album in ../shared/datasets/adience-dev (bench/people.py)."""

    threshold: float = 0.55  # groups merge while their RMS descriptor distance is below this
    k: int = 16  # nearest neighbours a face is linked to
    near_days: float = 45.0  # photos this close in time ...
    near_bonus: float = 0.03  # ... lower the linkage by this much
    max_links: int = 48  # candidate groups kept per group after a merge
    birth_tolerance: float = 2.0  # nats: how much worse one shared birth date may explain two groups
    hnsw_above: int = 30_000  # exact search up to this many faces, HNSW beyond


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
        index = faiss.IndexHNSWFlat(base.shape[1], 32)
        index.hnsw.efConstruction = 64
        index.add(base)
        index.hnsw.efSearch = max(64, 2 * k)
    else:
        index = faiss.IndexFlatL2(base.shape[1])
        index.add(base)
    d2, idx = index.search(queries, k)
    return np.sqrt(np.clip(d2, 0, None)), idx


@dataclass
class _Groups:
    """Running sums per group: what average linkage needs, whatever the group's size."""

    sums: np.ndarray  # (g, d) float64
    sq: np.ndarray  # (g,) sum of squared norms
    n: np.ndarray  # (g,) faces
    photos: list[set[int]]
    buckets: list[int]  # bit i set: a face dated in the i-th stretch of near_days (since the earliest)
    fixed: np.ndarray  # (g,) bool: an existing person
    label: np.ndarray  # (g,) the person's label (fixed groups) or -1
    banned: list[set[int]]  # person labels this group may not join
    birth: np.ndarray | None  # (g, years) summed log-likelihood of each birth year, or None
    tolerance: float
    version: np.ndarray  # (g,) bumped on every merge: older heap entries are stale
    parent: np.ndarray  # (g,) the group it merged into (itself while alive)

    def linkage(self, a: int, others: np.ndarray) -> np.ndarray:
        """RMS distance between every face of group `a` and every face of each group in `others`."""
        na, no = self.n[a], self.n[others]
        ms = self.sq[a] / na + self.sq[others] / no - 2.0 * (self.sums[others] @ self.sums[a]) / (na * no)
        return np.sqrt(np.maximum(ms, 0.0))

    def near(self, a: int, b: int) -> bool:
        """Some face of each was taken within one stretch of near_days of the other's."""
        bb = self.buckets[b]
        return bool(self.buckets[a] & (bb | bb << 1 | bb >> 1))

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
            if la.max() + lb.max() - (la + lb).max() > self.tolerance:
                return False  # no one birth date fits both
        return True


def group_faces(descriptors: np.ndarray, photos: np.ndarray, days: np.ndarray | None = None,
                fixed: np.ndarray | None = None, banned: dict[int, set[int]] | None = None,
                birth_loglik: np.ndarray | None = None, options: GroupingOptions = GroupingOptions()
                ) -> np.ndarray:
    """A person label for every face.

    descriptors: (n, 128) dlib descriptors; photos: (n,) photo id of each face; days: (n,) date of each
    face in days (NaN: unknown); fixed: (n,) the existing person label of each face, -1 for a face not in
    a person (a new face); banned: face index -> person labels it must not join; birth_loglik: (n, years)
    each face's log-likelihood of each birth year (births.year_loglik; zeros for undated faces), or None.
    Faces with a label keep it. Every other face gets an existing label (it joined that person) or a new
    one, counting up from one above the largest existing label (a new person, perhaps of one face).
    """
    n = len(descriptors)
    fixed = np.full(n, -1, np.int64) if fixed is None else np.asarray(fixed, np.int64)
    if n == 0:
        return fixed.copy()
    x = np.asarray(descriptors, np.float64)
    days = np.full(n, np.nan) if days is None else np.asarray(days, np.float64)
    banned = banned or {}
    new = np.flatnonzero(fixed < 0)
    labels_fixed = np.unique(fixed[fixed >= 0])
    # Groups: one per existing person, then one per new face.
    g_of_face = np.empty(n, np.int64)
    g_of_face[fixed >= 0] = np.searchsorted(labels_fixed, fixed[fixed >= 0])
    g_of_face[new] = len(labels_fixed) + np.arange(len(new))
    g = len(labels_fixed) + len(new)
    sums = np.zeros((g, x.shape[1]))
    np.add.at(sums, g_of_face, x)
    sq = np.bincount(g_of_face, weights=np.einsum("ij,ij->i", x, x), minlength=g)
    counts = np.bincount(g_of_face, minlength=g).astype(np.float64)
    photo_sets: list[set[int]] = [set() for _ in range(g)]
    bucket_bits = [0] * g
    first_day = np.nanmin(days) if np.isfinite(days).any() else 0.0
    # a group's one stretch of time (-1: undated, -2: more than one face: ask its bits)
    bucket_of = np.full(g, -1, np.int64)
    banned_sets: list[set[int]] = [set() for _ in range(g)]
    for i, (gi, p, d) in enumerate(zip(g_of_face.tolist(), np.asarray(photos).tolist(), days.tolist())):
        photo_sets[gi].add(p)
        if d == d:  # not NaN
            bucket_of[gi] = int((d - first_day) // options.near_days)
            bucket_bits[gi] |= 1 << int(bucket_of[gi])
        if i in banned:
            banned_sets[gi] |= banned[i]
    birth = None
    if birth_loglik is not None:
        birth = np.zeros((g, birth_loglik.shape[1]), np.float64)
        np.add.at(birth, g_of_face, birth_loglik)
    state = _Groups(sums, sq, counts, photo_sets, bucket_bits,
                    np.arange(g) < len(labels_fixed),
                    np.concatenate([labels_fixed, np.full(len(new), -1, np.int64)]), banned_sets,
                    birth, options.birth_tolerance, np.zeros(g, np.int64), np.arange(g))
    bucket_of[counts > 1] = -2
    if len(new):
        _merge(state, _candidate_pairs(x, new, g_of_face, options), bucket_of, options)
    # Each group's label: its person's, or a new one.
    root = _roots(state)
    next_label = int(labels_fixed.max()) + 1 if len(labels_fixed) else 0
    out = fixed.copy()
    new_label: dict[int, int] = {}
    for i in new.tolist():
        r = root[g_of_face[i]]
        if state.fixed[r]:
            out[i] = state.label[r]
        else:
            if r not in new_label:
                new_label[r] = next_label
                next_label += 1
            out[i] = new_label[r]
    return out


def _candidate_pairs(x: np.ndarray, new: np.ndarray, g_of_face: np.ndarray, o: GroupingOptions) -> np.ndarray:
    """Group pairs (a < b) linked by a new face's near neighbour, closer than the threshold allows."""
    approximate = len(x) > o.hnsw_above and len(new) > o.hnsw_above // 4
    dist, idx = neighbours(x, x[new], o.k + 1, approximate=approximate)
    limit = o.threshold + o.near_bonus
    src = np.repeat(new, idx.shape[1])
    dst = idx.ravel()
    keep = (dst >= 0) & (dist.ravel() < limit)
    a, b = g_of_face[src[keep]], g_of_face[dst[keep]]
    a, b = np.minimum(a, b), np.maximum(a, b)
    pairs = np.unique(np.stack([a, b], 1)[a != b], axis=0)
    return pairs


def _merge(s: _Groups, pairs: np.ndarray, bucket_of: np.ndarray, o: GroupingOptions) -> None:
    """Agglomerate along `pairs`, closest first, while the linkage stays under the threshold.

    Each group keeps its best partner among the groups it is linked to, and the heap holds one entry
    per group: its best linkage. Average linkage never falls when a neighbour merges (the merged
    group's linkage lies between the two it came from), so a stale entry is a lower bound: it is
    re-evaluated when it comes up, and the work stays proportional to the merges."""
    g = len(s.n)
    links: list[set[int]] = [set() for _ in range(g)]
    for a, b in pairs.tolist():
        links[a].add(b)
        links[b].add(a)
    alive = np.ones(g, bool)
    partner = np.full(g, -1, np.int64)
    partner_version = np.zeros(g, np.int64)
    heap: list[tuple[float, int, int]] = []

    def best(a: int) -> None:
        """Find `a`'s best allowed-looking partner and queue it (nothing when none is close enough)."""
        if not links[a]:
            return
        others = np.fromiter(links[a], np.int64, len(links[a]))
        link = s.linkage(a, others)
        if len(others) > o.max_links:  # keep the closest candidates: bounded work per group
            keep = np.argpartition(link, o.max_links)[: o.max_links]
            for c in np.delete(others, keep).tolist():
                links[c].discard(a)
            others, link = others[keep], link[keep]
            links[a] = set(others.tolist())
        # the date bonus can only lower a linkage by near_bonus: only the closest few need the check
        close = np.flatnonzero(link < min(o.threshold, float(link.min())) + o.near_bonus)
        if not len(close):
            return
        scores = link[close] - np.array([o.near_bonus if s.near(a, int(c)) else 0.0 for c in others[close]])
        j = int(np.argmin(scores))
        if scores[j] < o.threshold:
            c = int(others[close[j]])
            partner[a], partner_version[a] = c, s.version[c]
            heapq.heappush(heap, (float(scores[j]), a, int(s.version[a])))

    _first_partners(s, pairs, bucket_of, o, partner, partner_version, heap)
    while heap:
        _, a, va = heapq.heappop(heap)
        if not alive[a] or s.version[a] != va:
            continue
        b = int(partner[a])
        if not alive[b] or s.version[b] != partner_version[a]:
            best(a)  # its partner changed since: look again
            continue
        if not s.allowed(a, b):
            links[a].discard(b)
            links[b].discard(a)
            best(a)
            continue
        if s.fixed[b] and not s.fixed[a]:
            a, b = b, a  # the existing person absorbs the new faces and keeps its label
        s.sums[a] += s.sums[b]
        s.sq[a] += s.sq[b]
        s.n[a] += s.n[b]
        s.photos[a] |= s.photos[b]
        s.buckets[a] |= s.buckets[b]
        s.banned[a] |= s.banned[b]
        if s.birth is not None:
            s.birth[a] += s.birth[b]
        s.photos[b] = s.banned[b] = set()
        s.buckets[b] = 0
        alive[b] = False
        s.parent[b] = a
        s.version[a] += 1
        for c in links[b]:
            links[c].discard(b)
            if c != a:
                links[c].add(a)
        links[a] = (links[a] | links[b]) - {a, b}
        links[b] = set()
        best(a)


def _first_partners(s: _Groups, pairs: np.ndarray, bucket_of: np.ndarray, o: GroupingOptions, partner: np.ndarray,
                    partner_version: np.ndarray, heap: list[tuple[float, int, int]]) -> None:
    """Every group's best partner before any merge, for all groups at once (numpy, not a loop)."""
    if not len(pairs):
        return
    a = np.concatenate([pairs[:, 0], pairs[:, 1]])
    b = np.concatenate([pairs[:, 1], pairs[:, 0]])
    link = np.empty(len(a))
    for lo in range(0, len(a), 65536):  # in blocks: the gathered sums of a million pairs would not fit
        sa, sb = a[lo : lo + 65536], b[lo : lo + 65536]
        ms = (s.sq[sa] / s.n[sa] + s.sq[sb] / s.n[sb]
              - 2.0 * np.einsum("ij,ij->i", s.sums[sa], s.sums[sb]) / (s.n[sa] * s.n[sb]))
        link[lo : lo + 65536] = np.sqrt(np.maximum(ms, 0.0))
    ba, bb = bucket_of[a], bucket_of[b]
    near = (ba >= 0) & (bb >= 0) & (np.abs(ba - bb) <= 1)
    for i in np.flatnonzero(((ba == -2) | (bb == -2)) & (link < o.threshold + o.near_bonus)).tolist():
        near[i] = s.near(int(a[i]), int(b[i]))
    score = link - o.near_bonus * near
    order = np.lexsort((score, a))
    first = order[np.r_[True, a[order][1:] != a[order][:-1]]]
    first = first[score[first] < o.threshold]
    partner[a[first]] = b[first]
    heap.extend(zip(score[first].tolist(), a[first].tolist(), [0] * len(first)))
    heapq.heapify(heap)


def _roots(s: _Groups) -> np.ndarray:
    root = s.parent.copy()
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            return root
        root = nxt
