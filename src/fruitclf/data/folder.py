"""Image folders: discovery, counts and sizes, checks and quarantine, splits, pipelines.

An image folder holds one sub-folder per class::

    train/
      acai/001.jpg ...
      cupuacu/001.jpg ...

:class:`ImageFolderDataset` finds the classes and images, reports what it found and ignored,
checks every image with the decoder that training uses, quarantines what would crash training,
splits reproducibly, and builds the ``tf.data`` pipelines that feed a model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import (
    check_image_size,
    check_int,
    class_name_problem,
    short_repr,
)
from ..exceptions import DatasetError
from ..settings import SETTINGS
from . import check as _check
from . import quarantine as _quarantine
from .check import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, CheckReport
from .pipeline import Preprocessing, build_pipeline, plan_cache, prepare_for
from .quality import (
    DuplicateGroup,
    Fingerprint,
    LeakedPair,
    QualityIssue,
    QualityThresholds,
    find_duplicates,
    find_leakage,
    quality_issues,
)
from .quarantine import CleanReport
from .split import SPLIT_FORMAT, DatasetSplit, validation_relpaths

if TYPE_CHECKING:
    import tensorflow as tf
    from matplotlib.figure import Figure

__all__ = ["DatasetSummary", "IgnoredFile", "ImageFolderDataset", "image_files"]

logger = logging.getLogger("fruitclf")

#: Folder names that are never classes and never read (besides any name starting with ".").
IGNORED_FOLDERS = frozenset({"__MACOSX", "__pycache__"})


@dataclasses.dataclass(frozen=True)
class IgnoredFile:
    """A file or folder under the root that is not an image and is never touched.

    Attributes
    ----------
    path : str
        Path relative to the root, ``/``-separated.
    reason : str
        Why it was ignored, in words.

    Examples
    --------
    >>> [i.path for i in ds.ignored]
    ['acai/.DS_Store', 'notes.txt']
    """

    path: str
    reason: str


@dataclasses.dataclass(frozen=True)
class _Entry:
    path: str  # as found: root joined with relpath
    relpath: str
    label: int


@dataclasses.dataclass(frozen=True)
class DatasetSummary:
    """Counts and image sizes of an :class:`ImageFolderDataset`.

    Attributes
    ----------
    root : str
        The folder.
    class_counts : dict of str to int
        Images per class, in class order.
    num_images : int
        All images.
    num_ignored : int
        Files and folders ignored (hidden, not images, outside a class folder).
    empty_classes : list of str
        Classes whose folder holds no image.
    width, height : dict
        ``min``, ``max``, ``mean`` and ``median`` of the stored image sizes (empty when no
        header could be read).
    imbalance_ratio : float
        Largest class count divided by the smallest non-zero one (1.0 is balanced).

    Examples
    --------
    >>> summary = ds.summary()
    >>> summary.class_counts
    {'acai': 15, 'cupuacu': 15, 'graviola': 15, 'guarana': 15, 'pupunha': 15, 'tucuma': 15}
    """

    root: str
    class_counts: dict[str, int]
    num_images: int
    num_ignored: int
    empty_classes: list[str]
    width: dict[str, float]
    height: dict[str, float]
    imbalance_ratio: float

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as plain JSON types."""
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        width = max([len(n) for n in self.class_counts] + [5])
        lines = [f"{self.root}: {len(self.class_counts)} classes, {self.num_images} images"]
        lines += [f"  {name:<{width}}  {count:>6}" for name, count in self.class_counts.items()]
        if self.width:
            lines.append(
                "Image size (w x h): min {:.0f}x{:.0f}, median {:.0f}x{:.0f}, max {:.0f}x{:.0f}"
                .format(self.width["min"], self.height["min"], self.width["median"],
                        self.height["median"], self.width["max"], self.height["max"])
            )
        lines.append(f"Class imbalance (largest / smallest): {self.imbalance_ratio:.2f}")
        if self.empty_classes:
            lines.append("Empty class folders: " + ", ".join(self.empty_classes))
        if self.num_ignored:
            lines.append(f"Ignored {self.num_ignored} files or folders that are not images.")
        return "\n".join(lines)


class _Decoded:
    """What checks learnt from decoding, shared by a dataset and its splits: model-ready
    images (when asked for) and the fingerprint of every readable file."""

    def __init__(self) -> None:
        self.preprocessing: Preprocessing | None = None
        self.images: dict[str, np.ndarray] = {}
        self.prints: dict[str, Fingerprint] = {}
        self.checked: set[str] = set()

    def note(self, report: CheckReport) -> None:
        """Keep the fingerprints of a check (and which files it looked at)."""
        self.prints.update(report.fingerprints)
        self.checked.update(report.fingerprints)
        self.checked.update(p.path for p in report.problems)
        for problem in report.problems:
            self.prints.pop(problem.path, None)

    def keep(self, preprocessing: Preprocessing, images: dict[str, np.ndarray]) -> None:
        self.preprocessing, self.images = preprocessing, images

    def covers(self, preprocessing: Preprocessing, paths: Sequence[str]) -> bool:
        """True when every one of ``paths`` was decoded (so checked) for ``preprocessing``."""
        return (preprocessing == self.preprocessing and bool(paths)
                and all(p in self.images for p in paths))

    def stack(self, preprocessing: Preprocessing, paths: Sequence[str]) -> np.ndarray | None:
        """All of ``paths`` as one array, if every one was kept for this preprocessing."""
        if not self.covers(preprocessing, paths):
            return None
        return np.stack([self.images[p] for p in paths])


def _one_destination(quarantine: str | os.PathLike[str] | None, delete: bool) -> None:
    """Refuse a quarantine folder together with ``delete=True`` (before any work)."""
    if delete and quarantine is not None:
        raise ValueError(
            "Pass either `quarantine` (move files there) or `delete=True`, not both. "
            f"Received: quarantine={os.fspath(quarantine)!r}, delete=True"
        )


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name in IGNORED_FOLDERS


def image_files(
    top: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    *,
    follow_links: bool = False,
    ignored: list[IgnoredFile] | None = None,
) -> list[tuple[str, str]]:
    """Every candidate image under ``top``, as ``(path, relpath)`` sorted by folder and name.

    The one rule for what counts as an image file, used for class folders and for the
    folders given to ``predict``: an image extension (any case), not hidden (a name starting
    with ``.``, ``__MACOSX``, ``__pycache__``, at any depth), links to folders only with
    ``follow_links`` (and never round a loop). ``relpath`` is relative to ``root`` (default
    ``top``) with ``/`` separators; files passed over are added to ``ignored`` with a reason.
    """
    top, base = os.fspath(top), os.fspath(root if root is not None else top)
    skipped: list[IgnoredFile] = [] if ignored is None else ignored
    found: list[tuple[str, str]] = []
    seen_dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(top, followlinks=follow_links):
        real = os.path.realpath(dirpath)
        rel_dir = os.path.relpath(dirpath, base).replace(os.sep, "/")
        if real in seen_dirs:  # a link loop
            dirnames[:] = []
            skipped.append(IgnoredFile(rel_dir, "link loop"))
            continue
        seen_dirs.add(real)
        kept = []
        for d in sorted(dirnames):
            if _is_hidden(d):
                skipped.append(IgnoredFile(f"{rel_dir}/{d}", "hidden"))
            elif os.path.islink(os.path.join(dirpath, d)) and not follow_links:
                skipped.append(IgnoredFile(
                    f"{rel_dir}/{d}", "link to a folder (pass follow_links=True to follow)"))
            else:
                kept.append(d)
        dirnames[:] = kept
        for f in sorted(filenames):
            rel = f"{rel_dir}/{f}" if rel_dir != "." else f
            if _is_hidden(f):
                skipped.append(IgnoredFile(rel, "hidden"))
            elif os.path.splitext(f)[1].lower() not in IMAGE_EXTENSIONS:
                skipped.append(IgnoredFile(rel, "not an image extension"))
            else:
                found.append((os.path.join(dirpath, f), rel))
    return found


class ImageFolderDataset:
    """Images in a folder with one sub-folder per class.

    Classes are the sub-folders of ``root``, sorted by name unless ``class_names`` gives the
    order (reuse the training order for a test folder). Images are the files under a class
    folder, at any depth, whose extension is an image extension (any case); they are judged by
    their content later, by :meth:`check`. Hidden files and folders, ``__MACOSX``, files
    without an image extension and files directly in ``root`` are ignored (listed in
    :attr:`ignored`) and never touched.

    Parameters
    ----------
    root : path-like
        The folder.
    class_names : sequence of str, optional
        The classes, in label order. A class folder not in the list is an error; a listed
        class without a folder has no images.
    follow_links : bool, default=False
        Follow symbolic links to folders. Symbolic links to files are always read (a broken
        one is reported by :meth:`check`).

    Raises
    ------
    DatasetError
        If ``root`` is missing or not a folder, has no class folder or no image, or holds a
        class folder that ``class_names`` lacks.

    Examples
    --------
    >>> ds = fruitclf.ImageFolderDataset("fruits/train")
    >>> ds.class_names
    ['acai', 'cupuacu', 'graviola', 'guarana', 'pupunha', 'tucuma']
    >>> train, val = ds.split(0.2, seed=123)
    >>> train_tf = train.to_tf_dataset(image_size=(128, 128), shuffle=True)
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        class_names: Sequence[str] | None = None,
        follow_links: bool = False,
    ) -> None:
        self._root = os.fspath(root)
        self._follow_links = bool(follow_links)
        found, ignored = self._discover_classes()
        self._class_names = self._resolve_class_names(found, class_names)
        entries: list[_Entry] = []
        for label, name in enumerate(self._class_names):
            if name in found:
                entries.extend(self._discover_images(name, label, ignored))
        if not entries:
            allowed = " ".join(sorted(e for e in IMAGE_EXTENSIONS))
            raise DatasetError(
                f"No images found in {self._root!r}. Allowed extensions: {allowed}"
            )
        self._entries = entries
        self._ignored = sorted(ignored, key=lambda i: i.path)
        self._headers: dict[str, tuple[str | None, tuple[int, int] | None]] = {}
        self._decoded = _Decoded()
        for name in self.empty_classes:
            logger.warning("Class folder %r has no images.", os.path.join(self._root, name))

    @classmethod
    def _from_entries(
        cls, parent: ImageFolderDataset, entries: list[_Entry]
    ) -> ImageFolderDataset:
        view = cls.__new__(cls)
        view._root = parent._root
        view._follow_links = parent._follow_links
        view._class_names = list(parent._class_names)
        view._entries = entries
        view._ignored = parent._ignored
        view._headers = parent._headers
        view._decoded = parent._decoded
        return view

    # ---------------------------------------------------------------- discovery

    def _discover_classes(self) -> tuple[set[str], list[IgnoredFile]]:
        if not os.path.exists(self._root):
            raise DatasetError(
                f"Image folder not found: {self._root!r}. Pass a folder with one sub-folder "
                "per class, e.g. data/train/<class>/*.jpg"
            )
        if not os.path.isdir(self._root):
            raise DatasetError(
                f"Expected a folder of class folders, got a file: {self._root!r}"
            )
        classes: set[str] = set()
        ignored: list[IgnoredFile] = []
        with os.scandir(self._root) as it:
            for entry in it:
                if _is_hidden(entry.name):
                    ignored.append(IgnoredFile(entry.name, "hidden"))
                elif entry.is_dir(follow_symlinks=False):
                    classes.add(entry.name)
                elif entry.is_symlink() and entry.is_dir():
                    if self._follow_links:
                        classes.add(entry.name)
                    else:
                        ignored.append(IgnoredFile(
                            entry.name, "link to a folder (pass follow_links=True to follow)"
                        ))
                else:
                    ignored.append(IgnoredFile(entry.name, "not inside a class folder"))
        if not classes:
            raise DatasetError(
                f"No class folders found in {self._root!r}. Expected one sub-folder per class, "
                f"e.g. {os.path.join(self._root, 'apple', '001.jpg')!r}"
            )
        problem = class_name_problem(sorted(classes))
        if problem is not None:
            raise DatasetError(
                f"The class folders of {self._root!r} cannot name classes: {problem}. Rename "
                "the folder (a class name becomes a line of labels.txt and a key in JSON).")
        return classes, ignored

    def _resolve_class_names(
        self, found: set[str], class_names: Sequence[str] | None
    ) -> list[str]:
        if class_names is None:
            return sorted(found)
        if isinstance(class_names, str) or not all(isinstance(n, str) for n in class_names):
            raise TypeError(
                f"`class_names` must be a sequence of str. Received: class_names={class_names!r}"
            )
        names = list(class_names)
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"`class_names` has duplicates: {short_repr(duplicates)}")
        problem = class_name_problem(names)
        if problem is not None:
            raise ValueError(f"`class_names` cannot name classes: {problem}.")
        unknown = sorted(found - set(names))
        if unknown:
            raise DatasetError(
                f"{self._root!r} has class folders that are not in `class_names`: "
                f"{', '.join(repr(u) for u in unknown)}. Known classes: {', '.join(names)}"
            )
        return names

    def _discover_images(self, name: str, label: int, ignored: list[IgnoredFile]) -> list[_Entry]:
        found = image_files(os.path.join(self._root, name), self._root,
                            follow_links=self._follow_links, ignored=ignored)
        return [_Entry(path, rel, label) for path, rel in found]

    # ---------------------------------------------------------------- properties

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
    def ignored(self) -> list[IgnoredFile]:
        """Files and folders that were skipped, with the reason."""
        return list(self._ignored)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return (
            f"ImageFolderDataset({self._root!r}, classes={self.num_classes}, "
            f"images={self.num_images})"
        )

    # ---------------------------------------------------------------- summary and checks

    def image_sizes(self) -> dict[str, tuple[int, int] | None]:
        """Return ``(width, height)`` of each image from its header (None when unreadable)."""
        return {e.path: self._header(e.path)[1] for e in self._entries}

    def _header(self, path: str) -> tuple[str | None, tuple[int, int] | None]:
        if path not in self._headers:
            self._headers[path] = _check.read_image_header(path)
        return self._headers[path]

    def summary(self) -> DatasetSummary:
        """Return counts per class, image size statistics and class imbalance.

        Examples
        --------
        >>> print(fruitclf.ImageFolderDataset("fruits/train").summary())
        fruits/train: 6 classes, 90 images
        ...
        """
        sizes = [s for s in self.image_sizes().values() if s is not None]
        counts = self.class_counts
        nonzero = [c for c in counts.values() if c]

        def stats(values: list[int]) -> dict[str, float]:
            if not values:
                return {}
            arr = np.asarray(values, dtype=np.float64)
            return {"min": float(arr.min()), "max": float(arr.max()),
                    "mean": round(float(arr.mean()), 2), "median": float(np.median(arr))}

        return DatasetSummary(
            root=self._root,
            class_counts=counts,
            num_images=self.num_images,
            num_ignored=len(self._ignored),
            empty_classes=self.empty_classes,
            width=stats([w for w, _ in sizes]),
            height=stats([h for _, h in sizes]),
            imbalance_ratio=round(max(nonzero) / min(nonzero), 3) if nonzero else 0.0,
        )

    def check(
        self,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        num_workers: int | None = None,
        progress: bool | None = None,
        preprocessing: Preprocessing | None = None,
        cache_budget: int | None = None,
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
            Threads used; by default the number of CPUs plus two.
        progress : bool, optional
            Show a progress bar; by default only on a terminal.
        preprocessing : Preprocessing, optional
            Also keep the decoded, resized images for the pipelines.
        cache_budget : int, optional
            Bytes the kept images may take, three copies counted (the arrays and the
            pipeline's copies); default half the available memory (see :func:`plan_cache`).
            Above it nothing is kept and the pipelines decode as usual.

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
            # Kept images exist up to three times at once (these arrays, the stacked batch
            # source, TensorFlow's copy of it): keep them only if three copies fit.
            plan = plan_cache(3 * len(self._entries), preprocessing.image_size,
                              preprocessing.channels, budget=cache_budget)
            prepare = prepare_for(preprocessing) if plan.kind == "memory" else None
        report = _check.check_files(
            [(e.path, e.relpath) for e in self._entries],
            root=self._root,
            max_pixels=max_pixels,
            num_workers=num_workers,
            progress=progress,
            prepare=prepare,
        )
        if prepare is not None and preprocessing is not None:
            self._decoded.keep(preprocessing, report.images)
        self._decoded.note(report)
        return report

    # ---------------------------------------------------------------- data quality

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

    def _fingerprinted(self, progress: bool | None) -> list[tuple[_Entry, Fingerprint]]:
        """Every readable image with its fingerprint; checks the files not checked yet."""
        if any(e.path not in self._decoded.checked for e in self._entries):
            self.check(progress=progress)
        prints = self._decoded.prints
        return [(e, prints[e.path]) for e in self._entries if e.path in prints]

    def find_duplicates(
        self, *, threshold: float | None = None, progress: bool | None = None
    ) -> list[DuplicateGroup]:
        """Find groups of files that hold the same photo.

        *Exact* duplicates have the same bytes or the same pixels; *near* duplicates are the
        same photo resized, re-compressed, converted to another format, cropped by up to
        about 10% or made brighter or darker (see :mod:`fruitclf.data.quality`). The
        fingerprints come from :meth:`check`, which is run first if it has not been (a
        file is decoded once for both). Files that cannot be decoded are left out.

        Parameters
        ----------
        threshold : float, optional
            Fingerprint distance (cosine, 0-1) under which two images are near duplicates.
            By default 0.015, or less in a folder of look-alike images such as digits (see
            :func:`~fruitclf.data.quality.resolve_threshold`). Lower finds fewer, closer
            copies.
        progress : bool, optional
            Progress bar of the check, if one runs; by default only on a terminal.

        Returns
        -------
        list of DuplicateGroup
            Sorted by first path. A group whose files are in different classes is a label
            conflict (:attr:`DuplicateGroup.conflicting`).

        Examples
        --------
        >>> raw = fruitclf.ImageFolderDataset("downloads/fruits")
        >>> for group in raw.find_duplicates(progress=False):
        ...     print(group.kind, group.relpaths)
        exact ['acai/01.jpg', 'acai/copy of 01.jpg']
        near ['acai/02-small.png', 'acai/02.jpg']
        """
        found = self._fingerprinted(progress)
        names = self._class_names
        return find_duplicates([(e.path, e.relpath, names[e.label]) for e, _ in found],
                               [fp for _, fp in found], threshold=threshold)

    def find_leakage(
        self, other: ImageFolderDataset, *, threshold: float | None = None,
        progress: bool | None = None,
    ) -> list[LeakedPair]:
        """Find images of ``other`` (a test folder) that are also in this dataset.

        A test image with a twin among the training images measures memory, not
        generalisation: the test accuracy counts it as a success it did not earn. Twins are
        exact or near duplicates as in :meth:`find_duplicates`.

        Parameters
        ----------
        other : ImageFolderDataset
            The test (or validation) folder.
        threshold : float, optional
            As for :meth:`find_duplicates`.
        progress : bool, optional
            Progress bars of the checks, if they run.

        Returns
        -------
        list of LeakedPair
            One per (training image, test image) pair, sorted by test path; ``relpath`` is
            relative to this dataset's root, ``test_relpath`` to ``other``'s.

        Examples
        --------
        >>> train = fruitclf.ImageFolderDataset("fruits/train")
        >>> test = fruitclf.ImageFolderDataset("fruits/test", class_names=train.class_names)
        >>> [(p.relpath, p.test_relpath, p.kind) for p in train.find_leakage(test)]
        [('acai/07.jpg', 'acai/t07.png', 'near')]
        """
        if not isinstance(other, ImageFolderDataset):
            raise TypeError(
                f"`other` must be an ImageFolderDataset. Received: {type(other).__name__}"
            )
        mine, theirs = self._fingerprinted(progress), other._fingerprinted(progress)
        return find_leakage([(e.path, e.relpath) for e, _ in mine], [fp for _, fp in mine],
                            [(e.path, e.relpath) for e, _ in theirs],
                            [fp for _, fp in theirs], threshold=threshold)

    def quality_issues(
        self,
        *,
        thresholds: QualityThresholds | None = None,
        image_size: int | tuple[int, int] | None = None,
        progress: bool | None = None,
    ) -> list[QualityIssue]:
        """Flag images that are very dark or bright, blurry, nearly uniform, greyscale in
        a colour dataset, of extreme aspect ratio, or far smaller than the model input.

        Nothing is changed; the flags are hints to look at the images. Each comes with its
        score and the threshold it crossed (:class:`~fruitclf.data.quality.QualityThresholds`
        documents both).

        Parameters
        ----------
        thresholds : QualityThresholds, optional
            When to flag; default ``QualityThresholds()``.
        image_size : int or (height, width), optional
            The model input; without it there is no ``too_small`` flag.
        progress : bool, optional
            Progress bar of the check, if one runs.

        Returns
        -------
        list of QualityIssue
            Sorted by path; an image may have several.

        Examples
        --------
        >>> raw = fruitclf.ImageFolderDataset("downloads/fruits")
        >>> [(q.relpath, q.issue) for q in raw.quality_issues(progress=False)]
        [('acai/night.jpg', 'dark'), ('acai/night.jpg', 'low_information')]
        """
        if thresholds is not None and not isinstance(thresholds, QualityThresholds):
            raise TypeError(
                "`thresholds` must be a QualityThresholds. Received: "
                f"{type(thresholds).__name__}"
            )
        size = check_image_size(image_size) if image_size is not None else None
        found = self._fingerprinted(progress)
        return quality_issues([(e.path, e.relpath) for e, _ in found], [fp for _, fp in found],
                              thresholds=thresholds, image_size=size)

    def remove_duplicates(
        self,
        groups: Sequence[DuplicateGroup] | None = None,
        *,
        quarantine: str | os.PathLike[str] | None = None,
        delete: bool = False,
        dry_run: bool = False,
    ) -> CleanReport:
        """Keep one file of each duplicate group; move (by default) or delete the others.

        The file kept is the one with the most pixels (then the largest file, then the first
        path). Groups whose copies are in different classes are left alone with a warning:
        which label is right is yours to decide. Moves use the same quarantine folder and
        manifest as :meth:`remove_corrupted`, so :func:`fruitclf.restore_quarantine` puts
        every file back; a file changed since the check is skipped.

        Parameters
        ----------
        groups : sequence of DuplicateGroup, optional
            Groups of :meth:`find_duplicates` of this dataset; by default it is run.
        quarantine, delete, dry_run
            As for :meth:`remove_corrupted`.

        Returns
        -------
        CleanReport
            The copies moved or deleted (or that would be, in a dry run).

        Examples
        --------
        >>> raw = fruitclf.ImageFolderDataset("downloads/fruits")
        >>> for line in raw.remove_duplicates(dry_run=True).lines():
        ...     print(line.replace("Would move duplicate image: downloads/fruits/", ""))
        acai/copy of 01.jpg (exact duplicate of acai/01.jpg)
        acai/02-small.png (near duplicate of acai/02.jpg)
        """
        _one_destination(quarantine, delete)
        groups = self.find_duplicates() if groups is None else groups
        known = {e.path: e for e in self._entries}
        surplus: list[_check.FileProblem] = []
        for group in groups:
            foreign = [p for p in group.paths if p not in known]
            if foreign:
                raise ValueError(
                    f"`groups` lists files that are not in this dataset, e.g. {foreign[0]!r}. "
                    "Pass the groups of this dataset's own find_duplicates()."
                )
            if group.conflicting:
                logger.warning("Left alone, the copies are in different classes (decide which "
                               "label is right): %s", ", ".join(group.paths))
                continue
            surplus += self._surplus_copies(group)
        return self._remove(surplus, quarantine, delete, dry_run)

    def _remove(self, files: Sequence[_check.FileProblem],
                quarantine: str | os.PathLike[str] | None, delete: bool, dry_run: bool
                ) -> CleanReport:
        """Move or delete ``files`` (unchanged since read) and drop them from this dataset."""
        result = _quarantine.remove_files(files, root=self._root, quarantine=quarantine,
                                     delete=delete, dry_run=dry_run)
        if not dry_run:
            gone = {p.path for p in result.removed}
            self._entries = [e for e in self._entries if e.path not in gone]
        return result

    def _surplus_copies(self, group: DuplicateGroup) -> list[_check.FileProblem]:
        prints = self._decoded.prints

        def rank(path: str) -> tuple[int, int]:
            fp = prints.get(path)
            if fp is None:
                return (0, 0)
            return (-fp.measures.width * fp.measures.height, -fp.file_size)

        order = sorted(range(len(group.paths)), key=lambda i: rank(group.paths[i]))
        keep, kept = group.relpaths[order[0]], prints.get(group.paths[order[0]])
        if kept is None or not _quarantine.same_file(group.paths[order[0]], kept.file_size,
                                                kept.mtime_ns):
            logger.warning("Left alone, the copy to keep changed since the check: %s",
                           group.paths[order[0]])
            return []
        return [
            _check.FileProblem(
                group.paths[i], group.relpaths[i], "duplicate",
                f"{group.kind} duplicate of {keep}",
                prints[group.paths[i]].file_size if group.paths[i] in prints else -1,
                prints[group.paths[i]].mtime_ns if group.paths[i] in prints else -1,
            )
            for i in order[1:]
        ]

    def remove_corrupted(
        self,
        report: CheckReport | None = None,
        *,
        quarantine: str | os.PathLike[str] | None = None,
        delete: bool = False,
        dry_run: bool = False,
    ) -> CleanReport:
        """Move (by default) or delete the files a check flagged.

        Only files listed in ``report`` are touched, and only if they have not changed since
        the check. Moved files keep their path relative to the root inside the quarantine
        folder, which gets a JSON manifest that :func:`fruitclf.restore_quarantine` reads.
        Each file is logged as ``Moved corrupted image: <path>`` (``Deleted ...`` with
        ``delete=True``). The removed files are
        dropped from this dataset.

        Parameters
        ----------
        report : CheckReport, optional
            A report of :meth:`check`; by default a new check is run.
        quarantine : path-like, optional
            Where to move the files; default ``<root>-quarantine`` beside the root. Must be
            outside the root.
        delete : bool, default=False
            Delete instead of moving.
        dry_run : bool, default=False
            Change nothing; report what would be done.

        Returns
        -------
        CleanReport

        Examples
        --------
        >>> raw = fruitclf.ImageFolderDataset("downloads/fruits")
        >>> print(raw.remove_corrupted(dry_run=True))
        Would move corrupted image: downloads/fruits/acai/07.jpg
        Would move corrupted image: downloads/fruits/guarana/notes.png
        """
        _one_destination(quarantine, delete)
        if report is None:
            report = self.check()
        known = {e.path for e in self._entries}
        foreign = [p.path for p in report.problems if p.path not in known]
        if foreign:
            raise ValueError(
                f"`report` lists files that are not in this dataset, e.g. {foreign[0]!r}. "
                "Pass the report of this dataset's own check()."
            )
        return self._remove(report.problems, quarantine, delete, dry_run)

    def exclude(self, paths: Iterable[str | os.PathLike[str]]) -> ImageFolderDataset:
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

    # ---------------------------------------------------------------- splitting

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
            folders = ", ".join(repr(os.path.join(self._root, n)) for n in self.empty_classes)
            raise DatasetError(
                f"Class folders without images: {folders}. Add images or remove the folder."
            )

    def split(
        self,
        validation_split: float = 0.2,
        *,
        seed: int = 123,
        stratify: bool = True,
        validation_fraction: float | None = None,
    ) -> DatasetSplit:
        """Split into training and validation, reproducibly.

        Each file gets a rank from a hash of ``seed`` and its relative path, so the split
        depends only on the file names and the seed: the same on every machine and run. With
        ``stratify=True`` each class contributes ``round(n * validation_split)`` images
        (at least one, and at least one left for training, when it has two or more), and
        adding a file moves at most one existing file of its class between the subsets. With
        ``stratify=False`` each file's subset depends on its own hash alone, so adding files
        never moves existing ones; class proportions are then only approximate.

        Parameters
        ----------
        validation_split : float, default=0.2
            Share of images for validation, 0 to 0.9 (:data:`fruitclf.settings.SETTINGS`);
            0 gives an empty validation part. The same name as :func:`fruitclf.run`'s and
            the CLI's ``--validation-split``.
        seed : int, default=123
            Seed of the hash.
        stratify : bool, default=True
            Keep class proportions.
        validation_fraction : float, optional
            Deprecated spelling of ``validation_split``.

        Returns
        -------
        DatasetSplit
            Unpacks as ``train, validation``.

        Raises
        ------
        DatasetError
            If the dataset cannot train (fewer than 2 classes, an empty class folder).

        Examples
        --------
        >>> train, val = ds.split(0.2, seed=123)
        >>> len(train), len(val)
        (72, 18)
        """
        if validation_fraction is not None:
            warnings.warn("`validation_fraction` is deprecated; pass `validation_split` (the "
                          "name run() and the CLI use).", DeprecationWarning, stacklevel=2)
            validation_split = validation_fraction
        fraction = SETTINGS["validation_split"].check(validation_split)
        seed = SETTINGS["seed"].check(seed)
        self.require_trainable()
        validation = validation_relpaths(self._entries, self.num_classes, fraction, seed,
                                         stratify)
        return self._make_split(validation, fraction, seed, stratify)

    def _make_split(
        self, validation: set[str], fraction: float, seed: int, stratify: bool
    ) -> DatasetSplit:
        train = [e for e in self._entries if e.relpath not in validation]
        val = [e for e in self._entries if e.relpath in validation]
        return DatasetSplit(
            training=ImageFolderDataset._from_entries(self, train),
            validation=ImageFolderDataset._from_entries(self, val),
            validation_split=fraction,
            seed=seed,
            stratify=stratify,
        )

    def load_split(self, path: str | os.PathLike[str]) -> DatasetSplit:
        """Rebuild a split saved with :meth:`DatasetSplit.save`.

        Raises
        ------
        DatasetError
            If the file is not a split of this dataset (other classes, or files that are
            not in the folder any more).
        """
        try:
            payload = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"Cannot read split file {os.fspath(path)!r}: {exc}") from exc
        if not isinstance(payload, dict) or payload.get("format") != SPLIT_FORMAT:
            raise DatasetError(f"{os.fspath(path)!r} is not a fruitclf split file.")
        if payload["class_names"] != self._class_names:
            raise DatasetError(
                f"Split file {os.fspath(path)!r} has classes {payload['class_names']!r}, "
                f"this dataset has {self._class_names!r}."
            )
        known = {e.relpath for e in self._entries}
        listed = set(payload["training"]) | set(payload["validation"])
        missing = sorted(listed - known)
        if missing:
            raise DatasetError(
                f"Split file {os.fspath(path)!r} lists {len(missing)} files not in "
                f"{self._root!r}, e.g. {missing[0]!r}."
            )
        new = sorted(known - listed)
        if new:
            logger.info("%d files are not in the split file; they go to training.", len(new))
        key = "validation_split" if "validation_split" in payload else "validation_fraction"
        return self._make_split(set(payload["validation"]), float(payload[key]),
                                int(payload["seed"]), bool(payload["stratify"]))

    # ---------------------------------------------------------------- tf.data

    def to_tf_dataset(
        self,
        *,
        image_size: int | tuple[int, int] = (128, 128),
        batch_size: int = 32,
        shuffle: bool = False,
        seed: int | None = None,
        interpolation: str = "bilinear",
        antialias: bool = True,
        color_mode: str = "rgb",
        cache: bool | str | os.PathLike[str] | None = "auto",
        cache_budget: int | None = None,
        fast_decode: bool = True,
        augment: Callable[[tf.Tensor], tf.Tensor] | None = None,
        drop_remainder: bool = False,
        preprocessing: Preprocessing | None = None,
    ) -> tf.data.Dataset:
        """Build a ``tf.data`` pipeline of ``(images, labels)`` batches.

        Each image is read, decoded (JPEGs at the largest reduced scale that stays at least
        ``image_size``), resized, and kept as ``uint8`` in the cache; batches are cast to
        ``float32`` with pixels in 0–255 (the model rescales). Order is deterministic: without
        ``shuffle``, batches follow :attr:`paths`.

        Parameters
        ----------
        image_size : int or (height, width), default=(128, 128)
            Size after resizing.
        batch_size : int, default=32
            Images per batch.
        shuffle : bool, default=False
            Reshuffle every epoch (for training).
        seed : int, optional
            Shuffle seed; with a seed the order of every epoch is reproducible.
        interpolation : str, default="bilinear"
            ``tf.image.resize`` method: one of bilinear, nearest, bicubic, area, lanczos3,
            lanczos5, gaussian, mitchellcubic.
        antialias : bool, default=True
            Antialias when shrinking (ignored by "nearest").
        color_mode : {"rgb", "grayscale"}, default="rgb"
            Output channels: 3 or 1.
        cache : {"auto", "memory"}, bool, path-like or None, default="auto"
            See :func:`plan_cache`.
        cache_budget : int, optional
            Bytes allowed for the in-memory cache; default half the available memory.
        fast_decode : bool, default=True
            Decode large JPEGs at reduced scale.
        augment : callable, optional
            Applied to each batch of images after the cache (e.g. a Keras ``Sequential`` of
            random layers); use for training only.
        drop_remainder : bool, default=False
            Drop a last, smaller batch.
        preprocessing : Preprocessing, optional
            Replaces ``image_size``, ``interpolation``, ``antialias``, ``color_mode`` and
            ``fast_decode`` at once (e.g. a loaded model's).

        Returns
        -------
        tf.data.Dataset

        Examples
        --------
        >>> pipeline = ds.to_tf_dataset(image_size=128, batch_size=16)
        >>> images, labels = next(iter(pipeline))
        >>> images.shape
        TensorShape([16, 128, 128, 3])
        """
        if preprocessing is None:
            preprocessing = Preprocessing(
                image_size=check_image_size(image_size), interpolation=interpolation,
                antialias=antialias, color_mode=color_mode, fast_decode=fast_decode,
            )
        decoded = self._decoded.stack(preprocessing, self.paths)
        headers = ([(None, None)] * len(self._entries) if decoded is not None
                   else [self._header(e.path) for e in self._entries])
        return build_pipeline(
            self.paths, self.labels, headers, preprocessing,
            batch_size=batch_size, shuffle=shuffle, seed=seed, cache=cache,
            cache_budget=cache_budget, augment=augment, drop_remainder=drop_remainder,
            decoded=decoded,
        )

    # ---------------------------------------------------------------- plotting

    def plot_samples(self, *, rows: int = 2, seed: int | None = None) -> Figure:
        """Plot one random image per class in a grid of ``rows`` rows, titled by class.

        See :func:`fruitclf.plot_samples`.

        Examples
        --------
        >>> fig = ds.plot_samples(rows=2, seed=0)
        >>> fig.savefig("samples.png")
        """
        from ..plotting import plot_samples

        return plot_samples(self, rows=rows, seed=seed)
