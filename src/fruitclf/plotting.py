"""Every figure fruitclf draws.

Functions return a :class:`matplotlib.figure.Figure` built without ``pyplot`` (so nothing is
shown, and no global figure state is left behind); a notebook displays the returned figure
inline. Save one with ``fig.savefig("file.png")``. Functions that draw a single plot accept
``ax=`` to draw into an existing axes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
from matplotlib.figure import Figure

from ._arrays import row_shares
from ._validation import check_int

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from .stats import Reliability

__all__ = [
    "plot_confusion_matrix",
    "plot_history",
    "plot_images",
    "plot_reliability",
    "plot_samples",
]


#: Longest side of an image shown in a grid: a figure cell is a few hundred pixels wide, and
#: drawing (and saving) full-size photos would take seconds each.
THUMBNAIL_SIDE = 256


class LabelledImages(Protocol):
    """What :func:`plot_samples` reads: image files with integer labels and class names
    (an :class:`~fruitclf.ImageFolderDataset` is one)."""

    @property
    def paths(self) -> list[str]: ...

    @property
    def labels(self) -> np.ndarray: ...

    @property
    def class_names(self) -> list[str]: ...

    @property
    def root(self) -> str: ...


def _load_rgb(path: str, max_side: int = THUMBNAIL_SIDE,
              background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray | None:
    """A thumbnail of an image file, at most ``max_side`` pixels a side; None when unreadable.

    Shown as the model sees it: upright by its EXIF orientation, transparency over
    ``background`` (white, the pipelines' default). Pillow's draft mode decodes large JPEGs
    at reduced scale, so a grid of full-size photos takes milliseconds.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    from ._files import open_regular

    try:
        with open_regular(path) as fh, Image.open(fh) as image:
            image.draft("RGB", (max_side, max_side))
            upright = ImageOps.exif_transpose(image)
            if upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info:
                rgba = upright.convert("RGBA")
                flat = Image.new("RGBA", rgba.size, (*background, 255))
                upright = Image.alpha_composite(flat, rgba)
            rgb = upright.convert("RGB")
            rgb.thumbnail((max_side, max_side))
            return np.asarray(rgb)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None


def plot_images(
    images: Sequence[np.ndarray | str],
    titles: Sequence[str],
    *,
    rows: int = 2,
    title_colors: Sequence[str] | None = None,
    suptitle: str | None = None,
    cell_size: float = 2.2,
) -> Figure:
    """Plot images (arrays or file paths) in a grid with a title above each.

    Parameters
    ----------
    images : sequence of array or str
        ``(height, width[, channels])`` arrays with values in 0–255, or image files.
    titles : sequence of str
        One title per image.
    rows : int, default=2
        Grid rows; columns follow from the number of images.
    title_colors : sequence of str, optional
        A matplotlib colour per title.
    suptitle : str, optional
        Title of the whole figure.
    cell_size : float, default=2.2
        Inches per grid cell.

    Returns
    -------
    matplotlib.figure.Figure
        The grid; save it, or let a notebook show it.

    Examples
    --------
    >>> import numpy as np
    >>> fig = plot_images([np.zeros((8, 8, 3))], ["black"], rows=1)
    >>> len(fig.axes)
    1
    """
    if len(images) != len(titles):
        raise ValueError(
            f"`images` and `titles` must have the same length. Received: {len(images)} images "
            f"and {len(titles)} titles"
        )
    rows = check_int(rows, "rows", min_value=1)
    count = max(len(images), 1)
    rows = min(rows, count)
    cols = math.ceil(count / rows)
    # Wide enough for the title too (about 0.1 inch a character at the default size): a grid
    # of one image must not cut it.
    width = max(cell_size * cols, 0.1 * len(suptitle or "") + 0.4)
    fig = Figure(figsize=(width, cell_size * rows + (0.4 if suptitle else 0)),
                 layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if index >= len(images):
            continue
        image = images[index]
        array = _load_rgb(image) if isinstance(image, str) else np.asarray(image)
        if array is None:
            ax.text(0.5, 0.5, "unreadable", ha="center", va="center", transform=ax.transAxes)
        else:
            array = np.asarray(array)
            if array.ndim == 3 and array.shape[-1] == 1:
                array = array[..., 0]
            shown = np.clip(array, 0, 255).astype(np.uint8)
            ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=255)
        color = title_colors[index] if title_colors is not None else "black"
        ax.set_title(titles[index], fontsize=9, color=color)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def plot_samples(
    dataset: LabelledImages, *, rows: int = 2, seed: int | None = None,
    background: str = "white",
) -> Figure:
    """Plot one random image per class, titled with the class name.

    Photos are shown upright (EXIF orientation applied) and transparency over
    ``background``, as the pipelines feed them to a model.

    Parameters
    ----------
    dataset : ImageFolderDataset
        The images (anything with ``paths``, ``labels``, ``class_names`` and ``root``).
    rows : int, default=2
        Grid rows.
    seed : int, optional
        Seed of the random choice; the same seed picks the same images.
    background : str, default="white"
        The colour transparency is shown on (a :class:`~fruitclf.Preprocessing`'s).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = fruitclf.plot_samples(ds, rows=2, seed=0)  # doctest: +SKIP
    """
    from ._validation import check_color

    rgb = check_color(background)
    rng = random.Random(seed)
    by_class: dict[int, list[str]] = {}
    for path, label in zip(dataset.paths, dataset.labels.tolist()):
        by_class.setdefault(label, []).append(path)
    images: list[np.ndarray | str] = []
    titles: list[str] = []
    for label, name in enumerate(dataset.class_names):
        candidates = by_class.get(label, [])
        rng.shuffle(candidates)
        chosen: np.ndarray | None = None
        for path in candidates[:10]:  # skip unreadable files, within reason
            chosen = _load_rgb(path, background=rgb)
            if chosen is not None:
                break
        images.append(chosen if chosen is not None else np.full((8, 8), 255, np.uint8))
        titles.append(name if chosen is not None else f"{name} (no readable image)")
    return plot_images(images, titles, rows=rows, suptitle=f"One image per class ({dataset.root})")


def plot_history(
    history: Mapping[str, Sequence[float]],
    *,
    best_epoch: int | None = None,
    metrics: Sequence[str] = ("loss", "accuracy"),
    axes: Sequence[Axes] | None = None,
    marked_label: str = "best epoch",
) -> Figure:
    """Plot training and validation curves, one panel per metric, best epoch marked.

    Parameters
    ----------
    history : mapping of str to sequence of float
        Per-epoch values, e.g. ``{"loss": [...], "val_loss": [...], "accuracy": [...]}``
        (a :class:`fruitclf.TrainingHistory`'s ``metrics``).
    best_epoch : int, optional
        1-based epoch to mark with a vertical line and a star on the validation curve
        (the training curve when there is none).
    metrics : sequence of str, default=("loss", "accuracy")
        Metrics to plot; those missing from ``history`` are skipped.
    axes : sequence of matplotlib Axes, optional
        Axes to draw into, one per metric drawn; by default a new figure.
    marked_label : str, default="best epoch"
        Legend text of the marked epoch.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_history({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}, best_epoch=2)
    >>> fig.axes[0].get_title()
    'Loss'
    """
    present = [m for m in metrics if m in history or f"val_{m}" in history]
    if not present:
        raise ValueError(
            f"`history` has none of the metrics {list(metrics)!r}. "
            f"Available: {sorted(history)!r}"
        )
    if axes is None:
        fig = Figure(figsize=(5.5 * len(present), 4), layout="constrained")
        axes = list(fig.subplots(1, len(present), squeeze=False).flat)
    elif len(axes) < len(present):
        raise ValueError(
            f"`axes` must have one axes per metric ({len(present)}). Received: {len(axes)}"
        )
    for ax, metric in zip(axes, present):
        for key, label, style in ((metric, "training", "-o"), (f"val_{metric}", "validation",
                                                               "-s")):
            values = history.get(key)
            if values:
                epochs = np.arange(1, len(values) + 1)
                ax.plot(epochs, values, style, markersize=3, label=label)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="gray", linestyle="--",
                       label=f"{marked_label} (epoch {best_epoch})")
            kept = history.get(f"val_{metric}") or history.get(metric)
            if kept and best_epoch <= len(kept):
                ax.plot([best_epoch], [kept[best_epoch - 1]], "*", color="black",
                        markersize=11, zorder=3)
        ax.set_title(metric.replace("_", " ").capitalize())
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    figure = axes[0].figure
    assert isinstance(figure, Figure)
    return figure


def plot_confusion_matrix(
    matrix: np.ndarray,
    class_names: Sequence[str],
    *,
    normalize: bool = False,
    ax: Axes | None = None,
    cmap: str = "Blues",
) -> Figure:
    """Plot a confusion matrix with counts (or row-normalised rates) in each non-empty cell,
    the accuracy in the title.

    Parameters
    ----------
    matrix : array of shape (n_classes, n_classes)
        Rows are true classes, columns predicted classes.
    class_names : sequence of str
        Axis labels.
    normalize : bool, default=False
        Show each row as fractions of its true class.
    ax : matplotlib Axes, optional
        Axes to draw into; by default a new figure.
    cmap : str, default="Blues"
        Colour map.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> fig = plot_confusion_matrix(np.array([[3, 1], [0, 4]]), ["a", "b"])
    >>> fig.axes[0].get_xlabel()
    'Predicted label'
    """
    values = np.asarray(matrix, dtype=np.float64)
    n = len(class_names)
    if values.shape != (n, n):
        raise ValueError(
            f"`matrix` must have shape ({n}, {n}) for {n} class names. "
            f"Received: shape {values.shape}"
        )
    counts = values
    if normalize:
        values = row_shares(values)
    if ax is None:
        side = max(4.0, 0.6 * n + 2.5)
        fig = Figure(figsize=(side + 1.5, side), layout="constrained")
        ax = fig.add_subplot()
    image = ax.imshow(values, cmap=cmap, vmin=0)
    ax.figure.colorbar(image, ax=ax, shrink=0.8)
    threshold = values.max() / 2 if values.size else 0
    for i in range(n):
        for j in range(n):
            if counts[i, j] == 0:  # empty cells stay blank: the errors stand out
                continue
            text = f"{values[i, j]:.2f}" if normalize else f"{int(values[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if values[i, j] > threshold else "black")
    ax.set_xticks(range(n), labels=list(class_names), rotation=45, ha="right",
                  rotation_mode="anchor")
    ax.set_yticks(range(n), labels=list(class_names))
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    total = int(counts.sum())
    correct = int(np.trace(counts))
    accuracy = f": accuracy {correct / total:.3f} ({correct}/{total})" if total else ""
    ax.set_title("Confusion matrix" + accuracy
                 + ("\nrows normalised by true class" if normalize else ""))
    figure = ax.figure
    assert isinstance(figure, Figure)
    return figure



def plot_reliability(reliability: Reliability, *, ax: Axes | None = None) -> Figure:
    """Plot a reliability diagram: per confidence bin, the share the model got right (bars),
    the gap to the bin's mean confidence (hatched) and the diagonal of perfect calibration,
    with the images per bin above the bars and the expected calibration error in the title.

    Parameters
    ----------
    reliability : fruitclf.stats.Reliability
        The bins, from :func:`fruitclf.stats.reliability` or
        :meth:`fruitclf.EvaluationResult.calibration`.
    ax : matplotlib Axes, optional
        Axes to draw into; by default a new figure.

    Examples
    --------
    >>> from fruitclf.stats import reliability
    >>> fig = plot_reliability(reliability(np.array([[0.9, 0.1], [0.6, 0.4]]), np.array([0, 1])))
    >>> fig.axes[0].get_xlabel()
    'Confidence (probability of the predicted class)'
    """
    edges, counts = reliability.edges, reliability.counts
    accuracy, confidence = reliability.accuracy, reliability.confidence
    if ax is None:
        fig = Figure(figsize=(5.5, 5.0), layout="constrained")
        ax = fig.add_subplot()
    widths = np.diff(edges)
    filled = counts > 0
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1,
            label="perfect calibration")
    ax.bar(edges[:-1][filled], accuracy[filled], width=widths[filled], align="edge",
           color="tab:blue", edgecolor="white", alpha=0.8, label="accuracy")
    ax.bar(edges[:-1][filled], (confidence - accuracy)[filled], bottom=accuracy[filled],
           width=widths[filled], align="edge", color="none", edgecolor="crimson", hatch="//",
           linewidth=0.8, label="gap to the mean confidence")
    for left, width, count, value in zip(edges[:-1][filled], widths[filled], counts[filled],
                                         accuracy[filled]):
        ax.text(left + width / 2, min(value, 0.92) + 0.02, str(int(count)), ha="center",
                fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("Confidence (probability of the predicted class)")
    ax.set_ylabel("Accuracy")
    ax.set_title(f"Reliability: calibration error {reliability.calibration_error:.3f} on "
                 f"{int(counts.sum())} images\n(numbers: images per bin)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=3, fontsize=8,
              frameon=False)
    figure = ax.figure
    assert isinstance(figure, Figure)
    return figure
