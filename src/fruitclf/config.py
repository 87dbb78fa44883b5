"""Settings of a whole run (:func:`fruitclf.run`, ``fruitclf train``), without TensorFlow.

Kept apart so that the command line can show every default in ``--help`` without starting
TensorFlow.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["RunConfig"]


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Every setting of :func:`run`, with the defaults that suit small photo folders.

    Attributes mirror :func:`run`'s parameters; ``to_dict()`` is written to ``report.md``.

    Examples
    --------
    >>> RunConfig().epochs
    250
    """

    spec: str = "worksheet"  # preset name or spec JSON path
    image_size: tuple[int, int] = (128, 128)  # input height, width (presets only)
    batch_size: int = 16  # images per batch
    epochs: int = 250  # epoch limit
    patience: int | None = 20  # early stopping patience (None: train all epochs)
    validation_split: float = 0.2  # share of the training folder for validation
    seed: int = 123  # split, shuffling, initial weights and augmentation
    augment: bool = True  # random flips/rotations/zoom/contrast in training
    learning_rate: float = 1e-3  # Adam learning rate
    precision: str = "auto"  # auto (bfloat16 where native), float32, mixed_bfloat16, mixed_float16
    interpolation: str = "bilinear"  # resize method (the worksheet used "nearest")
    cache: str = "auto"  # keep decoded images in memory when they fit

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        out = dataclasses.asdict(self)
        out["image_size"] = list(self.image_size)
        return out
