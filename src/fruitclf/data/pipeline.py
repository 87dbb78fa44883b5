"""Preprocessing, cache planning and the ``tf.data`` pipelines that feed a model.

:class:`Preprocessing` says how a file becomes a model input (and is saved with the model);
:func:`plan_cache` decides where decoded images live between epochs; :func:`build_pipeline`
reads, decodes (with :mod:`fruitclf.data.check`'s decoder), resizes, caches, shuffles and
batches.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .. import _files
from .._validation import check_choice, check_color, check_image_size, check_int
from ..exceptions import CorruptedImagesError
from ..settings import INTERPOLATIONS
from . import check as _check
from .check import DEFAULT_MAX_PIXELS, ImageHeader
from .orientation import UPRIGHT

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = ["COLOR_MODES", "INTERPOLATIONS", "CachePlan", "Preprocessing", "build_pipeline",
           "plan_cache", "set_pipeline_epoch"]

logger = logging.getLogger("fruitclf")

COLOR_MODES = {"rgb": 3, "grayscale": 1}


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
    exif_orientation : bool
        Turn photos upright by their EXIF orientation tag, as viewers do (phones store most
        photos sideways with such a tag); see ``fruitclf.data.orientation``.
    background : str
        The colour transparent pixels (PNG, WebP) are composited on: ``white`` (what
        viewers and browsers show), ``black``, ``gray`` or ``#RRGGBB``.

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
    exif_orientation: bool = True
    background: str = "white"

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", check_image_size(self.image_size))
        check_choice(self.interpolation, "interpolation", INTERPOLATIONS)
        check_choice(self.color_mode, "color_mode", tuple(COLOR_MODES))
        check_color(self.background)
        for name in ("antialias", "fast_decode", "exif_orientation"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"`{name}` must be a bool. Received: {name}="
                                f"{getattr(self, name)!r}")

    @property
    def channels(self) -> int:
        """Number of colour channels the model sees."""
        return COLOR_MODES[self.color_mode]

    @property
    def background_rgb(self) -> tuple[int, int, int]:
        """:attr:`background` as ``(r, g, b)``."""
        return check_color(self.background)

    def to_dict(self) -> dict[str, Any]:
        """Return plain JSON types."""
        return {"image_size": list(self.image_size), "interpolation": self.interpolation,
                "antialias": self.antialias, "color_mode": self.color_mode,
                "fast_decode": self.fast_decode, "exif_orientation": self.exif_orientation,
                "background": self.background}

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


def build_pipeline(
    paths: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    headers: Sequence[ImageHeader],
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
    decoded: _check.KeptImages | None = None,
) -> tf.data.Dataset:
    """The pipeline behind :meth:`ImageFolderDataset.to_tf_dataset`, for any list of files.

    ``headers`` holds an :class:`~fruitclf.data.check.ImageHeader` per file, as
    :func:`fruitclf.data.check.read_image_header` returns, to choose the JPEG scale and turn
    photos upright. Files
    whose decoding would exceed ``max_pixels`` (all frames of a GIF count, as in
    :meth:`ImageFolderDataset.check`) and anything but regular files (a FIFO would block) are
    refused before anything is read. ``decoded`` (the rows of ``paths`` among the
    model-ready images :meth:`ImageFolderDataset.check` prepared) replaces reading and
    decoding: the pipeline orders the rows and gathers each batch's images from the one
    tensor of them.
    """
    import tensorflow as tf

    if decoded is None:
        _refuse_unsafe_files(paths, headers, max_pixels)
    batch_size = check_int(batch_size, "batch_size", min_value=1)
    if seed is not None:
        seed = check_int(seed, "seed")
    size = preprocessing.image_size
    channels = preprocessing.channels
    plan = plan_cache(len(paths), size, channels, cache=cache, budget=cache_budget)
    logger.debug(
        "Pipeline for %d images at %dx%d: cache=%s (%.1f MiB decoded, budget %.1f MiB)",
        len(paths), size[0], size[1], plan.kind, plan.nbytes / 2**20, plan.budget / 2**20,
    )
    count = max(len(paths), 1)
    buffer = count  # a full shuffle, unless the file cache bounds it
    if decoded is not None:  # decoded by the check already: nothing to read or decode
        if len(decoded.rows) != len(paths):
            raise ValueError(
                f"`decoded` has {len(decoded.rows)} images for {len(paths)} paths.")
        base = tf.data.Dataset.from_tensor_slices((
            np.asarray(decoded.rows, dtype=np.int64), np.asarray(labels, dtype=np.int32)))
    else:
        files, load = _file_source(paths, labels, headers, preprocessing)
        if plan.kind == "memory":
            base = files.map(load, num_parallel_calls=tf.data.AUTOTUNE,
                             deterministic=True).cache()
        elif plan.kind == "file" and plan.path is not None:
            Path(plan.path).parent.mkdir(parents=True, exist_ok=True)
            base = files.map(load, num_parallel_calls=tf.data.AUTOTUNE,
                             deterministic=True).cache(plan.path)
            # The cache fixes the order: mix it in a buffer within the budget.
            per_image = max(size[0] * size[1] * channels, 1)
            buffer = int(min(count, max(256, plan.budget // per_image)))
        else:  # streaming: order the (cheap) file list, decode after
            base = files
    epoch = None
    ds = base
    if shuffle:
        epoch = _epoch_variable()
        ds = _shuffled_by_epoch(base, buffer, seed, epoch, count=len(paths))
    if decoded is None and base is files:  # streaming: decode after the shuffle
        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    # Kept images: a batch of rows -> their images.
    images: Callable[[Any], Any] = (
        functools.partial(tf.gather, decoded.store.tensor) if decoded is not None
        else lambda x: x)
    ds = ds.map(lambda x, y: (tf.cast(images(x), tf.float32), y),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if augment is not None:
        ds = ds.map(lambda x, y: (augment(x), y), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    if epoch is not None:
        ds._fruitclf_epoch = epoch  # read by set_pipeline_epoch
    # Images per pass, read by the Trainer (so it reads no batch to count them).
    ds._fruitclf_images = (len(paths) // batch_size * batch_size if drop_remainder
                           else len(paths))
    return ds


def file_images(paths: Sequence[str], preprocessing: Preprocessing, *,
                batch_size: int = 32) -> tf.data.Dataset:
    """Batches of model-ready images (``float32``, 0–255) of checked files, in order."""
    headers = [_check.read_image_header(p) for p in paths]
    pipeline = build_pipeline(paths, np.zeros(len(paths), np.int32), headers, preprocessing,
                              batch_size=batch_size, cache=False)
    return pipeline.map(lambda x, y: x)


def _refuse_unsafe_files(paths: Sequence[str], headers: Sequence[ImageHeader],
                         max_pixels: int) -> None:
    """Stop before decoding a FIFO, a device or a decompression bomb."""
    over = [
        (path, message) for path, (fmt, stored, _) in zip(paths, headers)
        if (message := _files.regular_file_problem(path)
            or _check.read_pixel_budget(path, fmt, stored, max_pixels))]
    if over:
        raise CorruptedImagesError(
            f"{len(over)} files cannot be decoded safely: "
            + "; ".join(f"{path}: {message}" for path, message in over[:5])
            + ". Run `fruitclf clean` on the folder to quarantine them.",
            [path for path, _ in over],
        )


def _file_source(paths: Sequence[str], labels: Any, headers: Sequence[ImageHeader],
                 preprocessing: Preprocessing) -> tuple[tf.data.Dataset, Any]:
    """``(path, label, JPEG scale, orientation)`` records, and the function that loads one
    (read, decode at that scale, turn upright, finish as the check would)."""
    import tensorflow as tf

    scale = [
        _check.SCALE_RATIOS.index(_check.jpeg_ratio(header.size, preprocessing.image_size))
        if preprocessing.fast_decode and header.format == "JPEG" else 0
        for header in headers
    ]
    orientation = [header.orientation if preprocessing.exif_orientation else UPRIGHT
                   for header in headers]
    background = preprocessing.background_rgb

    def load(path: tf.Tensor, label: tf.Tensor, scale_index: tf.Tensor,
             upright: tf.Tensor) -> Any:
        image = _check.decode_image_scaled(tf.io.read_file(path), scale_index, upright,
                                           background)
        return finish_image(image, preprocessing), label

    files = tf.data.Dataset.from_tensor_slices((
        np.asarray(list(paths), dtype=object).astype(str),
        np.asarray(labels, dtype=np.int32),
        np.asarray(scale, dtype=np.int32),
        np.asarray(orientation, dtype=np.int32),
    ))
    return files, load


def finish_image(image: tf.Tensor, preprocessing: Preprocessing) -> tf.Tensor:
    """A decoded ``uint8`` RGB image -> the model-ready ``uint8`` array the cache keeps.

    The pipelines (in ``tf.data``) and the file check (when it prepares images) both call
    this, so an image decoded by the check equals the one a pipeline would make.
    """
    import tensorflow as tf

    size, channels = preprocessing.image_size, preprocessing.channels
    method = preprocessing.interpolation
    if channels == 1:
        image = tf.image.rgb_to_grayscale(image)
    resized = tf.image.resize(image, size, method=method,
                              antialias=preprocessing.antialias and method != "nearest")
    if resized.dtype != tf.uint8:  # "nearest" keeps uint8; the others give float32
        resized = tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)
    return tf.ensure_shape(resized, (*size, channels))


@functools.lru_cache(maxsize=8)
def prepare_for(preprocessing: Preprocessing) -> _check.Prepare:
    """What the file check needs to decode each image once, as the pipeline would (one
    object per preprocessing: the check compiles its decoder once for it)."""

    def ratio(fmt: str | None, stored: tuple[int, int] | None) -> int:
        if preprocessing.fast_decode and fmt == "JPEG":
            return _check.jpeg_ratio(stored, preprocessing.image_size)
        return 1

    def finish(image: tf.Tensor) -> tf.Tensor:
        return finish_image(image, preprocessing)

    return _check.Prepare(ratio=ratio, finish=finish,
                          orientation=preprocessing.exif_orientation,
                          background=preprocessing.background_rgb)


def _epoch_variable() -> tf.Variable:
    import tensorflow as tf

    return tf.Variable(0, dtype=tf.int64, trainable=False, name="fruitclf_epoch")


def _shuffled_by_epoch(base: tf.data.Dataset, buffer: int, seed: int | None,
                       epoch: tf.Variable, *, count: int) -> tf.data.Dataset:
    """``base`` in a new order every pass, the order a function of (seed, epoch) only.

    The epoch counter is read and advanced when a pass starts; the Trainer sets it at every
    epoch start, so a resumed run sees the same order as an uninterrupted one.
    """
    import tensorflow as tf

    base_seed = int(np.random.SeedSequence(seed).generate_state(1)[0])

    def one_pass(_: tf.Tensor) -> tf.data.Dataset:
        current = epoch.assign_add(1) - 1
        return base.shuffle(buffer, seed=base_seed + current * 1_000_003,
                            reshuffle_each_iteration=False)

    return tf.data.Dataset.from_tensors(0).flat_map(one_pass).apply(
        tf.data.experimental.assert_cardinality(count))


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
