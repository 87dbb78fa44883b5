"""Near pairs of fingerprint vectors: every query within a distance of an indexed window.

The duplicate and leakage checks ask one question of many vectors: which (query image,
indexed image) pairs have the whole query, in one of a few poses, within a cosine distance
of the whole indexed image or one of its windows. Three ways answer it, and
:func:`plan_search` takes the one with the least estimated work:

*Every pair*, measured in blocks of matrix products: a search of up to a few thousand
photos.

*A k-d tree* over the windows projected onto their 8 main axes (a projection never
lengthens a distance, so no pair within the threshold is left out): fast when the vectors
crowd on a few axes, slow when they spread over many, as the candidates within the radius
on those axes then grow with the square of the folder.

*Hashed*: each vector gets ``bits`` random-hyperplane signs (the signs of its products with
random Gaussian directions) per table, and only a query and a window that share all of them
in at least one of ``tables`` tables are looked at, first on 12 main axes and then in full.
Two unit vectors at an angle ``t`` agree on one sign with probability ``1 - t / pi``, so a
pair at the largest distance that counts is missed by every table with probability
``(1 - p ** bits) ** tables``; the tables keep that under :data:`MISS` (a pair closer than
the threshold, as copies are, is missed far less often). The work grows with the number of
vectors, not with the number of pairs, and the directions come from a fixed seed: the same
vectors give the same pairs on every run.

The plan is made from a sample of 1,024 query views by 1,024 windows. Memory stays with the
inputs: the vectors are read in place and the pairs are measured in blocks; a hashed search
holds a key and a position per window and table for a group of tables at a time (at most
32 MB of keys). Vectors kept in a file (a large folder's, see
``fruitclf.data._mapped``) are read the same way, and the pages read are handed back to
the system every 64 MB.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence

import numpy as np

from ._mapped import Pages, copy, gather

__all__ = ["MISS", "Part", "Plan", "Sample", "near_pairs", "plan_search", "sample_pairs",
           "signed_permutation"]

#: The most that a hashed search misses a pair at the threshold (probability per pair of
#: vectors; pairs closer than the threshold are missed far less often).
MISS = 1e-6
_BLOCK = 1 << 21  # numbers (products or gathered values) handled at once: ~8-16 MB
_CANDIDATES = 1 << 16  # candidate pairs gathered at once: ~60 MB
_PROJECTED = 12  # main axes of the shadows that rule out most candidates
_TREE_AXES = 8  # main axes of a k-d tree
_KEY_BYTES = 1 << 25  # keys held at once (32 MB): how many tables are made together
_SAMPLE = 1024  # vectors a side in the sample of distances that plans a search
_PLANNING = 1.0  # estimated seconds of measuring every pair above which a search is planned
_BITS = range(8, 61, 4)  # signs per key that the plan chooses among
# Estimated seconds per unit of work on one core, measured on a 2-core x86 machine; only
# their ratios matter (which of the two ways, how many signs).
_COST_PRODUCT = 7e-11  # one multiply-add in a blocked matrix product
_COST_KEY = 5e-9  # sorting or looking up one key
_COST_MEASURE = 1e-7  # ruling out (or measuring) one candidate pair
_COST_TREE = 8e-6  # visiting a k-d tree, per pair within the radius on its axes


@dataclasses.dataclass(frozen=True)
class Part:
    """The numbers of a fingerprint vector that two images are compared on, with weights.

    ``part(x) == x[..., columns] * weights``, a unit vector when ``x`` is a fingerprint.
    """

    columns: np.ndarray  #: positions in the fingerprint vector
    weights: np.ndarray  #: float32 weight of each

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        compared: np.ndarray = np.asarray(vectors[..., self.columns], np.float32) * self.weights
        return compared

    def posed(self, pose: tuple[np.ndarray, np.ndarray]) -> Part:
        """The part of the vector turned by ``pose`` (``(order, signs)``: the turned vector
        is ``x[order] * signs``), read from the vector as it is."""
        order, signs = pose
        return Part(order[self.columns], (signs[self.columns] * self.weights).astype(np.float32))

    def span(self) -> slice:
        """The fewest consecutive numbers of a vector that hold every column compared."""
        return slice(int(self.columns.min()), int(self.columns.max()) + 1)

    def lifted(self, planes: np.ndarray, span: slice) -> np.ndarray:
        """``(span's length, k)``: ``x[..., span] @ lifted == part(x) @ planes``."""
        out = np.zeros((span.stop - span.start, planes.shape[1]), np.float32)
        np.add.at(out, self.columns - span.start, self.weights[:, None] * planes)
        return out


def signed_permutation(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(order, signs)`` of a matrix that moves and negates numbers, so that
    ``matrix @ x == x[order] * signs``.

    Examples
    --------
    >>> order, signs = signed_permutation(np.array([[0.0, 1.0], [-1.0, 0.0]]))
    >>> order.tolist(), signs.tolist()
    ([1, 0], [1.0, -1.0])

    Raises
    ------
    ValueError
        If ``matrix`` is not such a matrix.
    """
    order = np.abs(matrix).argmax(axis=1)
    signs = matrix[np.arange(len(matrix)), order].astype(np.float32)
    rebuilt = np.zeros_like(matrix)
    rebuilt[np.arange(len(matrix)), order] = signs
    if not (np.array_equal(rebuilt, matrix) and np.all(np.abs(signs) == 1)):
        raise ValueError("a pose must move and negate numbers, nothing else")
    return order, signs


@dataclasses.dataclass(frozen=True)
class Plan:
    """How a search is done: ``"every pair"``, ``"tree"`` or ``"hashed"``."""

    method: str  #: the way
    seconds: float = 0.0  #: the estimated work on one core
    bits: int = 0  #: signs per key of a hashed search
    tables: int = 0  #: tables of a hashed search


@dataclasses.dataclass(frozen=True)
class Sample:
    """What a sample of (query view, window) pairs says about a search's work."""

    #: ``1 - angle / pi`` of each sampled pair: the chance that one random sign agrees.
    agreement: np.ndarray
    #: The share of pairs within the threshold on the main axes (what a tree would measure).
    shadowed: float


def sample_pairs(queries: np.ndarray, windows: np.ndarray, part: Part,
                 poses: Sequence[tuple[np.ndarray, np.ndarray]], threshold: float) -> Sample:
    """A :class:`Sample` of up to 1,024 query views by as many windows."""
    rng = np.random.default_rng(0)
    take = rng.choice(len(queries), min(len(queries), _SAMPLE // len(poses) + 1),
                      replace=False)
    taken = gather(queries, take)
    views = np.concatenate([part.posed(pose)(taken) for pose in poses])
    compared = part(gather(windows, rng.choice(len(windows), min(len(windows), _SAMPLE),
                                               replace=False)))
    cosines = np.clip(views @ compared.T, -1.0, 1.0)
    axes = _main_axes(windows, part, _TREE_AXES)
    a, b = views @ axes, compared @ axes
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    within = int((squared <= 2 * threshold).sum())
    return Sample((1.0 - np.arccos(cosines) / math.pi).ravel(),
                  (within + 1) / (cosines.size + 1))


def plan_search(views: int, windows: int, dim: int, threshold: float,
                sample: Sample | None) -> Plan:
    """The way with the least estimated work among measuring every one of ``views`` x
    ``windows`` pairs of ``dim`` numbers, a k-d tree on the main axes, and each hashed
    search that misses a pair at ``threshold`` (cosine distance) with probability at most
    :data:`MISS`; ``sample`` from :func:`sample_pairs` (``None``: every pair)."""
    best = Plan("every pair", views * windows * dim * _COST_PRODUCT)
    if sample is None or not len(sample.agreement):
        return best
    lookups = windows * math.log2(max(windows, 2)) * _COST_KEY
    tree = Plan("tree", lookups + views * windows * sample.shadowed * _COST_TREE)
    best = min(best, tree, key=lambda plan: plan.seconds)
    near = 1.0 - math.acos(max(-1.0, 1.0 - threshold)) / math.pi  # at the threshold
    power = sample.agreement ** _BITS[0]  # then each next number of bits
    step = sample.agreement ** _BITS.step
    for bits in _BITS:
        caught = near**bits  # by one table
        tables = 1 if caught >= 1.0 else max(1, math.ceil(math.log(MISS) /
                                                          math.log1p(-caught)))
        candidates = views * windows * float(np.mean(power))
        power *= step
        seconds = tables * ((views + windows) * (dim * bits * _COST_PRODUCT + _COST_KEY)
                            + lookups + candidates * _COST_MEASURE)
        if seconds < best.seconds:
            best = Plan("hashed", seconds, bits, tables)
    return best


#: A search's result: query, window (``image * windows + window``), pose index, distance;
#: one row per pair found, in no order.
_Found = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def near_pairs(queries: np.ndarray, index: np.ndarray, limits: np.ndarray, part: Part,
               poses: Sequence[tuple[np.ndarray, np.ndarray]], *, skip_self: bool = False,
               plan: Plan | None = None) -> _Found:
    """Every (query, pose, window) within its window's limit.

    Parameters
    ----------
    queries : numpy.ndarray
        ``(n, dim)`` whole vectors.
    index : numpy.ndarray
        ``(m, windows, dim)`` vectors of the indexed images.
    limits : numpy.ndarray
        ``(windows,)``: the largest distance (1 - cosine of the parts) that counts, per window.
    part : Part
        What the vectors are compared on.
    poses : sequence of (order, signs)
        The ways to turn a query (:func:`signed_permutation`), the first usually as it is.
    skip_self : bool
        Leave out query ``i`` with indexed image ``i`` (a search of a set against itself).
    plan : Plan, optional
        How; by default the way with the least estimated work (:func:`plan_search`).
    """
    m, windows, dim = index.shape
    flat = index.reshape(m * windows, dim)
    found: list[_Found] = []
    if not len(queries) or not m:
        return _stack(found)
    if plan is None:
        views, dim, threshold = len(queries) * len(poses), len(part.columns), float(limits.max())
        plan = plan_search(views, len(flat), dim, threshold, None)
        if plan.seconds > _PLANNING:  # worth a sample to plan another way
            plan = plan_search(views, len(flat), dim, threshold,
                               sample_pairs(queries, flat, part, poses, threshold))
    keep = _Keep(np.tile(limits.astype(np.float32), m), windows, skip_self)
    # One contiguous float32 copy: every candidate pair reads its query (fewer than the
    # windows, which are read in place; in blocks, and the pages read handed back, when
    # they are kept in a file).
    query_pages, pages = Pages(queries), Pages(index)
    queries = copy(queries, np.float32, query_pages)
    query_pages.release()
    if plan.method == "every pair":
        compared = part(flat)
        for s, pose in enumerate(poses):
            for rows, cols, distance in _every_pair(queries, compared, part.posed(pose), keep):
                found.append((rows, cols, np.full(len(rows), s, np.int64), distance))
    elif plan.method == "tree":
        found.extend(_tree(queries, flat, part, poses, keep, pages))
    else:
        found.extend(_hashed(queries, flat, part, poses, keep, plan, pages))
    pages.release()
    return _stack(found)


def _stack(found: list[_Found]) -> _Found:
    if not found:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, np.zeros(0, np.float32)
    return tuple(np.concatenate(column) for column in zip(*found))  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class _Keep:
    """Which measured pairs a search returns."""

    limits: np.ndarray  # (windows in the index,): the largest distance that counts
    windows: int  # windows per indexed image
    skip_self: bool  # leave out query i with indexed image i

    def __call__(self, rows: np.ndarray, cols: np.ndarray, distance: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        close = distance <= self.limits[cols]
        if self.skip_self:
            close &= rows != cols // self.windows
        return rows[close], cols[close], np.maximum(distance[close], 0.0)

    def others(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The candidate pairs less each query with its own image, when ``skip_self``: left
        out before they are measured."""
        if not self.skip_self:
            return rows, cols
        other = rows != cols // self.windows
        return rows[other], cols[other]


def _every_pair(queries: np.ndarray, windows: np.ndarray, query_part: Part, keep: _Keep
                ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every (query, window) pair measured, in blocks of matrix products; ``windows`` are
    the parts compared."""
    step = max(1, _BLOCK // len(windows))
    for at in range(0, len(queries), step):
        distance = 1.0 - query_part(queries[at:at + step]) @ windows.T
        rows, cols = np.nonzero(distance <= keep.limits[None, :])
        yield keep(rows + at, cols, distance[rows, cols])


def _key_type(bits: int) -> type[np.unsignedinteger]:
    """The unsigned integer that holds a key of ``bits`` signs."""
    return np.uint32 if bits <= 32 else np.uint64


def _keys(vectors: np.ndarray, part: Part, planes: Sequence[np.ndarray], bits: int,
          pages: Pages | None = None) -> np.ndarray:
    """``(len(vectors), len(planes))``: per table, the signs of the products of each vector's
    ``part`` with that table's ``(compared numbers, bits)`` planes, as one integer. Only the
    span of the vector that the part reads is converted, once for all the tables."""
    span = part.span()
    lifted = np.hstack([part.lifted(p, span) for p in planes])
    key_type = _key_type(bits)
    size = np.dtype(key_type).itemsize
    keys = np.empty((len(vectors), len(planes)), key_type)
    step = max(1, _BLOCK // max(span.stop - span.start, lifted.shape[1]))
    for at in range(0, len(vectors), step):
        signs = np.asarray(vectors[at:at + step, span], np.float32) @ lifted > 0
        packed = np.packbits(signs.reshape(len(signs), len(planes), bits), axis=2,
                             bitorder="little")
        wide = np.zeros((len(packed), len(planes), size), np.uint8)
        wide[:, :, :packed.shape[2]] = packed
        keys[at:at + step] = wide.view(key_type)[:, :, 0]
        if pages is not None:
            pages.read(vectors[at:at + step].nbytes)
    return keys


@dataclasses.dataclass(frozen=True)
class _Shadow:
    """Vectors' parts projected onto a few main axes, and how far each part's squared
    length is from 1: enough to rule out most pairs without reading the vectors. A
    projection onto orthonormal axes never lengthens a distance, so a pair it rules out is
    never a near pair."""

    points: np.ndarray  # (n, _PROJECTED) float32
    excess: np.ndarray  # (n,) float32: |part|^2 - 1

    @classmethod
    def of(cls, vectors: np.ndarray, part: Part, axes: np.ndarray,
           pages: Pages | None = None) -> _Shadow:
        points = np.empty((len(vectors), axes.shape[1]), np.float32)
        excess = np.empty(len(vectors), np.float32)
        step = max(1, _BLOCK // vectors.shape[1])
        for at in range(0, len(vectors), step):
            compared = part(vectors[at:at + step])
            points[at:at + step] = compared @ axes
            excess[at:at + step] = np.einsum("ij,ij->i", compared, compared) - 1.0
            if pages is not None:
                pages.read(vectors[at:at + step].nbytes)
        return cls(points, excess)

    def may_meet(self, other: _Shadow, rows: np.ndarray, cols: np.ndarray,
                 limits: np.ndarray) -> np.ndarray:
        """Whether each (row of self, col of other) pair can be within its limit (1 - cosine):
        |a - b|^2 = |a|^2 + |b|^2 - 2 a.b, so 1 - a.b <= limit needs the projected squared
        distance <= 2 limit + both excesses."""
        # np.take gathers rows several times faster than indexing with an array.
        gap = np.take(self.points, rows, axis=0)
        gap -= np.take(other.points, cols, axis=0)
        room = 2.0 * limits + self.excess[rows] + other.excess[cols] + 1e-5
        within: np.ndarray = np.einsum("ij,ij->i", gap, gap) <= room
        return within


def _main_axes(flat: np.ndarray, part: Part, count: int) -> np.ndarray:
    """``(compared numbers, count)``: the main axes of a sample of the windows' parts."""
    sample = part(gather(flat, np.arange(0, len(flat), max(1, len(flat) // 4096))))
    _, _, axes = np.linalg.svd(sample - sample.mean(axis=0), full_matrices=False)
    return np.ascontiguousarray(axes[:count].T)


def _tree(queries: np.ndarray, flat: np.ndarray, part: Part,
          poses: Sequence[tuple[np.ndarray, np.ndarray]], keep: _Keep, pages: Pages
          ) -> Iterator[_Found]:
    """The (query, window) pairs within the largest limit on the windows' main axes (a
    k-d tree of their shadows, searched on every core), measured."""
    from scipy.spatial import cKDTree

    axes = _main_axes(flat, part, _TREE_AXES)
    shadow = _Shadow.of(flat, part, axes, pages)
    tree = cKDTree(shadow.points)
    widest = 2.0 * float(keep.limits.max()) + max(0.0, float(shadow.excess.max())) + 1e-5
    for s, pose in enumerate(poses):
        posed = part.posed(pose)
        views = _Shadow.of(queries, posed, axes)
        for at in range(0, len(queries), 4096):
            room = widest + np.maximum(views.excess[at:at + 4096], 0.0)
            hits = tree.query_ball_point(views.points[at:at + 4096], np.sqrt(room), workers=-1)
            rows = np.repeat(np.arange(at, at + len(hits)), [len(h) for h in hits])
            if not len(rows):
                continue
            rows, cols = keep.others(rows, np.concatenate([np.asarray(h, np.int64)
                                                           for h in hits]))
            rows, cols, distance = keep(rows, cols, _distances(queries, flat, rows, cols,
                                                               posed, part, pages))
            yield rows, cols, np.full(len(rows), s, np.int64), distance


def _hashed(queries: np.ndarray, flat: np.ndarray, part: Part,
            poses: Sequence[tuple[np.ndarray, np.ndarray]], keep: _Keep, plan: Plan,
            pages: Pages) -> Iterator[_Found]:
    """The (query, window) pairs that share a key in at least one table and that their
    shadows do not rule out, measured (a pair that shares several keys is measured, and
    returned, once per table). The keys of a group of tables are made in one pass."""
    rng = np.random.default_rng(0)
    axes = _main_axes(flat, part, _PROJECTED)
    shadow = _Shadow.of(flat, part, axes, pages)
    posed = [part.posed(pose) for pose in poses]
    query_shadows = [_Shadow.of(queries, p, axes) for p in posed]
    size = np.dtype(_key_type(plan.bits)).itemsize
    group = max(1, min(plan.tables, _KEY_BYTES // (size * len(flat))))
    for start in range(0, plan.tables, group):
        planes = [rng.standard_normal((len(part.columns), plan.bits)).astype(np.float32)
                  for _ in range(min(group, plan.tables - start))]
        window_keys = _keys(flat, part, planes, plan.bits, pages)
        query_keys = [_keys(queries, p, planes, plan.bits) for p in posed]
        for table in range(len(planes)):
            # The windows' keys in order: those sharing a key are found in a row.
            order, sorted_keys = _in_order(window_keys[:, table])
            for s, p in enumerate(posed):
                for rows, at in _sharing(query_keys[s][:, table], sorted_keys):
                    cols = order[at]
                    near = query_shadows[s].may_meet(shadow, rows, cols, keep.limits[cols])
                    rows, cols = keep.others(rows[near], cols[near])
                    rows, cols, distance = keep(rows, cols, _distances(
                        queries, flat, rows, cols, p, part, pages))
                    yield rows, cols, np.full(len(rows), s, np.int64), distance


def _in_order(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(order, keys[order])`` with ``keys[order]`` sorted. A 32-bit key and its position
    are sorted as one 64-bit number (NumPy sorts numbers several times faster than it
    sorts positions by them); equal keys keep their positions' order."""
    if keys.dtype != np.uint32 or len(keys) >= 1 << 32:
        order = np.argsort(keys, kind="stable")
        return order, keys[order]
    joined = keys.astype(np.uint64)
    joined <<= np.uint64(32)
    joined |= np.arange(len(keys), dtype=np.uint64)
    joined.sort()
    return ((joined & np.uint64(0xFFFFFFFF)).astype(np.intp),
            (joined >> np.uint64(32)).astype(np.uint32))


def _sharing(query_keys: np.ndarray, sorted_keys: np.ndarray
             ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(query, position in ``sorted_keys``) pairs with the same key, in blocks of about
    ``_CANDIDATES``."""
    by_key = np.argsort(query_keys)  # sorted lookups run faster
    found = np.searchsorted(sorted_keys, query_keys[by_key], "left")
    first = np.empty_like(found)
    first[by_key] = found
    counts = np.empty_like(found)
    counts[by_key] = np.searchsorted(sorted_keys, query_keys[by_key], "right") - found
    ends = np.cumsum(counts)
    at = 0
    while at < len(query_keys):
        stop = max(at + 1, int(np.searchsorted(ends, ends[at] - counts[at] + _CANDIDATES,
                                               "right")))
        n = counts[at:stop]
        rows = np.repeat(np.arange(at, stop), n)
        yield rows, np.repeat(first[at:stop] - (np.cumsum(n) - n), n) + np.arange(len(rows))
        at = stop


def _distances(queries: np.ndarray, flat: np.ndarray, rows: np.ndarray, cols: np.ndarray,
               query_part: Part, part: Part, pages: Pages | None = None) -> np.ndarray:
    """``1 - cosine`` of the parts of each (query, window) pair (the windows gathered
    with ``_mapped.gather``, counted to ``pages``)."""
    out = np.empty(len(rows), np.float32)
    step = max(1, _BLOCK // len(part.columns))
    for at in range(0, len(rows), step):
        a = query_part(np.take(queries, rows[at:at + step], axis=0))
        b = part(gather(flat, cols[at:at + step], pages))
        out[at:at + step] = 1.0 - np.einsum("ij,ij->i", a, b)
    return out
