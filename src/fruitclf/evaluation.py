"""Evaluate a trained model and predict with class names.

:class:`Evaluator` runs the model once over a dataset and returns an
:class:`EvaluationResult` that answers everything asked of a test set: loss and accuracy, the
scikit-learn classification report, the confusion matrix, and which files were misclassified.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._arrays import row_shares
from ._quiet import read_pipeline
from ._validation import check_class_names, check_float, check_int
from .data import (
    IMAGE_EXTENSIONS,
    FileProblem,
    ImageFolderDataset,
    Preprocessing,
    describe_problems,
    image_files,
    load_checked,
)
from .exceptions import CorruptedImagesError, DatasetError
from .stats import CALIBRATION_BINS, Reliability, apply_temperature, reliability

if TYPE_CHECKING:
    import keras
    from matplotlib.figure import Figure

    from .data.loading import CheckedImages

__all__ = [
    "EvaluationResult",
    "Evaluator",
    "Misclassified",
    "Predictions",
    "plot_misclassified",
    "tta_views",
]

logger = logging.getLogger("fruitclf")

_EPSILON = 1e-7  # Keras clips probabilities the same way in its cross-entropy

#: The first columns of ``predictions.csv`` (:meth:`EvaluationResult.to_csv`); one column
#: per class follows, named with this prefix.
PREDICTION_COLUMNS = ("path", "file", "true", "predicted", "confidence")
PROBABILITY_PREFIX = "probability:"

#: The label of a prediction below ``min_confidence``.
UNSURE_LABEL = "unsure"

#: The confidences at which reports show what answering "unsure" below them would do.
UNSURE_THRESHOLDS = (0.5, 0.7, 0.9)


@dataclasses.dataclass
class Predictions:
    """Predicted classes with probabilities.

    Attributes
    ----------
    indices : numpy.ndarray of int
        Predicted class index per input (``-1`` for an input that could not be read).
    labels : list of str
        Predicted class name per input (``""`` when unreadable).
    probabilities : numpy.ndarray of shape (n, n_classes)
        Class probabilities (NaN rows for unreadable inputs).
    class_names : list of str
        Class names in label order.
    paths : list of str or None
        Input files, when predicting from files.
    errors : dict of str to str
        Files that could not be read, with the reason.
    top_k : int
        How many classes :meth:`top` returns per input.
    min_confidence : float or None
        Inputs whose best probability is below it are labelled ``"unsure"`` (their
        ``indices`` still hold the best class; :attr:`unsure` marks them).

    Examples
    --------
    >>> predictions = loaded.predict(["a.jpg", "b.jpg"], top_k=2)  # doctest: +SKIP
    >>> predictions.labels, predictions.top()[0]  # doctest: +SKIP
    (['acai', 'tucuma'], [('acai', 0.91), ('tucuma', 0.06)])
    """

    indices: np.ndarray
    labels: list[str]
    probabilities: np.ndarray
    class_names: list[str]
    paths: list[str] | None = None
    errors: dict[str, str] = dataclasses.field(default_factory=dict)
    top_k: int = 1
    min_confidence: float | None = None

    @property
    def unsure(self) -> np.ndarray:
        """True for each readable input whose best probability is below
        :attr:`min_confidence` (all False without one)."""
        if self.min_confidence is None:
            return np.zeros(len(self.labels), bool)
        return np.asarray((self.indices >= 0) & (self.confidences < self.min_confidence))

    @property
    def confidences(self) -> np.ndarray:
        """Probability of the predicted class per input."""
        filled = np.where(np.isnan(self.probabilities), -1.0, self.probabilities)
        return np.asarray(filled.max(axis=1))

    def top(self, k: int | None = None) -> list[list[tuple[str, float]]]:
        """The ``k`` most likely ``(class name, probability)`` pairs per input."""
        k = self.top_k if k is None else check_int(k, "k", min_value=1)
        k = min(k, len(self.class_names))
        out: list[list[tuple[str, float]]] = []
        for row in self.probabilities:
            if np.isnan(row).any():
                out.append([])
                continue
            order = np.argsort(-row, kind="stable")[:k]
            out.append([(self.class_names[i], float(row[i])) for i in order])
        return out

    def _repr_html_(self) -> str:
        """The notebook display: one row per image (the first 20), probabilities rounded."""
        from . import _html

        rows: list[tuple[str, str, float | None]] = []
        for index, record in enumerate(self.to_records()):
            name = record.get("path") or f"image {index + 1}"
            if "error" in record:
                rows.append((name, "error: " + str(record["error"]), None))
                continue
            rows.append((name, record["label"], round(float(record["probability"]), 3)))
        errors = f", {len(self.errors)} unreadable" if self.errors else ""
        return "\n".join([_html.heading(f"{len(rows)} predictions{errors}"),
                          _html.table(("image", "class", "probability"), rows)])

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-able dict per input: ``path``, ``label``, ``probability``, ``top_k``
        (or ``error``); with :attr:`min_confidence`, ``unsure`` too (``label`` is then
        ``"unsure"`` and ``top_k`` still lists the best classes)."""
        records: list[dict[str, Any]] = []
        paths = self.paths or [None] * len(self.labels)  # type: ignore[list-item]
        for path, index, label, top, unsure in zip(paths, self.indices, self.labels,
                                                   self.top(), self.unsure):
            if index < 0:
                records.append({"path": path, "error": self.errors.get(path or "", "unreadable")})
                continue
            record = {"path": path, "label": label, "probability": top[0][1] if top else None,
                      "top_k": [{"label": name, "probability": p} for name, p in top]}
            if self.min_confidence is not None:
                record["unsure"] = bool(unsure)
            records.append(record)
        return records

    def __len__(self) -> int:
        return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Misclassified:
    """A test image the model got wrong.

    Examples
    --------
    >>> [(m.path, m.predicted_label) for m in result.misclassified()]  # doctest: +SKIP
    [('test/acai/3.jpg', 'tucuma')]
    """

    #: The file, when known
    path: str | None
    #: Its class
    true_label: str
    #: What the model said
    predicted_label: str
    #: Probability of the predicted class
    confidence: float


@dataclasses.dataclass
class EvaluationResult:
    """Predictions on a labelled dataset, and everything computed from them.

    Attributes
    ----------
    y_true, y_pred : numpy.ndarray of int
        True and predicted class indices.
    probabilities : numpy.ndarray
        Class probabilities per image.
    class_names : list of str
        Class names in label order.
    paths : list of str or None
        The image files, when evaluated on an :class:`~fruitclf.ImageFolderDataset`.
    skipped : list of FileProblem
        Unreadable files left out with ``evaluate(..., skip_bad=True)``.

    Examples
    --------
    >>> result = evaluator.evaluate(test_ds)  # doctest: +SKIP
    >>> result.accuracy, result.confusion_matrix().shape  # doctest: +SKIP
    (0.9, (6, 6))
    """

    y_true: np.ndarray
    y_pred: np.ndarray
    probabilities: np.ndarray
    class_names: list[str]
    paths: list[str] | None = None
    skipped: list[FileProblem] = dataclasses.field(default_factory=list)

    @property
    def accuracy(self) -> float:
        """Share of correct predictions."""
        return float(np.mean(self.y_true == self.y_pred)) if len(self.y_true) else 0.0

    @property
    def accuracy_interval(self) -> tuple[float, float]:
        """95% Wilson score interval of :attr:`accuracy`: where the accuracy on all such
        photos plausibly lies, given how few were tested (see :mod:`fruitclf.stats`)."""
        from .stats import wilson_interval

        return wilson_interval(int(np.sum(self.y_true == self.y_pred)), len(self.y_true))

    @property
    def calibration_error(self) -> float:
        """Expected calibration error of the probabilities (10 equal bins; 0 is perfect):
        how far, on average, the confidence of a prediction is from the accuracy of the
        predictions made with that confidence."""
        return self.calibration().calibration_error

    def calibration(self, *, bins: int = CALIBRATION_BINS) -> Reliability:
        """Confidence against accuracy in ``bins`` equal bins (a reliability diagram)."""
        return reliability(self.probabilities, self.y_true, bins=bins)

    def plot_calibration(self, *, bins: int = CALIBRATION_BINS) -> Figure:
        """Plot the reliability diagram; see :func:`fruitclf.plot_reliability`."""
        from .plotting import plot_reliability

        return plot_reliability(self.calibration(bins=bins))

    def coverage(self, thresholds: Sequence[float] = UNSURE_THRESHOLDS
                 ) -> list[dict[str, float | int | None]]:
        """What answering "unsure" below a confidence would do: per threshold, the share of
        images still answered (``coverage``) and the accuracy on them (None when none is).

        Examples
        --------
        >>> result.coverage([0.5, 0.9])  # doctest: +SKIP
        [{'threshold': 0.5, 'answered': 29, 'coverage': 0.967, 'accuracy': 0.931}, ...]
        """
        confidence = self.probabilities.max(axis=1) if len(self.y_true) else np.zeros(0)
        rows: list[dict[str, float | int | None]] = []
        for threshold in thresholds:
            kept = confidence >= check_float(threshold, "threshold", min_value=0.0,
                                             max_value=1.0)
            answered = int(kept.sum())
            rows.append({
                "threshold": float(threshold), "answered": answered,
                "coverage": answered / len(kept) if len(kept) else 0.0,
                "accuracy": (float(np.mean(self.y_true[kept] == self.y_pred[kept]))
                             if answered else None),
            })
        return rows

    @property
    def loss(self) -> float:
        """Mean cross-entropy of the predicted probabilities (no regularisation terms)."""
        if not len(self.y_true):
            return 0.0
        picked = self.probabilities[np.arange(len(self.y_true)), self.y_true]
        return float(-np.mean(np.log(np.clip(picked, _EPSILON, 1.0 - _EPSILON))))

    def _repr_html_(self) -> str:
        """The notebook display: accuracy and loss in a sentence, then the report."""
        from . import _html

        low, high = self.accuracy_interval
        sentence = (f"Accuracy {self.accuracy:.4f} on {len(self.y_true)} images (95% interval "
                    f"{low:.3f}–{high:.3f}; loss {self.loss:.4f})")
        if self.skipped:
            sentence += f"; {len(self.skipped)} unreadable files left out"
        return "\n".join([_html.paragraph(sentence + "."),
                          _html.pre(self.classification_report())])

    def classification_report(self, *, output_dict: bool = False, digits: int = 3) -> Any:
        """scikit-learn's classification report with class names as labels.

        Rows and averages cover the classes that have test images: a class the test folder
        lacks has no recall to measure, and would pull the macro average down with a 0. The
        text names such classes below the table. A class without predictions reports 0
        precision rather than warning.

        Below scikit-learn's table, the text gives the accuracy and each class's recall and
        precision with 95% Wilson score intervals; the dict has them as ``recall_interval``
        and ``precision_interval`` in each class's entry (``[low, high]``; ``None`` for the
        precision of a class never predicted).

        Parameters
        ----------
        output_dict : bool, default=False
            Return a dict instead of text.
        digits : int, default=3
            Digits in the text version.
        """
        from sklearn.metrics import classification_report

        present = sorted({int(label) for label in self.y_true})
        labels = present or list(range(len(self.class_names)))
        report = classification_report(
            self.y_true, self.y_pred, labels=labels,
            target_names=[self.class_names[i] for i in labels], output_dict=output_dict,
            digits=digits, zero_division=0,
        )
        intervals = self._class_intervals(labels)
        if output_dict:
            for index, (recall, precision) in intervals.items():
                report[self.class_names[index]].update(
                    recall_interval=list(recall),
                    precision_interval=None if precision is None else list(precision))
            return report
        report += "\n" + self._interval_table(intervals, digits)
        absent = [n for i, n in enumerate(self.class_names) if i not in labels]
        if not absent:
            return report
        return (f"{report}\nClasses without test images (not in the table or averages): "
                f"{', '.join(absent)}\n")

    def _class_intervals(self, labels: Sequence[int]
                         ) -> dict[int, tuple[tuple[float, float], tuple[float, float] | None]]:
        """Per class: the Wilson intervals of its recall and of its precision (None when the
        class was never predicted)."""
        from .stats import wilson_interval

        out: dict[int, tuple[tuple[float, float], tuple[float, float] | None]] = {}
        for index in labels:
            hits = int(np.sum((self.y_true == index) & (self.y_pred == index)))
            predicted = int(np.sum(self.y_pred == index))
            out[index] = (wilson_interval(hits, int(np.sum(self.y_true == index))),
                          wilson_interval(hits, predicted) if predicted else None)
        return out

    def _interval_table(self, intervals: Mapping[int, tuple[tuple[float, float],
                                                           tuple[float, float] | None]],
                        digits: int) -> str:
        """The accuracy and per-class intervals, as fixed-width text."""
        low, high = self.accuracy_interval

        def span(bounds: tuple[float, float] | None) -> str:
            return "n/a" if bounds is None else f"{bounds[0]:.{digits}f}–{bounds[1]:.{digits}f}"

        names = [self.class_names[i] for i in intervals]
        width = max([len(n) for n in names] + [len("weighted avg")])  # as the table above
        lines = [f"95% intervals (Wilson score): accuracy {span((low, high))} on "
                 f"{len(self.y_true)} images", "",
                 f"{'':>{width}}  {'recall':>{2 * digits + 5}}  {'precision':>{2 * digits + 5}}"]
        for index, name in zip(intervals, names):
            recall, precision = intervals[index]
            lines.append(f"{name:>{width}}  {span(recall):>{2 * digits + 5}}  "
                         f"{span(precision):>{2 * digits + 5}}")
        return "\n".join(lines) + "\n"

    def confusion_matrix(self, *, normalize: bool = False) -> np.ndarray:
        """Confusion matrix (rows: true class, columns: predicted), counts or row fractions."""
        from sklearn.metrics import confusion_matrix

        matrix = confusion_matrix(self.y_true, self.y_pred,
                                  labels=list(range(len(self.class_names))))
        return row_shares(matrix) if normalize else np.asarray(matrix)

    def misclassified(self) -> list[Misclassified]:
        """Every wrong prediction, most confident first."""
        wrong = np.flatnonzero(self.y_true != self.y_pred)
        rows = [
            Misclassified(
                path=self.paths[i] if self.paths is not None else None,
                true_label=self.class_names[self.y_true[i]],
                predicted_label=self.class_names[self.y_pred[i]],
                confidence=float(self.probabilities[i, self.y_pred[i]]),
            )
            for i in wrong
        ]
        return sorted(rows, key=lambda m: -m.confidence)

    def to_dict(self) -> dict[str, Any]:
        """Accuracy, loss and the report dict, as plain JSON types."""
        return {"accuracy": self.accuracy, "accuracy_interval": list(self.accuracy_interval),
                "loss": self.loss, "calibration_error": self.calibration_error,
                "coverage": self.coverage(),
                "report": self.classification_report(output_dict=True),
                "confusion_matrix": self.confusion_matrix().tolist(),
                "class_names": list(self.class_names), "num_images": len(self.y_true)}

    def to_csv(self, *, root: str | os.PathLike[str] | None = None) -> str:
        """One row per image, as CSV text: ``path``, ``file``, ``true``, ``predicted``,
        ``confidence``, then the probability of each class (columns
        ``probability:<class name>``).

        ``path`` is relative to ``root`` (the test folder) when given, so that two runs on the
        same test folder can be compared (:func:`fruitclf.compare_runs`) wherever the folder
        was; ``file`` is the absolute path the image was read from.

        Examples
        --------
        >>> print(result.to_csv(root="test").splitlines()[1])  # doctest: +SKIP
        acai/t01.jpg,/data/test/acai/t01.jpg,acai,acai,0.912345,0.912345,0.087655
        """
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([*PREDICTION_COLUMNS,
                         *(f"{PROBABILITY_PREFIX}{name}" for name in self.class_names)])
        paths = self.paths or [f"#{i}" for i in range(len(self.y_true))]
        for path, true, predicted, row in zip(paths, self.y_true, self.y_pred,
                                              self.probabilities):
            shown = os.path.relpath(path, root) if root is not None and self.paths else path
            writer.writerow([shown.replace(os.sep, "/"),
                             os.path.abspath(path) if self.paths else "", self.class_names[true],
                             self.class_names[predicted], f"{row[predicted]:.6f}",
                             *(f"{p:.6f}" for p in row)])
        return buffer.getvalue()

    def plot_confusion_matrix(self, *, normalize: bool = False) -> Figure:
        """Plot the confusion matrix; see :func:`fruitclf.plot_confusion_matrix`."""
        from .plotting import plot_confusion_matrix

        return plot_confusion_matrix(self.confusion_matrix(), self.class_names,
                                     normalize=normalize)

    def without(self, paths: Iterable[str]) -> EvaluationResult:
        """The result without the images at ``paths`` (e.g. test images leaked from
        training), as if they had not been evaluated.

        Examples
        --------
        >>> result.without(p.test_path for p in leaks).accuracy  # doctest: +SKIP
        0.88
        """
        if self.paths is None:
            raise ValueError("This result has no paths (it was evaluated on a tf.data "
                             "pipeline); evaluate an ImageFolderDataset to drop images by path.")
        gone = {os.fspath(p) for p in paths}
        keep = np.array([p not in gone for p in self.paths], dtype=bool)
        return dataclasses.replace(
            self, y_true=self.y_true[keep], y_pred=self.y_pred[keep],
            probabilities=self.probabilities[keep],
            paths=[p for p, k in zip(self.paths, keep) if k])

    def plot_misclassified(self, *, max_images: int = 16, rows: int | None = None) -> Figure:
        """Plot misclassified images titled ``true -> predicted (confidence)``."""
        return plot_misclassified(self.misclassified(), max_images=max_images, rows=rows)


def plot_misclassified(
    wrong: Sequence[Misclassified],
    *,
    max_images: int = 16,
    rows: int | None = None,
    suptitle: str = "Misclassified images (true -> predicted)",
    empty: str = "no misclassified images",
) -> Figure:
    """Plot the first ``max_images`` of ``wrong``, titled ``true -> predicted (confidence)``.

    Examples
    --------
    >>> fig = plot_misclassified([Misclassified(None, "acai", "guarana", 0.9)])
    >>> fig.axes[0].get_title().splitlines()
    ['acai -> guarana', '(0.90)']
    """
    from .plotting import plot_images

    wrong = list(wrong)[: check_int(max_images, "max_images", min_value=1)]
    if not wrong:
        return plot_images([np.full((8, 8), 255, np.uint8)], [empty], rows=1)
    images: list[np.ndarray | str] = [m.path or np.zeros((8, 8)) for m in wrong]
    titles = [f"{m.true_label} -> {m.predicted_label}\n({m.confidence:.2f})" for m in wrong]
    rows = rows or max(1, int(np.ceil(len(wrong) / 4)))
    return plot_images(images, titles, rows=rows, title_colors=["crimson"] * len(wrong),
                       suptitle=suptitle)


class Evaluator:
    """Evaluate a model and predict with class names.

    Parameters
    ----------
    model : keras.Model
        A model that takes 0–255 pixels (as :func:`fruitclf.build_cnn` builds).
    class_names : sequence of str
        Class names in label order.
    preprocessing : Preprocessing, optional
        How files become inputs; by default the model's input size, bilinear, antialiased.
    temperature : float, default=1.0
        Temperature scaling of the probabilities (:func:`fruitclf.calibrate_model` fits it;
        1: as the model gives them). The predicted classes never change.

    Examples
    --------
    >>> evaluator = fruitclf.Evaluator(model, train.class_names)  # doctest: +SKIP
    >>> result = evaluator.evaluate(fruitclf.ImageFolderDataset(
    ...     "fruits/test", class_names=train.class_names))  # doctest: +SKIP
    >>> print(result.classification_report())  # doctest: +SKIP
    """

    def __init__(
        self,
        model: keras.Model,
        class_names: Sequence[str],
        *,
        preprocessing: Preprocessing | None = None,
        temperature: float = 1.0,
    ) -> None:
        self.model = model
        self.class_names = check_class_names(class_names, int(model.output_shape[-1]))
        self.temperature = check_float(temperature, "temperature", min_value=0.0,
                                       exclusive=True)
        if preprocessing is None:
            height, width, channels = model.input_shape[1:4]
            preprocessing = Preprocessing(image_size=(height, width),
                                          color_mode="grayscale" if channels == 1 else "rgb")
        self.preprocessing = preprocessing

    def _check_dataset(self, dataset: ImageFolderDataset) -> None:
        if dataset.class_names != self.class_names:
            raise DatasetError(
                f"The dataset's classes {dataset.class_names!r} differ from the model's "
                f"{self.class_names!r}. Load it with ImageFolderDataset(path, "
                "class_names=<the model's class names>)."
            )

    def _probabilities(self, inputs: Any, batch_size: int, tta: int = 1) -> np.ndarray:
        """Probabilities for arrays or a ``tf.data`` pipeline (``images`` or ``(images,
        ...)`` batches), averaged over ``tta`` views.

        Every call feeds the model the same kind of input, ``float32`` batches of the
        model's image shape, so Keras traces its predict function once per model instead of
        once per pipeline, array and view (which TensorFlow warns about as retracing).
        TensorFlow counts the traces of every model's predict function together (they share
        their code), so predicting with one model after another (a run's model, then the
        same model loaded from its file) read as retracing too; those one-time traces are
        left out of its count.
        """
        import tensorflow as tf

        self.model.make_predict_function()  # Keras's own, which predict() reuses
        predict_function = self.model.predict_function
        if hasattr(predict_function, "_omit_frequent_tracing_warning"):
            predict_function._omit_frequent_tracing_warning = True

        if not _is_tf_dataset(inputs):
            inputs = tf.data.Dataset.from_tensor_slices(
                np.asarray(inputs, np.float32)).batch(batch_size)
        shape = [None, *(int(d) for d in self.model.input_shape[1:])]
        total: np.ndarray | None = None
        for view in tta_views(tta, flip=self.flips):
            images = inputs.map(
                lambda x, *_, view=view: tf.ensure_shape(view(tf.cast(x, tf.float32)), shape),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            probs = np.asarray(self.model.predict(images, verbose=0), dtype=np.float64)
            total = probs if total is None else total + probs
        assert total is not None  # tta >= 1 views
        if self.temperature == 1.0:
            return total / tta
        return apply_temperature(total / tta, self.temperature)

    @functools.cached_property
    def flips(self) -> bool:
        """True when the model was trained with horizontal flips, so TTA may flip too."""
        return _has_horizontal_flip(self.model)

    def evaluate(self, dataset: Any, *, batch_size: int = 32, tta: int = 1,
                 skip_bad: bool = False) -> EvaluationResult:
        """Predict every image of a labelled dataset once and return the result.

        An image folder is checked first (as training does): files that cannot be decoded
        stop the evaluation before any prediction, naming them, unless ``skip_bad``.

        Parameters
        ----------
        dataset : ImageFolderDataset or tf.data.Dataset
            An image folder (with the model's classes), or batches of ``(images, labels)``.
        batch_size : int, default=32
            Images per batch for an image folder.
        tta : int, default=1
            Test-time augmentation: average the probabilities of this many views of each
            image (see :func:`tta_views`); 1 predicts the image as it is.
        skip_bad : bool, default=False
            Leave out files that cannot be decoded (listed in ``result.skipped`` and logged)
            instead of refusing.

        Returns
        -------
        EvaluationResult

        Raises
        ------
        CorruptedImagesError
            If files of an image folder cannot be decoded and ``skip_bad`` is False.

        Examples
        --------
        >>> evaluator.evaluate(test_ds, tta=4).accuracy  # doctest: +SKIP
        0.93
        """
        batch_size = check_int(batch_size, "batch_size", min_value=1)
        tta = self.check_tta(tta)
        if isinstance(dataset, ImageFolderDataset):
            self._check_dataset(dataset)
            # A check that kept the images for this preprocessing already read every file;
            # otherwise check now and keep them, so each file is decoded once.
            problems = [] if dataset.checked_for(self.preprocessing) else (
                dataset.check(progress=False, preprocessing=self.preprocessing).problems)
            if problems and not skip_bad:
                raise CorruptedImagesError(
                    f"{len(problems)} files in {dataset.root!r} cannot be read: "
                    f"{describe_problems(problems)}. Quarantine them with "
                    f"`fruitclf clean {dataset.root}`, or leave "
                    "them out with skip_bad=True (--skip-bad).",
                    [p.path for p in problems],
                )
            for problem in problems:
                logger.warning("Skipped unreadable file: %s (%s)", problem.path, problem.message)
            dataset = dataset.exclude([p.path for p in problems])
            pipeline = dataset.to_tf_dataset(preprocessing=self.preprocessing,
                                             batch_size=batch_size, cache=False)
            probs = (self._probabilities(pipeline, batch_size, tta) if len(dataset)
                     else np.zeros((0, len(self.class_names))))
            return EvaluationResult(dataset.labels.astype(np.int64), probs.argmax(axis=1),
                                    probs, self.class_names, dataset.paths, list(problems))
        if not _is_tf_dataset(dataset):
            raise TypeError(
                "`dataset` must be an ImageFolderDataset or a tf.data.Dataset of (images, "
                f"labels). Received: {type(dataset).__name__}"
            )
        labels: list[np.ndarray] = []
        chunks: list[np.ndarray] = []
        views = tta_views(tta, flip=self.flips)
        for images, batch_labels in read_pipeline(dataset):
            chunks.append(np.mean([np.asarray(self.model(view(images), training=False),
                                               dtype=np.float64) for view in views], axis=0))
            labels.append(np.asarray(batch_labels))
        probs = np.concatenate(chunks) if chunks else np.zeros((0, len(self.class_names)))
        y_true = np.concatenate(labels).astype(np.int64) if labels else np.zeros(0, np.int64)
        return EvaluationResult(y_true, probs.argmax(axis=1), probs, self.class_names)

    def check_tta(self, tta: int) -> int:
        """Return ``tta`` if this model has that many views; else say how many it has.

        Raises
        ------
        ValueError
            For fewer than 1 or more views than :func:`tta_views` gives this model.

        Examples
        --------
        >>> evaluator.check_tta(4)  # doctest: +SKIP
        4
        """
        most = len(tta_views(None, flip=self.flips))
        return check_int(tta, "tta", min_value=1, max_value=most,
                         hint=f"This model has {most} views" + (
                             "" if self.flips else " (no flips: it was not trained with them)"))

    def predict(self, inputs: Any, *, top_k: int = 1, batch_size: int = 32,
                tta: int = 1, follow_links: bool = False,
                min_confidence: float | None = None) -> Predictions:
        """Predict class names for files, folders, arrays or datasets.

        Parameters
        ----------
        inputs : path-like, sequence of path-like, numpy.ndarray, ImageFolderDataset or Dataset
            Image files and folders (searched recursively for image extensions; unreadable
            files are reported in ``errors``, not fatal), or images with 0–255 pixels of shape
            ``(n, h, w, c)`` or ``(h, w, c)``.
        top_k : int, default=1
            Classes kept per image by :meth:`Predictions.top`.
        batch_size : int, default=32
            Images per batch.
        tta : int, default=1
            Views averaged per image (see :meth:`evaluate`).
        follow_links : bool, default=False
            Follow links to folders inside the folders given (links skipped otherwise are
            named in a warning).
        min_confidence : float, optional
            Label an input ``"unsure"`` when its best probability is below this (0–1); the
            report's *Test set* section shows what each threshold would cost.

        Returns
        -------
        Predictions

        Examples
        --------
        >>> evaluator.predict("photos/").labels  # doctest: +SKIP
        ['acai', 'tucuma', 'acai']
        """
        top_k = check_int(top_k, "top_k", min_value=1)
        batch_size = check_int(batch_size, "batch_size", min_value=1)
        tta = self.check_tta(tta)
        if min_confidence is not None:
            min_confidence = check_float(min_confidence, "min_confidence", min_value=0.0,
                                         max_value=1.0)
        wrap = functools.partial(self._wrap, top_k=top_k, min_confidence=min_confidence)
        if isinstance(inputs, ImageFolderDataset):
            self._check_dataset(inputs)
            pipeline = inputs.to_tf_dataset(preprocessing=self.preprocessing,
                                             batch_size=batch_size, cache=False)
            return wrap(self._probabilities(pipeline, batch_size, tta), inputs.paths, {})
        if _is_tf_dataset(inputs):
            pipeline = inputs.map(lambda x, *_: x)
            return wrap(self._probabilities(pipeline, batch_size, tta), None, {})
        if is_file_inputs(inputs):
            paths, probs, errors = self._predict_files(inputs, batch_size, tta, follow_links)
            return wrap(probs, paths, errors)
        probs = self._probabilities(image_batch(inputs, self.model, "inputs"), batch_size, tta)
        return wrap(probs, None, {})

    def _predict_files(self, inputs: Any, batch_size: int, tta: int, follow_links: bool
                       ) -> tuple[list[str], np.ndarray, dict[str, str]]:
        paths, checked, errors = load_file_inputs(inputs, self.preprocessing,
                                                  batch_size=batch_size,
                                                  follow_links=follow_links)
        probs = np.full((len(paths), len(self.class_names)), np.nan)
        if checked.batches is not None:
            found = dict(zip(checked.paths,
                             self._probabilities(checked.batches, batch_size, tta)))
            for row, path in enumerate(paths):  # a path given twice gets its row twice
                if path in found:
                    probs[row] = found[path]
        return paths, probs, errors

    def _wrap(self, probs: np.ndarray, paths: list[str] | None, errors: dict[str, str],
              top_k: int, min_confidence: float | None = None) -> Predictions:
        bad = np.isnan(probs).any(axis=1) if len(probs) else np.zeros(0, bool)
        indices = np.where(bad, -1, np.nan_to_num(probs, nan=-1.0).argmax(axis=1)
                           if len(probs) else 0).astype(np.int64)
        labels = [self.class_names[i] if i >= 0 else "" for i in indices]
        predictions = Predictions(indices, labels, probs, self.class_names, paths, errors,
                                  top_k, min_confidence)
        for row in np.flatnonzero(predictions.unsure):
            predictions.labels[row] = UNSURE_LABEL
        return predictions


#: Share of the image kept by the cropped TTA views (then resized back to the input size).
TTA_CROP = 0.875


def tta_views(n: int | None, *, flip: bool = True) -> list[Callable[[Any], Any]]:
    """The first ``n`` test-time augmentation views, as functions of a batch of images.

    In order: the image itself; its mirror image (with ``flip``); a central crop of 87.5%
    of each side resized back; its mirror image (with ``flip``); the four corner crops of
    87.5%. So ``n=2`` averages an image and its mirror, ``n=4`` adds the zoomed-in pair.
    ``n=None`` returns every view (8, or 6 without flips).

    Examples
    --------
    >>> len(tta_views(None)), len(tta_views(None, flip=False))
    (8, 6)
    """
    views: list[Callable[[Any], Any]] = [_identity]
    if flip:
        views.append(_mirror)
    views.append(functools.partial(_crop, where="center"))
    if flip:
        views.append(lambda x: _mirror(_crop(x, "center")))
    views += [functools.partial(_crop, where=where)
              for where in ("top_left", "top_right", "bottom_left", "bottom_right")]
    return views if n is None else views[:n]


def _identity(images: Any) -> Any:
    return images


def _mirror(images: Any) -> Any:
    import tensorflow as tf

    return tf.reverse(images, axis=[-2])


def _crop(images: Any, where: str) -> Any:
    import tensorflow as tf

    shape = tf.shape(images)
    height, width = shape[-3], shape[-2]
    crop_h = tf.cast(tf.round(tf.cast(height, tf.float32) * TTA_CROP), tf.int32)
    crop_w = tf.cast(tf.round(tf.cast(width, tf.float32) * TTA_CROP), tf.int32)
    top = {"center": (height - crop_h) // 2, "top_left": 0, "top_right": 0,
           "bottom_left": height - crop_h, "bottom_right": height - crop_h}[where]
    left = {"center": (width - crop_w) // 2, "top_left": 0, "bottom_left": 0,
            "top_right": width - crop_w, "bottom_right": width - crop_w}[where]
    cropped = images[..., top:top + crop_h, left:left + crop_w, :]
    resized = tf.image.resize(cropped, tf.stack([height, width]), method="bilinear")
    return tf.cast(resized, images.dtype)


def _has_horizontal_flip(model: Any) -> bool:
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.RandomFlip) and "horizontal" in layer.mode:
            return True
        if hasattr(layer, "layers") and _has_horizontal_flip(layer):
            return True
    return False


def _is_tf_dataset(value: Any) -> bool:
    import tensorflow as tf

    return isinstance(value, tf.data.Dataset)


def is_file_inputs(inputs: Any) -> bool:
    """True for a path or a non-empty sequence of paths (image files or folders)."""
    return isinstance(inputs, (str, os.PathLike)) or bool(
        isinstance(inputs, Sequence) and inputs
        and all(isinstance(i, (str, os.PathLike)) for i in inputs))


def load_file_inputs(inputs: Any, preprocessing: Preprocessing, *, batch_size: int,
                     follow_links: bool = False
                     ) -> tuple[list[str], CheckedImages, dict[str, str]]:
    """Files and folders named by a user, checked and batched: every path (folders
    expanded, in the order given), the good files' batches (each file once, in that order),
    and why each other one cannot be read."""
    expanded = expand_paths([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs,
                            follow_links=follow_links)
    errors = {path: error for path, error in expanded if error is not None}
    checked = load_checked([path for path, error in expanded if error is None], preprocessing,
                           batch_size=batch_size)
    errors.update(checked.problems)
    return [path for path, _ in expanded], checked, errors


def image_batch(images: Any, model: Any, name: str) -> np.ndarray:
    """``images`` as a ``float32`` batch of the model's input shape (one image gets a batch
    axis); anything else is refused, naming the expected shape."""
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[np.newaxis]
    expected = tuple(model.input_shape[1:])
    if array.ndim != 4 or tuple(array.shape[1:]) != expected:
        raise ValueError(f"`{name}` arrays must have shape (n, {', '.join(map(str, expected))}) "
                         f"with 0–255 pixels. Received: shape {array.shape}")
    return array.astype(np.float32)


def expand_paths(items: Sequence[str | os.PathLike[str]], *, follow_links: bool = False
                  ) -> list[tuple[str, str | None]]:
    """``(path, error)`` per input: files as given, folders expanded to their image files
    (recursively, sorted); a missing path or a folder without images is one entry with an
    error, so that the other inputs are still predicted. Links to folders not followed are
    named in a warning."""
    from .data.folder import IgnoredFile, links_not_followed, skipped_links_message

    out: list[tuple[str, str | None]] = []
    for item in items:
        path = os.fspath(item)
        if os.path.isdir(path):
            passed: list[IgnoredFile] = []
            found = [p for p, _ in image_files(path, follow_links=follow_links, ignored=passed)]
            links = links_not_followed(passed)
            if links:
                logger.warning("%s: %s", path, skipped_links_message(links))
            if not found:
                out.append((path, "no images in this folder (allowed extensions: "
                                  + " ".join(IMAGE_EXTENSIONS) + ")"))
            out.extend((p, None) for p in found)
        elif os.path.lexists(path):
            out.append((path, None))
        else:
            out.append((path, "file not found"))
    return out
