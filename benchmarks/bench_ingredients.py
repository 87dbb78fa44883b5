"""Candidate ingredients for the from-scratch recipe, each measured against the default.

Every row trains through ``fruitclf.run`` with the default ``small-data`` recipe and its
4 test-time views, on seeds 1–3; a candidate changes one thing. Candidates that fruitclf does
not have are applied from outside it, by this script alone:

- ``mixup``: each training batch blended with a shuffled copy of itself, one Beta(0.2, 0.2)
  weight per batch for both the pixels and the (one-hot) labels.
- ``cutmix``: a box of each training batch pasted from a shuffled copy, its area drawn from
  Beta(1, 1); the labels mixed by the area pasted.
- ``crops``: a random resized crop of every training image (a share of its area drawn from
  ``--crop-scale``, 25–100% by default, aspect 3/4 to 4/3), back at the input size, in place
  of the preset's zoom and shifts.
- ``photometric``: stronger photometric augmentation on top of the preset's: every training
  image's brightness scaled by a factor from 0.75–1.25 and its saturation by one from
  0.7–1.3 (hue kept: colour often tells classes apart).
- ``consistency``: knowledge from the views at training time. Every training batch goes
  through the model twice, each copy with its own augmentation and dropout, and the loss
  adds the symmetric KL divergence between the two predictions of each image (weight
  ``CONSISTENCY``) to their cross-entropy. Each step costs two forward and backward passes
  of the batch: an upper bound of what consistency can give at the same number of steps.
- ``longer``: no new ingredient, twice the epochs the recipe picks: the same number of
  images through the model as ``consistency``, to tell its gains from those of the compute.
- ``residual``: after the activation of conv blocks 2–4, a residual unit (depthwise 3x3,
  batch norm, ReLU, pointwise 1x1, batch norm starting at zero, added to its input): more
  depth for about a quarter more multiply-adds (1.8x the training time measured on 2 CPU
  cores: depthwise convolutions run slowly there).
- ``residual-all``: the same unit after every block.
- ``snapshots``: a snapshot ensemble from one run. The cosine schedule restarts 4 times
  within the same number of steps (the warm-up only in the first cycle); the weights at the
  end of each cycle (the last one is the run's model) each predict the test folder with the
  4 views, and their probabilities are averaged.

The loss takes the mixed labels as probability targets (cross-entropy is linear in its
target, so this is the usual mixup loss), with the recipe's label smoothing on top.

Folders: ``flowers12-15`` (the first 15 training photos of each class of
``../shared/datasets/flowers12``), ``flowers12`` and ``food10`` as in ``bench_accuracy.py``;
skipped when absent. The accuracy is on every test image; the paired change against the
default (same seed, same test images) comes with Newcombe's 95% interval.

Run ``python benchmarks/bench_ingredients.py --candidates mixup cutmix --datasets
flowers12-15`` (about 4 minutes a run on 2 cores).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_accuracy import _scores, _summary, paired_gain, real_folder

CANDIDATES = ("mixup", "cutmix", "crops", "photometric", "consistency", "longer", "residual",
              "residual-all", "snapshots")
#: Weight of the consistency term
CONSISTENCY = 1.0
#: Cycles of the snapshot ensemble
CYCLES = 4


class Active:
    """The candidate of the run in progress (read by the wrappers below)."""

    name = "default"
    crop_scale = (0.25, 1.0)
    snapshots: ClassVar[list[Any]] = []


def _beta(alpha: float) -> Any:
    import tensorflow as tf

    a, b = tf.random.gamma([], alpha), tf.random.gamma([], alpha)
    return a / (a + b)


def _crops(images: Any) -> Any:
    """A random resized crop of each image, back at its size."""
    import tensorflow as tf

    n, h, w = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    low, high = Active.crop_scale
    area = tf.random.uniform([n], low, high)
    ratio = tf.exp(tf.random.uniform([n], math.log(3 / 4), math.log(4 / 3)))
    ch = tf.minimum(tf.sqrt(area / ratio), 1.0)
    cw = tf.minimum(tf.sqrt(area * ratio), 1.0)
    y0 = tf.random.uniform([n]) * (1 - ch)
    x0 = tf.random.uniform([n]) * (1 - cw)
    boxes = tf.stack([y0, x0, y0 + ch, x0 + cw], axis=1)
    return tf.image.crop_and_resize(images, boxes, tf.range(n), tf.stack([h, w]))


def _photometric(images: Any) -> Any:
    """Brightness and saturation of each image scaled by a random factor (hue kept)."""
    import tensorflow as tf

    x = tf.cast(images, tf.float32)
    n = tf.shape(x)[0]
    grey = tf.reduce_sum(x * tf.constant([0.299, 0.587, 0.114]), axis=-1, keepdims=True)
    x = grey + tf.random.uniform([n, 1, 1, 1], 0.7, 1.3) * (x - grey)
    return tf.clip_by_value(x * tf.random.uniform([n, 1, 1, 1], 0.75, 1.25), 0.0, 255.0)


def _twice(images: Any, labels: Any, classes: int) -> tuple[Any, Any]:
    """The batch followed by itself; one-hot labels, which mark the batch as doubled."""
    import tensorflow as tf

    onehot = tf.one_hot(labels, classes)
    return tf.concat([images, images], 0), tf.concat([onehot, onehot], 0)


def _mix(images: Any, labels: Any, classes: int) -> tuple[Any, Any]:
    """Mixup or CutMix of a batch with a shuffled copy of itself; one-hot labels mixed alike."""
    import tensorflow as tf

    onehot = tf.one_hot(labels, classes)
    order = tf.random.shuffle(tf.range(tf.shape(images)[0]))
    other, other_labels = tf.gather(images, order), tf.gather(onehot, order)
    if Active.name == "mixup":
        lam = _beta(0.2)
        return lam * images + (1 - lam) * other, lam * onehot + (1 - lam) * other_labels
    h, w = tf.shape(images)[1], tf.shape(images)[2]
    side = tf.sqrt(1 - _beta(1.0))
    bh = tf.cast(tf.cast(h, tf.float32) * side, tf.int32)
    bw = tf.cast(tf.cast(w, tf.float32) * side, tf.int32)
    cy, cx = tf.random.uniform([], 0, h, tf.int32), tf.random.uniform([], 0, w, tf.int32)
    rows, cols = tf.range(h)[:, None], tf.range(w)[None, :]
    box = ((rows >= cy - bh // 2) & (rows < cy + bh // 2)
           & (cols >= cx - bw // 2) & (cols < cx + bw // 2))
    mask = tf.cast(box, images.dtype)[None, :, :, None]
    lam = 1 - tf.reduce_mean(mask)
    return images * (1 - mask) + other * mask, lam * onehot + (1 - lam) * other_labels


#: What each candidate does to a training batch (images, labels, number of classes)
BATCH_CHANGES: dict[str, Any] = {
    "mixup": _mix,
    "cutmix": _mix,
    "crops": lambda images, labels, classes: (_crops(images), labels),
    "photometric": lambda images, labels, classes: (_photometric(images), labels),
    "consistency": _twice,
}


def _install() -> None:
    """Wrap fruitclf's training pipelines, loss, model builder and schedule for the
    candidates (each wrapper leaves the default untouched)."""
    _wrap_pipelines()
    _wrap_loss()
    _wrap_model()
    _wrap_schedule()


def _wrap_pipelines() -> None:
    """Training pipelines (the shuffled ones) get the candidate's change of each batch."""
    import fruitclf

    to_tf_dataset = fruitclf.ImageFolderDataset.to_tf_dataset

    def training_pipeline(self: Any, *args: Any, **kwargs: Any) -> Any:
        base = to_tf_dataset(self, *args, **kwargs)
        change = BATCH_CHANGES.get(Active.name)
        if not kwargs.get("shuffle") or change is None:
            return base
        classes = len(self.class_names)
        ds = base.map(lambda x, y: change(x, y, classes)).prefetch(2)
        for name in ("_fruitclf_epoch", "_fruitclf_images"):  # the Trainer reads these
            if hasattr(base, name):
                setattr(ds, name, getattr(base, name))
        return ds

    fruitclf.ImageFolderDataset.to_tf_dataset = training_pipeline  # type: ignore[method-assign]


def _wrap_loss() -> None:
    """The recipe's loss also takes mixed (probability) targets, and adds the consistency
    term for doubled batches."""
    import keras

    from fruitclf import _losses

    def call(self: Any, y_true: Any, y_pred: Any) -> Any:
        mixed = len(y_true.shape) == 2 and y_true.shape[-1] == y_pred.shape[-1]
        if mixed:
            target = keras.ops.cast(y_true, y_pred.dtype)  # mixed labels
        else:
            labels = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
            target = keras.ops.one_hot(labels, keras.ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        loss = keras.losses.categorical_crossentropy(target, y_pred,
                                                     label_smoothing=self.label_smoothing)
        if Active.name == "consistency" and mixed:
            p, q = keras.ops.split(keras.ops.clip(y_pred, 1e-7, 1.0), 2)
            kl = keras.ops.sum((p - q) * (keras.ops.log(p) - keras.ops.log(q)), axis=-1) / 2
            loss = loss + CONSISTENCY * keras.ops.concatenate([kl, kl])
        return loss

    _losses.SmoothedSparseCategoricalCrossentropy.call = call


def _wrap_model() -> None:
    """The residual candidates add their units to the model the Trainer builds."""
    from fruitclf.training import trainer

    build_cnn = trainer.build_cnn

    def build(spec: Any, **kwargs: Any) -> Any:
        model = build_cnn(spec, **kwargs)
        if not Active.name.startswith("residual"):
            return model
        return _with_residual_units(model, 1 if Active.name == "residual-all" else 2)

    trainer.build_cnn = build


def _wrap_schedule() -> None:
    """Snapshots: the restarting schedule, and the weights at the end of each cycle."""
    import keras

    from fruitclf.training import trainer

    new_optimizer = trainer.new_optimizer

    def optimizer(name: Any, learning_rate: float, *, schedule: str, weight_decay: float,
                  precision: str, steps: int = 0, warmup_steps: int = 0) -> Any:
        if Active.name != "snapshots" or schedule != "cosine" or not steps or name != "adamw":
            return new_optimizer(name, learning_rate, schedule=schedule,
                                 weight_decay=weight_decay, precision=precision, steps=steps,
                                 warmup_steps=warmup_steps)
        rate = _restarts_class()(learning_rate, steps, warmup_steps)
        return keras.optimizers.AdamW(learning_rate=rate, weight_decay=weight_decay)

    trainer.new_optimizer = optimizer
    fit_phase = trainer.Trainer._fit_phase

    def phase(self: Any, train: Any, validation: Any, epochs: int, initial_epoch: int,
              callbacks: list[Any], verbose: int, steps_per_epoch: int | None) -> None:
        if Active.name == "snapshots":
            ends = {round(epochs * k / CYCLES) for k in range(1, CYCLES + 1)}
            callbacks = [*callbacks, keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: Active.snapshots.append(
                    self.model.get_weights()) if epoch + 1 in ends else None)]
        fit_phase(self, train, validation, epochs, initial_epoch, callbacks, verbose,
                  steps_per_epoch)

    trainer.Trainer._fit_phase = phase


@functools.cache
def _restarts_class() -> Any:
    import keras

    @keras.saving.register_keras_serializable(package="bench_ingredients")
    class Restarts(keras.optimizers.schedules.LearningRateSchedule):  # type: ignore[misc]
        """Linear warm-up from a tenth of ``peak``, then cosine decay from ``peak`` to 0,
        restarted ``CYCLES`` times within ``steps``."""

        def __init__(self, peak: float, steps: int, warmup_steps: int) -> None:
            self.peak, self.steps, self.warmup_steps = peak, steps, warmup_steps

        def __call__(self, step: Any) -> Any:
            step = keras.ops.cast(step, "float32")
            length = self.steps / CYCLES
            t = keras.ops.mod(step, length) / length
            rate = 0.5 * self.peak * (1 + keras.ops.cos(math.pi * t))
            warm = self.peak / 10 + 0.9 * self.peak * step / max(self.warmup_steps, 1)
            return keras.ops.where(step < self.warmup_steps, warm, rate)

        def get_config(self) -> dict[str, Any]:
            return {"peak": self.peak, "steps": self.steps, "warmup_steps": self.warmup_steps}

    return Restarts


def _with_residual_units(model: Any, first: int) -> Any:
    """The same layers, with a residual unit after the activation of blocks ``first``..."""
    import keras

    layers = keras.layers
    policy = model.layers[-2].dtype_policy.name
    x = inputs = keras.Input(shape=model.input_shape[1:], name="image")
    for layer in model.layers[1:]:
        x = layer(x)
        if layer.name.startswith("act") and int(layer.name[3:]) >= first:
            channels = x.shape[-1]
            y = layers.DepthwiseConv2D(3, padding="same", use_bias=False, dtype=policy)(x)
            y = layers.BatchNormalization(momentum=0.9, dtype=policy)(y)
            y = layers.Activation("relu", dtype=policy)(y)
            y = layers.Conv2D(channels, 1, use_bias=False, dtype=policy)(y)
            y = layers.BatchNormalization(momentum=0.9, gamma_initializer="zeros",
                                          dtype=policy)(y)
            x = layers.Activation("relu", dtype=policy)(layers.Add(dtype=policy)([x, y]))
    return keras.Model(inputs, x, name=model.name)


def measure(candidate: str, train: Path, test: Path, seed: int) -> dict:
    import keras
    import tensorflow as tf

    import fruitclf
    from fruitclf.spec import SMALL_DATA_AUGMENTATION

    keras.backend.clear_session()
    tf.random.set_seed(seed)
    Active.name = candidate
    Active.snapshots = []
    kwargs: dict[str, Any] = {}
    if candidate == "crops":  # the crops replace the preset's zoom and shifts
        kwargs["augment"] = fruitclf.Augmentation(
            flip=SMALL_DATA_AUGMENTATION.flip, rotation=SMALL_DATA_AUGMENTATION.rotation,
            contrast=SMALL_DATA_AUGMENTATION.contrast, zoom=0.0, translation=0.0)
    if candidate == "longer":
        images = len(fruitclf.ImageFolderDataset(train))
        kwargs["epochs"] = 2 * fruitclf.Recipe.preset("small-data").epochs_for(images)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = fruitclf.run(train, test_dir=test, out=Path(out) / "run", seed=seed,
                              verbose=0, **kwargs)
        seconds = time.perf_counter() - start
        evaluation = result.evaluation
        if candidate == "snapshots":
            evaluation = _ensemble(result.files["model.keras"], test, result.evaluation)
    scores = _scores(evaluation, set())
    scores.update(seconds=seconds, train_seconds=result.metrics["train_seconds"],
                  epochs=result.history.epochs_run)
    return scores


def _ensemble(model_file: Path, test: Path, last: Any) -> Any:
    """The run's evaluation, with the snapshots' mean probabilities in place of the last
    model's."""
    import dataclasses

    import numpy as np

    import fruitclf

    loaded = fruitclf.load_model(model_file)
    test_ds = fruitclf.ImageFolderDataset(test, class_names=loaded.class_names)
    evaluator = fruitclf.Evaluator(loaded.model, loaded.class_names,
                                   preprocessing=loaded.preprocessing)
    probabilities = []
    for weights in Active.snapshots:
        loaded.model.set_weights(weights)
        result = evaluator.evaluate(test_ds, tta=4)
        assert list(result.paths) == list(last.paths)
        probabilities.append(result.probabilities)
    mean = np.mean(probabilities, axis=0)
    return dataclasses.replace(last, probabilities=mean, y_pred=mean.argmax(axis=1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", nargs="+", choices=CANDIDATES, default=list(CANDIDATES))
    parser.add_argument("--datasets", nargs="+", default=["flowers12-15", "food10"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--crop-scale", type=float, nargs=2, default=[0.25, 1.0],
                        metavar=("LOW", "HIGH"), help="area share of the crops")
    parser.add_argument("--json", type=Path, help="also write every run here")
    parser.add_argument("--defaults-from", type=Path, metavar="JSON",
                        help="the default's runs from an earlier --json of the same machine, "
                             "instead of training them again")
    args = parser.parse_args()
    earlier = json.loads(args.defaults_from.read_text()) if args.defaults_from else []
    Active.crop_scale = tuple(args.crop_scale)
    _install()
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets:
            found = real_folder(name, Path(tmp))
            if found is None:
                continue
            train, test, _ = found
            print(f"\n### {name}\n\n| configuration | test accuracy, median (range) [95% "
                  f"interval] | change against the default, seed by seed [paired 95%] | "
                  f"training s |\n|---|---|---|---:|", flush=True)
            default: list[dict] = []
            for candidate in ("default", *args.candidates):
                results = []
                reused = {r["seed"]: r for r in earlier
                          if r["dataset"] == name and r["candidate"] == candidate == "default"}
                for seed in args.seeds:
                    if seed in reused:
                        results.append(reused[seed])
                        continue
                    results.append(measure(candidate, train, test, seed))
                    runs.append({"dataset": name, "candidate": candidate, "seed": seed,
                                 **results[-1]})
                    if args.json:
                        args.json.write_text(json.dumps(runs) + "\n", encoding="utf-8")
                if candidate == "default":
                    default = results
                change = paired_gain(default, results, args.seeds) if default is not results \
                    else "–"
                seconds = sorted(r["train_seconds"] for r in results)[len(results) // 2]
                summary = _summary([r["accuracy"] for r in results], results[0]["tested"])
                print(f"| {candidate} | {summary} | {change} | {seconds:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
