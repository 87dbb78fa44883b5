"""The :class:`Trainer`: compile, fit with best-model checkpointing, early stopping and
resume, on one device or under a ``tf.distribute`` strategy."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._compat import resolve_precision
from .._validation import check_choice, check_class_names, check_float, check_int, model_format
from ..data import Preprocessing
from ..distribute import distributed_fit, is_chief, make_strategy
from ..exceptions import TrainingError
from ..io import model_precision, save_model
from ..model import build_cnn, from_scratch_backbone, refresh_batch_norm, set_fine_tuning
from ..settings import SETTINGS
from ..spec import CNNSpec
from .history import TrainingHistory
from .monitor import (
    VERBOSE,
    _epoch_lines_callback,
    _make_monitor_callback,
    _stop_after_epoch_on_signal,
    progress_mode,
)
from .phases import check_combinations, new_optimizer, training_phases
from .resume import read_resume_state, restore_state

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

__all__ = ["Trainer"]

logger = logging.getLogger("fruitclf")


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
        both phases in one :meth:`fit`, checkpointed and resumable alike. A backbone with
        random initial weights (``weights=None``) trains whole from the first epoch instead,
        and its batch-norm statistics are recomputed over the training images at the end.
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
        (on standard output, as Keras's ``verbose=2``), ``0`` none, ``"auto"`` bars on a terminal
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
        check_combinations(optimizer, loss, schedule=self.schedule, weight_decay=self.weight_decay,
                           label_smoothing=self.label_smoothing,
                           reduce_lr_patience=self.reduce_lr_patience)
        self.checkpoint_path = _model_path(checkpoint_path, "checkpoint_path")
        self.checkpoint_interval = SETTINGS["checkpoint_interval"].check(checkpoint_interval)
        self.last_checkpoint_path = _model_path(last_checkpoint_path, "last_checkpoint_path")
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
            from .._losses import SmoothedSparseCategoricalCrossentropy

            self._loss = SmoothedSparseCategoricalCrossentropy(self.label_smoothing)
        self._metrics = list(metrics)
        self._build_and_compile(model, precision)

    def _build_and_compile(self, model: CNNSpec | keras.Model, precision: str) -> None:
        """Set ``self.model``: built from a spec (or the one given), compiled with this
        trainer's optimizer, loss and metrics, inside the distribution strategy's scope."""
        import keras

        with self.scope():
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

    def scope(self) -> Any:
        """The distribution strategy's scope, or a context that does nothing."""
        import contextlib

        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def _compile(self, optimizer: Any) -> None:
        with self.scope():
            self.model.compile(optimizer=optimizer, loss=self._loss, metrics=self._metrics)

    def _make_optimizer(
        self, learning_rate: float | None = None, steps: int = 0, warmup_steps: int = 0
    ) -> Any:
        """The optimizer; with ``steps``, on the cosine schedule over that many steps. Made
        in the strategy's scope: a Keras optimizer belongs to the strategy it was made in."""
        with self.scope():
            return new_optimizer(
                self._optimizer, self.learning_rate if learning_rate is None else learning_rate,
                schedule=self.schedule, weight_decay=self.weight_decay,
                precision=self.precision, steps=steps, warmup_steps=warmup_steps)

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
        if not _input_function(train):
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
        saved = read_resume_state(self, epochs) if resume else None
        if saved is not None:
            initial_epoch = restore_state(self, saved, history, monitor_cb, epochs, steps)
            if history.stopped_early or initial_epoch >= epochs:
                logger.info("Nothing to resume: %d of %d epochs done%s.", history.epochs_run,
                            epochs, " (stopped early)" if history.stopped_early else "")
                _finish(self, monitor_cb, history, train)
                return history
        history.images_per_epoch = num_train_images or _estimate_images(train)
        callbacks: list[Any] = [monitor_cb, *self._own_callbacks, *self.user_callbacks]
        if plain_lines:
            callbacks.append(_epoch_lines_callback(epochs))
        with _stop_after_epoch_on_signal(monitor_cb):
            for start, end, fine_tune in training_phases(self.spec, self.freeze_epochs, epochs):
                if end <= initial_epoch:
                    continue
                # A phase that starts now gets its optimizer; a resumed one keeps its state.
                if initial_epoch <= start:
                    self.start_phase(fine_tune, (end - start) * steps,
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
        _finish(self, monitor_cb, history, train)
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

    def start_phase(self, fine_tune: bool, steps: int, warmup_steps: int) -> None:
        """Compile the optimizer of a phase: fine-tuning unfreezes the top backbone layers."""
        if fine_tune:
            assert self.spec is not None  # training_phases fine-tunes only models built from a spec
            unfrozen = set_fine_tuning(self.model, self.spec.fine_tune_layers)
            logger.info("Fine-tuning the top %d backbone layers at learning rate %g.",
                        unfrozen, self.fine_tune_learning_rate)
            self._compile(self._make_optimizer(self.fine_tune_learning_rate, steps))
        elif steps:
            self._compile(self._make_optimizer(self.learning_rate, steps, warmup_steps))



def _input_function(train: Any) -> bool:
    """True when ``train`` is a function of a ``tf.distribute.InputContext``, not a pipeline."""
    return callable(train) and not hasattr(train, "element_spec")


def _finish(trainer: Trainer, monitor_cb: Any, history: TrainingHistory, train: Any) -> None:
    """The kept weights; a from-scratch backbone's batch-norm statistics recomputed for
    them (and the best checkpoint written again with them)."""
    monitor_cb.finish()
    if not from_scratch_backbone(trainer.spec):
        return
    if _input_function(train):
        import tensorflow as tf

        train = train(tf.distribute.InputContext())  # every file, on every worker
    with trainer.scope():
        used = refresh_batch_norm(trainer.model, train)
    logger.info("Batch-norm statistics of the from-scratch backbone recomputed over %d "
                "training images.", used)
    if (trainer.checkpoint_path is not None and trainer.restore_best
            and history.best_epoch is not None):
        trainer.save_checkpoint(trainer.checkpoint_path, history, include_optimizer=False)


def _model_path(path: str | os.PathLike[str] | None, name: str) -> str | None:
    if path is None:
        return None
    model_format(path, name)
    return os.fspath(path)


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
    known = getattr(dataset, "_fruitclf_images", None)
    if isinstance(known, int):  # a fruitclf pipeline: read nothing (a partial read of a
        return known            # caching pipeline makes TensorFlow warn)
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
