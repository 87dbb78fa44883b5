"""The whole job in one call: folder -> checked data -> trained model -> evaluation -> report.

:func:`run` wires the public pieces (:class:`ImageFolderDataset`, :class:`CNNSpec`,
:class:`Trainer`, :class:`Evaluator`, :func:`save_model`, the plots) and writes everything a
run produces into one folder. ``fruitclf train`` and ``fruitclf demo`` call it.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._compat import resolve_precision, versions
from ._validation import check_float, check_image_size, check_int
from .config import RunConfig
from .data import ImageFolderDataset, Preprocessing
from .evaluation import EvaluationResult, Evaluator
from .exceptions import CorruptedImagesError, SpecError
from .io import save_model
from .spec import Augmentation, CNNSpec
from .training import Trainer, TrainingHistory

if TYPE_CHECKING:
    import keras
    from matplotlib.figure import Figure

__all__ = ["RunConfig", "RunResult", "run"]

logger = logging.getLogger("fruitclf")

#: Augmentation used by ``run(augment=True)``: suits photos of objects (fruit, leaves...).
PHOTO_AUGMENTATION = Augmentation()


@dataclasses.dataclass
class RunResult:
    """What :func:`run` produced. In a notebook it displays as a small report.

    Attributes
    ----------
    out_dir : pathlib.Path
        The run folder.
    metrics : dict
        The contents of ``metrics.json``.
    history : TrainingHistory
        Per-epoch metrics.
    evaluation : EvaluationResult or None
        The test-folder evaluation, when a test folder was given.
    model : keras.Model
        The trained model (best epoch's weights).
    class_names : list of str
        Class names in label order.
    spec : CNNSpec
        The spec the model was built from.
    figures : dict of str to Figure
        ``history``, ``samples`` and, with a test folder, ``confusion_matrix`` and
        ``misclassified``.
    files : dict of str to pathlib.Path
        Every file written, by role.

    Examples
    --------
    >>> result = fruitclf.run("train", out="run")  # doctest: +SKIP
    >>> result.metrics["best_epoch"], result.files["model.h5"]  # doctest: +SKIP
    (37, PosixPath('run/model.h5'))
    """

    out_dir: Path
    metrics: dict[str, Any]
    history: TrainingHistory
    evaluation: EvaluationResult | None
    model: keras.Model
    class_names: list[str]
    spec: CNNSpec
    figures: dict[str, Figure]
    files: dict[str, Path]

    @property
    def report_path(self) -> Path:
        """The one-page ``report.md``."""
        return self.files["report"]

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in self.metrics.items())
        images = "".join(
            f'<h4>{name}</h4><img src="data:image/png;base64,{_png_base64(fig)}"/>'
            for name, fig in self.figures.items()
        )
        return (f"<h3>fruitclf run: {self.out_dir}</h3><table>{rows}</table>{images}"
                f"<p>Report: {self.report_path}</p>")


def _png_base64(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    return base64.b64encode(buffer.getvalue()).decode()


def _resolve_spec(spec: str | CNNSpec | os.PathLike[str], num_classes: int,
                  image_size: tuple[int, int], augmentation: Augmentation | None) -> CNNSpec:
    if isinstance(spec, CNNSpec):
        resolved = spec
    elif isinstance(spec, str) and spec in CNNSpec.PRESETS:
        preset = CNNSpec.preset(spec)
        return CNNSpec.preset(spec, num_classes=num_classes,
                              input_shape=(*image_size, preset.input_shape[2]),
                              augmentation=augmentation)
    elif isinstance(spec, (str, os.PathLike)) and (
        os.fspath(spec).endswith(".json") or os.path.exists(spec)
    ):
        resolved = CNNSpec.from_json(spec)
    else:
        raise SpecError(
            f"`spec` must be a preset ({', '.join(CNNSpec.PRESETS)}), a spec JSON file or a "
            f"CNNSpec. Received: spec={spec!r}"
        )
    if resolved.num_classes != num_classes:
        raise SpecError(
            f"The spec has num_classes={resolved.num_classes} but the training folder has "
            f"{num_classes} classes. Set \"num_classes\": {num_classes} in the spec."
        )
    if augmentation is not None and resolved.augmentation is None:
        resolved = resolved.replace(augmentation=augmentation)
    return resolved


def _require_clean(dataset: ImageFolderDataset, role: str) -> None:
    report = dataset.check()
    if report.problems:
        listing = "; ".join(f"{p.relpath}: {p.message}" for p in report.problems[:10])
        more = f" (and {len(report.problems) - 10} more)" if len(report.problems) > 10 else ""
        raise CorruptedImagesError(
            f"{len(report.problems)} files in the {role} folder {dataset.root!r} would crash "
            f"training: {listing}{more}. Run `fruitclf clean {dataset.root}` to quarantine them.",
            [p.path for p in report.problems],
        )


def run(
    train_dir: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str],
    test_dir: str | os.PathLike[str] | None = None,
    spec: str | CNNSpec | os.PathLike[str] = "worksheet",
    image_size: int | tuple[int, int] = 128,
    batch_size: int = 16,
    epochs: int = 250,
    patience: int | None = 20,
    validation_split: float = 0.2,
    seed: int = 123,
    augment: bool | Augmentation = True,
    learning_rate: float = 1e-3,
    precision: str = "auto",
    interpolation: str = "bilinear",
    cache: str = "auto",
    resume: bool = False,
    verbose: str | int = "auto",
) -> RunResult:
    """Train, evaluate and report on an image folder, writing everything into ``out``.

    Checks every image first and stops before training if a file would crash it. Then
    splits the training folder (stratified, reproducible), builds the spec, trains with
    best-model checkpointing and early stopping, saves ``model.h5`` and ``model.keras`` with
    their class names, plots the curves and a sample grid, evaluates on ``test_dir`` and
    writes ``metrics.json`` and a one-page ``report.md``.

    Parameters
    ----------
    train_dir : path-like
        Folder with one sub-folder per class.
    out : path-like
        Run folder (created; files in it with the names below are replaced).
    test_dir : path-like, optional
        Test folder with the same classes (a subset is fine).
    spec : str, CNNSpec or path-like, default="worksheet"
        A preset name, a spec JSON file, or a spec.
    image_size : int or (height, width), default=128
        Input size for presets (a spec file's ``input_shape`` wins).
    batch_size : int, default=16
        Images per batch.
    epochs : int, default=250
        Epoch limit.
    patience : int or None, default=20
        Early stopping patience on validation loss; None trains every epoch.
    validation_split : float, default=0.2
        Share of each class kept for validation.
    seed : int, default=123
        One seed for the split, shuffling, initial weights and augmentation.
    augment : bool or Augmentation, default=True
        Random flips, rotations, zoom and contrast inside the model during training.
    learning_rate : float, default=0.001
        Adam learning rate.
    precision : {"auto", "float32", "mixed_bfloat16", "mixed_float16"}, default="auto"
        Dtype policy of the model. ``"auto"`` trains in bfloat16 where the hardware computes
        it natively (CPUs with AVX512_BF16 or AMX, recent GPUs) and in float32 elsewhere: in
        ``benchmarks/`` bfloat16 trained 1.9x faster on such a CPU with the same accuracy.
    interpolation : str, default="bilinear"
        Resize method (antialiased).
    cache : str, default="auto"
        Decoded-image cache; see :func:`fruitclf.plan_cache`.
    resume : bool, default=False
        Continue an interrupted run in ``out`` from its last checkpoint.
    verbose : {"auto", 0, 1, 2}, default="auto"
        Keras progress bars.

    Returns
    -------
    RunResult

    Raises
    ------
    DatasetError
        For a missing/empty folder, a single class, an empty class, or a test class unknown
        to the training folder.
    CorruptedImagesError
        If files would crash training (run ``fruitclf clean`` first).

    Examples
    --------
    >>> result = fruitclf.run("fruits/train", test_dir="fruits/test",
    ...                       out="runs/fruits")  # doctest: +SKIP
    >>> result.metrics["test_accuracy"]  # doctest: +SKIP
    0.83
    """
    size = check_image_size(image_size)
    epochs = check_int(epochs, "epochs", min_value=1, hint="Train for at least one epoch")
    batch_size = check_int(batch_size, "batch_size", min_value=1)
    if patience is not None:
        patience = check_int(patience, "patience", min_value=1)
    validation_split = check_float(validation_split, "validation_split", min_value=0.0,
                                   max_value=1.0, exclusive=True)
    seed = check_int(seed, "seed", min_value=0)
    policy = resolve_precision(precision)
    out_dir = Path(out)

    dataset = ImageFolderDataset(train_dir)
    dataset.require_trainable()
    test = ImageFolderDataset(test_dir, class_names=dataset.class_names) if test_dir else None
    _require_clean(dataset, "training")
    if test is not None:
        _require_clean(test, "test")

    augmentation = (augment if isinstance(augment, Augmentation)
                    else PHOTO_AUGMENTATION if augment else None)
    model_spec = _resolve_spec(spec, dataset.num_classes, size, augmentation)
    height, width, channels = model_spec.input_shape
    preprocessing = Preprocessing(image_size=(height, width), interpolation=interpolation,
                                  color_mode="grayscale" if channels == 1 else "rgb")
    config = RunConfig(spec=os.fspath(spec) if not isinstance(spec, CNNSpec) else model_spec.name,
                       image_size=(height, width), batch_size=batch_size, epochs=epochs,
                       patience=patience, validation_split=validation_split, seed=seed,
                       augment=augmentation is not None, learning_rate=learning_rate,
                       precision=policy, interpolation=interpolation, cache=cache)

    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    split = dataset.split(validation_split, seed=seed)
    files["split"] = out_dir / "split.json"
    split.save(files["split"])
    train_tf = split.training.to_tf_dataset(preprocessing=preprocessing, batch_size=batch_size,
                                            shuffle=True, seed=seed, cache=cache)
    val_tf = split.validation.to_tf_dataset(preprocessing=preprocessing,
                                            batch_size=batch_size, cache=cache)
    files["checkpoint"] = out_dir / "best_model.keras"
    files["last_checkpoint"] = out_dir / "last_checkpoint.keras"
    files["history_json"] = out_dir / "history.json"
    files["history_csv"] = out_dir / "history.csv"
    trainer = Trainer(
        model_spec, class_names=dataset.class_names, learning_rate=learning_rate,
        patience=patience, checkpoint_path=files["checkpoint"],
        last_checkpoint_path=files["last_checkpoint"], history_path=files["history_json"],
        seed=seed, precision=policy, preprocessing=preprocessing, verbose=verbose,
    )
    history = trainer.fit(train_tf, val_tf, epochs=epochs, resume=resume,
                          num_train_images=len(split.training))
    history.save(files["history_json"])
    history.save(files["history_csv"])

    evaluation = None
    if test is not None:
        evaluation = Evaluator(trainer.model, dataset.class_names,
                               preprocessing=preprocessing).evaluate(test, batch_size=batch_size)

    metrics = _metrics(history, evaluation, split_sizes=(len(split.training),
                                                         len(split.validation)))
    summary = {**history.summary(), **{k: v for k, v in metrics.items() if k.startswith("test_")}}
    for name in ("model.h5", "model.keras"):
        files[name] = save_model(trainer.model, out_dir / name, class_names=dataset.class_names,
                                 preprocessing=preprocessing, spec=model_spec, training=summary)

    figures: dict[str, Figure] = {
        "history": history.plot(),
        "samples": dataset.plot_samples(rows=2, seed=seed),
    }
    if evaluation is not None:
        figures["confusion_matrix"] = evaluation.plot_confusion_matrix()
        figures["misclassified"] = evaluation.plot_misclassified()
        files["classification_report"] = out_dir / "classification_report.txt"
        files["classification_report"].write_text(evaluation.classification_report() + "\n",
                                                  encoding="utf-8")
    for name, fig in figures.items():
        files[name] = out_dir / f"{name}.png"
        fig.savefig(files[name], dpi=100)
    files["metrics"] = out_dir / "metrics.json"
    files["metrics"].write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    files["report"] = out_dir / "report.md"
    files["report"].write_text(
        _report_markdown(dataset, test, config, model_spec, metrics, evaluation, files),
        encoding="utf-8",
    )
    logger.info("Run written to %s", out_dir)
    return RunResult(out_dir, metrics, history, evaluation, trainer.model,
                     dataset.class_names, model_spec, figures, files)


def _metrics(history: TrainingHistory, evaluation: EvaluationResult | None,
             split_sizes: tuple[int, int]) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "val_accuracy": history.best("val_accuracy"),
        "val_loss": history.best("val_loss"),
        "train_accuracy": history.best("accuracy"),
        "train_loss": history.best("loss"),
        "best_epoch": history.best_epoch,
        "epochs_run": history.epochs_run,
        "stopped_early": history.stopped_early,
        "train_seconds": round(history.seconds, 3),
        "images_per_second": round(history.images_per_second, 2),
        "num_train_images": split_sizes[0],
        "num_val_images": split_sizes[1],
    }
    if evaluation is not None:
        metrics["test_accuracy"] = evaluation.accuracy
        metrics["test_loss"] = evaluation.loss
        metrics["num_test_images"] = len(evaluation.y_true)
    return metrics


def _table(mapping: Mapping[str, Any], header: tuple[str, str]) -> list[str]:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in mapping.items()]
    return lines


def _report_markdown(
    dataset: ImageFolderDataset,
    test: ImageFolderDataset | None,
    config: RunConfig,
    spec: CNNSpec,
    metrics: Mapping[str, Any],
    evaluation: EvaluationResult | None,
    files: Mapping[str, Path],
) -> str:
    lines = ["# fruitclf run report", "", "## Results", ""]
    lines += _table({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in metrics.items()},
                    ("metric", "value"))
    lines += ["", "## Data", "", "```", str(dataset.summary()), "```", ""]
    if test is not None:
        lines += ["Test folder:", "", "```", str(test.summary()), "```", ""]
    lines += ["![One image per class](samples.png)", "", "## Settings", "",
              "Every setting of this run, defaults included:", ""]
    lines += _table(config.to_dict(), ("setting", "value"))
    lines += ["", "## Model", "", "```", str(spec.describe()), "```", "",
              "## Training curves", "", "![Loss and accuracy](history.png)", ""]
    if evaluation is not None:
        lines += ["## Test set", "", "```", evaluation.classification_report(), "```", "",
                  "![Confusion matrix](confusion_matrix.png)", "",
                  "![Misclassified images](misclassified.png)", ""]
    lines += ["## Files", ""]
    lines += [f"- `{path.name}`: {role}" for role, path in files.items() if path.exists()]
    lines += ["", "## Versions", ""]
    lines += _table(versions(), ("package", "version"))
    return "\n".join(lines) + "\n"
