"""Trainer: best epoch kept, checkpoints, early stopping, resume, seeds, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from fruitclf import (
    CNNSpec,
    ConvBlock,
    DenseLayer,
    Evaluator,
    Preprocessing,
    TrainingError,
    TrainingHistory,
    build_cnn,
    load_model,
)
from fruitclf import Trainer as FruitTrainer

SPEC = CNNSpec(input_shape=(12, 12, 3), num_classes=3, conv_blocks=(ConvBlock(4),),
               dense_layers=(DenseLayer(16),), name="noise")


@pytest.fixture(scope="module")
def noise():  # type: ignore[no-untyped-def]
    """Random images with random labels: validation loss rises as the model memorises."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 12, 12, 3)).astype(np.float32)
    y = rng.integers(0, 3, 64).astype(np.int32)
    xv = rng.integers(0, 256, (32, 12, 12, 3)).astype(np.float32)
    yv = rng.integers(0, 3, 32).astype(np.int32)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    val = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(16)
    return train, val


def _val_loss(model, val):  # type: ignore[no-untyped-def]
    return Evaluator(model, ["a", "b", "c"]).evaluate(val).loss


@pytest.mark.parametrize("patience", [2, None], ids=["stops-early", "epoch-limit"])
def test_model_ends_with_the_best_epoch(noise, tmp_path, patience):
    """Check that after fit the model and checkpoint hold the best epoch, however it ended."""
    train, val = noise
    trainer = FruitTrainer(SPEC, class_names=["a", "b", "c"], learning_rate=0.01, seed=0,
                           patience=patience, checkpoint_path=tmp_path / "best.h5", verbose=0)
    history = trainer.fit(train, val, epochs=8)
    losses = history.metrics["val_loss"]
    assert history.best_epoch == int(np.argmin(losses)) + 1
    assert history.best_epoch < history.epochs_run  # the last epoch is not the best one
    if patience is None:
        assert history.epochs_run == 8 and not history.stopped_early
    else:
        assert history.stopped_early and history.epochs_run == history.best_epoch + patience
    assert _val_loss(trainer.model, val) == pytest.approx(losses[history.best_epoch - 1],
                                                          rel=1e-4)
    checkpoint = load_model(tmp_path / "best.h5")
    assert _val_loss(checkpoint.model, val) == pytest.approx(losses[history.best_epoch - 1],
                                                             rel=1e-4)
    assert checkpoint.metadata["training"]["best_epoch"] == history.best_epoch


def test_same_seed_same_first_epoch(noise):
    """Check that the same seed gives the same first-epoch loss and a new seed another."""
    train, val = noise

    def first_loss(seed):  # type: ignore[no-untyped-def]
        trainer = FruitTrainer(SPEC, seed=seed, verbose=0)
        return trainer.fit(train, val, epochs=1).metrics["loss"][0]

    assert first_loss(7) == first_loss(7)
    assert first_loss(7) != first_loss(8)


def test_history_saves_loads_and_plots(noise, tmp_path):
    """Check that the history file is written per epoch, reloads, and plots."""
    train, val = noise
    trainer = FruitTrainer(SPEC, seed=0, history_path=tmp_path / "history.json", verbose=0)
    history = trainer.fit(train, val, epochs=2, num_train_images=64)
    loaded = TrainingHistory.load(tmp_path / "history.json")
    assert loaded.metrics == history.metrics
    assert (tmp_path / "history.csv").read_text().splitlines()[0].startswith("epoch,")
    assert history.images_per_epoch == 64 and history.images_per_second > 0
    fig = history.plot()
    assert [ax.get_title() for ax in fig.axes] == ["Loss", "Accuracy"]
    summary = history.summary()
    assert summary["epochs_run"] == 2 and "best_val_accuracy" in summary
    json.dumps(summary)


def test_resume_continues_from_the_last_checkpoint(noise, tmp_path):
    """Check that resume picks up the epoch count, history and weights of the last epoch."""
    train, val = noise
    kwargs = {"class_names": ["a", "b", "c"], "seed": 0, "verbose": 0, "restore_best": False,
              "last_checkpoint_path": tmp_path / "last.keras"}
    first = FruitTrainer(SPEC, **kwargs)
    first.fit(train, val, epochs=2)
    last = load_model(tmp_path / "last.keras").model.get_weights()
    second = FruitTrainer(SPEC, **kwargs)
    history = second.fit(train, val, epochs=2, resume=True)  # nothing left to train
    assert history.epochs_run == 2
    assert all((a == b).all() for a, b in zip(second.model.get_weights(), last))
    history = second.fit(train, val, epochs=4, resume=True)
    assert history.epochs_run == 4
    assert len(history.metrics["loss"]) == 4


def test_missing_monitor_lists_available_metrics(noise):
    """Check that an unknown monitored metric names the ones that exist."""
    train, val = noise
    trainer = FruitTrainer(SPEC, monitor="val_acc", verbose=0)
    with pytest.raises(TrainingError, match="'val_acc'.*Available metrics: .*val_accuracy"):
        trainer.fit(train, val, epochs=1)


def test_val_monitor_without_validation_is_refused(noise):
    """Check that monitoring val_loss with no validation data fails before training."""
    train, _ = noise
    with pytest.raises(TrainingError, match="needs validation data"):
        FruitTrainer(SPEC, monitor="val_loss", verbose=0).fit(train, epochs=1)
    history = FruitTrainer(SPEC, verbose=0).fit(train, epochs=1)
    assert history.monitor == "loss"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"checkpoint_path": "best.hdf"}, ValueError, r"\.keras or \.h5.*best\.hdf"),
        ({"checkpoint_path": "best.keras"}, ValueError, "class_names"),
        ({"learning_rate": 0}, ValueError, "learning_rate"),
        ({"patience": -1}, ValueError, "patience=-1"),
        ({"mode": "best"}, ValueError, "mode='best'"),
        ({"optimizer": "adamm"}, ValueError, "Unknown optimizer 'adamm'"),
        ({"precision": "float8"}, ValueError, "precision='float8'"),
        ({"class_names": ["a"]}, ValueError, "1 names but the model has 3"),
        ({"verbose": 3}, ValueError, "`verbose` must be one of 'auto', 0, 1, 2"),
        ({"preprocessing": Preprocessing(image_size=(16, 16))}, ValueError,
         r"`preprocessing` gives images of 16x16x3 but the model takes 12x12x3\. Use "
         r"Preprocessing\(image_size=\(12, 12\)\)"),
    ],
)
def test_trainer_arguments_are_validated(kwargs, error, match):
    """Check that bad Trainer options name the argument and value."""
    with pytest.raises(error, match=match):
        FruitTrainer(SPEC, **kwargs)


def test_fit_takes_verbose_and_refuses_images_of_another_size(noise, capsys):
    """Check that fit(verbose=...) overrides the Trainer's (2: one plain line per epoch on
    standard output, no logging needed) and that a pipeline of the wrong image size fails
    before Keras, naming both sizes."""
    trainer = FruitTrainer(SPEC, seed=0, verbose=1)
    capsys.readouterr()
    trainer.fit(noise[0], noise[1], epochs=2, verbose=2)
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("Epoch ")]
    assert len(lines) == 2 and lines[1].startswith("Epoch 2/2 - ") and "val_loss: " in lines[1]
    assert "\r" not in out and "\x1b[" not in out
    trainer.fit(noise[0], epochs=1, verbose=0)
    big = noise[0].map(lambda x, y: (tf.image.resize(x, (20, 20)), y))
    with pytest.raises(ValueError, match=r"The train pipeline gives images of 20x20x3 but the "
                                         r"model takes 12x12x3"):
        trainer.fit(big, epochs=1, verbose=0)


def test_fit_rejects_zero_epochs(noise):
    """Check that epochs=0 is refused with a hint."""
    with pytest.raises(ValueError, match="epochs=0"):
        FruitTrainer(SPEC, verbose=0).fit(noise[0], epochs=0)


def test_a_built_model_and_a_distribution_strategy():
    """Check that a built model is accepted and a spec is built under a strategy's scope."""
    model = build_cnn(SPEC, seed=0)
    assert FruitTrainer(model, verbose=0).model is model
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    trainer = FruitTrainer(SPEC, strategy=strategy, verbose=0)
    assert trainer.model.distribute_strategy is strategy
    with pytest.raises(ValueError, match="precision"):
        FruitTrainer(model, precision="mixed_bfloat16")
    assert FruitTrainer(model, precision="auto", verbose=0).precision == "float32"
    half = build_cnn(SPEC, precision="mixed_float16")
    trainer = FruitTrainer(half, verbose=0)
    assert trainer.precision == "mixed_float16"
    assert "LossScale" in type(trainer.model.optimizer).__name__


def test_mixed_precision_keeps_float32_outputs(noise):
    """Check that a bfloat16 policy trains and the output layer stays float32."""
    trainer = FruitTrainer(SPEC, precision="mixed_bfloat16", seed=0, verbose=0)
    trainer.fit(noise[0], epochs=1)
    assert trainer.model.get_layer("conv1").compute_dtype == "bfloat16"
    assert trainer.model.get_layer("predictions").compute_dtype == "float32"
    assert trainer.model.output.dtype == "float32"


def test_precision_leaves_no_global_policy_behind(noise):
    """Check that training in bfloat16 does not change Keras's global dtype policy."""
    import keras

    before = keras.config.dtype_policy().name
    FruitTrainer(SPEC, precision="mixed_bfloat16", verbose=0).fit(noise[0], epochs=1)
    assert keras.config.dtype_policy().name == before == "float32"


@pytest.mark.parametrize(("native", "expected"), [(True, "mixed_bfloat16"), (False, "float32")])
def test_auto_precision_follows_the_cpu(monkeypatch, native, expected):
    """Check that precision='auto' picks bfloat16 only on CPUs with native bfloat16."""
    from fruitclf import _compat

    monkeypatch.setattr(_compat, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(_compat, "_gpu_precision", lambda: None)
    assert _compat.resolve_precision("auto") == expected
    assert _compat.resolve_precision("float32") == "float32"


def test_monitor_is_known_before_fit(tiny_spec, image_folder):
    """Check that Trainer.monitor answers before fit() (it once raised AttributeError)."""
    from fruitclf import ImageFolderDataset, Preprocessing, Trainer

    assert Trainer(tiny_spec, class_names=["a", "b", "c"], verbose=0).monitor is None
    chosen = Trainer(tiny_spec, class_names=["a", "b", "c"], monitor="accuracy", verbose=0)
    assert chosen.monitor == "accuracy"
    prep = Preprocessing(image_size=(24, 24))
    trainer = Trainer(tiny_spec, class_names=["a", "b", "c"], preprocessing=prep, verbose=0)
    trainer.fit(ImageFolderDataset(image_folder).to_tf_dataset(preprocessing=prep), epochs=1)
    assert trainer.monitor == "loss"  # the default without validation data
