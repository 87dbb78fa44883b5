"""Data problems that do not crash training but mislead it.

The same photo twice in a class, a test photo that is also a training photo (re-saved,
resized or cropped a little), a black frame, a blurry shot, a screenshot among photos:
training runs, and the accuracy it reports is wrong. This module finds them from a
:class:`Fingerprint` of each image, which the file check computes from the image it has just
decoded (:func:`fingerprint`), so finding them reads no file a second time.

Duplicates
    *Exact*: the same bytes, or the same pixels (a lossless re-save, other metadata).
    *Near*: the same photo resized, re-compressed, converted to another format, cropped (up
    to about 20% a side), mirrored, turned (a quarter or half turn, or a few degrees),
    letterboxed or framed, made grey, brighter, darker or more or less colourful, or marked
    with a line of text. Each image, less any uniform bars at two opposite edges, is
    described by three unit vectors: the structure of its value (an 8 x 8 block of the DCT
    of the rank-equalised largest of R, G and B, which neither a change of brightness,
    contrast or hue alters), the structure of its luma (the same of the grey levels a grey
    copy keeps) and its coarse colour layout; for the whole image, for each of 25 crop
    windows and for its centre turned by 4 degrees either way. A mirror or a quarter turn
    only changes the signs and the order of those numbers, so the eight ways to lay a
    picture on itself cost eight small matrix products. Two colour images are near
    duplicates when the whole of one, in one of those eight poses, is within a threshold
    (cosine distance, weighing structure 3 to 1 over colour; value or luma structure,
    whichever is closer) of the whole of the other or of one of its windows:
    :data:`NEAR_DUPLICATE_THRESHOLD` by default, or less in a folder of look-alike images
    (see :func:`resolve_threshold`). A grey image is compared with any image on luma
    structure alone, under :data:`GREY_SHARE` of the threshold. A search of a few
    thousand photos measures every pair in blocks; a larger one measures only the pairs
    that random-hyperplane keys bring together, with enough keys that a pair at the
    threshold is missed with probability at most :data:`fruitclf.data.nearpairs.MISS`
    (:mod:`fruitclf.data.nearpairs`), so its time grows with the folder, not with its pairs.

Quality flags
    Measured on the image shrunk to at most 128 pixels a side; every threshold is a field of
    :class:`QualityThresholds`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..settings import NEAR_DUPLICATE_THRESHOLD as _NEAR_DUPLICATE_THRESHOLD
from ._mapped import Pages, copy, gather
from .nearpairs import Part, near_pairs, signed_permutation

__all__ = [
    "FINGERPRINT_BLOCK",
    "GREY_SHARE",
    "INDEX_RECORD_BYTES",
    "NEAR_DUPLICATE_THRESHOLD",
    "SPREAD_REFERENCE",
    "STRUCTURE_WEIGHT",
    "TURN_SHARE",
    "VECTOR_SIZE",
    "WINDOW_COUNT",
    "DuplicateGroup",
    "Fingerprint",
    "FingerprintIndex",
    "ImageMeasures",
    "LeakedPair",
    "QualityIssue",
    "QualityThresholds",
    "Sketch",
    "find_duplicates",
    "find_index_leakage",
    "find_leakage",
    "fingerprint",
    "fingerprints",
    "median_pair_distance",
    "quality_issues",
    "resolve_threshold",
    "sketch",
]

#: The largest default distance (cosine, between fingerprints) of near duplicates. Re-saved,
#: resized, converted and slightly cropped or brightened copies of photos measure 0.000-0.02;
#: distinct photos of one kind of flower 0.02 and up, most above 0.1 (``benchmarks/README.md``).
#: Declared in :mod:`fruitclf.settings` with the other settings.
NEAR_DUPLICATE_THRESHOLD = _NEAR_DUPLICATE_THRESHOLD

#: In folders of simple, alike images (digits, icons) distinct images come much closer than
#: in photos. The median distance between two images of a folder measures that (duplicates
#: barely move it): below this reference the default threshold shrinks with the cube of the
#: ratio, since look-alikes crowd together faster than the median falls. Photo folders
#: (median 0.83-0.99 on flowers12, food10 and generated photo-like pictures) keep the whole
#: threshold; scikit-learn's digits (median 0.40) get an eighth of it, 0.0038 (0.0025 for
#: grey pairs), under the 0.0051 of their closest distinct pair.
SPREAD_REFERENCE = 0.8

#: The smallest side (pixels) the check decodes a JPEG at, so the measures see enough detail.
MEASURE_SIDE = 128
_THUMB = 64  # the fingerprint thumbnail (square)
_DCT = 32  # the crop windows are resampled to this square before the DCT
_KEEP = 8  # the DCT block kept (lowest frequencies)
_COLOUR = 4  # colour layout grid

#: Share of the distance between two colour images given to their structure (the layout of
#: grey levels); the colour layout has the rest. A grey image compared with any image is
#: compared on structure alone.
STRUCTURE_WEIGHT = 0.75
_STRUCTURE = _KEEP * _KEEP - 1  # the DCT block without its mean
_COLOURED = _STRUCTURE + _COLOUR * _COLOUR * 3  # value structure, then colour layout
_DIM = _COLOURED + _STRUCTURE  # then luma structure
#: A pair with a grey image is compared on structure alone, which tells distinct pictures
#: apart less well: its threshold is this share of the threshold.
GREY_SHARE = 2 / 3
_GREY = 0.02  # colourfulness under which an image counts as grey (as the quality flag)
_BORDER_TOLERANCE = 4  # grey levels a border bar may vary by (flat, as a padded bar is)
_BORDER_MOST = 0.3  # the largest share of a side that is trimmed as a border
_TURN = 4.0  # degrees of the two turned windows
_TURN_CUT = 0.07  # what a turn of 4 degrees leaves uncovered at each side


def _crop_windows() -> tuple[tuple[float, float, float, float], ...]:
    """Crop windows (left, top, right, bottom) as fractions of the image: the whole image,
    5-20% off every side, 5-20% at each corner and 8% and 16% off each side. The set is
    its own mirror image and turns into itself by 90 degrees, so a turned or mirrored copy
    of a crop meets the matching window of its original."""
    boxes = [(0.0, 0.0, 1.0, 1.0)]
    boxes += [(c, c, 1 - c, 1 - c) for c in (0.05, 0.10, 0.15, 0.20)]
    for s in (0.95, 0.90, 0.80):
        boxes += [(0.0, 0.0, s, s), (1 - s, 0.0, 1.0, s), (0.0, 1 - s, s, 1.0),
                  (1 - s, 1 - s, 1.0, 1.0)]
    for c in (0.08, 0.16):
        boxes += [(0.0, 0.0, 1 - c, 1.0), (c, 0.0, 1.0, 1.0), (0.0, 0.0, 1.0, 1 - c),
                  (0.0, c, 1.0, 1.0)]
    return tuple(boxes)


_WINDOWS = _crop_windows()
#: The centre of the image turned by +4 and by -4 degrees (the last two windows).
_TURNED_WINDOW = (_TURN_CUT, _TURN_CUT, 1 - _TURN_CUT, 1 - _TURN_CUT)
#: Vectors per image: the whole image, the crop windows and the two turned centres.
WINDOW_COUNT = len(_WINDOWS) + 2
#: Numbers per vector: value structure, colour layout, luma structure.
VECTOR_SIZE = _DIM
#: A match with a turned centre counts under this share of the threshold: a slightly
#: turned copy lands well inside it (flowers12: 0.010 at most), while two distinct soft,
#: featureless pictures can meet one of the turned poses at half the threshold.
TURN_SHARE = 0.5
_WINDOW_SHARES = np.array([1.0] * len(_WINDOWS) + [TURN_SHARE] * 2, np.float32)


# --------------------------------------------------------------------------------------------
# Fingerprints
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ImageMeasures:
    """Numbers that the quality flags compare with :class:`QualityThresholds`.

    Attributes
    ----------
    width, height : int
        The size stored in the file.
    highlights : float
        Brightness (0-1) that only the brightest 5% of pixels exceed; low means dark.
    shadows : float
        Brightness (0-1) that only the darkest 5% of pixels fall below; high means washed out.
    information : float
        Entropy of the grey levels in bits, divided by 8 (0: one grey level, 1: all 256
        equally often).
    sharpness : float
        Standard deviation of the Laplacian over that of the grey levels, on the image
        shrunk to at most 128 pixels a side: fine detail relative to contrast.
    colourfulness : float
        Mean spread between the largest and smallest of R, G, B per pixel (0-1), on a 64 x 64
        thumbnail; 0 for grey.
    """

    width: int
    height: int
    highlights: float
    shadows: float
    information: float
    sharpness: float
    colourfulness: float


@dataclasses.dataclass(frozen=True, eq=False)
class Fingerprint:
    """What the duplicate, leakage and quality checks need of one image.

    Attributes
    ----------
    digest : bytes
        Length and CRC-32 of the file's bytes.
    pixels : bytes or None
        Shape and CRC-32 of the decoded pixels, when the file was decoded at full scale.
    vectors : numpy.ndarray
        ``(WINDOW_COUNT, 174)``, ``float16``: for the image less any uniform border, the
        whole image first, then the crop windows, then its centre turned by +4 and -4
        degrees; per window the value structure and the colour layout (weighed 3 to 1, see
        :data:`STRUCTURE_WEIGHT`) and the luma structure, as the module docstring describes.
    measures : ImageMeasures
        Brightness, information, sharpness and colour measures.
    file_size, mtime_ns : int
        The file when it was read, so that a file changed since is never acted on.
    border : float
        The share of the image's area that was a uniform border (letterbox bars, a frame)
        and left out of the vectors.
    """

    digest: bytes
    pixels: bytes | None
    vectors: np.ndarray
    measures: ImageMeasures
    file_size: int = 0
    mtime_ns: int = 0
    border: float = 0.0

    @property
    def grey(self) -> bool:
        """Whether the image has (almost) no colour; it is then compared on structure."""
        return self.measures.colourfulness < _GREY


def _area_matrix(start: float, stop: float, n_out: int, n_in: int) -> np.ndarray:
    """``(n_out, n_in)`` weights that average ``[start, stop)`` (a fraction of the input)
    into ``n_out`` equal cells, each weighted by how much of every input pixel it covers."""
    edges = np.linspace(start * n_in, stop * n_in, n_out + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    pixel = np.arange(n_in, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(hi, pixel + 1) - np.maximum(lo, pixel), 0.0, None)
    return np.asarray(overlap / overlap.sum(axis=1, keepdims=True))


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    matrix = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    matrix[0] /= math.sqrt(2)
    return matrix


@functools.cache
def _projections(windows: tuple[tuple[float, float, float, float], ...]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per crop window: rows and columns of (DCT o area resample) and of the colour grid."""
    dct = _dct_matrix(_DCT)[:_KEEP]
    dct_rows, dct_cols, col_rows, col_cols = [], [], [], []
    for left, top, right, bottom in windows:
        dct_rows.append(dct @ _area_matrix(top, bottom, _DCT, _THUMB))
        dct_cols.append(dct @ _area_matrix(left, right, _DCT, _THUMB))
        col_rows.append(_area_matrix(top, bottom, _COLOUR, _THUMB))
        col_cols.append(_area_matrix(left, right, _COLOUR, _THUMB))
    return (np.stack(dct_rows).astype(np.float32), np.stack(dct_cols).astype(np.float32),
            np.stack(col_rows).astype(np.float32), np.stack(col_cols).astype(np.float32))


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(np.divide(x, norms, out=np.zeros_like(x), where=norms > 1e-6))


def _rank_equalised(grey: np.ndarray) -> np.ndarray:
    """``(n, h, w)`` ``uint8`` grey levels replaced, image by image, by their mean rank (0-1):
    the same for any brightening or darkening that keeps the order of the levels."""
    n, levels = len(grey), grey.reshape(len(grey), -1)
    offset = (np.arange(n, dtype=np.intp) * 256)[:, None]
    counts = np.bincount((levels + offset).ravel(), minlength=256 * n).reshape(n, 256)
    below = np.cumsum(counts, axis=1) - counts
    mean_rank = ((below + (counts - 1) / 2) / max(1, levels.shape[1] - 1)).astype(np.float32)
    return np.asarray(np.take_along_axis(mean_rank, levels.astype(np.intp), axis=1)
                      ).reshape(grey.shape)


def _levels(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rank-equalised value (largest of R, G, B) and luma of ``(n, 64, 64, 3)`` float
    thumbnails (numpy reduces a last axis of 3 slowly: channel by channel)."""
    value = np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])
    luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    value_ranks, luma_ranks = (_rank_equalised(np.clip(np.rint(x), 0, 255).astype(np.uint8))
                               for x in (value, luma))
    return value_ranks, luma_ranks


def _joined(value: np.ndarray, colour: np.ndarray, luma: np.ndarray) -> np.ndarray:
    """Rows of value structure, colour layout and luma structure (each made a unit vector;
    the DC of the structures dropped) joined as the fingerprint stores them: the first two
    weighed by :data:`STRUCTURE_WEIGHT`. ``colour`` is ``(rows, 4, 4, 3)``."""
    colour = colour - colour.mean(axis=(1, 2), keepdims=True)
    return np.concatenate([
        _unit_rows(value[:, 1:]) * math.sqrt(STRUCTURE_WEIGHT),
        _unit_rows(colour.reshape(len(colour), -1)) * math.sqrt(1 - STRUCTURE_WEIGHT),
        _unit_rows(luma[:, 1:])], axis=1)


def _vectors(rgb: np.ndarray, value: np.ndarray, luma: np.ndarray) -> np.ndarray:
    """``(n, windows, 174)`` vectors of ``(n, 64, 64, 3)`` thumbnails (and their
    rank-equalised value and luma), per crop window three unit vectors:

    - the structure of its value (the largest of R, G and B), 63 DCT coefficients, which a
      change of hue leaves as it is;
    - its colour layout (a 4 x 4 grid of RGB less its mean);
    - the structure of its luma (the grey a greyscale copy has), 63 DCT coefficients.

    The first two are scaled so that their dot product weighs them as
    :data:`STRUCTURE_WEIGHT` says (colour images are compared on them); the third is for
    comparisons with grey images."""
    dct_rows, dct_cols, col_rows, col_cols = _projections(_WINDOWS)
    n, count = len(rgb), len(_WINDOWS)
    # Resample each window and take its DCT, and its colour grid: separable maps.
    structures = [_separable(ranks, dct_rows, dct_cols).reshape(n * count, -1)
                  for ranks in (value, luma)]
    channels = rgb.transpose(0, 3, 1, 2).reshape(n * 3, _THUMB, _THUMB)
    colour = _separable(channels, col_rows, col_cols).reshape(n, 3, count, _COLOUR, _COLOUR)
    joined = _joined(structures[0],
                     colour.transpose(0, 2, 3, 4, 1).reshape(n * count, _COLOUR, _COLOUR, 3),
                     structures[1])
    return joined.reshape(n, count, -1)


def _separable(planes: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``rows[w] @ plane @ cols[w].T`` for each of ``(n, h, w)`` planes and each window:
    ``(n, windows, r, s)``, as two large matrix products (not n x windows small ones)."""
    n, height, width = planes.shape
    count, r, _ = rows.shape
    s = cols.shape[1]
    across = planes.reshape(n * height, width) @ cols.reshape(count * s, width).T
    across = across.reshape(n, height, count, s).transpose(2, 1, 0, 3).reshape(
        count, height, n * s)
    return np.asarray((rows @ across).reshape(count, r, n, s).transpose(2, 0, 1, 3))


@functools.cache
def _turn_operators() -> tuple[np.ndarray, np.ndarray]:
    """``(2, 64, 4096)`` and ``(2, 16, 4096)``: the DCT and the colour grid of the centre of
    the 64 x 64 thumbnail turned by +4 and -4 degrees (bilinear), as linear maps of the
    thumbnail's pixels. Turning the rank-equalised levels is turning the image, to the
    rounding of the interpolation."""
    dct_rows, dct_cols, col_rows, col_cols = _projections((_TURNED_WINDOW,))
    dct = np.einsum("uy,vx->uvyx", dct_rows[0], dct_cols[0]).reshape(_KEEP * _KEEP, -1)
    grid = np.einsum("ry,sx->rsyx", col_rows[0], col_cols[0]).reshape(_COLOUR * _COLOUR, -1)
    centre = (_THUMB - 1) / 2
    y, x = (a.ravel() - centre for a in np.mgrid[0:_THUMB, 0:_THUMB].astype(np.float64))
    turned_dct, turned_grid = [], []
    for angle in (_TURN, -_TURN):
        cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        # Each output pixel reads the input where the turn sends it back.
        sy, sx = cos * y + sin * x + centre, -sin * y + cos * x + centre
        y0, x0 = np.floor(sy).astype(np.int64), np.floor(sx).astype(np.int64)
        fy, fx = sy - y0, sx - x0
        maps = [np.zeros_like(dct), np.zeros_like(grid)]
        for dy, dx, w in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                          (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
            yy, xx = y0 + dy, x0 + dx
            inside = (yy >= 0) & (yy < _THUMB) & (xx >= 0) & (xx < _THUMB)
            source = (yy * _THUMB + xx)[inside]
            for turned_map, plain in zip(maps, (dct, grid)):
                np.add.at(turned_map.T, source, (plain[:, inside] * w[inside]).T)
        turned_dct.append(maps[0])
        turned_grid.append(maps[1])
    return (np.stack(turned_dct).astype(np.float32), np.stack(turned_grid).astype(np.float32))


def _turned_vectors(rgb: np.ndarray, value: np.ndarray, luma: np.ndarray) -> np.ndarray:
    """``(n, 2, 174)``: the vectors of each thumbnail's centre turned by +4 and by -4
    degrees."""
    dct, grid = _turn_operators()
    n = len(rgb)
    flat_dct = dct.reshape(-1, _THUMB * _THUMB).T
    structures = [(ranks.reshape(n, -1) @ flat_dct).reshape(n * 2, -1)
                  for ranks in (value, luma)]  # (n x 2, 64) each
    channels = rgb.reshape(n, -1, 3).transpose(0, 2, 1).reshape(n * 3, -1)
    colour = (channels @ grid.reshape(-1, _THUMB * _THUMB).T).reshape(n, 3, 2, -1)
    colour = colour.transpose(0, 2, 3, 1).reshape(n * 2, _COLOUR, _COLOUR, 3)
    return _joined(structures[0], colour, structures[1]).reshape(n, 2, -1)


def _border_band(lines: np.ndarray) -> tuple[int, np.ndarray]:
    """How many of ``lines`` (``(n, length, 3)`` ``int16``, from the edge inwards) are a
    uniform border: nearly all their pixels within a few grey levels of the edge's mean
    colour; and that colour. The first two lines decide most photos at once."""
    reference = lines[0].mean(axis=0)

    def uniform(part: np.ndarray) -> np.ndarray:
        off = np.abs(part - reference)
        close = np.maximum(np.maximum(off[..., 0], off[..., 1]), off[..., 2])
        return np.asarray((close <= _BORDER_TOLERANCE).mean(axis=1) >= 0.98)

    if len(lines) < 2 or not uniform(lines[:2]).all():
        return 0, reference
    flat = uniform(lines)
    return (len(flat) if flat.all() else int(np.argmin(flat))), reference


def _trim_borders(small: np.ndarray) -> tuple[np.ndarray, float]:
    """``small`` without uniform bars along two opposite edges (letterboxing, pillarboxing,
    a frame; at most 30% of a side each), and the share of its area that was cut. A plain
    band along one edge only (a sky, a wall) is part of the photo and kept."""
    height, width = small.shape[:2]
    if min(height, width) < 16:
        return small, 0.0
    pixels = small.astype(np.int16)
    rows, cols = int(height * _BORDER_MOST), int(width * _BORDER_MOST)
    across = pixels.transpose(1, 0, 2)
    cuts = []
    for lines, limit in ((pixels, rows), (across, cols)):
        (first, colour), (last, other) = (_border_band(lines[:limit]),
                                          _border_band(lines[::-1][:limit]))
        bars = first and last and np.abs(colour - other).max() <= 2 * _BORDER_TOLERANCE
        cuts.append((first, last) if bars else (0, 0))
    (top, bottom), (left, right) = cuts
    if not top + bottom + left + right:
        return small, 0.0
    kept = small[top:height - bottom, left:width - right]
    return kept, 1.0 - kept.shape[0] * kept.shape[1] / (height * width)


#: Variance the Laplacian of the grey levels gets from rounding each channel to an integer
#: alone (20 x the rounding variance 1/12 of the luminance mix): not detail, so taken off.
_ROUNDING_VARIANCE = 20 * (0.299**2 + 0.587**2 + 0.114**2) / 12


def _colour_spread(rgb: np.ndarray) -> float:
    """Mean of max(R, G, B) - min(R, G, B) over the pixels, 0-1 (channel by channel: numpy
    reduces a last axis of 3 slowly)."""
    r, g, b = (rgb[..., i].astype(np.int16) for i in range(3))
    spread = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)
    return float(spread.mean()) / 255


def _measures(small: np.ndarray, thumb: np.ndarray, size: tuple[int, int]) -> ImageMeasures:
    g = small.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    grey = np.clip(np.rint(g), 0, 255).astype(np.uint8)
    counts = np.bincount(grey.ravel(), minlength=256)
    cumulative = np.cumsum(counts) / grey.size
    shares = counts[counts > 0] / grey.size
    spread = float(g.std())
    if min(g.shape) >= 3 and spread > 1e-3:
        laplacian = (4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2]
                     - g[1:-1, 2:])
        detail = max(0.0, float(laplacian.var()) - _ROUNDING_VARIANCE)
        sharpness = math.sqrt(detail) / spread
    else:
        sharpness = 0.0
    return ImageMeasures(
        width=int(size[0]),
        height=int(size[1]),
        highlights=float(np.searchsorted(cumulative, 0.95)) / 255,
        shadows=float(np.searchsorted(cumulative, 0.05)) / 255,
        information=max(0.0, float(-(shares * np.log2(shares)).sum()) / 8),
        sharpness=round(sharpness, 6),
        colourfulness=_colour_spread(thumb),
    )


def _checksum(data: Any, prefix: bytes) -> bytes:
    """A fast key for exact equality: the CRC-32 after ``prefix`` (the length or shape).
    Equal keys are confirmed by equal fingerprint vectors (to their rounding) before two files
    are called exact duplicates (:func:`_exact_key`), so a checksum collision alone cannot
    pass."""
    return prefix + zlib.crc32(data).to_bytes(4, "little")


@dataclasses.dataclass(frozen=True)
class Sketch:
    """What a :class:`Fingerprint` needs of one decoded image, before its vectors: made image
    by image (:func:`sketch`, in the check's threads), then turned into fingerprints in
    batches (:func:`fingerprints`), where the vectors' matrix products are shared."""

    digest: bytes  #: see :class:`Fingerprint`
    pixels: bytes | None  #: see :class:`Fingerprint`
    content: np.ndarray  #: ``(64, 64, 3)`` ``uint8`` thumbnail of the image less its border
    measures: ImageMeasures  #: see :class:`Fingerprint`
    file_size: int  #: see :class:`Fingerprint`
    mtime_ns: int  #: see :class:`Fingerprint`
    border: float  #: see :class:`Fingerprint`


def sketch(data: bytes, image: np.ndarray, *, size: tuple[int, int] | None = None,
           full_scale: bool = True, file_size: int = 0, mtime_ns: int = 0) -> Sketch:
    """The :class:`Sketch` of a decoded image; see :func:`fingerprint` for the parameters.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((40, 60, 3), np.uint8)
    >>> drawn = sketch(b"bytes", image)
    >>> drawn.content.shape, drawn.measures.width, drawn.measures.height
    ((64, 64, 3), 60, 40)
    """
    from PIL import Image

    height, width = image.shape[:2]
    picture = Image.fromarray(np.ascontiguousarray(image))
    if max(height, width) > MEASURE_SIDE:  # box averaging by a whole factor: the fastest
        picture = picture.reduce(math.ceil(max(height, width) / MEASURE_SIDE))
    small = np.asarray(picture)
    thumb = np.asarray(picture.resize((_THUMB, _THUMB), Image.Resampling.BOX))
    kept, border = _trim_borders(small)
    if border:
        picture = Image.fromarray(np.ascontiguousarray(kept))
    content = np.asarray(picture.resize((_THUMB, _THUMB), Image.Resampling.BOX)
                         ) if border else thumb
    pixels = None
    if full_scale:
        shape = b"px" + height.to_bytes(4, "little") + width.to_bytes(4, "little")
        pixels = _checksum(np.ascontiguousarray(image).data, shape)
    return Sketch(
        digest=_checksum(data, len(data).to_bytes(8, "little")),
        pixels=pixels,
        content=content,
        measures=_measures(small, thumb, size or (width, height)),
        file_size=file_size,
        mtime_ns=mtime_ns,
        border=round(border, 4),
    )


#: Images whose vectors are computed in one block (the last block of a call is padded with
#: blank images): the matrix products then have the same shapes whatever the images, so an
#: image's vectors are the same bits wherever it falls in a block and whichever images it is
#: computed with (one process's check and a check shared between workers agree exactly).
FINGERPRINT_BLOCK = 64


def fingerprints(sketches: Sequence[Sketch], *, out: np.ndarray | None = None
                 ) -> list[Fingerprint]:
    """The :class:`Fingerprint` of each sketch, their vectors computed together, in blocks
    of :data:`FINGERPRINT_BLOCK` images.

    ``out``: ``(len(sketches), WINDOW_COUNT, 174)`` ``float16`` rows to write the vectors to
    (each fingerprint's vectors are then a view of its row): the check keeps a folder's
    vectors in one array, which the duplicate search reads without a copy.

    Examples
    --------
    >>> import numpy as np
    >>> images = [np.full((40, 60, 3), level, np.uint8) for level in (0, 200)]
    >>> prints = fingerprints([sketch(b"%d" % i, image) for i, image in enumerate(images)])
    >>> [fp.vectors.shape == (WINDOW_COUNT, VECTOR_SIZE) for fp in prints]
    [True, True]
    """
    if not sketches:
        return []
    if out is None:
        out = np.empty((len(sketches), WINDOW_COUNT, VECTOR_SIZE), np.float16)
    rgb = np.zeros((FINGERPRINT_BLOCK, _THUMB, _THUMB, 3), np.float32)
    for start in range(0, len(sketches), FINGERPRINT_BLOCK):
        block = sketches[start:start + FINGERPRINT_BLOCK]
        rgb[:len(block)] = np.stack([s.content for s in block])
        rgb[len(block):] = 0
        value, luma = _levels(rgb)
        vectors = np.concatenate([_vectors(rgb, value, luma),
                                  _turned_vectors(rgb, value, luma)], axis=1)
        out[start:start + len(block)] = vectors[:len(block)]
    return [Fingerprint(digest=s.digest, pixels=s.pixels, vectors=v, measures=s.measures,
                        file_size=s.file_size, mtime_ns=s.mtime_ns, border=s.border)
            for s, v in zip(sketches, out)]


def fingerprint(data: bytes, image: np.ndarray, *, size: tuple[int, int] | None = None,
                full_scale: bool = True, file_size: int = 0, mtime_ns: int = 0) -> Fingerprint:
    """The :class:`Fingerprint` of a decoded image (for many, :func:`sketch` each and
    :func:`fingerprints` them together: one image costs a block of
    :data:`FINGERPRINT_BLOCK`, about as much as 64).

    Parameters
    ----------
    data : bytes
        The file's bytes.
    image : numpy.ndarray
        The decoded ``(height, width, 3)`` ``uint8`` image (at any scale).
    size : (width, height), optional
        The size stored in the file; default the decoded size.
    full_scale : bool, default=True
        False when the image was decoded at reduced scale: equal reduced pixels do not prove
        equal pixels, so no pixel digest is kept.
    file_size, mtime_ns : int
        The file's size and modification time when read.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((40, 60, 3), np.uint8)
    >>> fingerprint(b"bytes", image).measures.highlights
    0.0
    """
    return fingerprints([sketch(data, image, size=size, full_scale=full_scale,
                                file_size=file_size, mtime_ns=mtime_ns)])[0]


# --------------------------------------------------------------------------------------------
# Near pairs without an all-pairs table
# --------------------------------------------------------------------------------------------


#: The eight ways to lay a square on itself, as (transpose, mirror left-right, mirror
#: top-bottom); applied in that order.
_SYMMETRIES = tuple((t, h, v) for t in (False, True) for h in (False, True)
                    for v in (False, True))


def _symmetry_kind(index: int) -> str:
    """``same``, ``mirrored`` (an odd number of reflections) or ``rotated``."""
    reflections = sum(_SYMMETRIES[index])
    return "same" if not reflections else "mirrored" if reflections % 2 else "rotated"


@functools.cache
def _symmetry_matrices() -> np.ndarray:
    """``(8, 174, 174)``: the vector of an image turned or mirrored, from the vector of the
    image. On the DCT a mirror flips the sign of the odd frequencies across it and a
    transpose swaps the two axes; on the colour grid both are permutations of cells."""
    odd = (-1.0) ** np.arange(_KEEP)

    def turned(vector: np.ndarray, transpose: bool, h: bool, v: bool) -> np.ndarray:
        value, grid, luma = np.split(vector, [_STRUCTURE, _COLOURED])
        dcts = [np.concatenate([[0.0], part]).reshape(_KEEP, _KEEP) for part in (value, luma)]
        grid = grid.reshape(_COLOUR, _COLOUR, 3)
        if transpose:
            dcts, grid = [d.T for d in dcts], grid.transpose(1, 0, 2)
        if h:
            dcts, grid = [d * odd[None, :] for d in dcts], grid[:, ::-1]
        if v:
            dcts, grid = [d * odd[:, None] for d in dcts], grid[::-1]
        return np.concatenate([dcts[0].ravel()[1:], grid.ravel(), dcts[1].ravel()[1:]])

    basis = np.eye(_DIM)
    return np.stack([np.stack([turned(e, *g) for e in basis], axis=1)
                     for g in _SYMMETRIES]).astype(np.float32)


#: A near pair: distance, the symmetry (index of ``_SYMMETRIES``) that lays the query on the
#: other image, and the other image's window it matched.
_Match = tuple[float, int, int]

#: What two colour images are compared on, what the second look compares and what a grey
#: image is compared on (as the functions of those names take them).
_PARTS_COMPARED = {
    "value and colour": Part(np.arange(_COLOURED), np.ones(_COLOURED, np.float32)),
    "luma and colour": Part(np.r_[_COLOURED:_DIM, _STRUCTURE:_COLOURED],
                            np.r_[np.full(_STRUCTURE, math.sqrt(STRUCTURE_WEIGHT)),
                                  np.ones(_COLOURED - _STRUCTURE)].astype(np.float32)),
    "luma": Part(np.arange(_COLOURED, _DIM), np.ones(_STRUCTURE, np.float32)),
}


@functools.cache
def _poses() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The eight symmetries as (order, signs): a mirror or a transpose moves and negates."""
    return tuple(signed_permutation(m) for m in _symmetry_matrices())


def _near_pairs(queries: np.ndarray, index: np.ndarray, threshold: float,
                part: str = "value and colour", *, poses: int = len(_SYMMETRIES),
                skip_self: bool = False) -> dict[tuple[int, int], _Match]:
    """``{(query image, index image): (distance, symmetry, window)}`` where the whole query
    image, as it is or turned or mirrored, lies within ``threshold`` of the whole index
    image or of one of its windows; the closest such match of each pair.

    ``queries`` is ``(n, dim)`` (whole images), ``index`` is ``(m, windows, dim)``; both are
    compared on ``part`` (a key of ``_PARTS_COMPARED``); ``poses``: the first that many of
    the eight ways to lay the query on the index image (1: as it is); ``skip_self`` leaves
    out query ``i`` with index image ``i``. :func:`fruitclf.data.nearpairs.near_pairs`
    searches: every pair of a small search, hashed keys for a large one.
    """
    windows = index.shape[1] if index.ndim == 3 else 1
    shares = _WINDOW_SHARES if windows == WINDOW_COUNT else np.ones(windows, np.float32)
    query, col, pose, distance = near_pairs(
        queries, index, threshold * shares, _PARTS_COMPARED[part], _poses()[:poses],
        skip_self=skip_self)
    if not len(query):
        return {}
    key = query * len(index) + col // windows
    order = np.lexsort((distance, key))  # by pair, the closest match first
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[order][1:] != key[order][:-1]
    chosen = order[first]
    return {(int(query[i]), int(col[i] // windows)):
            (float(distance[i]), int(pose[i]), int(col[i] % windows)) for i in chosen}


def _pairs_both_ways(queries: Sequence[Fingerprint], index: Sequence[Fingerprint],
                     threshold: float, *, same: bool = False) -> dict[tuple[int, int], _Match]:
    """Near pairs of each query with each index image: two colour images on value or luma
    structure with colour layout (the closer), any pair with a grey image on luma
    structure alone under :data:`GREY_SHARE` of the threshold. ``same``: the queries are
    the index, and no image is paired with itself."""
    if not queries or not index:
        return {}
    whole = _whole_vectors(queries)
    windows = _stacked([fp.vectors for fp in index])
    grey_queries = [i for i, fp in enumerate(queries) if fp.grey]
    grey_index = [i for i, fp in enumerate(index) if fp.grey]
    grey = set(grey_queries), set(grey_index)
    # The colour half of a grey image is its brightness layout again: such pairs are
    # measured below, on structure alone, under the stricter threshold.
    found: dict[tuple[int, int], _Match] = {}

    def keep(pairs: dict[tuple[int, int], _Match], rows: Sequence[int] | None = None,
             cols: Sequence[int] | None = None) -> None:
        for (q, i), match in pairs.items():
            pair = (rows[q] if rows else q, cols[i] if cols else i)
            if pair not in found or match[0] < found[pair][0]:
                found[pair] = match

    # The second look (luma) is for brightened or overexposed copies, as they are: the
    # mirrored and turned poses are left to the first, which costs eight times as much.
    for part, poses in (("value and colour", len(_SYMMETRIES)), ("luma and colour", 1)):
        near = _near_pairs(whole, windows, threshold, part, poses=poses, skip_self=same)
        keep({pair: match for pair, match in near.items()
              if pair[0] not in grey[0] and pair[1] not in grey[1]})
    searches = []
    if grey_queries:
        searches.append((grey_queries, list(range(len(index)))))
    if grey_index:
        searches.append((list(range(len(queries))), grey_index))
    for rows, cols in searches:  # (overlapping where both are grey: the closer is kept)
        keep(_near_pairs(whole[rows], windows[cols], threshold * GREY_SHARE, "luma"),
             rows, cols)
    return found


def _stacked(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """``np.stack(arrays)``, without the copy when they are consecutive rows of one array
    (the check keeps a folder's fingerprint vectors so): a view of those rows; rows of one
    array in another order are read in the order they lie in it (:func:`_mapped.gather`)."""
    found = _rows_of(arrays)
    if found is None:
        return np.stack(arrays)
    rows, index = found
    return rows[index[0]:index[0] + len(index)] if _consecutive(index) else gather(rows, index)


def _whole_vectors(prints: Sequence[Fingerprint]) -> np.ndarray:
    """``(len(prints), 174)``: the whole-image vector of each print; a view of the check's
    array when the prints are its rows in order (read from it in its order when they are
    its rows in another)."""
    if not prints:
        return np.zeros((0, VECTOR_SIZE), np.float16)
    found = _rows_of([fp.vectors for fp in prints])
    if found is None:
        return np.stack([fp.vectors[0] for fp in prints])
    rows, index = found
    if _consecutive(index):
        return rows[index[0]:index[0] + len(index), 0]
    return gather(rows[:, 0], index)


def _consecutive(index: np.ndarray) -> bool:
    return bool(len(index)) and bool(np.all(np.diff(index) == 1))


def _rows_of(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """``(rows, index)`` with ``arrays[i]`` the row ``rows[index[i]]`` when the arrays are
    all rows of one array (as the check's fingerprint vectors are), else None."""
    if not len(arrays):
        return None
    first, base = arrays[0], arrays[0].base
    if (base is None or not isinstance(base, np.ndarray) or first.nbytes == 0
            or not (first.flags.c_contiguous and base.flags.c_contiguous)):
        return None
    if not all(a.base is base and a.shape == first.shape and a.dtype == first.dtype
               for a in arrays):
        return None
    starts = np.fromiter((a.__array_interface__["data"][0] for a in arrays), np.int64,
                         len(arrays)) - base.__array_interface__["data"][0]
    size = first.nbytes
    if starts.min() < 0 or starts.max() + size > base.nbytes or np.any(starts % size):
        return None
    rows: np.ndarray = np.ndarray((base.nbytes // size, *first.shape), first.dtype,
                                  buffer=base)
    return rows, starts // size


def _kind(a: Fingerprint, b: Fingerprint, match: _Match) -> str:
    """What turns one image of a near pair into the other (either way round), as far as
    the fingerprints tell: ``grayscale``, ``mirrored``, ``rotated``, ``bordered``,
    ``cropped``, ``resized`` or ``near`` (re-encoded, brightened, recoloured, retouched)."""
    _, symmetry, window = match
    if a.grey != b.grey:
        return "grayscale"
    turn = _symmetry_kind(symmetry)
    if turn != "same":
        return turn
    if window >= len(_WINDOWS):
        return "rotated"
    if abs(a.border - b.border) > 0.03:
        return "bordered"
    (wa, ha), (wb, hb) = ((fp.measures.width, fp.measures.height) for fp in (a, b))
    if not (wa and ha and wb and hb):  # a model's index keeps no size
        return "cropped" if window else "near"
    if window or abs(math.log((wa * hb) / (ha * wb))) > 0.03:
        return "cropped"
    return "resized" if (wa, ha) != (wb, hb) else "near"


# --------------------------------------------------------------------------------------------
# Duplicates and leakage
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DuplicateGroup:
    """Files that hold the same photo.

    Attributes
    ----------
    paths : list of str
        The files, sorted by relative path.
    relpaths : list of str
        The same files relative to the dataset root, with ``/`` separators.
    kind : str
        How the copies differ: ``exact`` (the same bytes or the same pixels), ``resized``,
        ``cropped``, ``bordered`` (bars or a frame added or cut), ``mirrored``, ``rotated``
        (a quarter or half turn, or a few degrees), ``grayscale`` (a grey copy of a colour
        photo), or ``near`` (re-compressed, converted, brightened, recoloured, retouched,
        or copies that differ in more than one of these ways).
    distance : float
        The largest fingerprint distance that links the group (0 for exact duplicates).
    classes : list of str
        The class of each file; more than one class means a label conflict.

    Examples
    --------
    >>> [(g.kind, g.relpaths) for g in ds.find_duplicates()]  # doctest: +SKIP
    [('exact', ['acai/01.jpg', 'acai/01 copy.jpg'])]
    """

    paths: list[str]
    relpaths: list[str]
    kind: str
    distance: float
    classes: list[str]

    @property
    def conflicting(self) -> bool:
        """True when the copies are filed under different classes."""
        return len(set(self.classes)) > 1

    def to_dict(self) -> dict[str, Any]:
        """``{"paths": [relative paths], "kind", "distance", "classes"}``."""
        return {"paths": list(self.relpaths), "kind": self.kind,
                "distance": round(self.distance, 4), "classes": list(self.classes)}


@dataclasses.dataclass(frozen=True)
class LeakedPair:
    """A test image whose twin is in the training folder.

    Attributes
    ----------
    path, relpath : str
        The training image (relative to the training root for ``relpath``).
    test_path, test_relpath : str
        The test image (relative to the test root for ``test_relpath``).
    kind : str
        As for :class:`DuplicateGroup`: ``exact``, ``resized``, ``cropped``, ``bordered``,
        ``mirrored``, ``rotated``, ``grayscale`` or ``near``.
    distance : float
        Fingerprint distance (0 for exact).

    Examples
    --------
    >>> [(p.relpath, p.test_relpath) for p in train.find_leakage(test)]  # doctest: +SKIP
    [('acai/01.jpg', 'acai/t07.png')]
    """

    path: str
    relpath: str
    test_path: str
    test_relpath: str
    kind: str
    distance: float

    def to_dict(self) -> dict[str, Any]:
        """``{"path", "test_path", "kind", "distance"}`` with paths relative to each root."""
        return {"path": self.relpath, "test_path": self.test_relpath, "kind": self.kind,
                "distance": round(self.distance, 4)}


#: How far two fingerprint vectors of the same pixels may differ, number by number: two
#: float16 steps near 1 (vectors computed in different batches round differently).
_SAME_PIXELS_TOLERANCE = 2e-3


def _exact_key(a: Fingerprint, b: Fingerprint) -> bool:
    """Same bytes or same pixels: equal checksums, and fingerprint vectors equal to their
    rounding (a checksum collision between two different images could not pass)."""
    same = a.digest == b.digest or (a.pixels is not None and a.pixels == b.pixels)
    return same and bool(np.allclose(a.vectors, b.vectors, rtol=0.0,
                                     atol=_SAME_PIXELS_TOLERANCE))


def _by_checksum(prints: Sequence[Fingerprint]) -> dict[bytes, list[int]]:
    """Indices of ``prints`` by each of their checksums (bytes, and pixels when known)."""
    index: dict[bytes, list[int]] = {}
    for i, fp in enumerate(prints):
        for key in (fp.digest, fp.pixels):
            if key is not None:
                index.setdefault(key, []).append(i)
    return index


def _sharing_checksum(fp: Fingerprint, index: dict[bytes, list[int]]) -> set[int]:
    """Indices (in :func:`_by_checksum`'s ``index``) of the prints that share a checksum
    with ``fp``: the only candidates for its exact twins."""
    return {i for key in (fp.digest, fp.pixels) if key is not None
            for i in index.get(key, [])}


def _exact_twins(fp: Fingerprint, prints: Sequence[Fingerprint],
                 index: dict[bytes, list[int]]) -> set[int]:
    """Indices of the ``prints`` (indexed by :func:`_by_checksum`) exactly equal to ``fp``."""
    return {i for i in _sharing_checksum(fp, index) if _exact_key(prints[i], fp)}


def _exact_links(prints: Sequence[Fingerprint]) -> list[tuple[int, int]]:
    """Each image linked to the first earlier image it exactly equals (enough for groups);
    only images that share a checksum with an earlier one are compared."""
    index = _by_checksum(prints)
    links = []
    for j, fp in enumerate(prints):
        earlier = sorted(i for i in _sharing_checksum(fp, index) if i < j)
        first = next((i for i in earlier if _exact_key(prints[i], fp)), None)
        if first is not None:
            links.append((first, j))
    return links


def median_pair_distance(vectors: np.ndarray, *, pairs: int = 20_000) -> float:
    """Median distance between two different images (whole-image vectors), estimated on up
    to ``pairs`` random pairs: on what two colour images are compared on when the vectors
    are fingerprints, on the whole vectors otherwise."""
    if len(vectors) < 2:
        return 1.0
    rng = np.random.default_rng(0)
    first = rng.integers(0, len(vectors), pairs)
    second = (first + rng.integers(1, len(vectors), pairs)) % len(vectors)
    a, b = (np.asarray(gather(vectors, i), np.float32) for i in (first, second))
    if vectors.shape[-1] == _DIM:
        part = _PARTS_COMPARED["value and colour"]
        a, b = part(a), part(b)
    return float(np.median(1.0 - np.einsum("ij,ij->i", a, b)))


def resolve_threshold(threshold: float | None, vectors: np.ndarray) -> float:
    """``threshold`` checked, or the default for these whole-image vectors:
    :data:`~fruitclf.data.quality.NEAR_DUPLICATE_THRESHOLD`, scaled down by the cube of the
    median distance between two images over :data:`~fruitclf.data.quality.SPREAD_REFERENCE`
    when that is below 1.

    Examples
    --------
    >>> import numpy as np
    >>> resolve_threshold(None, np.eye(4, dtype=np.float32)) == NEAR_DUPLICATE_THRESHOLD
    True
    >>> resolve_threshold(0.01, np.eye(4, dtype=np.float32))
    0.01
    """
    from .._validation import check_float

    if threshold is None:
        spread = min(1.0, median_pair_distance(vectors) / SPREAD_REFERENCE)
        return NEAR_DUPLICATE_THRESHOLD * spread**3
    return check_float(threshold, "threshold", min_value=0.0, max_value=1.0,
                       hint=f"The default is at most {NEAR_DUPLICATE_THRESHOLD}")


def find_duplicates(
    items: Sequence[tuple[str, str, str]],
    prints: Sequence[Fingerprint],
    *,
    threshold: float | None = None,
) -> list[DuplicateGroup]:
    """Groups of exact and near duplicates among ``items`` (``(path, relpath, class)``).

    See :meth:`~fruitclf.ImageFolderDataset.find_duplicates`.
    """
    whole = _whole_vectors(prints)
    threshold = resolve_threshold(threshold, whole)
    parent = list(range(len(items)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    links = [(a, b, 0.0, "exact") for a, b in _exact_links(prints)]
    closest: dict[tuple[int, int], _Match] = {}
    for (a, b), match in _pairs_both_ways(prints, prints, threshold, same=True).items():
        pair = (min(a, b), max(a, b))  # each pair is found from both sides: the closer
        if a != b and (pair not in closest or match[0] < closest[pair][0]):
            closest[pair] = match
    links += [(a, b, m[0], _kind(prints[a], prints[b], m)) for (a, b), m in closest.items()]
    for a, b, _, _ in links:
        parent[root(a)] = root(b)
    widest: dict[int, float] = {}
    kinds: dict[int, set[str]] = {}
    for a, _, d, kind in links:
        r = root(a)
        widest[r] = max(widest.get(r, 0.0), d)
        kinds.setdefault(r, set()).add(kind)
    members: dict[int, list[int]] = {}
    for i in range(len(items)):
        members.setdefault(root(i), []).append(i)
    groups = []
    for r, idx in members.items():
        if len(idx) < 2:
            continue
        idx.sort(key=lambda i: items[i][1])
        all_exact = all(_exact_key(prints[idx[0]], prints[i]) for i in idx[1:])
        # A group joined by exact links and one kind of near link is of that kind.
        near_kinds = kinds.get(r, set()) - {"exact"}
        kind = ("exact" if all_exact else near_kinds.pop() if len(near_kinds) == 1
                else "near")
        groups.append(DuplicateGroup(
            paths=[items[i][0] for i in idx], relpaths=[items[i][1] for i in idx],
            kind=kind, distance=0.0 if all_exact else round(widest.get(r, 0.0), 6),
            classes=[items[i][2] for i in idx],
        ))
    Pages(whole).release()  # what the links read of vectors kept in a file
    return sorted(groups, key=lambda g: g.relpaths[0])


def find_leakage(
    train: Sequence[tuple[str, str]],
    train_prints: Sequence[Fingerprint],
    test: Sequence[tuple[str, str]],
    test_prints: Sequence[Fingerprint],
    *,
    threshold: float | None = None,
) -> list[LeakedPair]:
    """Pairs of a training and a test image that hold the same photo.

    ``train`` and ``test`` are ``(path, relpath)`` pairs. See
    :meth:`~fruitclf.ImageFolderDataset.find_leakage`.
    """
    both = np.concatenate([copy(_whole_vectors(p), np.float16)
                           for p in (train_prints, test_prints)])
    threshold = resolve_threshold(threshold, both)
    index = _by_checksum(train_prints)
    pairs: dict[tuple[int, int], tuple[str, float]] = {
        (i, j): ("exact", 0.0)
        for j, fp in enumerate(test_prints) for i in _exact_twins(fp, train_prints, index)}
    near = [((i, j), m) for (j, i), m in
            _pairs_both_ways(test_prints, train_prints, threshold).items()]
    near += list(_pairs_both_ways(train_prints, test_prints, threshold).items())
    for (i, j), match in sorted(near, key=lambda item: item[1][0]):  # the closer side
        pairs.setdefault((i, j), (_kind(train_prints[i], test_prints[j], match), match[0]))
    out = [
        LeakedPair(train[i][0], train[i][1], test[j][0], test[j][1], kind, round(d, 6))
        for (i, j), (kind, d) in pairs.items()
    ]
    return sorted(out, key=lambda p: (p.test_relpath, p.relpath))


# --------------------------------------------------------------------------------------------
# A model's index of its training images
# --------------------------------------------------------------------------------------------

#: Bits per number of the three whole-image vectors in a :class:`FingerprintIndex`: value
#: structure, colour layout, luma structure. Each vector is scaled to its largest number
#: and companded (the 0.6th power of the magnitude keeps the many small coefficients
#: apart); the scale is dropped, the vectors are unit vectors again when read. Measured on
#: flowers12, the distance between a vector and its stored form is 0.0016 (median) at 5
#: bits and 0.0075 at 4; a colour pair's distance moves by about 0.002.
_INDEX_BITS = (5, 4, 4)
_COMPANDING = 0.6
#: Bytes per image of a :class:`FingerprintIndex`: 3 of the file's CRC-32 (the same file
#: is also the same numbers), 1 of colourfulness, and 95 of whole-image vectors.
INDEX_RECORD_BYTES = 99
_INDEX_FORMAT = "fruitclf-fingerprints"
_PARTS = ((0, _STRUCTURE), (_STRUCTURE, _COLOURED), (_COLOURED, _DIM))
_PART_NORMS = (math.sqrt(STRUCTURE_WEIGHT), math.sqrt(1 - STRUCTURE_WEIGHT), 1.0)
_CODE_BITS = np.repeat(_INDEX_BITS, [b - a for a, b in _PARTS])  # per number


def _encode(whole: np.ndarray) -> bytes:
    """The 95 bytes of a whole-image vector: each part scaled, companded, rounded to
    ``2 ** (bits - 1) - 1`` levels either side of 0, offset to be positive, bit-packed."""
    codes = []
    for (a, b), width in zip(_PARTS, _INDEX_BITS):
        part = whole[a:b]
        levels = 2 ** (width - 1) - 1
        scaled = np.abs(part) / (float(np.abs(part).max()) or 1.0)
        codes.append(np.rint(np.sign(part) * scaled**_COMPANDING * levels) + levels + 1)
    code = np.concatenate(codes).astype(np.int64)
    shifts = np.arange(_CODE_BITS.max() - 1, -1, -1)
    bits = (code[:, None] >> shifts[None, :]) & 1
    keep = shifts[None, :] < _CODE_BITS[:, None]  # each number's own width
    return np.packbits(bits[keep].astype(np.uint8)).tobytes()


def _decode(data: np.ndarray) -> np.ndarray:
    """The whole-image vectors that :func:`_encode` stored, from ``(n, 95)`` bytes."""
    bits = np.unpackbits(data, axis=1)
    parts, start = [], 0
    for (a, b), width, norm in zip(_PARTS, _INDEX_BITS, _PART_NORMS):
        size = (b - a) * width
        groups = bits[:, start:start + size].reshape(len(data), b - a, width)
        code = groups.astype(np.int64) @ (1 << np.arange(width - 1, -1, -1))
        start += size
        levels = 2 ** (width - 1) - 1
        q = code.astype(np.float32) - levels - 1
        value = np.sign(q) * (np.abs(q) / levels) ** (1 / _COMPANDING)
        parts.append(_unit_rows(value) * norm)
    return np.concatenate(parts, axis=1)


@dataclasses.dataclass(frozen=True, eq=False)
class FingerprintIndex:
    """Compact whole-image fingerprints of a model's training images,
    :data:`INDEX_RECORD_BYTES` bytes each.

    :func:`fruitclf.run` stores one in the model files it writes, so that
    :meth:`fruitclf.LoadedModel.find_leakage` and ``fruitclf evaluate`` find the test images
    a model was trained on without its training folder. Only the whole image is kept (not
    the crop windows): copies are found exact, resized, re-encoded, recoloured, mirrored,
    turned, grey, or cropped from the test image; a test image that is a crop of more than
    a few percent of a training image is found by ``train --test`` and ``scan --test``,
    which see the training folder, but not from the index. No file name is kept.

    Attributes
    ----------
    records : bytes
        ``len(self) * INDEX_RECORD_BYTES`` bytes.

    Examples
    --------
    >>> index = ds.fingerprint_index()  # doctest: +SKIP
    >>> len(index), len(index.records) // len(index)  # doctest: +SKIP
    (90, 99)
    """

    records: bytes

    def __post_init__(self) -> None:
        if len(self.records) % INDEX_RECORD_BYTES:
            raise ValueError(f"A fingerprint index holds {INDEX_RECORD_BYTES}-byte records; "
                             f"received {len(self.records)} bytes.")

    def __len__(self) -> int:
        return len(self.records) // INDEX_RECORD_BYTES

    @classmethod
    def from_prints(cls, prints: Iterable[Fingerprint]) -> FingerprintIndex:
        """The index of these fingerprints (their whole-image vectors)."""
        records = bytearray()
        prints = list(prints)
        whole = copy(_whole_vectors(prints), np.float32)  # in the order they lie in a file
        for fp, vector in zip(prints, whole):
            records += fp.digest[-3:]
            records.append(min(255, round(fp.measures.colourfulness * 255)))
            records += _encode(vector)
        return cls(bytes(records))

    def prints(self) -> list[Fingerprint]:
        """The fingerprints as far as the index keeps them: one vector (the whole image),
        3 bytes of the CRC-32 as ``digest``, no size and no pixel digest."""
        table = np.frombuffer(self.records, np.uint8).reshape(len(self), INDEX_RECORD_BYTES)
        wholes = _decode(table[:, 4:]).astype(np.float16)
        return [Fingerprint(digest=bytes(row[:3]), pixels=None, vectors=whole[None],
                            measures=ImageMeasures(0, 0, 0.0, 0.0, 0.0, 0.0, row[3] / 255))
                for row, whole in zip(table, wholes)]

    def to_dict(self) -> dict[str, Any]:
        """``{"format", "version", "count", "bytes_per_image", "data"}`` (``data``: the
        records in base64), as a model's metadata stores it."""
        import base64

        return {"format": _INDEX_FORMAT, "version": 1, "count": len(self),
                "bytes_per_image": INDEX_RECORD_BYTES,
                "data": base64.b64encode(self.records).decode("ascii")}

    @classmethod
    def from_dict(cls, payload: Any) -> FingerprintIndex:
        """The index :meth:`to_dict` wrote; a ValueError names what is wrong otherwise."""
        import base64
        import binascii

        if not isinstance(payload, dict) or payload.get("format") != _INDEX_FORMAT:
            raise ValueError(f"not a fingerprint index (format {_INDEX_FORMAT!r})")
        if payload.get("version") != 1 or payload.get("bytes_per_image") != INDEX_RECORD_BYTES:
            raise ValueError(f"a fingerprint index of version {payload.get('version')!r}, "
                             f"{payload.get('bytes_per_image')!r} bytes an image; this "
                             f"fruitclf reads version 1, {INDEX_RECORD_BYTES} bytes")
        try:
            records = base64.b64decode(str(payload.get("data", "")), validate=True)
        except binascii.Error as exc:
            raise ValueError(f"a fingerprint index whose data is not base64 ({exc})") from None
        index = cls(records)
        if len(index) != payload.get("count"):
            raise ValueError(f"a fingerprint index of {len(index)} images that says "
                             f"{payload.get('count')!r}")
        return index


def find_index_leakage(
    index: FingerprintIndex,
    test: Sequence[tuple[str, str]],
    test_prints: Sequence[Fingerprint],
    *,
    threshold: float | None = None,
) -> list[LeakedPair]:
    """Test images (``(path, relpath)``) that are in a model's training index; see
    :meth:`fruitclf.LoadedModel.find_leakage`. The training side of each pair is unnamed
    (``path`` and ``relpath`` are ``""``)."""
    train_prints = index.prints()
    both = [fp.vectors[0] for fp in (*train_prints, *test_prints)]
    threshold = resolve_threshold(threshold, np.stack(both) if both else np.zeros((0, 1)))
    near = [((i, j), m) for (j, i), m in
            _pairs_both_ways(test_prints, train_prints, threshold).items()]
    near += list(_pairs_both_ways(train_prints, test_prints, threshold).items())
    found: dict[int, tuple[str, float]] = {}
    for (i, j), match in sorted(near, key=lambda item: item[1][0]):  # the closest first
        if j in found:
            continue
        # The same CRC-32 and the same whole-image numbers (to the index's precision).
        exact = train_prints[i].digest == test_prints[j].digest[-3:] and match[0] < 4e-3
        found[j] = (("exact", 0.0) if exact else
                    (_kind(train_prints[i], test_prints[j], match), match[0]))
    return sorted((LeakedPair("", "", test[j][0], test[j][1], kind, round(d, 6))
                   for j, (kind, d) in found.items()), key=lambda p: p.test_relpath)


# --------------------------------------------------------------------------------------------
# Quality flags
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class QualityThresholds:
    """When an image is flagged by :meth:`~fruitclf.ImageFolderDataset.quality_issues`.

    Each field is compared with a score of :class:`ImageMeasures`; the flag (and its score in
    reports) is named after the field. Set a field to None to turn its flag off.

    Attributes
    ----------
    dark : float or None, default=0.2
        ``dark`` when the brightest 5% of pixels are darker than this (0 black, 1 white).
    light : float or None, default=0.9
        ``light`` when the darkest 5% of pixels are brighter than this.
    low_information : float or None, default=0.45
        ``low_information`` when the grey-level entropy (bits / 8) is below this: a uniform
        or nearly uniform picture (a blank frame, a colour card). Photos measure 0.65-0.99.
    blurry : float or None, default=0.12
        ``blurry`` when the sharpness (fine detail relative to contrast, at 128 pixels a side)
        is below this. Photos in focus measure 0.3-1.5 (flowers12: none under 0.15); a
        Gaussian blur of 1.3% of the image width brings most under 0.1, of 2% all.
    grayscale : float or None, default=0.02
        ``grayscale`` when the mean colour spread is below this in a dataset where most
        images are in colour.
    aspect_ratio : float or None, default=3.0
        ``odd_aspect_ratio`` when the long side is more than this many times the short one.
    too_small : float or None, default=0.5
        ``too_small`` when a side is less than this share of the model input's side (it is
        enlarged more than twice).

    Examples
    --------
    >>> QualityThresholds(blurry=0.05).blurry
    0.05
    """

    dark: float | None = 0.2
    light: float | None = 0.9
    low_information: float | None = 0.45
    blurry: float | None = 0.12
    grayscale: float | None = 0.02
    aspect_ratio: float | None = 3.0
    too_small: float | None = 0.5

    def __post_init__(self) -> None:
        from .._validation import check_float

        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None:
                upper = None if field.name in ("aspect_ratio", "blurry") else 1.0
                check_float(value, field.name, min_value=0.0, max_value=upper)
        if self.aspect_ratio is not None and self.aspect_ratio < 1.0:
            raise ValueError(
                "`aspect_ratio` must be at least 1 (long side over short side). "
                f"Received: aspect_ratio={self.aspect_ratio!r}"
            )

    @classmethod
    def from_strings(cls, items: Iterable[str]) -> QualityThresholds:
        """Thresholds from ``NAME=VALUE`` strings (``VALUE`` may be ``none``), as the CLI's
        ``--threshold`` gives them.

        Examples
        --------
        >>> QualityThresholds.from_strings(["dark=0.1", "grayscale=none"]).grayscale is None
        True
        """
        names = [f.name for f in dataclasses.fields(cls)]
        values: dict[str, float | None] = {}
        for item in items:
            name, sep, value = item.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in names:
                raise ValueError(
                    f"A threshold must be NAME=VALUE with NAME one of {', '.join(names)}. "
                    f"Received: {item!r}"
                )
            try:
                values[name] = None if value.strip().lower() == "none" else float(value)
            except ValueError:
                raise ValueError(
                    f"The value of threshold {name!r} must be a number or none. "
                    f"Received: {item!r}"
                ) from None
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class QualityIssue:
    """An image that is probably not what the class needs.

    Attributes
    ----------
    path, relpath : str
        The file (``relpath`` relative to the dataset root).
    issue : str
        ``dark``, ``light``, ``low_information``, ``blurry``, ``grayscale``,
        ``odd_aspect_ratio`` or ``too_small``.
    score : float
        The measure compared (see :class:`QualityThresholds`).
    threshold : float
        The threshold it crossed.
    message : str
        The finding in words.

    Examples
    --------
    >>> [(q.relpath, q.issue) for q in ds.quality_issues()]  # doctest: +SKIP
    [('acai/night.jpg', 'dark')]
    """

    path: str
    relpath: str
    issue: str
    score: float
    threshold: float
    message: str

    def to_dict(self) -> dict[str, Any]:
        """``{"path", "issue", "score", "threshold"}`` with the path relative to the root."""
        return {"path": self.relpath, "issue": self.issue, "score": round(self.score, 4),
                "threshold": self.threshold}


def _flags(m: ImageMeasures, t: QualityThresholds, image_size: tuple[int, int] | None,
           colour_dataset: bool) -> list[tuple[str, float, float, str]]:
    found: list[tuple[str, float, float, str]] = []
    if t.dark is not None and m.highlights < t.dark:
        found.append(("dark", m.highlights, t.dark, "very dark"))
    if t.light is not None and m.shadows > t.light:
        found.append(("light", m.shadows, t.light, "very bright"))
    uniform = t.low_information is not None and m.information < t.low_information
    if uniform and t.low_information is not None:
        found.append(("low_information", m.information, t.low_information,
                      "nearly uniform (little to learn from)"))
    if t.blurry is not None and not uniform and m.sharpness < t.blurry:
        found.append(("blurry", m.sharpness, t.blurry, "blurry"))
    if (t.grayscale is not None and colour_dataset and not uniform
            and m.colourfulness < t.grayscale):
        found.append(("grayscale", m.colourfulness, t.grayscale,
                      "greyscale in a colour dataset"))
    ratio = max(m.width, m.height) / max(1, min(m.width, m.height))
    if t.aspect_ratio is not None and ratio > t.aspect_ratio:
        found.append(("odd_aspect_ratio", ratio, t.aspect_ratio,
                      f"aspect ratio {ratio:.1f}:1 (squeezed to the model's shape)"))
    if t.too_small is not None and image_size is not None:
        share = min(m.height / image_size[0], m.width / image_size[1])
        if share < t.too_small:
            found.append(("too_small", share, t.too_small,
                          f"{m.width}x{m.height} pixels, enlarged {1 / share:.1f} times to the "
                          f"model input {image_size[1]}x{image_size[0]}"))
    return found


def quality_issues(
    items: Sequence[tuple[str, str]],
    prints: Sequence[Fingerprint],
    *,
    thresholds: QualityThresholds | None = None,
    image_size: tuple[int, int] | None = None,
) -> list[QualityIssue]:
    """The quality flags of ``items`` (``(path, relpath)``); see
    :meth:`~fruitclf.ImageFolderDataset.quality_issues`."""
    thresholds = thresholds or QualityThresholds()
    colourful = [fp.measures.colourfulness for fp in prints]
    colour_dataset = bool(colourful) and thresholds.grayscale is not None and (
        float(np.median(colourful)) >= 2 * thresholds.grayscale)
    issues = [
        QualityIssue(path, relpath, name, float(score), float(limit), message)
        for (path, relpath), fp in zip(items, prints)
        for name, score, limit, message in _flags(fp.measures, thresholds, image_size,
                                                  colour_dataset)
    ]
    return sorted(issues, key=lambda q: (q.relpath, q.issue))
