"""Train a model: compile, fit with best-model checkpointing, early stopping and resume.

:class:`Trainer` keeps the best epoch's weights itself (instead of relying on
``EarlyStopping(restore_best_weights=True)``, whose behaviour at the epoch limit differs across
Keras versions), so after :meth:`Trainer.fit` the model always holds the best weights, and the
checkpoint file (``.keras`` or ``.h5``, written through :func:`fruitclf.save_model` with the
class names) holds the same model.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _files
from ._compat import resolve_precision
from ._validation import check_choice, check_class_names, check_float, check_int, model_format
from .data import Preprocessing, set_pipeline_epoch
from .distribute import distributed_fit, is_chief, make_strategy
from .exceptions import TrainingError
from .io import load_model, model_precision, read_metadata, save_model
from .model import build_cnn, set_fine_tuning
from .settings import SETTINGS
from .spec import CNNSpec

if TYPE_CHECKING:
    import keras
    import tensorflow as tf
    from matplotlib.figure import Figure

__all__ = ["Trainer", "TrainingHistory"]

logger = logging.getLogger("fruitclf")


@dataclasses.dataclass
class TrainingHistory:
    """What happened in :meth:`Trainer.fit`.

    Attributes
    ----------
    metrics : dict of str to list of float
        Per-epoch values (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``lr`` ...).
    monitor : str
        The metric that chose the best epoch.
    mode : {"min", "max"}
        Whether lower or higher is better.
    best_epoch : int or None
        1-based epoch whose weights the model holds after training.
    best_value : float or None
        The monitored value at the best epoch.
    epochs_run : int
        Epochs trained in total (a resumed run counts the earlier ones).
    stopped_early : bool
        True when early stopping, or a non-finite loss, ended training before the epoch
        limit.
    non_finite_epoch : int or None
        The epoch whose loss (or weights) became infinite or NaN, which ended training; the
        model then holds the weights of the epoch before it, the last finite ones.
    seconds : float
        Wall time spent in training epochs.
    epoch_seconds : list of float
        Wall time of each epoch.
    images_per_epoch : int
        Training images seen per epoch.
    checkpoint_seconds : float
        Wall time spent writing checkpoints (the best model and the resume state).

    Examples
    --------
    >>> history = trainer.fit(train_tf, val_tf, epochs=50)  # doctest: +SKIP
    >>> history.best_epoch, history.best("val_accuracy")  # doctest: +SKIP
    (21, 0.94)
    """

    metrics: dict[str, list[float]]
    monitor: str
    mode: str
    best_epoch: int | None = None
    best_value: float | None = None
    epochs_run: int = 0
    stopped_early: bool = False
    non_finite_epoch: int | None = None
    seconds: float = 0.0
    epoch_seconds: list[float] = dataclasses.field(default_factory=list)
    images_per_epoch: int = 0
    checkpoint_seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        """Training throughput over all epochs (images / second)."""
        if not self.seconds:
            return 0.0
        return self.images_per_epoch * len(self.epoch_seconds) / self.seconds

    @property
    def steady_images_per_second(self) -> float:
        """Throughput of the median epoch after the first (the first includes decoding)."""
        steady = self.epoch_seconds[1:] or self.epoch_seconds
        if not steady:
            return 0.0
        return self.images_per_epoch / statistics.median(steady)

    def best(self, metric: str) -> float | None:
        """The value of ``metric`` at the best epoch."""
        values = self.metrics.get(metric)
        if not values or self.best_epoch is None or self.best_epoch > len(values):
            return None
        return values[self.best_epoch - 1]

    def summary(self) -> dict[str, Any]:
        """A short JSON-able summary (stored with saved models)."""
        out: dict[str, Any] = {
            "monitor": self.monitor, "best_epoch": self.best_epoch,
            "best_value": self.best_value, "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early, "non_finite_epoch": self.non_finite_epoch,
            "train_seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 2),
            "checkpoint_seconds": round(self.checkpoint_seconds, 3),
        }
        for name in self.metrics:
            value = self.best(name)
            if value is not None and name != "lr":
                out[f"best_{name}"] = value
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return plain JSON types; :meth:`from_dict` rebuilds the history."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingHistory:
        """Rebuild from :meth:`to_dict` output."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the history: JSON for ``.json`` paths, one row per epoch for ``.csv`` paths.

        Examples
        --------
        >>> history.save("run/history.json")  # doctest: +SKIP
        >>> history.save("run/history.csv")  # doctest: +SKIP
        """
        target = Path(path)
        if target.suffix.lower() == ".csv":
            names = list(self.metrics)
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(["epoch", *names])
            for epoch in range(len(self.epoch_seconds) or self.epochs_run):
                writer.writerow([epoch + 1, *(
                    self.metrics[n][epoch] if epoch < len(self.metrics[n]) else ""
                    for n in names)])
            _files.write_text(target, buffer.getvalue())
        else:
            _files.write_json(target, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrainingHistory:
        """Read a history written by :meth:`save` as JSON."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as exc:
            raise TrainingError(f"Cannot read training history {os.fspath(path)!r}: {exc}"
                                ) from None

    def plot(self, *, metrics: Sequence[str] = ("loss", "accuracy")) -> Figure:
        """Plot training vs validation curves with the epoch whose weights the model kept
        marked (the best one, or the last one when training keeps the last).

        Examples
        --------
        >>> history.plot().savefig("run/history.png")  # doctest: +SKIP
        """
        from .plotting import plot_history

        return plot_history(self.metrics, best_epoch=self.best_epoch, metrics=metrics,
                            marked_label="model kept")


def _is_better(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def _rng_variables(model: Any) -> list[Any]:
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
            "(the learning rate is probably too high). The model keeps the last finite "
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
                "rng": [v.numpy().tolist() for v in _rng_variables(self.model)]}

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

    ``"auto"`` shows Keras's progress bars on a terminal or in a notebook, and one plain line
    per epoch elsewhere (a file, a pipe, a CI log), where the bars' carriage returns and
    colour codes would make each epoch one long line of control characters. ``2`` always
    gives the plain lines; ``1`` always the bars; ``0`` nothing.
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
    """A callback that logs one plain line per epoch: time and every metric."""
    import keras

    class _EpochLines(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            seconds = time.perf_counter() - getattr(self, "started", time.perf_counter())
            shown = " - ".join(f"{name}: {float(value):.4f}" for name, value in
                               (logs or {}).items() if name != "learning_rate")
            logger.info("Epoch %d/%d - %.1fs - %s", epoch + 1, epochs, seconds, shown)

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


class Trainer:
    """Compile and fit a model, keeping the best epoch.

    Parameters
    ----------
    model : keras.Model or CNNSpec
        A model, or a spec to build (inside ``strategy``'s scope, with ``seed`` and
        ``precision``).
    class_names : sequence of str, optional
        Class names in label order; needed for checkpoints (stored with them).
    optimizer : str or keras.optimizers.Optimizer, default="adam"
        Optimizer name or instance.
    learning_rate : float, default=0.001
        Learning rate (the peak of the schedule), when ``optimizer`` is a name.
    weight_decay : float, default=0.0
        Decoupled weight decay, when ``optimizer`` is a name (e.g. ``"adamw"``).
    schedule : {"constant", "cosine"}, default="constant"
        ``"cosine"``: linear warm-up from a tenth of ``learning_rate`` over
        ``warmup_epochs``, then cosine decay to 0 at the last epoch of :meth:`fit`. Needs
        ``optimizer`` as a name.
    warmup_epochs : int, default=0
        Warm-up epochs of the cosine schedule.
    label_smoothing : float, default=0.0
        Label smoothing of the default loss (integer labels are kept in the pipeline).
    freeze_epochs : int, default=0
        Models with a pretrained backbone (``CNNSpec.backbone``): train only the head for
        this many epochs, then unfreeze the backbone's top ``spec.fine_tune_layers`` layers
        (batch normalisation stays frozen) and continue at ``fine_tune_learning_rate`` —
        both phases in one :meth:`fit`, checkpointed and resumable alike.
    fine_tune_learning_rate : float, default=0.0001
        Peak learning rate of the fine-tuning phase.
    loss : str or keras loss, default="sparse_categorical_crossentropy"
        Loss for integer labels.
    metrics : sequence, default=("accuracy",)
        Metrics to report.
    monitor : str, optional
        Metric that picks the best epoch; default ``val_loss`` (``loss`` without validation).
    mode : {"auto", "min", "max"}, default="auto"
        Whether lower or higher is better; ``auto`` chooses ``max`` for accuracy-like names.
    patience : int, optional
        Stop after this many epochs without improvement; None or 0 trains all epochs.
    min_delta : float, default=0.0
        Smallest change that counts as improvement.
    restore_best : bool, default=True
        End with the best epoch's weights in the model. False keeps the last epoch's weights
        (right for a schedule that decays to 0), and the history's ``best_epoch`` then names
        the last epoch.
    reduce_lr_patience : int, optional
        Halve the learning rate after this many epochs without improvement.
    checkpoint_path : path-like, optional
        Save the best model here (``.keras`` or ``.h5``) whenever it improves.
    checkpoint_interval : float, default=60.0
        Seconds between checkpoint writes. At an epoch end, the best model (kept in memory
        until then) and the resume state are written when waiting one more epoch would pass
        this interval, so a kill loses at most about this long or one epoch, whichever is
        longer; they are always written after the last epoch, on early stopping and on
        Ctrl-C / SIGTERM (which end training after the current epoch). 0 writes every epoch.
    last_checkpoint_path : path-like, optional
        Save the latest model with its optimizer (``.keras``) every epoch, with the history,
        early-stopping counter and random state, to resume from exactly (see :meth:`fit`).
        Every checkpoint is written atomically.
    history_path : path-like, optional
        Write the history as JSON (and CSV beside it) after every epoch.
    callbacks : sequence of keras callbacks, optional
        Appended after fruitclf's own.
    seed : int, optional
        Seeds the model built from a spec (and nothing global).
    precision : {"float32", "mixed_bfloat16", "mixed_float16", "auto"}, default="float32"
        Dtype policy when building from a spec (``"auto"``: bfloat16 where the hardware
        computes it natively). A built model keeps the policy it was built with.
    strategy : str or tf.distribute.Strategy, optional
        ``"auto"``, ``"one_device"``, ``"mirrored"``, ``"multi_worker"`` or a strategy:
        where to train (see :doc:`/howto/distributed`). ``"mirrored"`` on every GPU of
        this machine, ``"multi_worker"`` on every worker of the cluster in ``TF_CONFIG``,
        ``"auto"`` mirrored when several GPUs are visible; None or ``"one_device"`` trains
        with Keras's ``fit`` on one device. Under a strategy the model is built and
        compiled in its scope and trained by fruitclf's own loop (Keras 3's ``fit`` does
        not run under ``MultiWorkerMirroredStrategy``), with the same callbacks,
        checkpoints, history and early stopping; only the chief (worker 0) writes files.
    preprocessing : Preprocessing, optional
        Stored in checkpoints, so a checkpoint predicts on files like the final model.
    verbose : {"auto", 0, 1, 2}, default="auto"
        Progress output: ``1`` Keras's progress bars, ``2`` one plain line per epoch
        (logged through the ``fruitclf`` logger), ``0`` none, ``"auto"`` bars on a terminal
        or in a notebook and plain lines anywhere else (a file, a pipe, a CI log).
        :meth:`fit` can override it.

    Examples
    --------
    >>> spec = fruitclf.CNNSpec.preset("worksheet", num_classes=6)
    >>> trainer = fruitclf.Trainer(spec, class_names=names, patience=10,
    ...                            checkpoint_path="run/best.keras", seed=123)  # doctest: +SKIP
    >>> history = trainer.fit(train_tf, val_tf, epochs=250)  # doctest: +SKIP
    >>> history.best_epoch  # doctest: +SKIP
    37
    """

    def __init__(
        self,
        model: keras.Model | CNNSpec,
        *,
        class_names: Sequence[str] | None = None,
        optimizer: Any = "adam",
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        schedule: str = "constant",
        warmup_epochs: int = 0,
        label_smoothing: float = 0.0,
        freeze_epochs: int = 0,
        fine_tune_learning_rate: float = 1e-4,
        loss: Any = "sparse_categorical_crossentropy",
        metrics: Sequence[Any] = ("accuracy",),
        monitor: str | None = None,
        mode: str = "auto",
        patience: int | None = None,
        min_delta: float = 0.0,
        restore_best: bool = True,
        reduce_lr_patience: int | None = None,
        checkpoint_path: str | os.PathLike[str] | None = None,
        checkpoint_interval: float = 60.0,
        last_checkpoint_path: str | os.PathLike[str] | None = None,
        history_path: str | os.PathLike[str] | None = None,
        callbacks: Sequence[Any] = (),
        seed: int | None = None,
        precision: str = "float32",
        strategy: str | tf.distribute.Strategy | None = None,
        preprocessing: Preprocessing | None = None,
        verbose: str | int = "auto",
    ) -> None:
        self.learning_rate = SETTINGS["learning_rate"].check(learning_rate)
        self.weight_decay = SETTINGS["weight_decay"].check(weight_decay)
        self.schedule = SETTINGS["schedule"].check(schedule)
        self.warmup_epochs = SETTINGS["warmup_epochs"].check(warmup_epochs)
        self.label_smoothing = SETTINGS["label_smoothing"].check(label_smoothing)
        self.freeze_epochs = SETTINGS["freeze_epochs"].check(freeze_epochs)
        self.fine_tune_learning_rate = SETTINGS["fine_tune_learning_rate"].check(
            fine_tune_learning_rate)
        self.monitor_arg = monitor
        self._monitor: str | None = monitor
        self.mode_arg = check_choice(mode, "mode", ("auto", "min", "max"))
        # 0 and None both train every epoch, as in run() and --patience.
        self.patience = (None if patience is None else SETTINGS["patience"].check(patience)
                         or None)
        self.min_delta = abs(check_float(min_delta, "min_delta"))
        self.restore_best = bool(restore_best)
        self.reduce_lr_patience = (None if reduce_lr_patience is None else
                                   check_int(reduce_lr_patience, "reduce_lr_patience",
                                             min_value=1))
        self._check_combinations(optimizer, loss)
        self.checkpoint_path = self._model_path(checkpoint_path, "checkpoint_path")
        self.checkpoint_interval = SETTINGS["checkpoint_interval"].check(checkpoint_interval)
        self.last_checkpoint_path = self._model_path(last_checkpoint_path, "last_checkpoint_path")
        self.history_path = None if history_path is None else os.fspath(history_path)
        self.class_names = None if class_names is None else list(class_names)
        if (self.checkpoint_path or self.last_checkpoint_path) and self.class_names is None:
            raise ValueError(
                "`class_names` is required with `checkpoint_path`/`last_checkpoint_path`, so "
                "that checkpoints can predict class names. Pass class_names=dataset.class_names"
            )
        self.user_callbacks = list(callbacks)
        self._own_callbacks: list[Any] = []
        self.seed = None if seed is None else SETTINGS["seed"].check(seed)
        self.precision = resolve_precision(precision)
        self.strategy = make_strategy(strategy)
        #: False on workers other than the chief: they train but write no file.
        self.is_chief = is_chief(self.strategy)
        if self.strategy is not None and [m for m in metrics if m != "accuracy"]:
            raise ValueError("Under a distribution strategy fruitclf's loop reports loss and "
                             f"accuracy only. Received: metrics={list(metrics)!r}")
        self.preprocessing = preprocessing
        self.verbose = check_choice(verbose, "verbose", VERBOSE)
        self.spec: CNNSpec | None = model if isinstance(model, CNNSpec) else None
        self._optimizer = optimizer
        self._loss = loss
        if self.label_smoothing:
            from ._losses import SmoothedSparseCategoricalCrossentropy

            self._loss = SmoothedSparseCategoricalCrossentropy(self.label_smoothing)
        self._metrics = list(metrics)
        self._build_and_compile(model, precision)

    def _build_and_compile(self, model: CNNSpec | keras.Model, precision: str) -> None:
        """Set ``self.model``: built from a spec (or the one given), compiled with this
        trainer's optimizer, loss and metrics, inside the distribution strategy's scope."""
        import keras

        with self._scope():
            if isinstance(model, CNNSpec):
                built = build_cnn(model, seed=self.seed, precision=self.precision)
            elif isinstance(model, keras.Model):
                if precision not in ("float32", "auto"):
                    raise ValueError(
                        "`precision` applies when building from a spec: pass a CNNSpec, or "
                        "build the model with build_cnn(spec, precision=...). "
                        f"Received: precision={precision!r} with a built model"
                    )
                built, self.precision = model, model_precision(model)
            else:
                raise TypeError(
                    f"`model` must be a keras.Model or a CNNSpec. Received: {type(model).__name__}"
                )
            self.model = built
            self._compile(self._make_optimizer())
        if self.class_names is not None:
            check_class_names(self.class_names, built.output_shape[-1])
        if self.preprocessing is not None:
            _check_input_size((*self.preprocessing.image_size, self.preprocessing.channels),
                              built, "`preprocessing`", "Preprocessing(image_size={size})")

    def _check_combinations(self, optimizer: Any, loss: Any) -> None:
        """Refuse settings that each make sense but not together."""
        if not isinstance(optimizer, str) and (self.schedule != "constant"
                                               or self.weight_decay):
            raise ValueError(
                "`schedule` and `weight_decay` apply when `optimizer` is a name such as "
                f"'adamw'; configure your optimizer instance instead. Received: "
                f"optimizer={type(optimizer).__name__}, schedule={self.schedule!r}, "
                f"weight_decay={self.weight_decay}"
            )
        if self.label_smoothing and loss != "sparse_categorical_crossentropy":
            raise ValueError(
                "`label_smoothing` applies to the default loss; pass a loss with its own "
                f"smoothing instead. Received: loss={loss!r}, "
                f"label_smoothing={self.label_smoothing}"
            )
        if self.reduce_lr_patience is not None and self.schedule != "constant":
            raise ValueError(
                "`reduce_lr_patience` changes a constant learning rate; the cosine schedule "
                "sets it at every step. Use one or the other. Received: "
                f"reduce_lr_patience={self.reduce_lr_patience}, schedule={self.schedule!r}"
            )

    @staticmethod
    def _model_path(path: str | os.PathLike[str] | None, name: str) -> str | None:
        if path is None:
            return None
        model_format(path, name)
        return os.fspath(path)

    def _scope(self) -> Any:
        import contextlib

        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def _compile(self, optimizer: Any) -> None:
        with self._scope():
            self.model.compile(optimizer=optimizer, loss=self._loss, metrics=self._metrics)

    def _make_optimizer(
        self, learning_rate: float | None = None, steps: int = 0, warmup_steps: int = 0
    ) -> Any:
        """The optimizer; with ``steps``, on the cosine schedule over that many steps. Made
        in the strategy's scope: a Keras optimizer belongs to the strategy it was made in."""
        with self._scope():
            return self._new_optimizer(learning_rate, steps, warmup_steps)

    def _new_optimizer(self, learning_rate: float | None, steps: int, warmup_steps: int
                       ) -> Any:
        import keras

        optimizer = self._optimizer
        if isinstance(optimizer, str):
            rate: Any = self.learning_rate if learning_rate is None else learning_rate
            if self.schedule == "cosine" and steps > 0:
                warmup_steps = min(warmup_steps, steps - 1)
                rate = keras.optimizers.schedules.CosineDecay(
                    rate / 10 if warmup_steps else rate, steps - warmup_steps,
                    warmup_target=rate if warmup_steps else None, warmup_steps=warmup_steps)
            config: dict[str, Any] = {"learning_rate": rate}
            if self.weight_decay:
                config["weight_decay"] = self.weight_decay
            try:
                optimizer = keras.optimizers.get({"class_name": optimizer, "config": config})
            except ValueError:
                raise ValueError(
                    f"Unknown optimizer {self._optimizer!r}. Use a Keras optimizer name such as "
                    "'adam', 'sgd', 'rmsprop', 'adamw', or an optimizer instance."
                ) from None
        if self.precision == "mixed_float16" and not isinstance(
            optimizer, keras.optimizers.LossScaleOptimizer
        ):
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        return optimizer

    @property
    def monitor(self) -> str | None:
        """The metric that picks the best epoch: the ``monitor`` argument, or the default that
        :meth:`fit` chose (``val_loss`` with validation data, ``loss`` without); None before
        the first ``fit()`` when no ``monitor`` was given."""
        return self._monitor

    @property
    def loss(self) -> Any:
        """The loss the model is trained on (a name or a Keras loss)."""
        return self._loss

    @property
    def callbacks(self) -> list[Any]:
        """The callbacks of the current :meth:`fit`: the trainer's own, then the user's."""
        return [*self._own_callbacks, *self.user_callbacks]

    def save_checkpoint(self, path: str, history: TrainingHistory, *, include_optimizer: bool,
                        state: Mapping[str, Any] | None = None) -> None:
        """Save the model with its history (and the resume ``state``) to ``path``; only the
        chief writes under a multi-worker strategy."""
        if not self.is_chief:
            return  # the chief writes for the cluster; the weights are the same everywhere
        assert self.class_names is not None  # checked in __init__ when a path is set
        extra: dict[str, Any] | None = None
        if include_optimizer:
            extra = {"history": history.to_dict()}
            if state is not None:
                extra["resume"] = dict(state)
        save_model(
            self.model, path, class_names=self.class_names, preprocessing=self.preprocessing,
            spec=self.spec, training=history.summary(), extra=extra,
            include_optimizer=include_optimizer,
        )

    def fit(
        self,
        train: tf.data.Dataset,
        validation: tf.data.Dataset | None = None,
        *,
        epochs: int = 10,
        resume: bool = False,
        num_train_images: int | None = None,
        verbose: str | int | None = None,
        steps_per_epoch: int | None = None,
    ) -> TrainingHistory:
        """Train, keeping the best epoch's weights in the model (and the checkpoint).

        Parameters
        ----------
        train : tf.data.Dataset or callable
            Batches of ``(images, labels)``; the batch size belongs to the pipeline. Under a
            strategy, also a function of a ``tf.distribute.InputContext`` that returns one
            worker's batches of ``context.get_per_replica_batch_size(global)`` (so that each
            worker reads only its share of the files), with ``steps_per_epoch``.
        validation : tf.data.Dataset, optional
            Validation batches.
        epochs : int, default=10
            Total epochs (a resumed run continues up to this number).
        resume : bool, default=False
            Continue from ``last_checkpoint_path`` when it exists: weights, optimizer state,
            history, early-stopping counter, the random state of augmentation and dropout, and
            the data order of the next epoch (for pipelines from
            :meth:`ImageFolderDataset.to_tf_dataset`), so the result equals an uninterrupted
            run's. A finished or early-stopped run trains no further and writes nothing.
        num_train_images : int, optional
            Images per epoch, for throughput; by default batches x batch size.
        verbose : {"auto", 0, 1, 2}, optional
            Progress output of this call (default: the Trainer's ``verbose``).
        steps_per_epoch : int, optional
            Under a strategy: steps per epoch on every worker (the input repeats); by
            default the number of batches of ``train``.

        Returns
        -------
        TrainingHistory

        Raises
        ------
        TrainingError
            If the monitored metric does not exist, or the loss becomes NaN.
        """
        import keras

        epochs = check_int(epochs, "epochs", min_value=1, hint="Train for at least one epoch")
        keras_verbose, plain_lines = progress_mode(
            self.verbose if verbose is None else check_choice(verbose, "verbose", VERBOSE))
        if not callable(train) or hasattr(train, "element_spec"):
            _check_pipeline(train, self.model, "train")
        if validation is not None:
            _check_pipeline(validation, self.model, "validation")
        self._monitor = self.monitor_arg or ("val_loss" if validation is not None else "loss")
        if self._monitor.startswith("val_") and validation is None:
            raise TrainingError(
                f"`monitor`={self._monitor!r} needs validation data. Pass `validation`, or "
                "monitor 'loss' / 'accuracy'."
            )
        mode = self.mode_arg
        if mode == "auto":
            mode = "max" if any(k in self._monitor for k in ("acc", "auc", "precision",
                                                              "recall", "f1")) else "min"
        history = TrainingHistory(metrics={}, monitor=self._monitor, mode=mode)
        self._own_callbacks = []
        if self.reduce_lr_patience is not None:
            self._own_callbacks.append(keras.callbacks.ReduceLROnPlateau(
                monitor=self._monitor, mode=mode, factor=0.5, patience=self.reduce_lr_patience,
                verbose=0))
        steps = (steps_per_epoch or _steps_per_epoch(train)) if self.schedule == "cosine" else 0
        monitor_cb = _make_monitor_callback(self, history, epochs, train)
        initial_epoch = 0
        saved = self._read_resume_state(epochs) if resume else None
        if saved is not None:
            initial_epoch = self._restore(saved, history, monitor_cb, epochs, steps)
            if history.stopped_early or initial_epoch >= epochs:
                logger.info("Nothing to resume: %d of %d epochs done%s.", history.epochs_run,
                            epochs, " (stopped early)" if history.stopped_early else "")
                monitor_cb.finish()
                return history
        history.images_per_epoch = num_train_images or _estimate_images(train)
        callbacks: list[Any] = [monitor_cb, *self._own_callbacks, *self.user_callbacks]
        if plain_lines:
            callbacks.append(_epoch_lines_callback(epochs))
        with _stop_after_epoch_on_signal(monitor_cb):
            for start, end, fine_tune in self._phases(epochs):
                if end <= initial_epoch:
                    continue
                # A phase that starts now gets its optimizer; a resumed one keeps its state.
                if initial_epoch <= start:
                    self._start_phase(fine_tune, (end - start) * steps,
                                      0 if fine_tune else self.warmup_epochs * steps)
                self._fit_phase(train, validation, end, max(start, initial_epoch), callbacks,
                                keras_verbose, steps_per_epoch)
                if history.stopped_early or monitor_cb.stop_requested:
                    break
        if monitor_cb.stop_requested:
            raise KeyboardInterrupt(
                f"Training stopped after epoch {history.epochs_run} with a checkpoint saved; "
                "resume=True continues it."
            )
        monitor_cb.finish()
        return history

    def _fit_phase(self, train: Any, validation: Any, epochs: int, initial_epoch: int,
                   callbacks: list[Any], verbose: int, steps_per_epoch: int | None) -> None:
        """Keras's ``fit`` on one device; fruitclf's own loop under a strategy."""
        if self.strategy is None:
            # shuffle=False: the pipeline orders each epoch itself (Keras would only warn)
            self.model.fit(train, validation_data=validation, epochs=epochs, shuffle=False,
                           initial_epoch=initial_epoch, callbacks=callbacks, verbose=verbose)
            return
        distributed_fit(self.model, self.strategy, self.loss, train, validation, epochs=epochs,
                        initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
                        callbacks=callbacks, verbose=verbose)

    def _phases(self, epochs: int) -> list[tuple[int, int, bool]]:
        """``(first epoch, end epoch, fine-tuning)`` of each training phase."""
        backbone = self.spec.backbone if self.spec is not None else None
        layers = self.spec.fine_tune_layers if self.spec is not None else 0
        if backbone is None or layers == 0 or self.freeze_epochs >= epochs:
            return [(0, epochs, False)]
        if self.freeze_epochs == 0:
            return [(0, epochs, True)]
        return [(0, self.freeze_epochs, False), (self.freeze_epochs, epochs, True)]

    def _start_phase(self, fine_tune: bool, steps: int, warmup_steps: int) -> None:
        if fine_tune:
            assert self.spec is not None  # _phases fine-tunes only models built from a spec
            unfrozen = set_fine_tuning(self.model, self.spec.fine_tune_layers)
            logger.info("Fine-tuning the top %d backbone layers at learning rate %g.",
                        unfrozen, self.fine_tune_learning_rate)
            self._compile(self._make_optimizer(self.fine_tune_learning_rate, steps))
        elif steps:
            self._compile(self._make_optimizer(self.learning_rate, steps, warmup_steps))

    def _read_resume_state(self, epochs: int) -> dict[str, Any] | None:
        """The last checkpoint's metadata, checked against this Trainer; None to start anew."""
        path = self.last_checkpoint_path
        if path is None:
            raise ValueError("`resume=True` needs `last_checkpoint_path` set on the Trainer.")
        if not os.path.exists(path):
            logger.info("No checkpoint at %s: starting from epoch 1.", path)
            return None
        saved = read_metadata(path)
        if saved.get("class_names") != self.class_names:
            raise TrainingError(
                f"Cannot resume from {path!r}: it was trained on classes "
                f"{saved.get('class_names')!r}, not {self.class_names!r}. Train into a new "
                "folder instead."
            )
        spec = json.loads(json.dumps(self.spec.to_dict())) if self.spec is not None else None
        if spec is not None and saved.get("spec") not in (None, spec):
            raise TrainingError(
                f"Cannot resume from {path!r}: it was trained from another spec. Resume with "
                "the same spec, or train into a new folder."
            )
        return saved

    def _restore(self, saved: Mapping[str, Any], history: TrainingHistory, monitor_cb: Any,
                 epochs: int, steps: int) -> int:
        """Put the checkpoint's weights, optimizer, random and callback state in place."""
        assert self.last_checkpoint_path is not None  # _read_resume_state checked it
        restored = TrainingHistory.from_dict(saved.get("history") or {
            "metrics": {}, "monitor": history.monitor, "mode": history.mode})
        if restored.monitor != history.monitor:
            raise TrainingError(
                f"Cannot resume from {self.last_checkpoint_path!r}: it monitored "
                f"{restored.monitor!r}, this run monitors {history.monitor!r}."
            )
        for field in dataclasses.fields(history):  # all but monitor and mode, checked above
            if field.name not in ("monitor", "mode"):
                setattr(history, field.name, getattr(restored, field.name))
        state = dict(saved.get("resume") or {})
        initial_epoch = history.epochs_run
        with self._scope():
            checkpoint = load_model(self.last_checkpoint_path, compile=True).model
        # Rebuild the optimizer of the phase in progress exactly as the first run did, then
        # load the saved state into this Trainer's own model (never use the loaded object,
        # whose config Keras cannot always save again). A phase that starts at the resume
        # point gets a fresh optimizer in fit(); a finished run needs none.
        in_progress = None if history.stopped_early else next(
            ((start, end, fine_tune) for start, end, fine_tune in self._phases(epochs)
             if start < initial_epoch < end), None)
        if in_progress is not None:
            start, end, fine_tune = in_progress
            self._start_phase(fine_tune, (end - start) * steps,
                              0 if fine_tune else self.warmup_epochs * steps)
        _copy_variables(checkpoint.weights, self.model.weights, "weights",
                        self.last_checkpoint_path)
        if in_progress is not None:
            optimizer = self.model.optimizer
            with self._scope():
                optimizer.build(self.model.trainable_variables)
            _copy_variables(checkpoint.optimizer.variables, optimizer.variables,
                            "optimizer state", self.last_checkpoint_path)
        rng = state.get("rng")
        if rng is not None:
            targets = _rng_variables(self.model)
            if len(targets) == len(rng):
                for variable, value in zip(targets, rng):
                    variable.assign(value)
        monitor_cb.wait = int(state.get("wait", 0))
        reduce_lr = state.get("callbacks", {}).get("reduce_lr")
        for cb in self.callbacks:
            if reduce_lr and type(cb).__name__ == "ReduceLROnPlateau":
                cb.wait, cb.best = reduce_lr["wait"], reduce_lr["best"]
                cb.cooldown_counter = reduce_lr["cooldown_counter"]
        if self.restore_best:
            best = self.checkpoint_path
            if best is not None and os.path.exists(best):
                monitor_cb.best_weights = load_model(best).model.get_weights()
            elif history.best_epoch == history.epochs_run:
                monitor_cb.best_weights = self.model.get_weights()
            elif history.best_epoch is not None:
                raise TrainingError(
                    f"Cannot resume from {self.last_checkpoint_path!r}: the best epoch "
                    f"({history.best_epoch}) came before the last ({history.epochs_run}) and "
                    "its weights were not kept. Set `checkpoint_path` to keep them, or pass "
                    "restore_best=False."
                )
        else:
            monitor_cb.best_weights = None
        logger.info("Resuming after epoch %d from %s.", initial_epoch, self.last_checkpoint_path)
        return initial_epoch


def _stop_after_epoch_on_signal(monitor: Any) -> contextlib.AbstractContextManager[Any]:
    """Ctrl-C or SIGTERM: finish the epoch, write the checkpoints, stop; a second Ctrl-C
    stops at once."""

    def first() -> None:
        monitor.stop_requested = True
        logger.warning("Stopping after this epoch, once its checkpoint is saved "
                       "(Ctrl-C again stops at once, losing the epoch).")

    return _files.deferred_interrupts(on_first=first)


def _copy_variables(source: Sequence[Any], target: Sequence[Any], what: str, path: str) -> None:
    shapes = [tuple(v.shape) for v in source], [tuple(v.shape) for v in target]
    if shapes[0] != shapes[1]:
        raise TrainingError(
            f"Cannot resume from {path!r}: its {what} ({len(shapes[0])} arrays) do not fit this "
            f"model ({len(shapes[1])} arrays). Resume with the same spec and settings, or "
            "train into a new folder."
        )
    for src, dst in zip(source, target):
        dst.assign(src)


def _check_input_size(shape: tuple[int, ...], model: Any, what: str, fix: str) -> None:
    """Raise a ValueError naming both shapes when images of ``shape`` do not fit ``model``."""
    expected = tuple(model.input_shape[1:4])
    if len(shape) != 3 or len(expected) != 3:
        return
    if all(e is None or s is None or int(s) == int(e) for s, e in zip(shape, expected)):
        return
    size = f"({expected[0]}, {expected[1]})"
    raise ValueError(
        f"{what} gives images of {_shape_text(shape)} but the model takes "
        f"{_shape_text(expected)}. Use {fix.format(size=size)}, or build the model for "
        f"{_shape_text(shape)} images."
    )


def _shape_text(shape: Sequence[Any]) -> str:
    return "x".join("?" if v is None else str(int(v)) for v in shape)


def _check_pipeline(dataset: Any, model: Any, role: str) -> None:
    """A pipeline whose images do not fit the model fails here, not inside Keras."""
    spec = getattr(dataset, "element_spec", None)
    if not isinstance(spec, tuple) or not spec:
        return
    shape = getattr(spec[0], "shape", None)
    if shape is None or shape.rank != 4:
        return
    _check_input_size(tuple(shape.as_list()[1:]), model, f"The {role} pipeline",
                      "to_tf_dataset(preprocessing=Preprocessing(image_size={size}))")


def _steps_per_epoch(dataset: Any) -> int:
    steps = int(dataset.cardinality())
    if steps <= 0:
        raise TrainingError(
            "schedule='cosine' needs a training dataset of known length (the schedule spans "
            f"every step of training). Received a dataset of cardinality {steps}; use "
            "ImageFolderDataset.to_tf_dataset, or schedule='constant'."
        )
    return steps


def _estimate_images(dataset: Any) -> int:
    try:
        import tensorflow as tf

        steps = int(dataset.cardinality())
        batch = dataset.element_spec[0].shape[0]
        if steps > 0 and batch is not None:
            return steps * int(batch)
        if steps > 0:
            first = next(iter(dataset.take(1)))[0]
            return steps * int(tf.shape(first)[0])
    except (TypeError, AttributeError, IndexError, StopIteration, ValueError):
        pass
    return 0
