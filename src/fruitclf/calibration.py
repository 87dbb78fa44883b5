"""Probabilities that mean what they say: temperature scaling fitted on held-out photos.

A model trained on a few photos a class is often over- or under-confident: of the photos it
calls "0.9 sure", far fewer or more than 90% are right. :func:`calibrate_model` fits one
number, a temperature, on labelled photos the model did not train on, and writes a copy of
the model that keeps it (and, optionally, a confidence below which ``predict`` answers
"unsure"). The photos must not be the test folder the model is judged on (the calibration
would then be measured on its own fitting data), and the model's training photos are left
out, found with the fingerprints the model keeps.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from ._validation import check_float, model_format
from .exceptions import DatasetError, RunFolderError

__all__ = ["CalibrationResult", "calibrate_model"]

logger = logging.getLogger("fruitclf")

#: Fewest held-out photos a temperature is fitted on.
MIN_CALIBRATION_IMAGES = 10


@dataclasses.dataclass(frozen=True)
class CalibrationResult:
    """What :func:`calibrate_model` fitted and wrote.

    Examples
    --------
    >>> print(result.summary())  # doctest: +SKIP
    Temperature 1.84 fitted on 60 photos of 'fruits/holdout' the model did not train on:
    calibration error 0.142 -> 0.041. Wrote runs/fruits/calibrated.keras.
    """

    #: The calibrated model file written
    path: str
    #: The fitted temperature (above 1: the model was over-confident)
    temperature: float
    #: The folder it was fitted on
    folder: str
    #: Photos it was fitted on
    images: int
    #: Expected calibration error on those photos before scaling
    calibration_error_before: float
    #: Expected calibration error after scaling
    calibration_error_after: float
    #: The stored threshold of "unsure" answers, if any
    min_confidence: float | None
    #: Photos of the folder left out because the model was trained on them
    left_out: list[str]

    def summary(self) -> str:
        """What was fitted, on what, and the file written, in two sentences."""
        left = (f" ({len(self.left_out)} photos the model trained on left out)"
                if self.left_out else "")
        unsure = (f" predict answers \"unsure\" below {self.min_confidence:g}."
                  if self.min_confidence is not None else "")
        return (f"Temperature {self.temperature:.2f} fitted on {self.images} photos of "
                f"{self.folder!r} the model did not train on{left}: calibration error "
                f"{self.calibration_error_before:.3f} -> {self.calibration_error_after:.3f}. "
                f"Wrote {self.path}.{unsure}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def calibrate_model(
    model: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    min_confidence: float | None = None,
    tta: int | None = None,
    batch_size: int = 32,
    follow_links: bool = False,
) -> CalibrationResult:
    """Fit a temperature on labelled photos the model did not train on; write a copy of
    the model that keeps it.

    The copy's :meth:`~fruitclf.LoadedModel.predict`, ``fruitclf predict`` and ``fruitclf
    evaluate`` scale its probabilities with the temperature (the predicted classes do not
    change), and exports carry it in their metadata (``decision``).

    Parameters
    ----------
    model : path-like
        A ``.keras`` or ``.h5`` file written by fruitclf.
    folder : path-like
        Labelled photos, one sub-folder per class, that the model was not trained on and
        that are not the test folder it is judged on. Photos the model's fingerprints
        recognise as training photos are left out, with a warning.
    out : path-like
        The calibrated model, in the model's format (``.keras`` or ``.h5``: its weights
        are copied as they are); an existing file is never replaced.
    min_confidence : float, optional
        Also store this threshold: ``predict`` then answers ``"unsure"`` below it.
    tta : int, optional
        Test-time views (default: the model's, :attr:`~fruitclf.LoadedModel.tta`), the same
        views predictions will use.
    batch_size : int, default=32
    follow_links : bool, default=False
        Follow links to folders in ``folder``.

    Returns
    -------
    CalibrationResult

    Raises
    ------
    DatasetError
        Fewer than 10 usable photos in ``folder``.
    RunFolderError
        ``out`` exists.

    Examples
    --------
    >>> result = fruitclf.calibrate_model("runs/fruits/model.keras", "fruits/holdout",
    ...                                   "runs/fruits/calibrated.keras")  # doctest: +SKIP
    >>> fruitclf.load_model("runs/fruits/calibrated.keras").temperature  # doctest: +SKIP
    1.84
    """
    from ._ownership import check_outside
    from .data import ImageFolderDataset
    from .evaluation import Evaluator
    from .io import copy_with_metadata, load_model
    from .stats import apply_temperature, fit_temperature, reliability

    if model_format(out, "out") != model_format(model, "model"):
        raise ValueError(f"`out` must be a {model_format(model, 'model')} file like the "
                         f"model. Received: out={os.fspath(out)!r}")
    if min_confidence is not None:
        min_confidence = check_float(min_confidence, "min_confidence", min_value=0.0,
                                     max_value=1.0)
    check_outside(out, {"calibration folder": folder}, "out")
    if os.path.lexists(out):
        raise RunFolderError(f"{os.fspath(out)!r} exists; the calibrated model is written to a "
                             "new file, and fruitclf never replaces one it was not asked to. "
                             "Choose another --out.")
    loaded = load_model(model)
    photos = ImageFolderDataset(folder, class_names=loaded.class_names,
                                follow_links=follow_links)
    left_out = _training_photos(loaded, photos)
    usable = photos.exclude(left_out)
    if len(usable) < MIN_CALIBRATION_IMAGES:
        raise DatasetError(
            f"Fitting a temperature needs at least {MIN_CALIBRATION_IMAGES} labelled photos "
            f"the model did not train on; {os.fspath(folder)!r} has {len(usable)}"
            + (f" ({len(left_out)} more are training photos)" if left_out else "")
            + ". Add photos of every class that were not in the training folder.")
    views = loaded.tta if tta is None else tta
    evaluation = Evaluator(loaded.model, loaded.class_names,
                           preprocessing=loaded.preprocessing).evaluate(
        usable, batch_size=batch_size, tta=views)
    temperature = fit_temperature(evaluation.probabilities, evaluation.y_true)
    after = reliability(apply_temperature(evaluation.probabilities, temperature),
                        evaluation.y_true).calibration_error
    decision = {
        "temperature": temperature, "min_confidence": min_confidence,
        "fitted_on": {"folder": os.path.abspath(folder), "images": len(usable), "tta": views,
                      "calibration_error_before": evaluation.calibration_error,
                      "calibration_error_after": after},
    }
    copy_with_metadata(model, out, {"decision": decision})
    return CalibrationResult(os.fspath(Path(out)), temperature, os.fspath(folder), len(usable),
                             evaluation.calibration_error, after, min_confidence, left_out)


def _training_photos(loaded: Any, photos: Any) -> list[str]:
    """Photos of the calibration folder the model was trained on (from its fingerprints)."""
    if loaded.training_index is None:
        logger.warning("The model keeps no fingerprints of its training images, so photos it "
                       "was trained on cannot be left out: make sure %r holds none.",
                       photos.root)
        return []
    leaked = sorted({pair.test_path for pair in loaded.find_leakage(photos, progress=False)})
    if leaked:
        logger.warning("%d photos of %r are copies of training photos and are left out of "
                       "the calibration (e.g. %s).", len(leaked), photos.root, leaked[0])
    return leaked
