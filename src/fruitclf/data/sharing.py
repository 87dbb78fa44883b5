"""A check split between the workers of a cluster.

Each worker checks its share of a folder's files (every n-th, from its own index), writes
what it found as bytes (:func:`share_bytes`), and, once every worker's bytes have been
exchanged (:func:`fruitclf.distribute.all_gather_bytes`, TensorFlow's collectives), merges
them into the report of the whole folder (:func:`merge_shares`): the same verdicts, sizes and
fingerprints, in the same order, as one process checking every file, so the duplicate groups
and the split are the same too. The model-ready images each worker kept stay with it: they
are those of its share, which its training pipeline reads.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..distribute import digest
from ..exceptions import DatasetError
from . import _mapped
from .check import CheckReport, FileProblem
from .quality import VECTOR_SIZE, WINDOW_COUNT, Fingerprint, ImageMeasures

__all__ = ["merge_shares", "share_bytes", "share_of"]

_FORMAT = "fruitclf-check-share"
_VERSION = 1
_HEADER = 8  # bytes of the JSON part's length, little-endian
_ROW_BYTES = WINDOW_COUNT * VECTOR_SIZE * 2  # one file's float16 vectors


def share_of(files: Sequence[Any], index: int, count: int) -> list[Any]:
    """The files worker ``index`` of ``count`` checks: every ``count``-th from ``index``.

    Examples
    --------
    >>> share_of(["a", "b", "c", "d", "e"], 1, 2)
    ['b', 'd']
    """
    return list(files[index::count])


def share_bytes(report: CheckReport, files: Sequence[tuple[str, str]], index: int,
                count: int) -> bytearray:
    """What ``report``, the check of worker ``index``'s share of ``files`` (the
    ``(path, relpath)`` pairs of the whole folder), found, as bytes that :func:`merge_shares`
    reads: a JSON part (verdicts, sizes, the fingerprints less their vectors) and the
    ``float16`` vectors."""
    mine = share_of(files, index, count)
    problems = {p.path: p for p in report.problems}
    readable: list[list[Any]] = []
    refused: list[list[Any]] = []
    vectors: list[np.ndarray] = []  # views of the check's own array
    for position, (path, _) in enumerate(mine):
        where = index + position * count
        problem = problems.get(path)
        if problem is not None:
            refused.append([where, problem.reason, problem.message, problem.size,
                            problem.mtime_ns])
            continue
        fp = report.fingerprints[path]
        size = report.image_sizes.get(path)
        readable.append([where, list(size) if size is not None else None, fp.digest.hex(),
                         fp.pixels.hex() if fp.pixels is not None else None,
                         list(dataclasses.astuple(fp.measures)), fp.file_size, fp.mtime_ns,
                         fp.border])
        vectors.append(fp.vectors)
    header = json.dumps({"format": _FORMAT, "version": _VERSION, "worker": index,
                         "workers": count, "files": len(files),
                         "listing": digest([relpath for _, relpath in files]),
                         "readable": readable, "refused": refused}).encode()
    out = bytearray(_HEADER + len(header) + len(vectors) * _ROW_BYTES)
    out[:_HEADER] = len(header).to_bytes(_HEADER, "little")
    out[_HEADER:_HEADER + len(header)] = header
    rows = np.frombuffer(out, np.float16, offset=_HEADER + len(header)).reshape(
        len(vectors), WINDOW_COUNT, VECTOR_SIZE)
    for row, values in zip(rows, vectors):
        row[...] = values
    return out


def _read(data: bytes | bytearray | memoryview, files: Sequence[tuple[str, str]],
          worker: int, count: int) -> tuple[dict[str, Any], memoryview]:
    try:
        size = int.from_bytes(bytes(data[:_HEADER]), "little")
        header = json.loads(bytes(data[_HEADER:_HEADER + size]))
    except ValueError:
        header = {}
    expected = {"format": _FORMAT, "version": _VERSION, "worker": worker, "workers": count,
                "files": len(files), "listing": digest([relpath for _, relpath in files])}
    if not isinstance(header, dict) or any(header.get(k) != v for k, v in expected.items()):
        seen = {k: header.get(k) for k in expected} if isinstance(header, dict) else {}
        raise DatasetError(
            f"Worker {worker}'s check of its share does not match this worker's folder "
            f"(expected {expected}, received {seen}). Give every worker the same folder on a "
            "shared file system, the same options and the same fruitclf version.")
    return header, memoryview(data)[_HEADER + size:]


def merge_shares(shares: Sequence[bytes | bytearray | memoryview],
                 files: Sequence[tuple[str, str]], *, root: str, local: CheckReport,
                 seconds: float) -> CheckReport:
    """The report of the whole folder from every worker's :func:`share_bytes`, in worker
    order; ``local`` is this worker's own report (its kept images stay in the result)."""
    count = len(shares)
    headers = [_read(data, files, worker, count) for worker, data in enumerate(shares)]
    readable = sorted(((row, body, position) for header, body in headers
                       for position, row in enumerate(header["readable"])),
                      key=lambda item: item[0][0])
    # One array for every readable file's vectors, in file order, as one check writes it.
    store = _mapped.array((len(readable), WINDOW_COUNT, VECTOR_SIZE), np.float16)
    pages = _mapped.Pages(store)  # a large folder's: written to its file, not held
    sizes: dict[str, tuple[int, int]] = {}
    prints: dict[str, Fingerprint] = {}
    for row, (record, body, position) in enumerate(readable):
        where, size, digest, pixels, measures, file_size, mtime_ns, border = record
        path = files[where][0]
        start = position * _ROW_BYTES
        store[row] = np.frombuffer(body[start:start + _ROW_BYTES], np.float16).reshape(
            WINDOW_COUNT, VECTOR_SIZE)
        pages.read(_ROW_BYTES)
        if size is not None:
            sizes[path] = (int(size[0]), int(size[1]))
        prints[path] = Fingerprint(
            digest=bytes.fromhex(digest), pixels=bytes.fromhex(pixels) if pixels else None,
            vectors=store[row], measures=ImageMeasures(*measures), file_size=file_size,
            mtime_ns=mtime_ns, border=border)
    pages.release()
    problems = [FileProblem(files[where][0], files[where][1], reason, message, size, mtime)
                for header, _ in headers
                for where, reason, message, size, mtime in header["refused"]]
    problems.sort(key=lambda p: p.relpath)
    return CheckReport(root, len(files), problems, sizes, seconds, local.images, prints,
                       local.kept)
