"""Train a model: compile, fit with best-model checkpointing, early stopping and resume.

:class:`Trainer` keeps the best epoch's weights itself (instead of relying on
``EarlyStopping(restore_best_weights=True)``, whose behaviour at the epoch limit differs across
Keras versions), so after :meth:`Trainer.fit` the model always holds the best weights, and the
checkpoint file (``.keras`` or ``.h5``, written through :func:`fruitclf.save_model` with the
class names) holds the same model.

The package: :mod:`~fruitclf.training.trainer` (the :class:`Trainer`),
:mod:`~fruitclf.training.history` (:class:`TrainingHistory`), :mod:`~fruitclf.training.monitor`
(the Trainer's own callback and progress output), :mod:`~fruitclf.training.phases` (optimizer,
schedule, frozen and fine-tuning phases), :mod:`~fruitclf.training.resume` (exact resume).
"""

from __future__ import annotations

from .history import TrainingHistory
from .monitor import VERBOSE, progress_mode
from .trainer import Trainer

__all__ = ["VERBOSE", "Trainer", "TrainingHistory", "progress_mode"]
