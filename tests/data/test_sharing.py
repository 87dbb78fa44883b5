"""The check shared between the workers of a cluster: each checks its share, the shares'
results are exchanged as bytes and merge into what one process checking every file finds.

The workers here are threads of one process, exchanging through a barrier where a cluster
uses TensorFlow's collectives (tests/training/test_distributed.py runs the real cluster)."""

from __future__ import annotations

import threading
import types
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from _images import write_photo_folder, write_zoo
from fruitclf import DatasetError, ImageFolderDataset, Preprocessing, distribute
from fruitclf.data.check import check_files
from fruitclf.data.sharing import merge_shares, share_bytes, share_of


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Photos in 3 classes, with copies (exact, mirrored, resized) that land in different
    workers' shares, and broken files of every kind in a fourth class."""
    root = write_photo_folder(tmp_path_factory.mktemp("sharing") / "data", 3, 9, seed=5)
    first = Image.open(root / "class_0" / "photo_000.jpg")
    first.save(root / "class_1" / "copy_exact.jpg", quality=95)
    first.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "class_2" / "copy_mirror.jpg")
    first.resize((64, 64)).save(root / "class_0" / "photo_zz_small.jpg")
    write_zoo(root / "mixed", np.random.default_rng(3))
    return root


def _files(root: Path) -> list[tuple[str, str]]:
    ds = ImageFolderDataset(root)
    return list(zip(ds.paths, ds.relpaths))


def _same_report(merged: Any, whole: Any) -> None:
    assert merged.num_checked == whole.num_checked
    assert [vars(p) for p in merged.problems] == [vars(p) for p in whole.problems]
    assert list(merged.image_sizes.items()) == list(whole.image_sizes.items())
    assert list(merged.fingerprints) == list(whole.fingerprints)
    for path, fp in whole.fingerprints.items():
        other = merged.fingerprints[path]
        assert (other.digest, other.pixels, other.measures, other.file_size, other.mtime_ns,
                other.border) == (fp.digest, fp.pixels, fp.measures, fp.file_size,
                                  fp.mtime_ns, fp.border), path
        assert other.vectors.dtype == np.float16
        np.testing.assert_array_equal(other.vectors, fp.vectors)


@pytest.mark.parametrize("workers", [2, 3])
def test_shares_merge_into_the_check_of_every_file(folder, workers):
    """Check that the shares of 2 and 3 workers, each checked alone and read back from
    bytes, give the same verdicts, sizes and fingerprints, in the same order, as one check
    of every file, and the same duplicate groups."""
    from fruitclf.data.quality import find_duplicates

    files = _files(folder)
    whole = check_files(files, root=str(folder), progress=False)
    shares = [share_bytes(check_files(share_of(files, i, workers), root=str(folder),
                                      progress=False), files, i, workers)
              for i in range(workers)]
    local = check_files(share_of(files, 0, workers), root=str(folder), progress=False)
    merged = merge_shares(shares, files, root=str(folder), local=local, seconds=1.0)
    _same_report(merged, whole)
    assert len(whole.problems) >= 9 and len(whole.fingerprints) >= 30

    def groups(report: Any) -> list[tuple[str, list[str]]]:
        found = [(p, r, "c") for p, r in files if p in report.fingerprints]
        return [(g.kind, g.relpaths) for g in find_duplicates(
            found, [report.fingerprints[p] for p, _, _ in found])]

    assert groups(merged) == groups(whole)
    assert len(groups(whole)) >= 1


def test_a_share_from_another_folder_is_refused(folder, tmp_path):
    """Check that a worker whose folder lists other files (or another number of workers)
    stops with a DatasetError that says to give every worker the same folder."""
    files = _files(folder)
    report = check_files(share_of(files, 1, 2), root=str(folder), progress=False)
    other = share_bytes(report, [*files[:-1], (files[-1][0], "mixed/renamed.jpg")], 1, 2)
    mine = share_bytes(check_files(share_of(files, 0, 2), root=str(folder), progress=False),
                       files, 0, 2)
    with pytest.raises(DatasetError, match="Give every worker the same folder"):
        merge_shares([mine, other], files, root=str(folder), local=report, seconds=0.0)
    with pytest.raises(DatasetError, match="Worker 1's check"):
        merge_shares([mine, b"\x03\x00\x00\x00\x00\x00\x00\x00{x"], files, root=str(folder),
                     local=report, seconds=0.0)


class _Cluster:
    """``count`` workers in threads: :meth:`strategy` gives worker ``i`` a strategy whose
    role is ``(i, count)``, and :meth:`gather` all-gathers along axis 0 through a barrier,
    as the collective does."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.barrier = threading.Barrier(count, timeout=60)
        self.slots: list[Any] = [None] * count
        self.calls = 0

    def strategy(self, index: int) -> Any:
        resolver = types.SimpleNamespace(
            cluster_spec=lambda: types.SimpleNamespace(
                as_dict=lambda: {"worker": [f"w{i}" for i in range(self.count)]}),
            task_id=index, task_type="worker")
        cluster = self

        class Strategy:
            cluster_resolver = resolver

            def run(self, fn: Callable[[], Any]) -> Any:
                return fn()

            def gather(self, value: Any, axis: int) -> Any:
                cluster.slots[index] = np.asarray(value)
                cluster.barrier.wait()
                out = np.concatenate(cluster.slots, axis=axis)
                cluster.barrier.wait()
                if index == 0:
                    cluster.calls += 1
                return types.SimpleNamespace(numpy=lambda: out)

        return Strategy()

    def run(self, work: Callable[[int], Any]) -> list[Any]:
        with ThreadPoolExecutor(self.count) as pool:
            return list(pool.map(work, range(self.count)))


def test_all_gather_bytes_gives_every_worker_every_workers_bytes_in_chunks():
    """Check that data of uneven lengths (one empty) comes back whole and in worker order on
    every worker, over several collective calls when it is larger than a chunk."""
    cluster = _Cluster(3)
    data = [bytes(range(256)) * 3 + b"tail", b"", b"short"]
    got = cluster.run(lambda i: distribute.all_gather_bytes(cluster.strategy(i), data[i],
                                                            chunk_bytes=64))
    assert got == [data] * 3
    assert cluster.calls == 1 + -(-len(data[0]) // 64)


def test_workers_share_the_check_and_split_as_one_process(folder, caplog):
    """Check that ``check(strategy=...)`` on two workers gives each the whole folder's
    report (the same as one process's), keeps only its share's images, and that both split
    the folder as one process does, duplicates grouped."""
    preprocessing = Preprocessing((24, 24))
    cluster = _Cluster(2)
    datasets = [ImageFolderDataset(folder) for _ in range(2)]

    def work(index: int) -> Any:
        ds = datasets[index]
        return ds.check(progress=False, preprocessing=preprocessing,
                        strategy=cluster.strategy(index))

    with caplog.at_level("INFO", logger="fruitclf"):
        reports = cluster.run(work)
    alone = ImageFolderDataset(folder)
    whole = alone.check(progress=False, preprocessing=preprocessing)
    files = _files(folder)
    for index, report in enumerate(reports):
        _same_report(report, whole)
        share = {p for p, _ in share_of(files, index, 2)}
        assert set(report.images) == share - {p.path for p in whole.problems}
        assert f"Worker {index} of 2 checked {len(share)} of {len(files)} images" in caplog.text
    for image in reports[1].images:
        np.testing.assert_array_equal(reports[1].images[image], whole.images[image])
    splits = [ds.exclude(p.path for p in whole.problems).split(0.3, seed=4)
              for ds in [*datasets, alone]]
    assert splits[0].validation.relpaths == splits[1].validation.relpaths \
        == splits[2].validation.relpaths
    copies = {"class_0/photo_000.jpg", "class_1/copy_exact.jpg", "class_2/copy_mirror.jpg",
              "class_0/photo_zz_small.jpg"}
    sides = {bool(copies & set(part.relpaths)) for part in splits[0]}
    assert sides == {True, False}, "the copies are on one side only"
