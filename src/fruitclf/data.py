"""Image folders: discovery, counts, checks, reproducible splits and ``tf.data`` pipelines.

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
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from . import _files, _imagecheck
from ._imagecheck import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    CheckReport,
    CleanReport,
)
from ._validation import check_choice, check_float, check_image_size, check_int
from .exceptions import CorruptedImagesError, DatasetError

if TYPE_CHECKING:
    import tensorflow as tf
    from matplotlib.figure import Figure

__all__ = [
    "CachePlan",
    "DatasetSplit",
    "DatasetSummary",
    "IgnoredFile",
    "ImageFolderDataset",
    "Preprocessing",
    "build_pipeline",
    "plan_cache",
]

logger = logging.getLogger("fruitclf")

#: Folder names that are never classes and never read (besides any name starting with ".").
IGNORED_FOLDERS = frozenset({"__MACOSX", "__pycache__"})
INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian",
                  "mitchellcubic")
COLOR_MODES = {"rgb": 3, "grayscale": 1}
SPLIT_FORMAT = "fruitclf-split"


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
    >>> [i.path for i in ds.ignored]  # doctest: +SKIP
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
    >>> summary = ds.summary()  # doctest: +SKIP
    >>> summary.class_counts  # doctest: +SKIP
    {'acai': 15, 'cupuacu': 14}
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


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How files become model inputs; saved with a model so prediction does the same.

    Attributes
    ----------
    image_size : (height, width)
        Size after resizing.
    interpolation : str
        ``tf.image.resize`` method.
    antialias : bool
        Antialias when shrinking.
    color_mode : {"rgb", "grayscale"}
        3 or 1 output channels.
    fast_decode : bool
        Decode large JPEGs at reduced scale (never below ``image_size``).

    Examples
    --------
    >>> Preprocessing(image_size=(64, 64)).channels
    3
    """

    image_size: tuple[int, int] = (128, 128)
    interpolation: str = "bilinear"
    antialias: bool = True
    color_mode: str = "rgb"
    fast_decode: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", check_image_size(self.image_size))
        check_choice(self.interpolation, "interpolation", INTERPOLATIONS)
        check_choice(self.color_mode, "color_mode", tuple(COLOR_MODES))
        for name in ("antialias", "fast_decode"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"`{name}` must be a bool. Received: {name}="
                                f"{getattr(self, name)!r}")

    @property
    def channels(self) -> int:
        """Number of colour channels the model sees."""
        return COLOR_MODES[self.color_mode]

    def to_dict(self) -> dict[str, Any]:
        """Return plain JSON types."""
        return {"image_size": list(self.image_size), "interpolation": self.interpolation,
                "antialias": self.antialias, "color_mode": self.color_mode,
                "fast_decode": self.fast_decode}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        """Rebuild from :meth:`to_dict` output (missing keys take defaults)."""
        if not isinstance(data, Mapping):
            raise TypeError(f"`preprocessing` must be a mapping such as "
                            f"{{'image_size': [128, 128]}}. Received: {data!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if isinstance(kwargs.get("image_size"), list):
            kwargs["image_size"] = tuple(kwargs["image_size"])
        return cls(**kwargs)


@dataclasses.dataclass(frozen=True)
class CachePlan:
    """Where a pipeline keeps its decoded images between epochs.

    Attributes
    ----------
    kind : {"memory", "file", "none"}
        ``memory`` when the decoded set fits in the budget, ``file`` when a cache path was
        given and it does not fit, otherwise ``none`` (decode every epoch).
    nbytes : int
        Estimated size of the decoded, resized ``uint8`` images.
    budget : int
        The memory budget compared with.
    path : str or None
        The file cache prefix, for ``kind == "file"``.

    Examples
    --------
    >>> plan_cache(500, (64, 64), budget=1 << 30)
    CachePlan(kind='memory', nbytes=6144000, budget=1073741824, path=None)
    """

    kind: Literal["memory", "file", "none"]
    nbytes: int
    budget: int
    path: str | None = None


def _available_memory() -> int:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a small machine
        return 4 << 30


def plan_cache(
    num_images: int,
    image_size: tuple[int, int],
    channels: int = 3,
    *,
    cache: bool | str | os.PathLike[str] | None = "auto",
    budget: int | None = None,
) -> CachePlan:
    """Decide where a pipeline caches its decoded images.

    Parameters
    ----------
    num_images : int
        Images in the pipeline.
    image_size : (height, width)
        Size after resizing.
    channels : int, default=3
        Colour channels.
    cache : {"auto", "memory"}, bool, path-like or None, default="auto"
        ``"auto"`` caches in memory when the estimate fits ``budget`` and otherwise does not
        cache; ``True`` / ``"memory"`` always caches in memory; a path caches in memory when it
        fits and in files at that path otherwise; ``False`` / ``None`` never caches.
    budget : int, optional
        Bytes allowed for the in-memory cache; by default half the memory available now.

    Returns
    -------
    CachePlan

    Examples
    --------
    >>> plan_cache(1000, (128, 128), budget=1 << 30).kind
    'memory'
    >>> plan_cache(100_000, (128, 128), budget=1 << 30).kind
    'none'
    """
    height, width = image_size
    nbytes = num_images * height * width * channels
    limit = budget if budget is not None else _available_memory() // 2
    if cache is None or cache is False:
        return CachePlan("none", nbytes, limit)
    if cache is True or cache == "memory":
        return CachePlan("memory", nbytes, limit)
    if nbytes <= limit:
        return CachePlan("memory", nbytes, limit)
    if cache == "auto":
        return CachePlan("none", nbytes, limit)
    return CachePlan("file", nbytes, limit, os.fspath(cache))


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name in IGNORED_FOLDERS


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
    >>> ds = fruitclf.ImageFolderDataset("fruits/train")  # doctest: +SKIP
    >>> ds.class_names  # doctest: +SKIP
    ['acai', 'cupuacu', 'graviola', 'guarana', 'pupunha', 'tucuma']
    >>> train, val = ds.split(0.2, seed=123)  # doctest: +SKIP
    >>> train_tf = train.to_tf_dataset(image_size=(128, 128), shuffle=True)  # doctest: +SKIP
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
            raise ValueError(f"`class_names` has duplicates: {duplicates!r}")
        unknown = sorted(found - set(names))
        if unknown:
            raise DatasetError(
                f"{self._root!r} has class folders that are not in `class_names`: "
                f"{', '.join(repr(u) for u in unknown)}. Known classes: {', '.join(names)}"
            )
        return names

    def _discover_images(self, name: str, label: int, ignored: list[IgnoredFile]) -> list[_Entry]:
        top = os.path.join(self._root, name)
        entries: list[_Entry] = []
        seen_dirs: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(top, followlinks=self._follow_links):
            real = os.path.realpath(dirpath)
            rel_dir = os.path.relpath(dirpath, self._root).replace(os.sep, "/")
            if real in seen_dirs:  # a link loop
                dirnames[:] = []
                ignored.append(IgnoredFile(rel_dir, "link loop"))
                continue
            seen_dirs.add(real)
            kept = []
            for d in sorted(dirnames):
                full = os.path.join(dirpath, d)
                if _is_hidden(d):
                    ignored.append(IgnoredFile(f"{rel_dir}/{d}", "hidden"))
                elif os.path.islink(full) and not self._follow_links:
                    ignored.append(IgnoredFile(
                        f"{rel_dir}/{d}", "link to a folder (pass follow_links=True to follow)"
                    ))
                else:
                    kept.append(d)
            dirnames[:] = kept
            for f in sorted(filenames):
                rel = f"{rel_dir}/{f}"
                if _is_hidden(f):
                    ignored.append(IgnoredFile(rel, "hidden"))
                elif os.path.splitext(f)[1].lower() not in IMAGE_EXTENSIONS:
                    ignored.append(IgnoredFile(rel, "not an image extension"))
                else:
                    entries.append(_Entry(os.path.join(dirpath, f), rel, label))
        return entries

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
            self._headers[path] = _imagecheck.read_image_header(path)
        return self._headers[path]

    def summary(self) -> DatasetSummary:
        """Return counts per class, image size statistics and class imbalance.

        Examples
        --------
        >>> print(fruitclf.ImageFolderDataset("fruits/train").summary())  # doctest: +SKIP
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
    ) -> CheckReport:
        """Find every image that training could not decode.

        Each file is decoded with TensorFlow's decoder, the one the pipelines use (JPEGs at
        reduced scale, which still reads all of the compressed data), after a header check
        that rejects decompression bombs without decoding them.

        Parameters
        ----------
        max_pixels : int, default=89_478_485
            Images with more pixels are reported as ``too_many_pixels``.
        num_workers : int, optional
            Threads used; by default the number of CPUs plus two.
        progress : bool, optional
            Show a progress bar; by default only on a terminal.

        Returns
        -------
        CheckReport
            ``report.problems`` lists each bad file with a reason; empty when all decode.

        Examples
        --------
        >>> report = ds.check()  # doctest: +SKIP
        >>> print(report)  # doctest: +SKIP
        Checked 96 images in 'fruits/train': 2 would crash training:
          acai/07.jpg: truncated JPEG file (...)
          guarana/notes.png: not an image (text or HTML, 812 bytes)
        """
        max_pixels = check_int(max_pixels, "max_pixels", min_value=1)
        if num_workers is not None:
            num_workers = check_int(num_workers, "num_workers", min_value=1)
        report = _imagecheck.check_files(
            [(e.path, e.relpath) for e in self._entries],
            root=self._root,
            max_pixels=max_pixels,
            num_workers=num_workers,
            progress=progress,
        )
        return report

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
        Each file is logged as ``Removed corrupted image: <path>``. The removed files are
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
        >>> result = ds.remove_corrupted(dry_run=True)  # doctest: +SKIP
        >>> print(result)  # doctest: +SKIP
        Would remove corrupted image: fruits/train/acai/07.jpg
        """
        if delete and quarantine is not None:
            raise ValueError(
                "Pass either `quarantine` (move files there) or `delete=True`, not both. "
                f"Received: quarantine={os.fspath(quarantine)!r}, delete=True"
            )
        if report is None:
            report = self.check()
        known = {e.path for e in self._entries}
        foreign = [p.path for p in report.problems if p.path not in known]
        if foreign:
            raise ValueError(
                f"`report` lists files that are not in this dataset, e.g. {foreign[0]!r}. "
                "Pass the report of this dataset's own check()."
            )
        result = _imagecheck.remove_files(
            report.problems, root=self._root, quarantine=quarantine, delete=delete,
            dry_run=dry_run,
        )
        if not dry_run:
            gone = {p.path for p in result.removed}
            self._entries = [e for e in self._entries if e.path not in gone]
        return result

    def exclude(self, paths: Iterable[str | os.PathLike[str]]) -> ImageFolderDataset:
        """A view of this dataset without the given files (nothing on disk changes).

        Examples
        --------
        >>> readable = ds.exclude(ds.check().paths)  # doctest: +SKIP
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
        validation_fraction: float = 0.2,
        *,
        seed: int = 123,
        stratify: bool = True,
    ) -> DatasetSplit:
        """Split into training and validation, reproducibly.

        Each file gets a rank from a hash of ``seed`` and its relative path, so the split
        depends only on the file names and the seed: the same on every machine and run. With
        ``stratify=True`` each class contributes ``round(n * validation_fraction)`` images
        (at least one, and at least one left for training, when it has two or more), and
        adding a file moves at most one existing file of its class between the subsets. With
        ``stratify=False`` each file's subset depends on its own hash alone, so adding files
        never moves existing ones; class proportions are then only approximate.

        Parameters
        ----------
        validation_fraction : float, default=0.2
            Share of images for validation, at least 0 and below 1; 0 gives an empty
            validation part.
        seed : int, default=123
            Seed of the hash.
        stratify : bool, default=True
            Keep class proportions.

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
        >>> train, val = ds.split(0.2, seed=123)  # doctest: +SKIP
        >>> len(train), len(val)  # doctest: +SKIP
        (72, 18)
        """
        fraction = check_float(validation_fraction, "validation_fraction", min_value=0.0,
                               max_value=1.0)
        if fraction == 1.0:
            raise ValueError(
                "`validation_fraction` must be at least 0 and below 1 (0 keeps every image for "
                "training). Received: validation_fraction=1.0"
            )
        seed = check_int(seed, "seed")
        self.require_trainable()
        if fraction == 0.0:
            return self._make_split(set(), fraction, seed, stratify)

        def rank(entry: _Entry) -> int:
            digest = hashlib.blake2b(f"{seed}\0{entry.relpath}".encode(), digest_size=8)
            return int.from_bytes(digest.digest(), "big")

        validation: set[str] = set()
        if stratify:
            for label in range(self.num_classes):
                members = sorted((e for e in self._entries if e.label == label), key=rank)
                n = len(members)
                k = round(n * fraction)
                if n >= 2:
                    k = min(max(k, 1), n - 1)
                validation.update(e.relpath for e in members[:k])
        else:
            validation = {e.relpath for e in self._entries if rank(e) / 2**64 < fraction}
        return self._make_split(validation, fraction, seed, stratify)

    def _make_split(
        self, validation: set[str], fraction: float, seed: int, stratify: bool
    ) -> DatasetSplit:
        train = [e for e in self._entries if e.relpath not in validation]
        val = [e for e in self._entries if e.relpath in validation]
        return DatasetSplit(
            training=ImageFolderDataset._from_entries(self, train),
            validation=ImageFolderDataset._from_entries(self, val),
            validation_fraction=fraction,
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
        return self._make_split(set(payload["validation"]), float(payload["validation_fraction"]),
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
        >>> pipeline = ds.to_tf_dataset(image_size=128, batch_size=16)  # doctest: +SKIP
        >>> images, labels = next(iter(pipeline))  # doctest: +SKIP
        >>> images.shape  # doctest: +SKIP
        TensorShape([16, 128, 128, 3])
        """
        if preprocessing is None:
            preprocessing = Preprocessing(
                image_size=check_image_size(image_size), interpolation=interpolation,
                antialias=antialias, color_mode=color_mode, fast_decode=fast_decode,
            )
        headers = [self._header(e.path) for e in self._entries]
        return build_pipeline(
            self.paths, self.labels, headers, preprocessing,
            batch_size=batch_size, shuffle=shuffle, seed=seed, cache=cache,
            cache_budget=cache_budget, augment=augment, drop_remainder=drop_remainder,
        )

    # ---------------------------------------------------------------- plotting

    def plot_samples(self, *, rows: int = 2, seed: int | None = None) -> Figure:
        """Plot one random image per class in a grid of ``rows`` rows, titled by class.

        See :func:`fruitclf.plot_samples`.

        Examples
        --------
        >>> fig = ds.plot_samples(rows=2, seed=0)  # doctest: +SKIP
        >>> fig.savefig("samples.png")  # doctest: +SKIP
        """
        from .plotting import plot_samples

        return plot_samples(self, rows=rows, seed=seed)


def build_pipeline(
    paths: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    headers: Sequence[tuple[str | None, tuple[int, int] | None]],
    preprocessing: Preprocessing,
    *,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int | None = None,
    cache: bool | str | os.PathLike[str] | None = "auto",
    cache_budget: int | None = None,
    augment: Callable[[tf.Tensor], tf.Tensor] | None = None,
    drop_remainder: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tf.data.Dataset:
    """The pipeline behind :meth:`ImageFolderDataset.to_tf_dataset`, for any list of files.

    ``headers`` holds ``(format, (width, height))`` per file, as
    :func:`fruitclf._imagecheck.read_image_header` returns, to choose the JPEG scale. Files
    whose decoding would exceed ``max_pixels`` (all frames of a GIF count, as in
    :meth:`ImageFolderDataset.check`) and anything but regular files (a FIFO would block) are
    refused before anything is read.
    """
    import tensorflow as tf

    over = [(path, message) for path, (fmt, stored) in zip(paths, headers)
            if (message := _files.regular_file_problem(path)
                or _imagecheck.read_pixel_budget(path, fmt, stored, max_pixels))]
    if over:
        raise CorruptedImagesError(
            f"{len(over)} files cannot be decoded safely: "
            + "; ".join(f"{path}: {message}" for path, message in over[:5])
            + ". Run `fruitclf clean` on the folder to quarantine them.",
            [path for path, _ in over],
        )

    batch_size = check_int(batch_size, "batch_size", min_value=1)
    if seed is not None:
        seed = check_int(seed, "seed")
    size = preprocessing.image_size
    channels = preprocessing.channels
    method = preprocessing.interpolation
    antialias = preprocessing.antialias and method != "nearest"
    plan = plan_cache(len(paths), size, channels, cache=cache, budget=cache_budget)
    logger.info(
        "Pipeline for %d images at %dx%d: cache=%s (%.1f MiB decoded, budget %.1f MiB)",
        len(paths), size[0], size[1], plan.kind, plan.nbytes / 2**20, plan.budget / 2**20,
    )
    scale = [
        _imagecheck.SCALE_RATIOS.index(_imagecheck.jpeg_ratio(stored, size))
        if preprocessing.fast_decode and fmt == "JPEG" else 0
        for fmt, stored in headers
    ]

    def load(path: tf.Tensor, label: tf.Tensor, scale_index: tf.Tensor) -> Any:
        image = _imagecheck.decode_image_scaled(tf.io.read_file(path), scale_index)
        if channels == 1:
            image = tf.image.rgb_to_grayscale(image)
        resized = tf.image.resize(image, size, method=method, antialias=antialias)
        if resized.dtype != tf.uint8:  # "nearest" keeps uint8; the others give float32
            resized = tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)
        return tf.ensure_shape(resized, (*size, channels)), label

    items = tf.data.Dataset.from_tensor_slices((
        np.asarray(list(paths), dtype=object).astype(str),
        np.asarray(labels, dtype=np.int32),
        np.asarray(scale, dtype=np.int32),
    ))
    count = max(len(paths), 1)
    epoch = None
    if not shuffle:
        ds = items.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if plan.kind == "memory":
            ds = ds.cache()
        elif plan.kind == "file" and plan.path is not None:
            Path(plan.path).parent.mkdir(parents=True, exist_ok=True)
            ds = ds.cache(plan.path)
    else:
        if plan.kind == "memory":
            base, buffer = items.map(load, num_parallel_calls=tf.data.AUTOTUNE,
                                     deterministic=True).cache(), count
        elif plan.kind == "file" and plan.path is not None:
            # The cache fixes the order: mix it in a buffer within the budget.
            Path(plan.path).parent.mkdir(parents=True, exist_ok=True)
            base = items.map(load, num_parallel_calls=tf.data.AUTOTUNE,
                             deterministic=True).cache(plan.path)
            per_image = max(size[0] * size[1] * channels, 1)
            buffer = int(min(count, max(256, plan.budget // per_image)))
        else:  # streaming: shuffle the (cheap) file list, not a buffer of images
            base, buffer = items, count
        base_seed = int(np.random.SeedSequence(seed).generate_state(1)[0])
        # The order of each pass is a function of (seed, epoch): the epoch counter is read
        # and advanced when a pass starts, and the Trainer sets it at every epoch start, so
        # a resumed run sees the same order as an uninterrupted one.
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="fruitclf_epoch")

        def one_pass(_: tf.Tensor) -> tf.data.Dataset:
            current = epoch.assign_add(1) - 1
            return base.shuffle(buffer, seed=base_seed + current * 1_000_003,
                                reshuffle_each_iteration=False)

        ds = tf.data.Dataset.from_tensors(0).flat_map(one_pass).apply(
            tf.data.experimental.assert_cardinality(len(paths)))
        if base is items:
            ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if augment is not None:
        ds = ds.map(lambda x, y: (augment(x), y), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    if epoch is not None:
        ds._fruitclf_epoch = epoch  # read by set_pipeline_epoch
    return ds


def set_pipeline_epoch(dataset: Any, epoch: int) -> bool:
    """Make the next pass over a shuffled fruitclf pipeline use the order of ``epoch``.

    Returns False for datasets without an epoch counter (not built by fruitclf, or
    transformed since), whose order is then their own.
    """
    counter = getattr(dataset, "_fruitclf_epoch", None)
    if counter is None:
        return False
    counter.assign(int(epoch))
    return True


@dataclasses.dataclass(frozen=True)
class DatasetSplit:
    """Training and validation parts of an :class:`ImageFolderDataset`.

    Unpacks as ``train, validation = split``.

    Attributes
    ----------
    training, validation : ImageFolderDataset
        The two parts (same root and classes).
    validation_fraction : float
        The requested share of validation images.
    seed : int
        The hash seed.
    stratify : bool
        Whether class proportions were kept.

    Examples
    --------
    >>> split = ds.split(0.2, seed=123)  # doctest: +SKIP
    >>> train, val = split  # doctest: +SKIP
    >>> split.save("split.json")  # doctest: +SKIP
    """

    training: ImageFolderDataset
    validation: ImageFolderDataset
    validation_fraction: float
    seed: int
    stratify: bool

    def __iter__(self) -> Iterator[ImageFolderDataset]:
        return iter((self.training, self.validation))

    def to_dict(self) -> dict[str, Any]:
        """Return the split as plain JSON types (relative paths)."""
        return {
            "format": SPLIT_FORMAT,
            "version": 1,
            "root": self.training.root,
            "class_names": self.training.class_names,
            "validation_fraction": self.validation_fraction,
            "seed": self.seed,
            "stratify": self.stratify,
            "training": self.training.relpaths,
            "validation": self.validation.relpaths,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the split as JSON; :meth:`ImageFolderDataset.load_split` reads it back.

        Examples
        --------
        >>> ds.split(0.2, seed=1).save("run/split.json")  # doctest: +SKIP
        >>> train, val = ds.load_split("run/split.json")  # doctest: +SKIP
        """
        _files.write_json(path, self.to_dict())

    def counts(self) -> Mapping[str, dict[str, int]]:
        """Images per class in each part."""
        return {"training": self.training.class_counts,
                "validation": self.validation.class_counts}
