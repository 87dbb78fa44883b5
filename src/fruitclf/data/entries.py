"""What every part of an :class:`~fruitclf.ImageFolderDataset` shares: its images
(:class:`Entry`), what checks learnt from decoding them (:class:`Decoded`), and
:class:`FolderState`, the base that holds them with the read-only views of the folder (paths,
labels, counts) and the decoder-true check that the finding, cleaning and splitting parts
build on."""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .. import distribute
from .._validation import check_int
from ..exceptions import DatasetError
from . import check as _check
from .check import DEFAULT_MAX_PIXELS, CheckReport, ImageHeader
from .pipeline import Preprocessing, plan_cache, prepare_for
from .quality import Fingerprint
from .sharing import merge_shares, share_bytes, share_of

if TYPE_CHECKING:
    from .folder import IgnoredFile

__all__ = ["MIN_IMAGES_PER_CLASS", "Decoded", "Entry", "FolderState", "small_classes_message"]

_View = TypeVar("_View", bound="FolderState")

logger = logging.getLogger("fruitclf")


#: Fewer training images than this in a class get a warning: the model sees too few examples
#: of it to learn it, and a validation split of 20% leaves it none (1 image in 5).
MIN_IMAGES_PER_CLASS = 5


def small_classes_message(names: Sequence[str], counts: dict[str, int]) -> str:
    """One sentence on classes with fewer than ``MIN_IMAGES_PER_CLASS`` images."""
    listing = ", ".join(f"{name} ({counts[name]})" for name in names)
    return (f"Classes with fewer than {MIN_IMAGES_PER_CLASS} images: {listing}. A model "
            "learns little from so few photos, and a validation or test split may get none "
            f"of them; add photos (about {MIN_IMAGES_PER_CLASS * 3} a class is a good start).")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One image of a folder: its path as found, relative to the root, and its label."""

    path: str  # as found: root joined with relpath
    relpath: str
    label: int


class Decoded:
    """What checks learnt from decoding, shared by a dataset and its splits: model-ready
    images (when asked for) and the fingerprint of every readable file."""

    def __init__(self) -> None:
        self.preprocessing: Preprocessing | None = None
        self.kept: _check.ImageStore | None = None
        self.prints: dict[str, Fingerprint] = {}
        self.checked: set[str] = set()

    def note(self, report: CheckReport) -> None:
        """Keep the fingerprints of a check (and which files it looked at)."""
        self.prints.update(report.fingerprints)
        self.checked.update(report.fingerprints)
        self.checked.update(p.path for p in report.problems)
        for problem in report.problems:
            self.prints.pop(problem.path, None)

    def keep(self, preprocessing: Preprocessing, kept: _check.ImageStore | None) -> None:
        self.preprocessing, self.kept = preprocessing, kept

    def select(self, preprocessing: Preprocessing, paths: Sequence[str]
               ) -> _check.KeptImages | None:
        """The kept images of ``paths``, if every one was kept for this preprocessing."""
        if preprocessing != self.preprocessing or self.kept is None:
            return None
        return self.kept.select(paths)

    def covers(self, preprocessing: Preprocessing, paths: Sequence[str]) -> bool:
        """True when every one of ``paths`` was decoded (so checked) for ``preprocessing``."""
        return self.select(preprocessing, paths) is not None


class FolderState:
    """The images of a folder and what checks learnt about them; the read-only views."""

    _root: str
    _follow_links: bool
    _class_names: list[str]
    _entries: list[Entry]
    _ignored: list[IgnoredFile]
    _headers: dict[str, ImageHeader]
    _decoded: Decoded

    def check(
        self,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        num_workers: int | None = None,
        progress: bool | None = None,
        preprocessing: Preprocessing | None = None,
        cache_budget: int | None = None,
        strategy: Any = None,
    ) -> CheckReport:
        """Find every image that training could not decode.

        Each file is decoded with TensorFlow's decoder, the one the pipelines use (JPEGs at
        reduced scale, which still reads all of the compressed data), after a header check
        that rejects decompression bombs without decoding them.

        With ``preprocessing``, each file is decoded at the scale the pipeline uses and its
        model-ready image is kept in memory (when all of them fit the cache budget):
        :meth:`to_tf_dataset` with the same preprocessing, on this dataset or its splits, then
        reads nothing, so a run decodes each file once.

        Parameters
        ----------
        max_pixels : int, default=89_478_485
            Images with more pixels are reported as ``too_many_pixels``.
        num_workers : int, optional
            Threads used; by default the number of CPUs (more threads only contend for
            Python's lock: the decoding runs in TensorFlow's own threads).
        progress : bool, optional
            Show a progress bar; by default only on a terminal.
        preprocessing : Preprocessing, optional
            Also keep the decoded, resized images for the pipelines.
        cache_budget : int, optional
            Bytes the kept images may take (one copy, which the pipelines read in place);
            default half the available memory (see :func:`plan_cache`).
            Above it nothing is kept and the pipelines decode as usual.
        strategy : tf.distribute.Strategy, optional
            Under a multi-worker strategy, share the check between the workers: each checks
            every n-th file (n workers, from its own index) and keeps the images of those
            files only, then the workers exchange what they found through TensorFlow's
            collectives, so every worker returns the report of the whole folder (the same
            as one process's). Call it on every worker at the same point. Any other
            strategy, or None, checks every file here.

        Returns
        -------
        CheckReport
            ``report.problems`` lists each bad file with a reason; empty when all decode.

        Examples
        --------
        >>> raw = fruitclf.ImageFolderDataset("downloads/fruits")
        >>> report = raw.check(progress=False)
        >>> print(report)
        Checked 94 images in 'downloads/fruits': 2 would crash training:
          acai/07.jpg: truncated JPEG file (...)
          guarana/notes.png: not an image (text or HTML, 780 bytes)
        """
        max_pixels = check_int(max_pixels, "max_pixels", min_value=1)
        if num_workers is not None:
            num_workers = check_int(num_workers, "num_workers", min_value=1)
        prepare = None
        if preprocessing is not None:
            # Kept images exist once: the pipelines read TensorFlow's view of the same array.
            plan = plan_cache(len(self._entries), preprocessing.image_size,
                              preprocessing.channels, budget=cache_budget)
            prepare = prepare_for(preprocessing) if plan.kind == "memory" else None
        files = [(e.path, e.relpath) for e in self._entries]
        index, workers = distribute.role(strategy)
        share = share_of(files, index, workers)
        start = time.perf_counter()
        report = _check.check_files(
            share,
            root=self._root,
            max_pixels=max_pixels,
            num_workers=num_workers,
            progress=progress,
            prepare=prepare,
        )
        if workers > 1:
            mine = share_bytes(report, files, index, workers)
            report = merge_shares(distribute.all_gather_bytes(strategy, mine), files,
                                  root=self._root, local=report,
                                  seconds=time.perf_counter() - start)
            logger.info("Worker %d of %d checked %d of %d images; the workers exchanged "
                        "what they found (%.1f MB from this one).", index, workers,
                        len(share), len(files), len(mine) / 1e6)
        if prepare is not None and preprocessing is not None:
            self._decoded.keep(preprocessing, report.kept)
        self._decoded.note(report)
        return report

    @classmethod
    def _from_entries(cls: type[_View], parent: FolderState, entries: list[Entry]) -> _View:
        view = cls.__new__(cls)
        view._root = parent._root
        view._follow_links = parent._follow_links
        view._class_names = list(parent._class_names)
        view._entries = entries
        view._ignored = parent._ignored
        view._headers = parent._headers
        view._decoded = parent._decoded
        return view

    @property
    def root(self) -> str:
        """The folder the images were found in."""
        return self._root

    @property
    def class_names(self) -> list[str]:
        """Class names in label order (label ``i`` is ``class_names[i]``)."""
        return list(self._class_names)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self._class_names)

    @property
    def paths(self) -> list[str]:
        """Image paths, in the order the pipelines yield them when not shuffled."""
        return [e.path for e in self._entries]

    @property
    def relpaths(self) -> list[str]:
        """Image paths relative to :attr:`root`, ``/``-separated."""
        return [e.relpath for e in self._entries]

    @property
    def labels(self) -> np.ndarray:
        """Integer labels aligned with :attr:`paths`."""
        return np.array([e.label for e in self._entries], dtype=np.int32)

    @property
    def class_counts(self) -> dict[str, int]:
        """Images per class, in class order."""
        counts = dict.fromkeys(self._class_names, 0)
        for e in self._entries:
            counts[self._class_names[e.label]] += 1
        return counts

    @property
    def num_images(self) -> int:
        """Number of images."""
        return len(self._entries)

    @property
    def empty_classes(self) -> list[str]:
        """Classes with no image."""
        return [name for name, count in self.class_counts.items() if count == 0]

    @property
    def small_classes(self) -> list[str]:
        """Classes with at least one but fewer than ``MIN_IMAGES_PER_CLASS`` images."""
        return [n for n, c in self.class_counts.items() if 0 < c < MIN_IMAGES_PER_CLASS]

    @property
    def ignored(self) -> list[IgnoredFile]:
        """Files and folders that were skipped, with the reason."""
        return list(self._ignored)

    def __len__(self) -> int:
        return len(self._entries)

    def checked_for(self, preprocessing: Preprocessing) -> bool:
        """True when the last :meth:`check` decoded (so checked) every image of this dataset
        for ``preprocessing`` and kept them, so that using them reads no file again.

        Examples
        --------
        >>> ds.check(progress=False, preprocessing=fruitclf.Preprocessing((24, 24))).ok
        True
        >>> ds.checked_for(fruitclf.Preprocessing((24, 24)))
        True
        """
        return self._decoded.covers(preprocessing, self.paths)

    def exclude(self: _View, paths: Iterable[str | os.PathLike[str]]) -> _View:
        """A view of this dataset without the given files (nothing on disk changes).

        Examples
        --------
        >>> raw = fruitclf.ImageFolderDataset("downloads/fruits")
        >>> readable = raw.exclude(raw.check(progress=False).paths)
        >>> len(raw), len(readable)
        (94, 92)
        """
        gone = {os.fspath(p) for p in paths}
        return self._from_entries(self, [e for e in self._entries if e.path not in gone])

    def require_trainable(self) -> None:
        """Raise :class:`DatasetError` unless the dataset can train a classifier.

        Training needs at least two classes and an image in every class folder.
        """
        if self.num_classes < 2:
            raise DatasetError(
                f"Training needs at least 2 classes; {self._root!r} has 1 "
                f"({self._class_names[0]!r}). Add a folder per class."
            )
        if self.empty_classes:
            folders = [os.path.join(self._root, n) for n in self.empty_classes]
            raise DatasetError(
                f"Class folders without images: {', '.join(repr(f) for f in folders)}. Add "
                "images, or remove the empty folder to train without that class (e.g. "
                f"rmdir {shlex.quote(folders[0])})."
            )

    def warn_small_classes(self) -> None:
        """Log a warning naming the classes with fewer than ``MIN_IMAGES_PER_CLASS``
        images (``fruitclf train`` does before training)."""
        if self.small_classes:
            logger.warning("%s: %s", self._root,
                           small_classes_message(self.small_classes, self.class_counts))

