"""What a training run did, epoch by epoch: :class:`TrainingHistory`."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _files
from ..exceptions import TrainingError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["TrainingHistory"]


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
        from ..plotting import plot_history

        return plot_history(self.metrics, best_epoch=self.best_epoch, metrics=metrics,
                            marked_label="model kept")
