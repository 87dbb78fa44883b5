"""The Trainer's own callback and progress output: best epoch, checkpoints, early
stopping, a stop on non-finite values, the history files, and Ctrl-C/SIGTERM handling."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _files
from ..data import set_pipeline_epoch
from ..exceptions import TrainingError
from .history import TrainingHistory

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = ["VERBOSE", "progress_mode"]

logger = logging.getLogger("fruitclf")


def _is_better(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def rng_variables(model: Any) -> list[Any]:
    """The states of the model's random layers (augmentation, dropout), in a stable order.

    Keras keeps them out of saved weights, so a checkpoint stores them itself.
    """
    return [v for v in model.variables if "seed_generator_state" in v.name]


class _RunMonitorSteps:
    """What the Trainer's own callback does: tracks the best epoch, checkpoints, stops early,
    restores the best weights, writes the history. A plain class, so that defining it needs
    no Keras; :func:`_make_monitor_callback` mixes it into a Keras callback."""

    model: Any  # the model being trained: Keras's Callback provides it

    def __init__(self, trainer: Trainer, history: TrainingHistory, epochs: int,
                 train: Any) -> None:
        super().__init__()
        self.trainer, self.history, self.epochs, self.train = trainer, history, epochs, train
        self.monitor = history.monitor
        self.best_weights: list[Any] | None = None
        self.wait = 0
        self.epoch_start = 0.0
        self.last_write = time.monotonic()
        self.best_unsaved = False
        self.stop_requested = False
        self.last_finite: list[Any] | None = None

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        # The data order of an epoch depends on (seed, epoch) only, also after a resume.
        set_pipeline_epoch(self.train, epoch)
        if self.last_finite is None:
            self.last_finite = self.model.get_weights()
        self.epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        elapsed = time.perf_counter() - self.epoch_start
        logs = dict(logs or {})
        if self.monitor not in logs:
            raise TrainingError(
                f"Monitored metric {self.monitor!r} is not available. "
                f"Available metrics: {', '.join(sorted(logs))}. "
                + ("Pass validation data to monitor val_* metrics."
                   if self.monitor.startswith("val_") else "")
            )
        lr = _current_lr(self.model)
        if lr is not None:
            logs.setdefault("lr", lr)
        for key, value in logs.items():
            self.history.metrics.setdefault(key, []).append(float(value))
        self.history.epoch_seconds.append(elapsed)
        self.history.seconds += elapsed
        self.history.epochs_run = epoch + 1
        value = float(logs[self.monitor])
        weights = self.model.get_weights()
        if not _finite_epoch(logs, weights):
            self.stop_non_finite(epoch)
        elif _is_better(value, self.history.best_value, self.history.mode, self.trainer.min_delta):
            self.history.best_value, self.history.best_epoch = value, epoch + 1
            self.best_weights = weights  # kept in memory
            self.best_unsaved = True
            self.wait = 0
        else:
            self.wait += 1
            if self.trainer.patience is not None and self.wait >= self.trainer.patience:
                self.history.stopped_early = epoch + 1 < self.epochs
                self.model.stop_training = True
        if self.history.non_finite_epoch is None:
            self.last_finite = weights
        if self.stop_requested:
            self.model.stop_training = True
        # Write when waiting one more epoch would pass the interval, so a kill loses at
        # most the interval or one epoch; always at the end and when asked to stop.
        due = (epoch + 1 >= self.epochs or self.model.stop_training
               or time.monotonic() - self.last_write + elapsed >= self.trainer.checkpoint_interval)
        if due:
            self.write_checkpoints(self.history)
        if self.trainer.history_path is not None and self.trainer.is_chief:
            self.history.save(self.trainer.history_path)
            self.history.save(Path(self.trainer.history_path).with_suffix(".csv"))

    def stop_non_finite(self, epoch: int) -> None:
        """A non-finite loss or weight: stop, and go back to the last finite weights."""
        self.history.non_finite_epoch = epoch + 1
        self.history.stopped_early = True
        self.model.stop_training = True
        if self.last_finite is not None:
            self.model.set_weights(self.last_finite)
        kept = f"those of epoch {epoch}" if epoch else "the initial ones"
        logger.warning(
            "Training stopped at epoch %d: the loss or the weights became infinite or NaN "
            "(most often a learning rate far too high). The model keeps the last finite "
            "weights, %s; try a lower learning rate.", epoch + 1, kept)

    def write_checkpoints(self, history: TrainingHistory) -> None:
        """Best model first, then the resume state that refers to it: a kill between the
        two resumes from the last complete state."""
        start = time.perf_counter()
        if self.best_unsaved and self.trainer.checkpoint_path is not None:
            self.save_best(history)
        self.best_unsaved = False
        if self.trainer.last_checkpoint_path is not None:
            self.trainer.save_checkpoint(self.trainer.last_checkpoint_path, history,
                                         include_optimizer=True, state=self.state())
        self.last_write = time.monotonic()
        history.checkpoint_seconds += time.perf_counter() - start

    def save_best(self, history: TrainingHistory) -> None:
        assert self.trainer.checkpoint_path is not None and self.best_weights is not None
        if history.best_epoch == history.epochs_run:
            self.trainer.save_checkpoint(self.trainer.checkpoint_path, history,
                                         include_optimizer=False)
            return
        current = self.model.get_weights()
        self.model.set_weights(self.best_weights)
        try:
            self.trainer.save_checkpoint(self.trainer.checkpoint_path, history,
                                         include_optimizer=False)
        finally:
            self.model.set_weights(current)

    def state(self) -> dict[str, Any]:
        """What the next epoch depends on besides weights, optimizer and history."""
        import keras

        callbacks = {}
        for cb in self.trainer.callbacks:
            if isinstance(cb, keras.callbacks.ReduceLROnPlateau):
                callbacks["reduce_lr"] = {"wait": cb.wait, "best": float(cb.best),
                                          "cooldown_counter": cb.cooldown_counter}
        return {"wait": self.wait, "callbacks": callbacks,
                "rng": [v.numpy().tolist() for v in rng_variables(self.model)]}

    def finish(self) -> None:
        """End of the last phase: the best epoch's weights, or the last (finite) epoch's."""
        if self.trainer.restore_best and self.best_weights is not None:
            self.trainer.model.set_weights(self.best_weights)
            logger.info("Restored the weights of the best epoch (%s).", self.history.best_epoch)
        elif not self.trainer.restore_best and self.history.epochs_run:
            last = (self.history.epochs_run if self.history.non_finite_epoch is None
                    else self.history.non_finite_epoch - 1)
            self.history.best_epoch = last or None
            self.history.best_value = self.history.metrics[self.monitor][last - 1] if last else None


def _finite_epoch(logs: Mapping[str, Any], weights: Sequence[Any]) -> bool:
    """True when the epoch's loss and every weight (batch-norm statistics included) are
    finite: a huge learning rate can leave a finite loss over infinite statistics."""
    import numpy as np

    if not all(math.isfinite(float(v)) for k, v in logs.items() if k.endswith("loss")):
        return False
    return all(bool(np.isfinite(w).all()) for w in weights
               if np.issubdtype(np.asarray(w).dtype, np.floating))


def _make_monitor_callback(trainer: Trainer, history: TrainingHistory, epochs: int,
                           train: Any) -> Any:
    import keras

    class _RunMonitor(_RunMonitorSteps, keras.callbacks.Callback):  # type: ignore[misc]
        """The run monitor as a Keras callback (Keras is imported here, when training)."""

    return _RunMonitor(trainer, history, epochs, train)


VERBOSE = ("auto", 0, 1, 2)


def progress_mode(verbose: str | int) -> tuple[int, bool]:
    """``(Keras verbose, plain lines)`` for a ``verbose`` option.

    ``"auto"`` shows Keras's progress bars on a terminal or in a notebook, and one plain
    line per epoch on standard output elsewhere (a file, a pipe, a CI log), where the bars'
    carriage returns and colour codes would make each epoch one long line of control
    characters. ``2`` always gives the plain lines; ``1`` always the bars; ``0`` nothing.
    """
    if verbose == "auto":
        stream = sys.stdout
        interactive = (bool(getattr(stream, "isatty", None)) and stream.isatty()) or (
            "ipykernel" in sys.modules)
        return (1, False) if interactive else (0, True)
    if verbose == 2:
        return 0, True
    return int(verbose), False


def _epoch_lines_callback(epochs: int) -> Any:
    """A callback that writes one plain line per epoch to standard output, time and every
    metric, as Keras's own ``verbose=2`` does: seen in a script, a pipe or a CI log without
    any logging set up."""
    import keras

    class _EpochLines(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            seconds = time.perf_counter() - getattr(self, "started", time.perf_counter())
            shown = " - ".join(f"{name}: {float(value):.4f}" for name, value in
                               (logs or {}).items() if name != "learning_rate")
            sys.stdout.write(f"Epoch {epoch + 1}/{epochs} - {seconds:.1f}s - {shown}\n")
            sys.stdout.flush()

    return _EpochLines()


def _current_lr(model: Any) -> float | None:
    optimizer = getattr(model, "optimizer", None)
    rate = getattr(optimizer, "learning_rate", None)
    if rate is None:
        return None
    try:
        return float(rate.numpy() if hasattr(rate, "numpy") else rate)
    except (TypeError, ValueError):
        return None


def _stop_after_epoch_on_signal(monitor: Any) -> contextlib.AbstractContextManager[Any]:
    """Ctrl-C or SIGTERM: finish the epoch, write the checkpoints, stop; a second Ctrl-C
    stops at once."""

    def first() -> None:
        monitor.stop_requested = True
        logger.warning("Stopping after this epoch, once its checkpoint is saved "
                       "(Ctrl-C again stops at once, losing the epoch).")

    return _files.deferred_interrupts(on_first=first)
