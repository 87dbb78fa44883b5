"""File checks made with the decoder that training uses.

A file is judged by its bytes, not its name: the format is sniffed from the first bytes, the
pixel count is read from the header (a guard against decompression bombs), and the verdict is
TensorFlow's own decode, the same function the ``tf.data`` pipelines call. A file that passes
here cannot make a pipeline pass fail.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .. import _files
from . import _mapped
from .orientation import UPRIGHT, exif_orientation, orient, upright_size
from .quality import (
    FINGERPRINT_BLOCK,
    MEASURE_SIDE,
    VECTOR_SIZE,
    WINDOW_COUNT,
    Fingerprint,
    Sketch,
    fingerprints,
    sketch,
)

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "SCALE_RATIOS",
    "WHITE",
    "CheckReport",
    "FileProblem",
    "ImageHeader",
    "ImageStore",
    "KeptImages",
    "check_files",
    "decode_image",
    "decode_image_scaled",
    "decoded_pixels",
    "describe_problems",
    "jpeg_ratio",
    "read_image_header",
    "read_image_size",
    "sniff_format",
]

logger = logging.getLogger("fruitclf")

#: Extensions that make a file a candidate image (compared in lower case). Formats that
#: TensorFlow may not decode (WebP, TIFF, HEIC, ...) are candidates too, so that they are
#: flagged by the check instead of being skipped without a word.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".avif",
    ".bmp",
    ".gif",
    ".heic",
    ".heif",
    ".jfif",
    ".jpe",
    ".jpeg",
    ".jpg",
    ".png",
    ".tif",
    ".tiff",
    ".webp",
)

#: Images with more pixels than this are reported as ``too_many_pixels`` without being decoded
#: (the same limit as Pillow's ``Image.MAX_IMAGE_PIXELS``, about 9459 x 9459).
DEFAULT_MAX_PIXELS = 89_478_485

#: The background a transparent pixel is composited on unless a ``Preprocessing`` says
#: otherwise: white, as image viewers and browsers show transparency.
WHITE: tuple[int, int, int] = (255, 255, 255)

_HEADER_BYTES = 65_536
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_TRAILERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82", "GIF": b"\x3b"}


# --------------------------------------------------------------------------------------------
# Format sniffing and header sizes
# --------------------------------------------------------------------------------------------


def sniff_format(head: bytes) -> str | None:
    """Return the image format named by the first bytes of a file, or None.

    Parameters
    ----------
    head : bytes
        At least the first 16 bytes of the file.

    Returns
    -------
    str or None
        One of ``"JPEG"``, ``"PNG"``, ``"GIF"``, ``"BMP"``, ``"WEBP"``, ``"TIFF"``,
        ``"HEIF"``, ``"AVIF"``, or None when the bytes are no known image format.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head.startswith(b"BM") and len(head) >= 26:
        return "BMP"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"heim", b"heis"):
            return "HEIF"
    return None


def _looks_like_text(head: bytes) -> bool:
    sample = head[:512]
    if not sample:
        return False
    if sample.lstrip().lower().startswith((b"<!doctype", b"<html", b"<?xml", b"{", b"[")):
        return True
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in sample)
    return printable / len(sample) > 0.95


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD9)):  # markers without a length
            pos += 2
            continue
        if marker in _JPEG_SOF and pos + 9 <= len(data):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + length
    return None


def _size_from_header(data: bytes, fmt: str | None) -> tuple[int, int] | None:
    """(width, height) from a header, or None when the header does not say (or is cut)."""
    try:
        if fmt == "PNG" and len(data) >= 24:
            width, height = struct.unpack(">II", data[16:24])
            return int(width), int(height)
        if fmt == "GIF" and len(data) >= 10:
            width, height = struct.unpack("<HH", data[6:10])
            return int(width), int(height)
        if fmt == "BMP" and len(data) >= 26:
            width, height = struct.unpack("<ii", data[18:26])
            return abs(width), abs(height)
        if fmt == "JPEG":
            return _jpeg_size(data)
    except struct.error:
        return None
    return None


def gif_frame_count(data: bytes) -> int:
    """Count the frames of a GIF by walking its blocks (nothing is decompressed).

    A damaged block structure ends the count at the frames found so far (at least 1).
    """
    if len(data) < 13:
        return 1
    pos = 13
    flags = data[10]
    if flags & 0x80:  # global colour table
        pos += 3 * (2 ** ((flags & 0x07) + 1))
    frames = 0
    while pos < len(data):
        block = data[pos]
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # extension: label, then data sub-blocks
            pos += 2
        elif block == 0x2C:  # image descriptor, optional local colour table, LZW code size
            if pos + 10 > len(data):
                break
            frames += 1
            local = data[pos + 9]
            pos += 10
            if local & 0x80:
                pos += 3 * (2 ** ((local & 0x07) + 1))
            pos += 1
        else:
            break
        while pos < len(data) and data[pos]:  # sub-blocks up to the zero-length terminator
            pos += data[pos] + 1
        pos += 1
    return max(frames, 1)


def decoded_pixels(data: bytes, fmt: str | None, size: tuple[int, int] | None) -> int | None:
    """Pixels TensorFlow's decoder allocates for this file: every frame of a GIF counts.

    TensorFlow decodes all frames of an animated GIF (each at the full canvas size) even
    when only the first is kept, so a GIF is judged on its total decoded pixels, in the file
    check and in the pipelines alike. None when the header gives no size.
    """
    if size is None:
        return None
    pixels = size[0] * size[1]
    if fmt == "GIF":
        pixels *= gif_frame_count(data)
    return pixels


def pixel_budget_message(data: bytes, fmt: str | None, size: tuple[int, int] | None,
                         max_pixels: int) -> str | None:
    """Why decoding this file would exceed ``max_pixels``, or None when it fits."""
    pixels = decoded_pixels(data, fmt, size)
    if pixels is None or size is None or pixels <= max_pixels:
        return None
    frames = pixels // max(size[0] * size[1], 1)
    what = f"{frames} frames of " if frames > 1 else ""
    every = "; TensorFlow decodes every frame" if frames > 1 else ""
    return (f"too many pixels to decode ({what}{size[0]}x{size[1]} = {pixels:,} > "
            f"max_pixels={max_pixels:,}{every}); likely a decompression bomb")


def read_pixel_budget(path: str | os.PathLike[str], fmt: str | None,
                      size: tuple[int, int] | None, max_pixels: int) -> str | None:
    """:func:`pixel_budget_message` for a file on disk (GIFs are read to count frames)."""
    if size is None:
        return None
    data = b""
    if fmt == "GIF":
        try:
            with _files.open_regular(path) as fh:
                data = fh.read()
        except OSError:
            return None  # the decode will report the unreadable file
    return pixel_budget_message(data, fmt, size, max_pixels)


class ImageHeader(NamedTuple):
    """What an image file's header says, read without decoding it.

    Attributes
    ----------
    format : str or None
        The format sniffed from the bytes (see :func:`sniff_format`).
    size : (width, height) or None
        The size of the upright photo (stored sides swapped for EXIF orientations 5–8);
        read for JPEG, PNG, GIF and BMP.
    orientation : int
        The EXIF orientation, 1–8 (1: stored upright, or no tag); see
        ``fruitclf.data.orientation``.
    """

    format: str | None
    size: tuple[int, int] | None
    orientation: int = UPRIGHT


#: The header of a file that cannot be read.
UNKNOWN_HEADER = ImageHeader(None, None, UPRIGHT)


def read_image_header(path: str | os.PathLike[str]) -> ImageHeader:
    """Return the format, upright size and EXIF orientation of an image file, not decoding it.

    Either of format and size is None when unknown or unreadable.
    """
    try:
        with _files.open_regular(path) as fh:
            data = fh.read(_HEADER_BYTES)
            fmt = sniff_format(data)
            # Large EXIF/ICC blocks can push a JPEG's frame header past the first read, and a
            # WebP keeps its EXIF after the pixels.
            if len(data) == _HEADER_BYTES and (
                    fmt == "WEBP" or (fmt == "JPEG" and _size_from_header(data, fmt) is None)):
                data += fh.read()
    except OSError:
        return UNKNOWN_HEADER
    orientation = exif_orientation(data, fmt)
    return ImageHeader(fmt, upright_size(_size_from_header(data, fmt), orientation), orientation)


def read_image_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """Return ``(width, height)`` read from an image file's header, without decoding it.

    Reads JPEG, PNG, GIF and BMP headers; returns None for other formats and for files whose
    header cannot be read. The size is the upright photo's (see :class:`ImageHeader`).

    Examples
    --------
    >>> read_image_size("fruits/train/acai/01.jpg")  # from the header, nothing decoded
    (48, 48)
    """
    return read_image_header(path).size


# --------------------------------------------------------------------------------------------
# The training decoder
# --------------------------------------------------------------------------------------------


def jpeg_ratio(stored: tuple[int, int] | None, target: tuple[int, int]) -> int:
    """Return the largest JPEG reduced-scale factor that keeps the image at least ``target``.

    Parameters
    ----------
    stored : (width, height) or None
        The size stored in the file; None means unknown (no reduction).
    target : (height, width)
        The size the pipeline resizes to.

    Returns
    -------
    int
        1, 2, 4 or 8. A JPEG decoded at ``1/ratio`` scale is still at least as large as the
        target on both sides, so the later antialiased resize loses nothing.
    """
    if stored is None:
        return 1
    width, height = stored
    target_h, target_w = target
    for ratio in (8, 4, 2):
        if width // ratio >= target_w and height // ratio >= target_h:
            return ratio
    return 1


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _composited(image: tf.Tensor, background: tuple[int, int, int]) -> tf.Tensor:
    """RGB from RGBA: each pixel blended over ``background`` by its alpha (an opaque image,
    most PNG photos, is only cut to RGB: no float copy of a large photo)."""
    import tensorflow as tf

    def blend() -> tf.Tensor:
        rgb = tf.cast(image[..., :3], tf.float32)
        alpha = tf.cast(image[..., 3:], tf.float32) / 255.0
        blended = rgb * alpha + tf.constant(background, tf.float32) * (1.0 - alpha)
        return tf.cast(tf.clip_by_value(tf.round(blended), 0.0, 255.0), tf.uint8)

    return tf.cond(tf.reduce_min(image[..., 3]) < 255, blend, lambda: image[..., :3])


def _decode_full(contents: tf.Tensor, background: tuple[int, int, int]) -> tf.Tensor:
    """Decode any format TensorFlow reads; PNG and WebP transparency over ``background``.

    TensorFlow drops an alpha channel when asked for RGB (leaving whatever colour the
    transparent pixels store, usually black), so PNGs are decoded as RGBA and WebPs in their
    own channels, then composited. Other formats have no alpha TensorFlow reads.
    """
    import tensorflow as tf

    head = tf.strings.substr(contents, 0, 16) + b"\x00" * 16  # safe slicing of short files
    is_png = tf.equal(tf.strings.substr(head, 0, 8), _PNG_MAGIC)
    is_webp = tf.logical_and(tf.equal(tf.strings.substr(head, 0, 4), b"RIFF"),
                             tf.equal(tf.strings.substr(head, 8, 4), b"WEBP"))

    def with_alpha() -> tf.Tensor:
        # PNG: always as RGBA. WebP: in its own channels (3 or 4), the only ones its
        # decoder accepts, then made RGBA.
        image = tf.cond(
            is_png,
            lambda: tf.io.decode_image(contents, channels=4, dtype=tf.uint8,
                                       expand_animations=False),
            lambda: _as_rgba(tf.io.decode_image(contents, channels=0, dtype=tf.uint8,
                                                expand_animations=False)),
        )
        return _composited(tf.ensure_shape(image, [None, None, 4]), background)

    def opaque() -> tf.Tensor:
        return tf.io.decode_image(contents, channels=3, dtype=tf.uint8, expand_animations=False)

    image = tf.cond(tf.logical_or(is_png, is_webp), with_alpha, opaque)
    return tf.ensure_shape(image, [None, None, 3])


def _as_rgba(image: tf.Tensor) -> tf.Tensor:
    """An RGB or RGBA image as RGBA (opaque when it had no alpha)."""
    import tensorflow as tf

    opaque = tf.fill(tf.concat([tf.shape(image)[:2], [1]], 0), tf.constant(255, tf.uint8))
    return tf.cond(tf.shape(image)[2] == 4, lambda: image,
                   lambda: tf.concat([image[..., :3], opaque], axis=-1))


def _decode_jpeg_at(ratio: int) -> Callable[[tf.Tensor], tf.Tensor]:
    def decode(contents: tf.Tensor) -> tf.Tensor:
        import tensorflow as tf

        image = tf.io.decode_jpeg(contents, channels=3, ratio=ratio)
        return tf.ensure_shape(image, [None, None, 3])

    return decode


_JPEG_DECODERS = {ratio: _decode_jpeg_at(ratio) for ratio in (2, 4, 8)}


def decode_image(contents: tf.Tensor, ratio: int = 1, orientation: int | tf.Tensor = UPRIGHT,
                 background: tuple[int, int, int] = WHITE) -> tf.Tensor:
    """Decode image bytes to an upright ``uint8`` RGB tensor of shape ``(height, width, 3)``.

    This is the one decoder of fruitclf: the pipelines call it (through
    :func:`decode_image_scaled`) and the file check calls it, so that a file that passes the
    check decodes in training, and every use sees the same pixels.

    Parameters
    ----------
    contents : tf.Tensor
        Scalar string tensor with the file's bytes.
    ratio : int
        1, 2, 4 or 8. Above 1 the file must be a JPEG, and is decoded at ``1/ratio`` scale by
        libjpeg (which still reads the whole entropy-coded stream, so damage is still found).
    orientation : int or tf.Tensor
        The EXIF orientation read from the header (:class:`ImageHeader`), applied after
        decoding; 1 leaves the pixels as stored.
    background : (r, g, b)
        The colour transparent pixels of PNG and WebP files are composited on.
    """
    import tensorflow as tf

    counter = decode_counter()
    with tf.control_dependencies([counter.assign_add(1)]):
        if ratio == 1:
            image = _decode_full(contents, background)
        else:
            image = _JPEG_DECODERS[ratio](contents)
    return orient(image, orientation)


@functools.cache
def decode_counter() -> tf.Variable:
    """How many times :func:`decode_image` has run in this process (check and pipelines),
    counted by TensorFlow itself so that decodes inside ``tf.data`` count too."""
    import tensorflow as tf

    with tf.init_scope():
        return tf.Variable(0, dtype=tf.int64, trainable=False, name="fruitclf_decodes")


def decode_count() -> int:
    """The number of image decodes so far in this process; see :func:`decode_counter`."""
    return int(decode_counter().numpy())


#: The ratios :func:`decode_image_scaled` selects by index.
SCALE_RATIOS: tuple[int, ...] = (1, 2, 4, 8)


def decode_image_scaled(contents: tf.Tensor, scale_index: tf.Tensor,
                        orientation: tf.Tensor | int = UPRIGHT,
                        background: tuple[int, int, int] = WHITE) -> tf.Tensor:
    """Graph-friendly :func:`decode_image`: the ratio is ``SCALE_RATIOS[scale_index]``."""
    import tensorflow as tf

    branches = [lambda r=r: decode_image(contents, r, UPRIGHT, background)
                for r in SCALE_RATIOS]
    return orient(tf.switch_case(tf.cast(scale_index, tf.int32), branches), orientation)


# --------------------------------------------------------------------------------------------
# Checking files
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FileProblem:
    """A file that training could not read.

    Attributes
    ----------
    path : str
        The file, as found under the dataset root.
    relpath : str
        The path relative to the dataset root, with ``/`` separators.
    reason : str
        A short code: ``empty_file``, ``truncated``, ``not_an_image``, ``unsupported_format``,
        ``too_many_pixels``, ``broken_link``, ``not_a_file`` (a FIFO, socket or device,
        never opened), ``unreadable`` or ``corrupt``.
    message : str
        The reason in words, for people.
    size : int
        The file's size in bytes when checked (of the link itself for a broken link).
    mtime_ns : int
        The modification time when checked, so that a file changed since is never touched.

    Examples
    --------
    >>> raw = fruitclf.ImageFolderDataset("downloads/fruits")
    >>> [(p.relpath, p.reason) for p in raw.check(progress=False).problems]
    [('acai/07.jpg', 'truncated'), ('guarana/notes.png', 'not_an_image')]
    """

    path: str
    relpath: str
    reason: str
    message: str
    size: int = 0
    mtime_ns: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return the problem as plain JSON types."""
        return {"path": self.relpath, "reason": self.message, "code": self.reason}


def describe_problems(problems: Sequence[FileProblem], limit: int = 10) -> str:
    """``relpath: reason`` of the first ``limit`` problems, for one-line error messages."""
    listing = "; ".join(f"{p.relpath}: {p.message}" for p in problems[:limit])
    more = f" (and {len(problems) - limit} more)" if len(problems) > limit else ""
    return listing + more


@dataclasses.dataclass(frozen=True)
class _Verdict:
    size: tuple[int, int] | None
    problem: FileProblem | None
    image: Any = None  # the model-ready uint8 array, when the check also prepares images
    sketch: Sketch | None = None  # made a fingerprint with others, in a batch


#: The alignment TensorFlow needs to read an array's memory in place (without it, it copies).
_TENSOR_ALIGNMENT = 64


class ImageStore:
    """The check's model-ready ``uint8`` images, in one array, and the row of each path.

    A run's pipelines (its training and validation parts, the label-error pass) read their
    images from the one TensorFlow tensor :attr:`tensor`, by row: the array is allocated at
    TensorFlow's alignment, so that the tensor is the same memory (DLPack), not a copy. The
    images exist once, whatever the number of pipelines. A prepared check makes one
    (:attr:`CheckReport.kept`).

    Parameters
    ----------
    count : int
        The most images it will hold.
    shape : tuple of int
        The shape of one image, ``(height, width, channels)``.

    Attributes
    ----------
    rows : dict
        The row of each path added, in the order they were added.

    Examples
    --------
    >>> import numpy as np
    >>> store = ImageStore(3, (2, 2, 3))
    >>> store.add("a.jpg", np.zeros((2, 2, 3), np.uint8))
    >>> store.add("b.jpg", np.full((2, 2, 3), 7, np.uint8))
    >>> store.rows
    {'a.jpg': 0, 'b.jpg': 1}
    >>> store.select(["b.jpg", "a.jpg"]).rows.tolist()
    [1, 0]
    >>> store.select(["c.jpg"]) is None
    True
    >>> int(store.views()["b.jpg"][0, 0, 0])
    7
    """

    def __init__(self, count: int, shape: tuple[int, ...]) -> None:
        size = count * int(np.prod(shape))
        raw = np.empty(size + _TENSOR_ALIGNMENT, np.uint8)
        skip = -raw.ctypes.data % _TENSOR_ALIGNMENT
        self._array = raw[skip:skip + size].reshape(count, *shape)
        self.rows: dict[str, int] = {}

    def add(self, path: str, image: np.ndarray) -> None:
        """Keep ``image`` as the next row."""
        self._array[len(self.rows)] = image
        self.rows[path] = len(self.rows)

    def views(self) -> dict[str, np.ndarray]:
        """Each path's image: a read-only view of its row."""
        kept = self._array[:len(self.rows)].view()
        kept.flags.writeable = False
        return {path: kept[row] for path, row in self.rows.items()}

    def select(self, paths: Sequence[str]) -> KeptImages | None:
        """The images of ``paths``, in their order; None if one of them is not kept."""
        rows = [self.rows.get(p) for p in paths]
        if not rows or None in rows:
            return None
        return KeptImages(self, np.asarray(rows, np.int64))

    @functools.cached_property
    def tensor(self) -> Any:
        """The images as one TensorFlow tensor over the same memory (a copy only where
        TensorFlow cannot read it in place)."""
        import tensorflow as tf

        kept = self._array[:len(self.rows)]
        try:
            return tf.experimental.dlpack.from_dlpack(kept.__dlpack__())
        except (BufferError, TypeError, ValueError, tf.errors.InvalidArgumentError):
            return tf.convert_to_tensor(kept)


@dataclasses.dataclass(frozen=True)
class KeptImages:
    """The images of a pipeline's files, as rows of an :class:`ImageStore`, in order."""

    store: ImageStore
    rows: np.ndarray  #: ``int64`` row of each file


@dataclasses.dataclass(frozen=True)
class Prepare:
    """How the check turns a decoded file into the array a pipeline would make of it.

    Attributes
    ----------
    ratio : callable
        ``(format, (width, height)) -> int``: the JPEG scale the pipeline decodes at.
    finish : callable
        Decoded ``uint8`` RGB tensor -> the resized tensor the pipeline caches (TensorFlow
        operations: traced once into the check's compiled decoder).
    orientation : bool
        Apply the EXIF orientation (as the pipeline does).
    background : (r, g, b)
        The colour transparency is composited on.
    """

    ratio: Callable[[str | None, tuple[int, int] | None], int]
    finish: Callable[[Any], Any]
    orientation: bool = True
    background: tuple[int, int, int] = WHITE


@functools.cache
def tensorflow_formats() -> frozenset[str]:
    """The sniffed formats this TensorFlow's ``decode_image`` reads (WebP since 2.18).

    TensorFlow picks its decoder by the same magic bytes :func:`sniff_format` reads, so a
    file of any other format fails its decode: it is reported without calling TensorFlow,
    which would also log a C++ line for every such file.
    """
    import tensorflow as tf

    formats = {"JPEG", "PNG", "GIF", "BMP"}
    if hasattr(tf.io, "decode_webp"):
        formats.add("WEBP")
    return frozenset(formats)


def _tf_message(error: tf.errors.OpError) -> str:
    text = str(error.message)
    if "}}" in text:
        text = text.split("}}", 1)[1]
    return text.split(" [Op:", 1)[0].strip()


def _check_one(path: str, relpath: str, max_pixels: int, prepare: Prepare | None = None
               ) -> _Verdict:
    import tensorflow as tf

    def problem(reason: str, message: str, st: os.stat_result | None = None) -> _Verdict:
        size = st.st_size if st else 0
        mtime = st.st_mtime_ns if st else 0
        return _Verdict(None, FileProblem(path, relpath, reason, message, size, mtime))

    try:
        lst = os.lstat(path)
    except OSError as exc:
        return problem("unreadable", f"cannot read file ({exc.strerror})")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        target = os.readlink(path) if os.path.islink(path) else "?"
        return problem("broken_link", f"broken symbolic link (points to {target!r})", lst)
    except OSError as exc:
        return problem("unreadable", f"cannot read file ({exc.strerror})", lst)
    special = _files.regular_file_problem(path)
    if special is not None:
        return problem("not_a_file", special, st)
    if st.st_size == 0:
        return problem("empty_file", "empty file (0 bytes)", st)
    try:
        with _files.open_regular(path) as fh:
            data = fh.read()
    except OSError as exc:
        return problem("unreadable", f"cannot read file ({exc.strerror})", st)

    fmt = sniff_format(data[:32])
    if fmt is None:
        kind = "text or HTML" if _looks_like_text(data) else "unknown binary data"
        return problem("not_an_image", f"not an image ({kind}, {len(data)} bytes)", st)
    if fmt not in tensorflow_formats():
        return problem("unsupported_format", _unsupported(fmt), st)
    stored = _size_from_header(data, fmt)
    too_many = pixel_budget_message(data, fmt, stored, max_pixels)
    if too_many is not None:
        return problem("too_many_pixels", too_many, st)
    try:
        return _decoded_verdict(data, fmt, stored, st, prepare)
    except tf.errors.OpError as exc:
        detail = _tf_message(exc)
        if "Unknown image file format" in detail or "unsupported" in detail.lower():
            return problem("unsupported_format", _unsupported(fmt), st)
        trailer = _TRAILERS.get(fmt)
        if trailer is not None and not data.rstrip(b"\x00").endswith(trailer):
            return problem("truncated", f"truncated {fmt} file ({detail})", st)
        return problem("corrupt", f"corrupt {fmt} data ({detail})", st)


def _unsupported(fmt: str) -> str:
    import tensorflow as tf

    return (f"unsupported format ({fmt}): TensorFlow {tf.__version__} cannot decode it; "
            "convert it to PNG or JPEG")


def _decoded_verdict(data: bytes, fmt: str, stored: tuple[int, int] | None,
                     st: os.stat_result, prepare: Prepare | None) -> _Verdict:
    """Decode (upright, transparency composited) and sketch a readable file whose header
    gave ``stored`` (width, height)."""
    orientation = (UPRIGHT if prepare is not None and not prepare.orientation
                   else exif_orientation(data, fmt))
    size = upright_size(stored, orientation)
    if prepare is not None:
        ratio = prepare.ratio(fmt, size)
    else:  # small, but enough for the measures: libjpeg still reads (checks) all of the data
        ratio = jpeg_ratio(size, (MEASURE_SIDE, MEASURE_SIDE)) if fmt == "JPEG" else 1
    decoded, finished = _decode_for_check(data, ratio, orientation, prepare)
    if size is None:
        size = (int(decoded.shape[1]) * ratio, int(decoded.shape[0]) * ratio)
    # The duplicate and quality checks work from this decode: no file is read twice.
    image_sketch = sketch(data, decoded, size=size, full_scale=ratio == 1,
                          file_size=st.st_size, mtime_ns=st.st_mtime_ns)
    return _Verdict(size, None, finished, image_sketch)


def _decode_for_check(data: bytes, ratio: int, orientation: int, prepare: Prepare | None
                      ) -> tuple[Any, Any]:
    """The decoded ``uint8`` array and, with ``prepare``, the finished one: by the compiled
    decoder, which runs without Python's lock (so the check's threads decode in parallel).
    A file it refuses is decoded again eagerly, for TensorFlow's own message."""
    import tensorflow as tf

    background, finish = _decoding(prepare)
    decoder = _compiled_decoder(background, finish)
    try:
        outputs = decoder(tf.constant(data), tf.constant(SCALE_RATIOS.index(ratio)),
                          tf.constant(orientation))
    except tf.errors.OpError:
        decoded = decode_image(tf.constant(data), ratio, orientation, background)
        finished = None if finish is None else finish(decoded)
        outputs = (decoded,) if finished is None else (decoded, finished)
    arrays = [o.numpy() for o in outputs]
    return arrays[0], (arrays[1] if len(arrays) > 1 else None)


def _decoder_for(prepare: Prepare | None) -> Callable[..., Any]:
    """The compiled decoder the check uses with ``prepare``."""
    return _compiled_decoder(*_decoding(prepare))


def _decoding(prepare: Prepare | None
              ) -> tuple[tuple[int, int, int], Callable[[Any], Any] | None]:
    """``(background, finish)``: how the check decodes a file with ``prepare``."""
    if prepare is None:
        return WHITE, None
    return prepare.background, prepare.finish


@functools.lru_cache(maxsize=16)
def _compiled_decoder(background: tuple[int, int, int],
                      finish: Callable[[Any], Any] | None) -> Callable[..., Any]:
    """:func:`decode_image_scaled` (then ``finish``) as one compiled function of (bytes,
    scale index, orientation): a call runs the whole graph in TensorFlow's runtime."""
    import tensorflow as tf

    def decode(contents: tf.Tensor, scale_index: tf.Tensor, orientation: tf.Tensor
               ) -> tuple[tf.Tensor, ...]:
        image = decode_image_scaled(contents, scale_index, orientation, background)
        return (image,) if finish is None else (image, finish(image))

    spec = [tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int32),
            tf.TensorSpec([], tf.int32)]
    compiled: Callable[..., Any] = tf.function(
        decode, input_signature=spec, autograph=False).get_concrete_function()
    return compiled


@dataclasses.dataclass
class CheckReport:
    """What :meth:`ImageFolderDataset.check` found.

    Attributes
    ----------
    root : str
        The dataset folder.
    num_checked : int
        How many candidate images were decoded (or rejected before decoding).
    problems : list of FileProblem
        Every file that training could not read, sorted by path.
    image_sizes : dict
        ``(width, height)`` of each readable file, keyed by path.
    seconds : float
        Wall time of the check.
    images : dict
        The model-ready ``uint8`` arrays of the readable files, keyed by path, when the check
        was asked to prepare them (``check(preprocessing=...)``); else empty. Read-only views
        of :attr:`kept`.
    fingerprints : dict
        The :class:`~fruitclf.data.quality.Fingerprint` of each readable file, keyed by path:
        what the duplicate, leakage and quality checks read.
    kept : ImageStore or None
        The prepared images in one array, which the pipelines read by row; None when none
        were prepared.

    Examples
    --------
    >>> report = fruitclf.ImageFolderDataset("downloads/fruits").check(progress=False)
    >>> report.ok, [p.reason for p in report.problems]
    (False, ['truncated', 'not_an_image'])
    """

    root: str
    num_checked: int
    problems: list[FileProblem]
    image_sizes: dict[str, tuple[int, int]]
    seconds: float
    images: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    fingerprints: dict[str, Fingerprint] = dataclasses.field(default_factory=dict, repr=False)
    kept: ImageStore | None = dataclasses.field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    @property
    def paths(self) -> list[str]:
        """The paths of the problem files."""
        return [p.path for p in self.problems]

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON types (paths relative to the root)."""
        return {
            "root": self.root,
            "num_checked": self.num_checked,
            "num_problems": len(self.problems),
            "problems": [p.to_dict() for p in self.problems],
            "seconds": round(self.seconds, 3),
        }

    def __str__(self) -> str:
        if not self.problems:
            return f"Checked {self.num_checked} images in {self.root!r}: no problems found."
        lines = [
            f"Checked {self.num_checked} images in {self.root!r}: "
            f"{len(self.problems)} would crash training:"
        ]
        lines += [f"  {p.relpath}: {p.message}" for p in self.problems]
        return "\n".join(lines)


def _in_flight(pool: ThreadPoolExecutor, work: Callable[[Any], _Verdict], items: Iterable[Any],
               *, ahead: int) -> Iterator[_Verdict]:
    """``work(item)`` of each item, in order, computed by ``pool`` with at most ``ahead``
    items submitted and not yet taken: the results waiting to be read, and the work an
    interrupt waits for, stay bounded whatever the folder's size (``pool.map`` submits
    every item at once)."""
    pending: deque[Future[_Verdict]] = deque()
    for item in items:
        if len(pending) >= ahead:
            yield pending.popleft().result()
        pending.append(pool.submit(work, item))
    while pending:
        yield pending.popleft().result()


def check_files(
    files: Sequence[tuple[str, str]],
    *,
    root: str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    num_workers: int | None = None,
    progress: bool | None = None,
    prepare: Prepare | None = None,
) -> CheckReport:
    """Check ``(path, relpath)`` pairs in parallel and return a :class:`CheckReport`.

    With ``prepare``, each readable file is decoded at the scale the pipeline uses and kept as
    its model-ready array in ``report.images``: one decode serves the check and the training.
    """
    from threadpoolctl import threadpool_limits

    from .. import _quiet
    from .._compat import progress_bar

    start = time.perf_counter()
    workers = num_workers or min(32, os.cpu_count() or 1)
    if files:
        _decoder_for(prepare)  # traced here once, not by each thread at its first file
    problems: list[FileProblem] = []
    sizes: dict[str, tuple[int, int]] = {}
    kept: ImageStore | None = None
    prints: dict[str, Fingerprint] = {}
    sketches: dict[str, Sketch] = {}
    # The readable files' vectors, in file order, in one array (rows of refused files are
    # never written, so never take memory): the duplicate search reads it without a copy.
    # A large folder's is kept in a temporary file, and what the check wrote of it handed
    # back to the system as it goes.
    store = _mapped.array((len(files), WINDOW_COUNT, VECTOR_SIZE), np.float16)
    pages = _mapped.Pages(store)

    def fingerprint_sketches() -> None:
        rows = store[len(prints):len(prints) + len(sketches)]
        prints.update(zip(sketches, fingerprints(list(sketches.values()), out=rows)))
        pages.read(rows.nbytes)
        sketches.clear()

    # libjpeg writes its own notes on damaged files to standard error (the report says it):
    # left out, while the bar draws on the real standard error. The fingerprints are many
    # small matrix products in parallel threads: BLAS's own threads would only contend with
    # them (and with TensorFlow's decoders).
    with _quiet.filtered_native_stderr() as stream, progress_bar(
            total=len(files), unit="img", leave=False, file=stream,
            desc="Checking and decoding images" if prepare is not None else "Checking images",
            disable=None if progress is None else not progress) as bar, threadpool_limits(
            limits=1, user_api="blas"), ThreadPoolExecutor(max_workers=workers) as pool:
        verdicts = _in_flight(pool, lambda f: _check_one(f[0], f[1], max_pixels, prepare),
                              files, ahead=workers * FINGERPRINT_BLOCK)
        for (path, _), verdict in zip(files, verdicts):
            bar.update(1)
            if verdict.problem is not None:
                problems.append(verdict.problem)
                continue
            if verdict.size is not None:
                sizes[path] = verdict.size
            if verdict.image is not None:
                if kept is None:
                    kept = ImageStore(len(files), verdict.image.shape)
                kept.add(path, verdict.image)
            if verdict.sketch is not None:
                sketches[path] = verdict.sketch
                if len(sketches) == FINGERPRINT_BLOCK:
                    fingerprint_sketches()
        fingerprint_sketches()
    pages.release()
    problems.sort(key=lambda p: p.relpath)
    return CheckReport(root, len(files), problems, sizes, time.perf_counter() - start,
                       kept.views() if kept is not None else {}, prints, kept)
