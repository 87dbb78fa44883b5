"""How a stored photo is meant to be shown: EXIF orientation, read from the file's header.

Phones store most photos as the sensor saw them and write an EXIF ``Orientation`` tag (1–8)
that says how to turn them upright; every viewer, browser and gallery applies it. fruitclf
reads the tag from the bytes it already holds (JPEG ``APP1``, PNG ``eXIf``, WebP ``EXIF``;
nothing is decoded for it) and :func:`orient` applies it right after decoding, so the check,
the pipelines, predictions and figures all see the photo the way its owner does.

The eight values, as the EXIF standard and Pillow's ``ImageOps.exif_transpose`` define them:

===== =====================================================
value  stored pixels -> upright
===== =====================================================
1      as stored
2      mirror left-right
3      turn 180°
4      mirror top-bottom
5      transpose (mirror along the main diagonal)
6      turn 90° clockwise (a phone held upright)
7      transverse (mirror along the other diagonal)
8      turn 90° counter-clockwise
===== =====================================================
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = ["UPRIGHT", "exif_orientation", "orient", "upright_size"]

#: The orientation of a photo stored upright (also what a file without the tag gets).
UPRIGHT = 1
_ORIENTATION_TAG = 0x0112
_EXIF_PREFIX = b"Exif\x00\x00"


def _tiff_orientation(tiff: bytes) -> int:
    """The Orientation entry of IFD0 in a TIFF-structured EXIF block (1 when absent)."""
    if tiff.startswith(_EXIF_PREFIX):
        tiff = tiff[len(_EXIF_PREFIX):]
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return UPRIGHT
    try:
        (offset,) = struct.unpack(order + "I", tiff[4:8])
        (count,) = struct.unpack(order + "H", tiff[offset:offset + 2])
        for index in range(count):
            entry = offset + 2 + 12 * index
            tag, kind = struct.unpack(order + "HH", tiff[entry:entry + 4])
            if tag != _ORIENTATION_TAG:
                continue
            if kind == 3:  # SHORT
                (value,) = struct.unpack(order + "H", tiff[entry + 8:entry + 10])
            elif kind == 4:  # LONG
                (value,) = struct.unpack(order + "I", tiff[entry + 8:entry + 12])
            else:
                return UPRIGHT
            return int(value) if 1 <= value <= 8 else UPRIGHT
    except struct.error:  # a cut or damaged block: treat the photo as upright
        return UPRIGHT
    return UPRIGHT


def _jpeg_exif(data: bytes) -> bytes | None:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD9)):
            pos += 2
            continue
        if marker == 0xDA:  # start of scan: the metadata is over
            return None
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        payload = data[pos + 4:pos + 2 + length]
        if marker == 0xE1 and payload.startswith(_EXIF_PREFIX):
            return payload
        pos += 2 + length
    return None


def _png_exif(data: bytes) -> bytes | None:
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"eXIf":
            return data[pos + 8:pos + 8 + length]
        if kind in (b"IDAT", b"IEND"):
            return None
        pos += 12 + length
    return None


def _webp_exif(data: bytes) -> bytes | None:
    if len(data) < 21 or data[12:16] != b"VP8X" or not data[20] & 0x08:  # no EXIF flag
        return None
    pos = 12
    while pos + 8 <= len(data):
        kind, length = struct.unpack("<4sI", data[pos:pos + 8])
        if kind == b"EXIF":
            return data[pos + 8:pos + 8 + length]
        pos += 8 + length + (length & 1)
    return None


_READERS = {"JPEG": _jpeg_exif, "PNG": _png_exif, "WEBP": _webp_exif}


def exif_orientation(data: bytes, fmt: str | None) -> int:
    """Return the EXIF orientation (1–8) stored in an image's bytes; 1 when there is none.

    Parameters
    ----------
    data : bytes
        The file's bytes (for JPEG and PNG the header is enough; a WebP keeps its EXIF after
        the pixels).
    fmt : str or None
        The format sniffed from the bytes (:func:`fruitclf.data.check.sniff_format`).

    Examples
    --------
    >>> exif_orientation(open("phone/IMG_0042.jpg", "rb").read(), "JPEG")
    6
    """
    reader = _READERS.get(fmt or "")
    block = reader(data) if reader is not None else None
    return _tiff_orientation(block) if block else UPRIGHT


def upright_size(size: tuple[int, int] | None, orientation: int) -> tuple[int, int] | None:
    """``(width, height)`` of the upright photo: stored sides swap for orientations 5–8."""
    if size is None or orientation < 5:
        return size
    return size[1], size[0]


def _oriented(image: Any, orientation: int) -> Any:
    import tensorflow as tf

    if orientation == 2:
        return tf.reverse(image, [1])
    if orientation == 3:
        return tf.reverse(image, [0, 1])
    if orientation == 4:
        return tf.reverse(image, [0])
    if orientation == 5:
        return tf.transpose(image, [1, 0, 2])
    if orientation == 6:
        return tf.reverse(tf.transpose(image, [1, 0, 2]), [1])
    if orientation == 7:
        return tf.reverse(tf.transpose(image, [1, 0, 2]), [0, 1])
    if orientation == 8:
        return tf.reverse(tf.transpose(image, [1, 0, 2]), [0])
    return image


def orient(image: tf.Tensor, orientation: int | tf.Tensor) -> tf.Tensor:
    """Turn a decoded ``(height, width, channels)`` image upright.

    ``orientation`` is a Python int (applied directly) or an int tensor (inside ``tf.data``:
    one branch per value); values outside 1–8 leave the image as stored.
    """
    import tensorflow as tf

    if isinstance(orientation, int):
        return _oriented(image, orientation)
    index = tf.clip_by_value(tf.cast(orientation, tf.int32) - 1, 0, 7)
    branches = [lambda o=o: _oriented(image, o) for o in range(1, 9)]
    return tf.switch_case(index, branches)
