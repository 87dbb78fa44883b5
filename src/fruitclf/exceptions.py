"""Exceptions raised by fruitclf.

Every failure that fruitclf detects itself derives from :class:`FruitclfError`, so one
``except fruitclf.FruitclfError`` catches them all. Wrong argument types and values raise the
built-in :class:`TypeError` / :class:`ValueError` (the data and spec errors below are also
``ValueError`` subclasses, so generic handlers keep working)::

    FruitclfError
    ├── DatasetError (also ValueError)
    │   └── CorruptedImagesError
    ├── SpecError (also ValueError)
    ├── TrainingError
    ├── RunFolderError
    ├── WeightsError (also OSError)
    ├── WriteError (also OSError)
    ├── ExportError
    ├── MissingExtraError (also ImportError)
    └── ModelFileError (also OSError)
        └── VersionCompatibilityError
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "CorruptedImagesError",
    "DatasetError",
    "ExportError",
    "FruitclfError",
    "MissingExtraError",
    "ModelFileError",
    "RunFolderError",
    "SpecError",
    "TrainingError",
    "VersionCompatibilityError",
    "WeightsError",
    "WriteError",
]


class FruitclfError(Exception):
    """Base class of every error fruitclf raises on purpose."""


class DatasetError(FruitclfError, ValueError):
    """An image folder cannot be used as asked (missing, empty, unknown class, ...)."""


class CorruptedImagesError(DatasetError):
    """Files in an image folder would crash training.

    Parameters
    ----------
    paths : sequence of str
        The offending files.
    message : str
        The full message.
    """

    def __init__(self, message: str, paths: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.paths = list(paths)


class SpecError(FruitclfError, ValueError):
    """A model spec (or its JSON) is invalid."""


class TrainingError(FruitclfError):
    """Training cannot start or continue (e.g. a monitored metric does not exist)."""


class ExportError(FruitclfError):
    """A model cannot be exported as asked (format, quantisation, existing target, converter).

    Nothing is written when it is raised before the conversion; a failed conversion leaves
    existing files as they were.
    """


class MissingExtraError(FruitclfError, ImportError):
    """An optional feature needs packages that are not installed; the message says which
    ``pip install`` adds them (e.g. ``pip install "fruitclf[export]"``)."""


class RunFolderError(FruitclfError):
    """A run folder holds another run, is in use by another process, or does not match.

    Raised before anything in the folder is changed.

    Examples
    --------
    >>> try:  # doctest: +SKIP
    ...     fruitclf.run("fruits/train", out="runs/fruits")
    ... except fruitclf.RunFolderError:
    ...     fruitclf.run("fruits/train", out="runs/fruits", resume=True)
    """


class ModelFileError(FruitclfError, OSError):
    """A model file is missing, is not a model, or is damaged."""


class VersionCompatibilityError(ModelFileError):
    """A model file was written by a TensorFlow/Keras version that cannot be read here."""


class WeightsError(FruitclfError, OSError):
    """Pretrained backbone weights cannot be downloaded or read."""


class WriteError(FruitclfError, OSError):
    """A file could not be written (disk full, no permission, read-only file system).

    The message names the file; ``errno`` and ``filename`` are set as for ``OSError``. The
    file that was there before, if any, is unchanged.

    Examples
    --------
    >>> try:  # doctest: +SKIP
    ...     fruitclf.save_model(model, "/full-disk/model.keras", class_names=names)
    ... except fruitclf.WriteError as exc:
    ...     print(exc.filename, exc.errno)
    /full-disk/model.keras 28
    """

    def __init__(self, message: str, errno: int | None = None, filename: str | None = None
                 ) -> None:
        super().__init__(errno, message, filename)
        self.message = message
        self.reason: str | None = None

    def __str__(self) -> str:
        return self.message
