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
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import (
    check_image_size,
    class_name_problem,
    short_repr,
)
from ..exceptions import DatasetError
from . import check as _check
from .check import IMAGE_EXTENSIONS, ImageHeader
from .cleaning import FolderCleaning
from .entries import Decoded, Entry, small_classes_message
from .pipeline import Preprocessing, build_pipeline
from .split import FolderSplits

if TYPE_CHECKING:
    import tensorflow as tf
    from matplotlib.figure import Figure

__all__ = ["DatasetSummary", "IgnoredFile", "ImageFolderDataset", "image_files"]

logger = logging.getLogger("fruitclf")

#: Folder names that are never classes and never read (besides any name starting with ".").
IGNORED_FOLDERS = frozenset({"__MACOSX", "__pycache__"})

#: Why a link to a folder was passed over, and how to include it (Python and command line).
LINK_NOT_FOLLOWED = ("link to a folder, not followed (include it with follow_links=True, or "
                     "--follow-links on the command line)")


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
    small_classes : list of str
        Classes with at least one but fewer than ``MIN_IMAGES_PER_CLASS`` images.
    skipped_links : list of str
        Links to folders that were not followed (relative paths); see ``follow_links``.
    nested_folders : list of str
        Sub-folders inside class folders whose images count for that class.

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
    small_classes: list[str] = dataclasses.field(default_factory=list)
    skipped_links: list[str] = dataclasses.field(default_factory=list)
    nested_folders: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as plain JSON types."""
        return dataclasses.asdict(self)

    def _title(self) -> str:
        return f"{self.root}: {len(self.class_counts)} classes, {self.num_images} images"

    def __str__(self) -> str:
        width = max([len(n) for n in self.class_counts] + [5])
        lines = [self._title()]
        lines += [f"  {name:<{width}}  {count:>6}" for name, count in self.class_counts.items()]
        return "\n".join(lines + self._notes())

    def _repr_html_(self) -> str:
        """The notebook display: the counts as a table, then the notes."""
        from .. import _html

        return "\n".join([_html.heading(self._title()),
                          _html.table(("class", "images"), list(self.class_counts.items()),
                                      limit=100),
                          *(_html.paragraph(note) for note in self._notes())])

    def _notes(self) -> list[str]:
        """Sizes, balance and everything a user should act on, one sentence each."""
        lines: list[str] = []
        if self.width:
            lines.append(
                "Image size (w x h): min {:.0f}x{:.0f}, median {:.0f}x{:.0f}, max {:.0f}x{:.0f}"
                .format(self.width["min"], self.height["min"], self.width["median"],
                        self.height["median"], self.width["max"], self.height["max"])
            )
        lines.append(f"Class imbalance (largest / smallest): {self.imbalance_ratio:.2f}")
        if self.empty_classes:
            lines.append("Classes without images: " + ", ".join(self.empty_classes))
        if self.small_classes:
            lines.append(small_classes_message(self.small_classes, self.class_counts))
        if self.skipped_links:
            lines.append(skipped_links_message(self.skipped_links))
        if self.nested_folders:
            lines.append(nested_folders_message(self.nested_folders))
        if self.num_ignored:
            lines.append(f"Ignored {self.num_ignored} files or folders that are not images.")
        return lines


def links_not_followed(ignored: Sequence[IgnoredFile]) -> list[str]:
    """The relative paths of the links to folders among ``ignored`` (not followed)."""
    return [i.path for i in ignored if i.reason == LINK_NOT_FOLLOWED]


def skipped_links_message(links: Sequence[str]) -> str:
    """One sentence naming links to folders that were not followed, with the fix."""
    return (f"Not followed: {len(links)} link{'s' if len(links) != 1 else ''} to a folder "
            f"({', '.join(links)}); their images are not used. Include them with "
            "--follow-links (follow_links=True in Python).")


def nested_folders_message(folders: Sequence[str]) -> str:
    """One sentence saying that sub-folders of class folders count for their class."""
    shown = ", ".join(folders[:5]) + (f" and {len(folders) - 5} more" if len(folders) > 5
                                      else "")
    return (f"Sub-folders inside class folders count for their class: {shown} (the first "
            "folder level under the root names the class).")


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
                skipped.append(IgnoredFile(f"{rel_dir}/{d}", LINK_NOT_FOLLOWED))
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


class ImageFolderDataset(FolderCleaning, FolderSplits):
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
        entries: list[Entry] = []
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
        self._headers: dict[str, ImageHeader] = {}
        self._decoded = Decoded()
        self._note_what_was_found(found, given=class_names is not None)

    def _note_what_was_found(self, found: set[str], *, given: bool) -> None:
        """Warn once about what a user would otherwise not see: classes named but without
        images here (a test folder lacking a class), links not followed, nested folders."""
        if given:
            for name in self.empty_classes:
                what = "its folder is empty" if name in found else "no folder of that name"
                logger.warning("%r has no images of class %r (%s).", self._root, name, what)
        if self.skipped_links:
            logger.warning("%s: %s", self._root, skipped_links_message(self.skipped_links))
        nested = self.nested_folders
        if nested:
            logger.info("%s: %s", self._root, nested_folders_message(nested))

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
                        ignored.append(IgnoredFile(entry.name, LINK_NOT_FOLLOWED))
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
                f"{self._root!r} has class folders that are not among the known classes: "
                f"{', '.join(repr(u) for u in unknown)}. Known classes: {', '.join(names)}. "
                "Rename or remove those folders, or train with them."
            )
        return names

    def _discover_images(self, name: str, label: int, ignored: list[IgnoredFile]) -> list[Entry]:
        found = image_files(os.path.join(self._root, name), self._root,
                            follow_links=self._follow_links, ignored=ignored)
        return [Entry(path, rel, label) for path, rel in found]

    # ---------------------------------------------------------------- properties

    def __repr__(self) -> str:
        return (
            f"ImageFolderDataset({self._root!r}, classes={self.num_classes}, "
            f"images={self.num_images})"
        )

    # ---------------------------------------------------------------- summary and checks

    @property
    def skipped_links(self) -> list[str]:
        """Links to folders that were not followed (relative paths; see ``follow_links``)."""
        return links_not_followed(self._ignored)

    @property
    def nested_folders(self) -> list[str]:
        """Sub-folders of class folders that hold images (relative paths, sorted)."""
        return sorted({e.relpath.rsplit("/", 1)[0] for e in self._entries
                       if e.relpath.count("/") > 1})

    def image_sizes(self) -> dict[str, tuple[int, int] | None]:
        """Return ``(width, height)`` of each image from its header (None when unreadable)."""
        return {e.path: self._header(e.path).size for e in self._entries}

    def _header(self, path: str) -> ImageHeader:
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
            small_classes=self.small_classes,
            skipped_links=self.skipped_links,
            nested_folders=self.nested_folders,
        )

    # ---------------------------------------------------------------- data quality

    # ---------------------------------------------------------------- splitting

    # ---------------------------------------------------------------- unlabelled photos

    @classmethod
    def unsorted(cls, root: str | os.PathLike[str], *, class_names: Sequence[str],
                 follow_links: bool = False) -> ImageFolderDataset:
        """Photos not yet sorted into classes: every image under ``root``, at any depth, as
        a dataset of ``class_names`` in which every label is 0 until a model gives them
        classes (:meth:`with_images`). Check, fingerprint and predict them as a class folder.

        The files that count are those a class folder or ``predict`` would read (an image
        extension, not hidden); sub-folders are read whatever their names.

        Raises
        ------
        DatasetError
            If ``root`` is missing, not a folder, or holds no image.

        Examples
        --------
        >>> photos = ImageFolderDataset.unsorted("fruits/unsorted", class_names=ds.class_names)
        >>> len(photos), photos.relpaths[:2]
        (4, ['IMG_0001.jpg', 'IMG_0002.jpg'])
        """
        path = os.fspath(root)
        if not os.path.isdir(path):
            where = "is not a folder" if os.path.exists(path) else "does not exist"
            raise DatasetError(f"The unlabelled folder {path!r} {where}. Pass a folder of "
                               "photos (sub-folders are read too).")
        ignored: list[IgnoredFile] = []
        found = image_files(path, follow_links=follow_links, ignored=ignored)
        if not found:
            allowed = " ".join(sorted(IMAGE_EXTENSIONS))
            raise DatasetError(f"No images found in the unlabelled folder {path!r}. Allowed "
                               f"extensions: {allowed}")
        photos = cls.__new__(cls)
        photos._root, photos._follow_links = path, bool(follow_links)
        photos._class_names = list(class_names)
        photos._entries = [Entry(file, relpath, 0) for file, relpath in found]
        photos._ignored = sorted(ignored, key=lambda i: i.path)
        photos._headers, photos._decoded = {}, Decoded()
        return photos

    def with_images(self, other: ImageFolderDataset, labels: Mapping[str, int]
                    ) -> ImageFolderDataset:
        """This dataset and the images of ``other`` named in ``labels`` (path -> class
        index), each with that class: e.g. the training images and the unsorted photos a
        model gave a class (``run(unlabeled=...)``). A view: nothing on disk changes.

        Examples
        --------
        >>> photos = ImageFolderDataset.unsorted("fruits/unsorted", class_names=ds.class_names)
        >>> both = ds.with_images(photos, {photos.paths[0]: 2})
        >>> len(both) - len(ds), int(both.labels[-1])
        (1, 2)
        """
        added = [Entry(e.path, e.relpath, int(labels[e.path])) for e in other._entries
                 if e.path in labels]
        return self._from_entries(self, [*self._entries, *added])

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
        decoded = self._decoded.select(preprocessing, self.paths)
        headers = ([_check.UNKNOWN_HEADER] * len(self._entries) if decoded is not None
                   else [self._header(e.path) for e in self._entries])
        return build_pipeline(
            self.paths, self.labels, headers, preprocessing,
            batch_size=batch_size, shuffle=shuffle, seed=seed, cache=cache,
            cache_budget=cache_budget, augment=augment, drop_remainder=drop_remainder,
            decoded=decoded,
        )

    # ---------------------------------------------------------------- plotting

    def plot_samples(self, *, rows: int = 2, seed: int | None = None,
                     background: str = "white") -> Figure:
        """Plot one random image per class in a grid of ``rows`` rows, titled by class.

        Photos are upright (EXIF orientation applied), transparency shown over
        ``background``.

        See :func:`fruitclf.plot_samples`.

        Examples
        --------
        >>> fig = ds.plot_samples(rows=2, seed=0)
        >>> fig.savefig("samples.png")
        """
        from ..plotting import plot_samples

        return plot_samples(self, rows=rows, seed=seed, background=background)
