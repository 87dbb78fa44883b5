"""The classes a first model gives to photos without one (pseudo-labels).

``fruitclf train --unlabeled DIR`` (``run(unlabeled=...)``) reads the photos as
:meth:`ImageFolderDataset.unsorted <fruitclf.ImageFolderDataset.unsorted>`, trains a first
model on most of the labelled images, measures on the rest how far its confidence can be
trusted (a temperature, :func:`fruitclf.stats.fit_temperature`), predicts each photo with it,
keeps those whose calibrated confidence is high (:class:`PseudoLabels`) and trains the final
model from scratch on all the labelled images and those photos together
(:meth:`ImageFolderDataset.with_images <fruitclf.ImageFolderDataset.with_images>`):
self-training. A first model that is often wrong gets a high temperature, and few or none of
its labels are kept.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _files
from .._validation import check_float
from ..exceptions import DatasetError
from .check import FileProblem
from .folder import ImageFolderDataset
from .split import DatasetSplit

__all__ = ["CALIBRATION_SHARE", "PSEUDO_LABELS_FORMAT", "PseudoLabel", "PseudoLabels",
           "calibration_split"]

#: The ``format`` of ``pseudo_labels.json``.
PSEUDO_LABELS_FORMAT = "fruitclf-pseudo-labels"
#: The largest ``pseudo_labels.json`` read back (about 300 bytes a photo).
MAX_PSEUDO_LABELS_BYTES = 1 << 30
#: Share of the labelled images held out from the first model to fit its temperature (more
#: when that gives fewer than 10 images, the fewest a temperature is fitted on).
CALIBRATION_SHARE = 0.2
#: The largest share held out for that.
MAX_CALIBRATION_SHARE = 0.5


def calibration_split(labelled: ImageFolderDataset, *, seed: int,
                      group_duplicates: bool = True) -> DatasetSplit:
    """Split the labelled images into the first model's training images and the held-out
    ones its temperature is fitted on: :data:`CALIBRATION_SHARE` of each class, or more (up
    to half) until at least ``MIN_CALIBRATION_IMAGES`` are held out.

    Parameters
    ----------
    labelled : ImageFolderDataset
        The labelled training images.
    seed : int
        Seed of the split's hash (:meth:`fruitclf.ImageFolderDataset.split`).
    group_duplicates : bool, default=True
        Keep copies of one photo on one side.

    Returns
    -------
    DatasetSplit
        ``training``: the first model's images; ``validation``: the held-out ones.

    Raises
    ------
    DatasetError
        If even half of the images are fewer than that.

    Examples
    --------
    >>> split = calibration_split(ds, seed=1)
    >>> len(split.training), len(split.validation)
    (72, 18)
    """
    from ..calibration import MIN_CALIBRATION_IMAGES

    share = CALIBRATION_SHARE
    while True:
        split = labelled.split(share, seed=seed, group_duplicates=group_duplicates)
        if len(split.validation) >= MIN_CALIBRATION_IMAGES:
            return split
        if share >= MAX_CALIBRATION_SHARE:
            raise DatasetError(
                f"Unlabelled photos need at least {2 * MIN_CALIBRATION_IMAGES} labelled "
                f"training images; {labelled.root!r} has {len(labelled)}. Some of them are "
                "held out from the first model to measure how often its labels are right, "
                "so that wrong ones are not trained on. Add labelled images, or train "
                "without --unlabeled.")
        share = min(share + 0.05, MAX_CALIBRATION_SHARE)


@dataclasses.dataclass(frozen=True)
class PseudoLabel:
    """One unlabelled photo: the first model's class for it, its confidence, and whether it
    trained the final model.

    Attributes
    ----------
    path : str
        The photo, as found under the unlabelled folder.
    relpath : str
        Its path relative to that folder, with ``/`` separators.
    predicted : str
        The class the first model gave it.
    confidence : float
        The first model's probability for that class, calibrated with
        :attr:`PseudoLabels.temperature`.
    kept : bool
        Whether it trained the final model (``confidence >= threshold``).

    Examples
    --------
    >>> labels = PseudoLabels.load("runs/fruits/pseudo_labels.json")  # doctest: +SKIP
    >>> [(p.relpath, p.predicted, p.kept) for p in labels.images[:2]]  # doctest: +SKIP
    [('IMG_0001.jpg', 'acai', True), ('IMG_0002.jpg', 'tucuma', False)]
    """

    path: str
    relpath: str
    predicted: str
    confidence: float
    kept: bool


@dataclasses.dataclass(frozen=True)
class PseudoLabels:
    """The classes a first model gave to unlabelled photos (``pseudo_labels.json``).

    Attributes
    ----------
    root : str
        The unlabelled folder.
    threshold : float
        The calibrated confidence from which a photo trained the final model.
    images : list of PseudoLabel
        Every readable photo, in the folder's order.
    refused : list of FileProblem
        Photos left out because training could not decode them.
    first_model : dict
        The first model's ``train_seconds``, ``trained_on`` (images), and the
        ``calibration_images`` held out from it with its ``calibration_accuracy`` on them;
        with a test folder, its ``test_accuracy`` (and ``test_accuracy_without_leaked`` when
        test images have a twin in the training or unlabelled folder).
    temperature : float
        The temperature the first model's probabilities were scaled with before the
        threshold (1: as they were; above 1: it was over-confident).

    Examples
    --------
    >>> labels = PseudoLabels.load("runs/fruits/pseudo_labels.json")  # doctest: +SKIP
    >>> labels.kept_counts(["acai", "tucuma"])  # doctest: +SKIP
    {'acai': 41, 'tucuma': 37}
    """

    root: str
    threshold: float
    images: list[PseudoLabel]
    refused: list[FileProblem] = dataclasses.field(default_factory=list)
    first_model: dict[str, float] = dataclasses.field(default_factory=dict)
    temperature: float = 1.0

    @classmethod
    def from_predictions(cls, unlabeled: ImageFolderDataset, probabilities: np.ndarray,
                         threshold: float, refused: Sequence[FileProblem] = (), *,
                         temperature: float = 1.0) -> PseudoLabels:
        """Each photo's most probable class, kept when its probability, scaled with
        ``temperature`` (:func:`fruitclf.stats.apply_temperature`), is at least
        ``threshold``."""
        from ..stats import apply_temperature

        threshold = check_float(threshold, "pseudo_label_threshold", min_value=0.0,
                                max_value=1.0)
        temperature = check_float(temperature, "temperature", min_value=0.0, exclusive=True)
        probabilities = apply_temperature(probabilities, temperature)
        names = unlabeled.class_names
        best = probabilities.argmax(axis=1)
        confidence = probabilities.max(axis=1)
        images = [PseudoLabel(path, relpath, names[int(k)], round(float(c), 6),
                              bool(c >= threshold))
                  for path, relpath, k, c in zip(unlabeled.paths, unlabeled.relpaths, best,
                                                 confidence)]
        return cls(unlabeled.root, threshold, images, list(refused), temperature=temperature)

    @property
    def kept(self) -> list[PseudoLabel]:
        """The photos that train the final model."""
        return [p for p in self.images if p.kept]

    def labels(self, class_names: Sequence[str]) -> dict[str, int]:
        """Path -> class index of the kept photos."""
        index = {name: i for i, name in enumerate(class_names)}
        return {p.path: index[p.predicted] for p in self.kept}

    def kept_counts(self, class_names: Sequence[str]) -> dict[str, int]:
        """Kept photos per class, in class order."""
        counts = dict.fromkeys(class_names, 0)
        for p in self.kept:
            counts[p.predicted] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {"format": PSEUDO_LABELS_FORMAT, "version": 1, "root": self.root,
                "threshold": self.threshold, "temperature": self.temperature,
                "kept": len(self.kept),
                "first_model": self.first_model,
                "images": [dataclasses.asdict(p) for p in self.images],
                "refused": [dataclasses.asdict(p) for p in self.refused]}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``pseudo_labels.json``."""
        _files.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PseudoLabels:
        """Read a file written by :meth:`save`.

        Raises
        ------
        DatasetError
            If the file is not a pseudo-label file.
        """
        try:
            data = _files.read_json(path, MAX_PSEUDO_LABELS_BYTES)
            labels = cls(str(data["root"]), float(data["threshold"]),
                         [PseudoLabel(**p) for p in data["images"]],
                         [FileProblem(**p) for p in data.get("refused", [])],
                         {str(k): v if isinstance(v, int) else float(v)
                          for k, v in data.get("first_model", {}).items()},
                         float(data.get("temperature", 1.0)))
            if data.get("format") != PSEUDO_LABELS_FORMAT:
                raise ValueError(data.get("format"))
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise DatasetError(f"{os.fspath(path)!r} is not a pseudo-label file written by "
                               f"fruitclf ({type(exc).__name__}: {exc}); train with "
                               "--overwrite to start the run again.") from exc
        return labels
