"""Is run B really better than run A? A paired comparison on the same test photos.

Two accuracies measured on 30 photos can differ by a photo or two by chance alone. Both runs
predicted the same photos, so what tells them apart is the photos only one of them got right:
:func:`compare_runs` reads each run's ``predictions.csv`` and reports both accuracies, the
difference with its interval (:func:`fruitclf.stats.paired_difference_interval`), McNemar's
exact p-value (:func:`fruitclf.stats.mcnemar_p_value`), the counts, and one plain sentence.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _files
from .evaluation import PREDICTION_COLUMNS
from .exceptions import DatasetError
from .stats import mcnemar_p_value, paired_difference_interval

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PredictionTable", "RunComparison", "compare_runs", "read_predictions"]

#: The file each run (``fruitclf train --test``) and evaluation (``fruitclf evaluate --out``)
#: writes, and :func:`compare_runs` reads.
PREDICTIONS_FILE = "predictions.csv"

#: Largest ``predictions.csv`` read (a million test images is about 100 MB).
_MAX_BYTES = 512 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class PredictionTable:
    """The per-image predictions of one run, as read from its ``predictions.csv``."""

    #: Where it was read from
    source: str
    #: Image paths relative to the test folder, in file order
    paths: list[str]
    #: Absolute image files, as written ("" when unknown)
    files: list[str]
    #: True class names
    true: list[str]
    #: Predicted class names
    predicted: list[str]

    @property
    def correct(self) -> list[bool]:
        return [t == p for t, p in zip(self.true, self.predicted)]


def read_predictions(path: str | os.PathLike[str]) -> PredictionTable:
    """Read ``predictions.csv`` from a run folder, an ``evaluate --out`` folder, or the file.

    Raises
    ------
    FileNotFoundError
        Neither the file nor a folder holding it.
    DatasetError
        The file is not a fruitclf predictions table.
    """
    source = Path(path)
    if source.is_dir():
        source = source / PREDICTIONS_FILE
    if not source.is_file():
        raise FileNotFoundError(
            f"No {PREDICTIONS_FILE} at {os.fspath(path)!r}. Pass a run folder trained with a "
            "test folder (`fruitclf train TRAIN --test TEST --out RUN`) or a folder written by "
            "`fruitclf evaluate MODEL TEST --out DIR`.")
    try:
        text = _files.read_text_bounded(source, _MAX_BYTES)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{str(source)!r} cannot be read as a predictions table: {exc}."
                           ) from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or tuple(rows[0][:len(PREDICTION_COLUMNS)]) != PREDICTION_COLUMNS:
        raise DatasetError(f"{str(source)!r} is not a predictions table written by fruitclf "
                           f"(its first line should start with {','.join(PREDICTION_COLUMNS)}).")
    body = [row for row in rows[1:] if row]
    width = len(rows[0])
    broken = next((i for i, row in enumerate(body, start=2) if len(row) != width), None)
    if broken is not None:
        raise DatasetError(f"{str(source)!r} is damaged: line {broken} has "
                           f"{len(body[broken - 2])} columns, the header {width}.")
    return PredictionTable(os.fspath(source), [r[0] for r in body], [r[1] for r in body],
                           [r[2] for r in body], [r[3] for r in body])


@dataclasses.dataclass(frozen=True)
class RunComparison:
    """Two runs on the same test images, compared photo by photo.

    Examples
    --------
    >>> comparison = fruitclf.compare_runs("runs/a", "runs/b")  # doctest: +SKIP
    >>> print(comparison.sentence)  # doctest: +SKIP
    B is better: 9 photos right that A got wrong, 1 the other way (p = 0.021).
    """

    #: Where A's predictions were read from
    a: str
    #: Where B's predictions were read from
    b: str
    #: The test images (relative to the test folder), in A's order
    paths: list[str]
    #: Absolute files of the images, as A recorded them
    files: list[str]
    #: True class per image
    true: list[str]
    #: A's prediction per image
    a_predicted: list[str]
    #: B's prediction per image
    b_predicted: list[str]
    #: Images both runs got right
    both_correct: int
    #: Images only A got right
    only_a_correct: int
    #: Images only B got right
    only_b_correct: int
    #: Images neither got right
    neither_correct: int

    @property
    def num_images(self) -> int:
        return len(self.paths)

    @property
    def a_accuracy(self) -> float:
        return (self.both_correct + self.only_a_correct) / self.num_images

    @property
    def b_accuracy(self) -> float:
        return (self.both_correct + self.only_b_correct) / self.num_images

    @property
    def difference(self) -> float:
        """``b_accuracy - a_accuracy``."""
        return self.b_accuracy - self.a_accuracy

    @property
    def difference_interval(self) -> tuple[float, float]:
        """95% interval of :attr:`difference` (Newcombe's hybrid score for paired rates)."""
        return paired_difference_interval(
            both=self.both_correct, only_a=self.only_a_correct, only_b=self.only_b_correct,
            neither=self.neither_correct)

    @property
    def p_value(self) -> float:
        """McNemar's exact two-sided p-value: the chance of a split of the disagreements at
        least this uneven if both runs were equally good."""
        return mcnemar_p_value(only_a=self.only_a_correct, only_b=self.only_b_correct)

    @property
    def sentence(self) -> str:
        """The result in one plain sentence."""
        a, b, p = self.only_a_correct, self.only_b_correct, self.p_value
        photos = "photo" if max(a, b) == 1 else "photos"
        if a == b == 0:
            return (f"A and B got the same {self.both_correct} of {self.num_images} photos "
                    "right: no difference to test.")
        if p < 0.05:
            better, more, fewer = ("B", b, a) if b > a else ("A", a, b)
            other = "A" if better == "B" else "B"
            return (f"{better} is better: {more} {photos} right that {other} got wrong, "
                    f"{fewer} the other way (p = {p:.3f}).")
        return (f"No clear difference: {b} {photos} only B got right, {a} only A "
                f"(p = {p:.2f}; a difference this size is likely by chance on "
                f"{self.num_images} photos).")

    def to_dict(self) -> dict[str, Any]:
        """The comparison as plain JSON types."""
        return {
            "a": self.a, "b": self.b, "num_images": self.num_images,
            "a_accuracy": self.a_accuracy, "b_accuracy": self.b_accuracy,
            "difference": self.difference, "difference_interval": list(self.difference_interval),
            "p_value": self.p_value, "only_a_correct": self.only_a_correct,
            "only_b_correct": self.only_b_correct, "both_correct": self.both_correct,
            "neither_correct": self.neither_correct, "sentence": self.sentence,
        }

    def disagreements(self) -> list[int]:
        """Indices of the images exactly one of the runs got right."""
        return [i for i, (t, pa, pb) in enumerate(zip(self.true, self.a_predicted,
                                                       self.b_predicted))
                if (pa == t) != (pb == t)]

    def plot_disagreements(self, *, max_images: int = 16) -> Figure:
        """The photos only one run got right, titled with both predictions (green: the run
        that got it right)."""
        from ._validation import check_int
        from .plotting import plot_images

        shown = self.disagreements()[:check_int(max_images, "max_images", min_value=1)]
        if not shown:
            import numpy as np

            return plot_images([np.full((8, 8), 255, np.uint8)],
                               ["the runs agree on every photo"], rows=1)
        images: list[Any] = [self.files[i] if self.files[i] and os.path.isfile(self.files[i])
                             else _missing() for i in shown]
        titles, colours = [], []
        for i in shown:
            winner = "A" if self.a_predicted[i] == self.true[i] else "B"
            titles.append(f"true: {self.true[i]}\nA: {self.a_predicted[i]}\n"
                          f"B: {self.b_predicted[i]}")
            colours.append("tab:orange" if winner == "A" else "tab:green")
        return plot_images(images, titles, rows=max(1, -(-len(shown) // 4)),
                           title_colors=colours,
                           suptitle="Photos only one run got right (green: B, orange: A)")

    def _repr_html_(self) -> str:
        from . import _html

        low, high = self.difference_interval
        rows = [("A", self.a, self.a_accuracy), ("B", self.b, self.b_accuracy)]
        return "\n".join([
            _html.paragraph(self.sentence),
            _html.table(("run", "predictions", "accuracy"), rows),
            _html.paragraph(f"Difference B − A: {self.difference:+.4f} (95% interval "
                            f"{low:+.3f} to {high:+.3f}) on {self.num_images} photos.")])


def _missing() -> Any:
    import numpy as np

    return np.full((8, 8), 230, np.uint8)


def compare_runs(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> RunComparison:
    """Compare two runs tested on the same test images, photo by photo.

    Parameters
    ----------
    a, b : path-like
        Run folders (``fruitclf train ... --test TEST``), ``fruitclf evaluate --out`` folders,
        or their ``predictions.csv`` files.

    Returns
    -------
    RunComparison

    Raises
    ------
    DatasetError
        The runs were not tested on the same images with the same classes; the message
        names the difference.

    Examples
    --------
    >>> comparison = fruitclf.compare_runs("runs/a", "runs/b")  # doctest: +SKIP
    >>> comparison.b_accuracy - comparison.a_accuracy, comparison.p_value  # doctest: +SKIP
    (0.2667, 0.0215)
    """
    first, second = read_predictions(a), read_predictions(b)
    _check_same_images(first, second)
    order = {path: i for i, path in enumerate(second.paths)}
    b_predicted = [second.predicted[order[path]] for path in first.paths]
    counts = {"both": 0, "a": 0, "b": 0, "neither": 0}
    for truth, pa, pb in zip(first.true, first.predicted, b_predicted):
        key = ("both" if pb == truth else "a") if pa == truth else (
            "b" if pb == truth else "neither")
        counts[key] += 1
    return RunComparison(first.source, second.source, first.paths, first.files, first.true,
                         first.predicted, b_predicted, counts["both"], counts["a"],
                         counts["b"], counts["neither"])


def _check_same_images(first: PredictionTable, second: PredictionTable) -> None:
    if not first.paths:
        raise DatasetError(f"{first.source!r} has no test images to compare.")
    only_first = sorted(set(first.paths) - set(second.paths))
    only_second = sorted(set(second.paths) - set(first.paths))
    if only_first or only_second:
        parts = [f"{len(names)} only in {'A' if side is first else 'B'} ({_examples(names)})"
                 for side, names in ((first, only_first), (second, only_second)) if names]
        raise DatasetError(
            "The runs were not tested on the same images: " + "; ".join(parts) + ". Compare "
            "runs tested on the same test folder (or evaluate both models on one folder with "
            "`fruitclf evaluate MODEL TEST --out DIR` and compare those folders).")
    truth = dict(zip(second.paths, second.true))
    relabelled = [p for p, t in zip(first.paths, first.true) if truth[p] != t]
    if relabelled:
        raise DatasetError(
            f"The runs give {len(relabelled)} test images different classes "
            f"({_examples(relabelled)}): the test folders differ. Compare runs tested on the "
            "same test folder.")


def _examples(names: Sequence[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
