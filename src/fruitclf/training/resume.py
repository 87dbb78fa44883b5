"""Resuming a run from its last checkpoint: the weights, the optimizer of the phase in
progress, the random state of augmentation and dropout, the history and the callbacks'
counters, so that the resumed run equals an uninterrupted one."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..exceptions import TrainingError
from ..io import load_model, read_metadata
from .history import TrainingHistory
from .monitor import rng_variables
from .phases import training_phases

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = ["read_resume_state", "restore_state"]

logger = logging.getLogger("fruitclf")


def read_resume_state(trainer: Trainer, epochs: int) -> dict[str, Any] | None:
    """The last checkpoint's metadata, checked against this Trainer; None to start anew."""
    path = trainer.last_checkpoint_path
    if path is None:
        raise ValueError("`resume=True` needs `last_checkpoint_path` set on the Trainer.")
    if not os.path.exists(path):
        logger.info("No checkpoint at %s: starting from epoch 1.", path)
        return None
    saved = read_metadata(path)
    if saved.get("class_names") != trainer.class_names:
        raise TrainingError(
            f"Cannot resume from {path!r}: it was trained on classes "
            f"{saved.get('class_names')!r}, not {trainer.class_names!r}. Train into a new "
            "folder instead."
        )
    spec = json.loads(json.dumps(trainer.spec.to_dict())) if trainer.spec is not None else None
    if spec is not None and saved.get("spec") not in (None, spec):
        raise TrainingError(
            f"Cannot resume from {path!r}: it was trained from another spec. Resume with "
            "the same spec, or train into a new folder."
        )
    return saved


def restore_state(trainer: Trainer, saved: Mapping[str, Any], history: TrainingHistory,
                  monitor_cb: Any, epochs: int, steps: int) -> int:
    """Put the checkpoint's weights, optimizer, random and callback state in place."""
    assert trainer.last_checkpoint_path is not None  # read_resume_state checked it
    restored = TrainingHistory.from_dict(saved.get("history") or {
        "metrics": {}, "monitor": history.monitor, "mode": history.mode})
    if restored.monitor != history.monitor:
        raise TrainingError(
            f"Cannot resume from {trainer.last_checkpoint_path!r}: it monitored "
            f"{restored.monitor!r}, this run monitors {history.monitor!r}."
        )
    for field in dataclasses.fields(history):  # all but monitor and mode, checked above
        if field.name not in ("monitor", "mode"):
            setattr(history, field.name, getattr(restored, field.name))
    state = dict(saved.get("resume") or {})
    initial_epoch = history.epochs_run
    with trainer.scope():
        checkpoint = load_model(trainer.last_checkpoint_path, compile=True).model
    # Rebuild the optimizer of the phase in progress exactly as the first run did, then
    # load the saved state into this Trainer's own model (never use the loaded object,
    # whose config Keras cannot always save again). A phase that starts at the resume
    # point gets a fresh optimizer in fit(); a finished run needs none.
    phases = training_phases(trainer.spec, trainer.freeze_epochs, epochs)
    in_progress = None if history.stopped_early else next(
        ((start, end, fine_tune) for start, end, fine_tune in phases
         if start < initial_epoch < end), None)
    if in_progress is not None:
        start, end, fine_tune = in_progress
        trainer.start_phase(fine_tune, (end - start) * steps,
                          0 if fine_tune else trainer.warmup_epochs * steps)
    _copy_variables(checkpoint.weights, trainer.model.weights, "weights",
                    trainer.last_checkpoint_path)
    if in_progress is not None:
        optimizer = trainer.model.optimizer
        with trainer.scope():
            optimizer.build(trainer.model.trainable_variables)
        _copy_variables(checkpoint.optimizer.variables, optimizer.variables,
                        "optimizer state", trainer.last_checkpoint_path)
    rng = state.get("rng")
    if rng is not None:
        targets = rng_variables(trainer.model)
        if len(targets) == len(rng):
            for variable, value in zip(targets, rng):
                variable.assign(value)
    monitor_cb.wait = int(state.get("wait", 0))
    reduce_lr = state.get("callbacks", {}).get("reduce_lr")
    for cb in trainer.callbacks:
        if reduce_lr and type(cb).__name__ == "ReduceLROnPlateau":
            cb.wait, cb.best = reduce_lr["wait"], reduce_lr["best"]
            cb.cooldown_counter = reduce_lr["cooldown_counter"]
    _restore_best_weights(trainer, history, monitor_cb)
    logger.info("Resuming after epoch %d from %s.", initial_epoch, trainer.last_checkpoint_path)
    return initial_epoch


def _restore_best_weights(trainer: Trainer, history: TrainingHistory, monitor_cb: Any) -> None:
    """The best epoch's weights, for a Trainer that keeps them: from the best checkpoint,
    or the current weights when the last epoch was the best."""
    if trainer.restore_best:
        best = trainer.checkpoint_path
        if best is not None and os.path.exists(best):
            monitor_cb.best_weights = load_model(best).model.get_weights()
        elif history.best_epoch == history.epochs_run:
            monitor_cb.best_weights = trainer.model.get_weights()
        elif history.best_epoch is not None:
            raise TrainingError(
                f"Cannot resume from {trainer.last_checkpoint_path!r}: the best epoch "
                f"({history.best_epoch}) came before the last ({history.epochs_run}) and "
                "its weights were not kept. Set `checkpoint_path` to keep them, or pass "
                "restore_best=False."
            )
    else:
        monitor_cb.best_weights = None


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
