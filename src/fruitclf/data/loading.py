"""Image files -> checked, model-ready batches: the one path from files a user names (to
predict, evaluate or calibrate an export on) to what a model takes."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._quiet import read_pipeline
from .check import check_files
from .pipeline import Preprocessing, file_images

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = ["CheckedImages", "load_checked"]


@dataclasses.dataclass
class CheckedImages:
    """Files checked with the training decoder, and batches of the good ones.

    Attributes
    ----------
    paths : list of str
        The files that decode, in the order given (each once).
    problems : dict of str to str
        Every other file, with the reason in words.
    batches : tf.data.Dataset or None
        Batches of ``paths`` as ``float32`` 0–255 images of the preprocessing's size; None
        when no file decodes.

    Examples
    --------
    >>> checked = load_checked(["fruits/train/acai/01.jpg", "fruits/train/notes.txt"],
    ...                        fruitclf.Preprocessing((32, 32)))
    >>> checked.paths, list(checked.problems)
    (['fruits/train/acai/01.jpg'], ['fruits/train/notes.txt'])
    """

    paths: list[str]
    problems: dict[str, str]
    batches: tf.data.Dataset | None

    def arrays(self) -> Any:
        """All good images as one ``float32`` array ``(n, height, width, channels)``."""
        import numpy as np

        if self.batches is None:
            return np.zeros((0,), np.float32)
        return np.concatenate([np.asarray(b, np.float32) for b in read_pipeline(self.batches)])


def load_checked(paths: Sequence[str], preprocessing: Preprocessing, *,
                 batch_size: int = 32) -> CheckedImages:
    """Check ``paths`` with the decoder training uses, then batch the good ones for a model
    (resized as ``preprocessing`` says). Bad files are reported, never decoded by the
    pipeline, so nothing can crash it.
    """
    unique = list(dict.fromkeys(paths))
    report = check_files([(p, p) for p in unique], root="", progress=False)
    problems = {p.path: p.message for p in report.problems}
    good = [p for p in unique if p not in problems]
    batches = file_images(good, preprocessing, batch_size=batch_size) if good else None
    return CheckedImages(good, problems, batches)
