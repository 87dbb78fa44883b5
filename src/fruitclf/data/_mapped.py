"""Arrays kept in a file rather than in the process's memory, and the pages of them that a
reader holds.

A large folder's fingerprint vectors (about 9 KB a photo) are written to an unnamed
temporary file and mapped: the search reads them in blocks, and rows picked here and there
in the order they lie in the file (:func:`gather`), and :class:`Pages` hands the pages read
back to the system once :data:`RESIDENT_BYTES` of them are held. Rows read in random order
would not do: the system maps a file's cache around each row read (up to 2 MB on a recent
Linux), so a few thousand scattered rows map the whole file. The data stays in the file
(and, while memory allows, in the system's file cache); a page handed back is read again
when it is next touched. So what the process holds of them stays bounded whatever the
folder's size.
"""

from __future__ import annotations

import mmap
import tempfile
from typing import Any

import numpy as np

__all__ = ["IN_MEMORY_BYTES", "RESIDENT_BYTES", "TOUCH_BYTES", "Pages", "array", "copy",
           "gather"]

#: Arrays up to this size stay in memory (a file only pays off for large folders).
IN_MEMORY_BYTES = 64 << 20
#: How much of a file-backed array a reader holds before it hands the pages back.
RESIDENT_BYTES = 64 << 20
#: The most that reading one row can bring into the process: the system maps a file's cache
#: in pages of 4 KB, in runs of them around the one read, or in large pages of 2 MB.
TOUCH_BYTES = 2 << 20


def array(shape: tuple[int, ...], dtype: Any, *, in_memory_bytes: int | None = None
          ) -> np.ndarray:
    """An uninitialised array: in memory up to ``in_memory_bytes`` (default
    :data:`IN_MEMORY_BYTES`), else mapped from an unnamed temporary file (removed by the
    system when the array is gone, even when the process is killed).

    Examples
    --------
    >>> small = array((4, 3), np.float16)
    >>> type(small).__name__, small.shape
    ('ndarray', (4, 3))
    >>> large = array((4, 3), np.float16, in_memory_bytes=8)
    >>> type(large).__name__, large.shape
    ('memmap', (4, 3))
    """
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    limit = IN_MEMORY_BYTES if in_memory_bytes is None else in_memory_bytes
    if nbytes <= limit or nbytes == 0:
        return np.empty(shape, dtype)
    with tempfile.TemporaryFile(prefix="fruitclf-") as handle:  # the mapping outlives it
        mapped: np.ndarray = np.memmap(handle, dtype, "w+", shape=shape)
    return mapped


def _mapping(values: np.ndarray) -> mmap.mmap | None:
    """The file mapping under ``values`` (a view of a mapped array), if any."""
    owner: Any = values
    while isinstance(owner, np.ndarray):
        owner = owner.base
    return owner if isinstance(owner, mmap.mmap) else None


class Pages:
    """What a reader holds of a file-backed array: :meth:`read` counts the bytes it
    touched and, past ``limit``, hands every page of the file's mapping back to the
    system. For an array in memory it does nothing.

    Examples
    --------
    >>> values = array((1024, 64), np.float32, in_memory_bytes=0)
    >>> values[:] = 1.0
    >>> pages = Pages(values, limit=1 << 16)
    >>> pages.read(values[:512].nbytes)
    >>> float(values.sum())
    65536.0
    """

    def __init__(self, values: np.ndarray, *, limit: int | None = None) -> None:
        self._mapping = _mapping(values)
        if not hasattr(mmap, "MADV_DONTNEED"):  # Windows: the system pages it out itself
            self._mapping = None
        self.limit = RESIDENT_BYTES if limit is None else limit
        self._held = 0

    @property
    def mapped(self) -> bool:
        """Whether the array is kept in a file (and its pages can be handed back)."""
        return self._mapping is not None

    def read(self, nbytes: int) -> None:
        """Count ``nbytes`` more read (a stretch of picked rows counts from its first row
        to its last, and one large page more)."""
        if self._mapping is None:
            return
        self._held += nbytes
        if self._held > self.limit:
            self.release()

    def release(self) -> None:
        """Hand back every page read so far (a shared file mapping keeps its data)."""
        if self._mapping is not None and not self._mapping.closed:
            self._mapping.madvise(mmap.MADV_DONTNEED)
        self._held = 0


def _row_bytes(values: np.ndarray) -> int:
    """How far apart two rows of ``values`` lie in memory."""
    return max(abs(values.strides[0]), values[:1].nbytes, 1) if values.ndim else 1


def gather(values: np.ndarray, index: np.ndarray, pages: Pages | None = None) -> np.ndarray:
    """``np.take(values, index, axis=0)``; for an array kept in a file, read in the order
    the rows lie in it, a stretch of at most half of ``pages.limit`` at a time, with the
    pages handed back as they add up (``pages``: the reader's count; by default one for
    this call, released at its end).

    Examples
    --------
    >>> values = array((1000, 4), np.float32, in_memory_bytes=0)
    >>> values[:] = np.arange(1000, dtype=np.float32)[:, None]
    >>> gather(values, np.array([900, 3, 500]), Pages(values, limit=8192))[:, 0]
    array([900.,   3., 500.], dtype=float32)
    """
    own = pages is None
    counted = Pages(values) if pages is None else pages
    if not counted.mapped:
        return np.take(values, index, axis=0)
    index = np.asarray(index, np.intp)
    order = np.argsort(index, kind="stable")
    ordered = index[order]
    out = np.empty((len(index), *values.shape[1:]), values.dtype)
    stride = _row_bytes(values)
    span = max(1, counted.limit // 2 // stride)  # rows of the file per stretch
    if len(ordered):
        starts = np.searchsorted(ordered, np.arange(ordered[0], ordered[-1] + 1, span))
        for at, stop in zip(starts, [*starts[1:], len(ordered)]):
            if stop > at:  # (np.take would first copy a strided array whole)
                out[order[at:stop]] = (np.take(values, ordered[at:stop], axis=0)
                                       if values.flags.c_contiguous else values[ordered[at:stop]])
                counted.read(int(ordered[stop - 1] - ordered[at] + 1) * stride + TOUCH_BYTES)
    if own:
        counted.release()
    return out


def copy(values: np.ndarray, dtype: Any, pages: Pages | None = None) -> np.ndarray:
    """``np.asarray(values, dtype)`` as one contiguous array; for an array kept in a file,
    read a stretch at a time, with the pages handed back as they add up (see
    :func:`gather` for ``pages``).

    Examples
    --------
    >>> values = array((1000, 4), np.float16, in_memory_bytes=0)
    >>> values[:] = 1
    >>> copied = copy(values, np.float32)
    >>> copied.dtype, copied.shape, float(copied.sum())
    (dtype('float32'), (1000, 4), 4000.0)
    """
    own = pages is None
    counted = Pages(values) if pages is None else pages
    if not counted.mapped:
        return np.ascontiguousarray(values, dtype)
    out = np.empty(values.shape, dtype)
    stride = _row_bytes(values)
    span = max(1, counted.limit // 2 // stride)
    for at in range(0, len(values), span):
        out[at:at + span] = values[at:at + span]
        counted.read(len(out[at:at + span]) * stride)
    if own:
        counted.release()
    return out
