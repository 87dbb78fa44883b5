"""The near-pair search behind duplicates and leakage: hashed searches find what measuring
every pair finds, plans follow the work, poses are signed permutations."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from fruitclf.data import quality
from fruitclf.data.nearpairs import (
    _BLOCK,
    MISS,
    Part,
    Plan,
    Sample,
    near_pairs,
    plan_search,
    sample_pairs,
    signed_permutation,
)

DIM = 40
THRESHOLD = 0.03


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _planted(rng: np.random.Generator, n: int, windows: int, pairs: int):  # type: ignore[no-untyped-def]
    """``n`` queries and ``n`` indexed images of ``windows`` vectors each, correlated as
    photos are (a shared direction), with ``pairs`` queries planted at distances up to
    and just over the threshold from a window of another image, some in the second pose."""
    common = _unit(rng.normal(size=DIM))
    index = _unit(rng.normal(size=(n, windows, DIM)) + 1.2 * common)
    queries = _unit(rng.normal(size=(n, DIM)) + 1.2 * common)
    pose = _poses()[1]
    planted = {}
    for k in range(pairs):
        q, image, window = k, (k * 7 + 3) % n, k % windows
        distance = THRESHOLD * (1.0 - (k % 10) / 10) if k % 10 else THRESHOLD * 1.02
        target = index[image, window]
        other = rng.normal(size=DIM)
        other = _unit(other - (other @ target) * target)
        angle = math.acos(1.0 - distance)
        view = math.cos(angle) * target + math.sin(angle) * other
        s = k % 3 == 0  # a third of them turned: the query is the view turned back
        order, signs = pose
        if s:
            unturned = np.empty(DIM)
            unturned[order] = view * signs
            view = unturned
        queries[q] = view
        planted[(q, image * windows + window, int(s))] = distance
    return queries.astype(np.float16), index.astype(np.float16), planted


def _poses() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    flip = np.eye(DIM)[::-1] * np.where(np.arange(DIM) % 2, -1.0, 1.0)[:, None]
    return signed_permutation(np.eye(DIM)), signed_permutation(flip)


def _found(result) -> dict[tuple[int, int, int], float]:  # type: ignore[no-untyped-def]
    rows, cols, poses, distances = result
    return {(int(r), int(c), int(p)): float(d)
            for r, c, p, d in zip(rows, cols, poses, distances)}


def test_tree_and_hashed_searches_find_every_pair_that_measuring_every_pair_finds():
    """Check the tree and a hashed search against measuring every pair, on correlated
    vectors with 600 planted pairs from far inside the threshold to just over it: the
    same pairs, the same distances."""
    rng = np.random.default_rng(0)
    queries, index, planted = _planted(rng, 1500, 4, 600)
    part = Part(np.arange(DIM), np.ones(DIM, np.float32))
    limits = np.full(4, THRESHOLD, np.float32)
    exact = _found(near_pairs(queries, index, limits, part, _poses(),
                              plan=Plan("every pair")))
    sample = sample_pairs(queries, index.reshape(-1, DIM), part, _poses(), THRESHOLD)
    hashed = plan_search(300_000, 600_000, DIM, THRESHOLD, sample)  # as for a large folder
    assert hashed.method == "hashed" and hashed.bits >= 12 and hashed.tables >= 10
    for plan in (hashed, Plan("tree")):
        found = _found(near_pairs(queries, index, limits, part, _poses(), plan=plan))
        assert found.keys() == exact.keys(), plan
        for key, distance in exact.items():
            assert found[key] == pytest.approx(distance, abs=1e-6)
    inside = {key for key, d in planted.items() if d <= THRESHOLD * 0.999}
    assert len(inside) == 540 and inside <= exact.keys()  # the planted pairs within it
    assert not {key for key, d in planted.items() if d > THRESHOLD} & exact.keys()


def test_vectors_kept_in_a_file_give_the_same_pairs_and_their_pages_are_handed_back(
        monkeypatch):
    """Check that windows (and queries) kept in a temporary file, as a large folder's are,
    give the same pairs as in memory, with each search handing the pages it read back to
    the system as it goes."""
    from fruitclf.data import _mapped

    rng = np.random.default_rng(2)
    queries, index, _ = _planted(rng, 400, 4, 100)
    mapped = _mapped.array(index.shape, np.float16, in_memory_bytes=0)
    mapped[:] = index
    mapped_queries = _mapped.array(queries.shape, np.float16, in_memory_bytes=0)
    mapped_queries[:] = queries
    assert isinstance(mapped, np.memmap) and isinstance(mapped_queries, np.memmap)
    released = []
    release = _mapped.Pages.release

    def counted(self: _mapped.Pages) -> None:
        if self.mapped:
            released.append(self._held)
        release(self)

    monkeypatch.setattr(_mapped, "RESIDENT_BYTES", 1 << 16)
    monkeypatch.setattr(_mapped.Pages, "release", counted)
    part = Part(np.arange(DIM), np.ones(DIM, np.float32))
    limits = np.full(4, THRESHOLD, np.float32)
    for plan in (Plan("tree"), Plan("hashed", bits=12, tables=12)):
        in_memory = _found(near_pairs(queries, index, limits, part, _poses(), plan=plan))
        assert not released
        in_file = _found(near_pairs(mapped_queries, mapped, limits, part, _poses(), plan=plan))
        assert in_file == in_memory and len(in_file) >= 90, plan
        # handed back once past the limit: at most one block or one stretch of rows over
        assert len(released) > 4
        assert max(released) <= (1 << 16) + _mapped.TOUCH_BYTES + _BLOCK // DIM * 2 * DIM
        released.clear()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_pages_handed_back_leave_the_process_and_keep_their_data():
    """Check that handing back the pages of an array kept in a file lowers what the
    process holds of it (``RssFile``) by about its size, and that the data reads back."""
    from fruitclf.data import _mapped

    def held_kib() -> int:
        status = Path("/proc/self/status").read_text()
        return int(status.split("RssFile:")[1].split()[0])

    values = _mapped.array((8 << 20,), np.float32, in_memory_bytes=0)  # 32 MiB
    values[:] = np.arange(len(values), dtype=np.float32)
    written = held_kib()
    _mapped.Pages(values).release()
    assert written - held_kib() > 30 << 10
    assert values[-1] == len(values) - 1 and float(values[:1000].sum()) == 499500.0
    _mapped.Pages(np.zeros(3)).release()  # an array in memory: nothing to hand back

    # rows picked at random are read in file order, a stretch at a time, and handed back
    rows = values.reshape(-1, 64)
    picked = np.random.default_rng(0).integers(0, len(rows), 5000)
    before = held_kib()
    gathered = _mapped.gather(rows, picked, _mapped.Pages(rows, limit=4 << 20))
    assert held_kib() - before < (4 + 2 + 2 + 2) << 10  # limit, stretch, one large page
    assert np.array_equal(gathered, rows[picked])


def test_skip_self_and_limits_per_window():
    """Check that a set searched against itself leaves out each image with itself, and
    that each window counts under its own limit."""
    rng = np.random.default_rng(1)
    index = _unit(rng.normal(size=(50, 3, DIM))).astype(np.float16)
    queries = index[:, 0].copy()
    part = Part(np.arange(DIM), np.ones(DIM, np.float32))
    pose = _poses()[:1]
    for plan in (Plan("every pair"), Plan("tree"), Plan("hashed", bits=16, tables=8)):
        rows, cols, _, _ = near_pairs(queries, index, np.full(3, 0.01, np.float32), part, pose,
                                      plan=plan)
        assert set(zip(rows, cols // 3)) >= {(i, i) for i in range(50)}
        rows, cols, _, _ = near_pairs(queries, index, np.full(3, 0.01, np.float32), part, pose,
                                      skip_self=True, plan=plan)
        assert not any(rows == cols // 3)
    rows, cols, _, _ = near_pairs(queries, index, np.array([-1.0, 1.0, 1.0], np.float32),
                                  part, pose, plan=Plan("every pair"))
    assert len(rows) > 50 and not any(cols % 3 == 0)


def test_plans_follow_the_work():
    """Check that a small search measures every pair, that a large one of spread-out
    vectors is hashed with enough tables to miss a pair at the threshold with probability
    at most MISS, that one whose vectors crowd on a few axes takes the tree, and that
    planning without a sample measures every pair."""
    spread = Sample(np.full(1000, 0.55, np.float32), 1e-2)
    assert plan_search(800, 20_000, 111, 0.03, spread).method == "every pair"
    plan = plan_search(160_000, 540_000, 111, 0.03, spread)
    assert plan.method == "hashed"
    near = 1.0 - math.acos(1.0 - 0.03) / math.pi
    assert (1.0 - near**plan.bits) ** plan.tables <= MISS
    assert (1.0 - near**plan.bits) ** (plan.tables - 1) > MISS  # no more tables than that
    crowded = Sample(np.full(1000, 0.8, np.float32), 1e-6)
    assert plan_search(160_000, 540_000, 111, 0.03, crowded).method == "tree"
    assert plan_search(160_000, 540_000, 111, 0.03, None).method == "every pair"
    assert plan_search(160_000, 540_000, 111, 0.0, spread).tables == 1


def test_the_poses_of_the_fingerprints_are_signed_permutations():
    """Check the eight poses against the matrices they come from, and that any other
    matrix is refused."""
    matrices = quality._symmetry_matrices()
    x = np.random.default_rng(2).normal(size=matrices.shape[1]).astype(np.float32)
    for matrix, (order, signs) in zip(matrices, quality._poses()):
        np.testing.assert_array_equal(matrix @ x, x[order] * signs)
    with pytest.raises(ValueError, match="move and negate"):
        signed_permutation(np.array([[0.5, 0.5], [0.0, 1.0]]))


def test_keys_read_only_the_numbers_a_part_compares():
    """Check the hashed keys of a part that reads some of the numbers, moved and weighted
    (as the luma part of a fingerprint does): the same signs as the part's products with
    the planes, bit by bit, in 32-bit keys up to 32 signs and 64-bit keys above; and a
    hashed search on such a part finds what measuring every pair finds."""
    from fruitclf.data.nearpairs import _keys

    rng = np.random.default_rng(3)
    columns = np.r_[30:DIM, 10:30]
    part = Part(columns, np.r_[np.full(10, 0.5), np.ones(20)].astype(np.float32))
    assert part.span() == slice(10, DIM)
    vectors = rng.normal(size=(300, DIM)).astype(np.float16)
    for bits, key_type in ((20, np.uint32), (40, np.uint64)):
        planes = [rng.standard_normal((len(columns), bits)).astype(np.float32)
                  for _ in range(3)]
        keys = _keys(vectors, part, planes, bits)
        assert keys.dtype == key_type and keys.shape == (300, 3)
        for table, p in enumerate(planes):
            signs = part(vectors) @ p > 0
            expected = (signs.astype(np.uint64) << np.arange(bits, dtype=np.uint64)).sum(1)
            assert np.array_equal(keys[:, table].astype(np.uint64), expected)
        posed = part.posed(_poses()[1])
        assert np.array_equal(_keys(vectors, posed, planes, bits)[:, 0].astype(np.uint64),
                              ((posed(vectors) @ planes[0] > 0).astype(np.uint64)
                               << np.arange(bits, dtype=np.uint64)).sum(1))

    # The planted vectors behind 10 numbers the search does not compare.
    queries, index, planted = _planted(rng, 800, 3, 300)
    queries = np.concatenate([rng.normal(size=(800, 10)).astype(np.float16), queries], 1)
    index = np.concatenate([rng.normal(size=(800, 3, 10)).astype(np.float16), index], 2)
    shifted = Part(np.arange(10, 10 + DIM), np.ones(DIM, np.float32))
    poses = [(np.r_[np.arange(10), order + 10], np.r_[np.ones(10), signs].astype(np.float32))
             for order, signs in _poses()]
    limits = np.full(3, THRESHOLD, np.float32)
    exact = _found(near_pairs(queries, index, limits, shifted, poses, plan=Plan("every pair")))
    hashed = _found(near_pairs(queries, index, limits, shifted, poses,
                               plan=Plan("hashed", bits=16, tables=40)))
    inside = {key for key, d in planted.items() if d <= THRESHOLD * 0.999}
    assert len(inside) == 270 and inside <= exact.keys() and hashed.keys() == exact.keys()


def test_keys_in_order_keep_equal_keys_in_their_positions():
    """Check the joined sort of 32-bit keys against NumPy's stable argsort (many equal
    keys, the largest key), and 64-bit keys by argsort."""
    from fruitclf.data.nearpairs import _in_order

    rng = np.random.default_rng(5)
    for key_type, high in ((np.uint32, 1 << 32), (np.uint32, 50), (np.uint64, 1 << 63)):
        keys = rng.integers(0, high, 10_000, dtype=np.uint64).astype(key_type)
        keys[::97] = high - 1
        order, in_order = _in_order(keys)
        expected = np.argsort(keys, kind="stable")
        assert np.array_equal(order, expected) and np.array_equal(in_order, keys[expected])
        assert in_order.dtype == key_type
    empty_order, empty = _in_order(np.zeros(0, np.uint32))
    assert len(empty_order) == len(empty) == 0
