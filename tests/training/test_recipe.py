"""The small-data preset and recipe: spec, schedule, label smoothing, run() defaults."""

from __future__ import annotations

import dataclasses
import itertools
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import fruitclf
from fruitclf import CNNSpec, Recipe, Trainer, build_cnn, load_model
from fruitclf._losses import SmoothedSparseCategoricalCrossentropy


def test_small_data_preset_matches_keras_layer_by_layer():
    """Check the small-data preset's describe() rows against the built model."""
    spec = CNNSpec.preset("small-data", num_classes=6)
    model = build_cnn(spec, seed=0)
    rows = spec.describe().rows
    assert [layer.name for layer in model.layers[1:]] == [r.name for r in rows]
    for layer, row in zip(model.layers[1:], rows):
        assert tuple(int(d) for d in layer.output.shape[1:]) == row.output_shape, row.name
        assert layer.count_params() == row.params, row.name
    # 4 conv blocks with batch norm, global average pooling, dropout, no big dense head.
    assert model.count_params() == spec.describe().total_params == 878_118
    assert [r.kind for r in rows[-3:]] == ["GlobalAveragePooling2D", "Dropout", "Dense"]
    assert CNNSpec.from_json(spec.to_json()) == spec


def test_worksheet_preset_is_unchanged():
    """Check that the worksheet preset still has the worksheet's 2,116,454 parameters."""
    spec = CNNSpec.preset("worksheet", num_classes=6)
    assert spec.describe().total_params == 2_116_454
    assert spec.augmentation is None and spec.head == "flatten"


@pytest.mark.parametrize(("images", "epochs"), [(10, 300), (180, 200), (720, 50),
                                                 (5000, 40)])
def test_small_data_epochs_follow_the_data_size(images, epochs):
    """Check that the epoch budget shrinks with more images, within its bounds."""
    assert Recipe.preset("small-data").epochs_for(images) == epochs


def test_recipes_of_the_presets():
    """Check the worksheet recipe reproduces the worksheet and unknown names are listed."""
    worksheet = Recipe.preset("worksheet")
    assert (worksheet.image_size, worksheet.batch_size, worksheet.epochs_for(10),
            worksheet.patience, worksheet.validation_split, worksheet.optimizer,
            worksheet.keep) == (128, 16, 250, 20, 0.2, "adam", "best")
    assert Recipe.preset("mobilenetv3small").freeze_epochs == 10
    with pytest.raises(ValueError, match="Unknown recipe 'big'.*small-data"):
        Recipe.preset("big")
    with pytest.raises(ValueError, match="schedule"):
        dataclasses.replace(Recipe.preset("small-data"), schedule="linear")


def test_cosine_schedule_warms_up_then_decays_to_zero():
    """Check the learning rate rises during warm-up, peaks, and ends near zero."""
    spec = CNNSpec(input_shape=(8, 8, 3), num_classes=2, conv_blocks=(), dense_layers=())
    x = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 3)).astype(np.float32)
    y = np.arange(40) % 2
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(10)  # 4 steps per epoch
    trainer = Trainer(spec, optimizer="adamw", learning_rate=0.01, weight_decay=0.05,
                      schedule="cosine", warmup_epochs=2, verbose=0)
    history = trainer.fit(data, epochs=10)
    lr = history.metrics["lr"]
    assert lr[0] < lr[1] <= 0.01  # warming up (logged after each epoch's steps)
    assert lr[1] == pytest.approx(0.01, rel=1e-3)  # the peak at the end of warm-up
    assert all(a > b for a, b in itertools.pairwise(lr[1:]))  # then decaying
    assert lr[-1] < 1e-6  # to zero at the last step
    assert float(trainer.model.optimizer.weight_decay) == pytest.approx(0.05)


def test_schedule_needs_an_optimizer_name():
    """Check that a schedule is refused with an optimizer instance or a plateau rule."""
    spec = CNNSpec(input_shape=(8, 8, 3), num_classes=2, conv_blocks=(), dense_layers=())
    with pytest.raises(ValueError, match="optimizer` is a name"):
        Trainer(spec, optimizer=keras.optimizers.SGD(), schedule="cosine")
    with pytest.raises(ValueError, match="reduce_lr_patience=3, schedule='cosine'"):
        Trainer(spec, optimizer="adamw", schedule="cosine", reduce_lr_patience=3)


def test_label_smoothing_loss_matches_keras_categorical():
    """Check the smoothed loss equals Keras's categorical cross-entropy on one-hot labels."""
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    labels = np.array([0, 2])
    ours = SmoothedSparseCategoricalCrossentropy(0.1)(labels, probs)
    expected = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(
        keras.ops.one_hot(labels, 3), probs)
    assert float(ours) == pytest.approx(float(expected), rel=1e-6)
    assert float(ours) > float(keras.losses.SparseCategoricalCrossentropy()(labels, probs))


def test_label_smoothing_checkpoint_resumes(tmp_path):
    """Check a checkpoint compiled with the smoothed loss loads with its optimizer."""
    spec = CNNSpec(input_shape=(8, 8, 3), num_classes=2, conv_blocks=(), dense_layers=())
    x = np.zeros((8, 8, 8, 3), np.float32)
    data = tf.data.Dataset.from_tensor_slices((x, np.arange(8) % 2)).batch(4)
    trainer = Trainer(spec, class_names=["a", "b"], label_smoothing=0.1, verbose=0,
                      last_checkpoint_path=tmp_path / "last.keras")
    trainer.fit(data, epochs=1)
    loaded = load_model(tmp_path / "last.keras", compile=True).model
    assert isinstance(loaded.loss, SmoothedSparseCategoricalCrossentropy)
    assert loaded.loss.label_smoothing == pytest.approx(0.1)
    again = Trainer(spec, class_names=["a", "b"], label_smoothing=0.1, verbose=0,
                    last_checkpoint_path=tmp_path / "last.keras")
    assert again.fit(data, epochs=2, resume=True).epochs_run == 2


def test_default_run_learns_generated_classes(tmp_path, image_folder, test_folder):
    """Check that the default recipe, trained for seconds, learns well above chance."""
    result = fruitclf.run(image_folder, test_dir=test_folder, out=tmp_path / "run",
                          image_size=24, epochs=30, verbose=0, precision="float32")
    assert result.spec.name == "small_data_cnn" and result.spec.augmentation is not None
    assert result.metrics["test_accuracy"] >= 0.8  # chance is 1/3
    assert result.history.epochs_run == 30 and result.history.best_epoch == 30
    assert "val_loss" not in result.history.metrics  # every image trains
    config = {line.split("|")[1].strip(): line.split("|")[2].strip()
              for line in result.report_path.read_text().splitlines()
              if line.startswith("| ") and line.count("|") == 3}
    assert config["optimizer"] == "adamw" and config["label_smoothing"] == "0.1"
    assert config["validation_split"] == "0.0" and config["keep"] == "last"
    assert config["tta"] == "4"  # the test folder is evaluated with 4 views
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["num_val_images"] == 0


def test_run_epochs_default_comes_from_the_data_size(tmp_path, image_folder):
    """Check that without epochs, run trains the recipe's budget for the folder's size."""
    recipe = dataclasses.replace(Recipe.preset("small-data"), images_seen=72, min_epochs=1)
    result = fruitclf.run(image_folder, out=tmp_path / "run", recipe=recipe, image_size=16,
                          verbose=0, precision="float32")
    assert result.history.epochs_run == 2  # 72 images seen / 36 training images


def test_run_with_validation_split_and_patience(tmp_path, image_folder):
    """Check that a validation split and patience still work with the small-data recipe."""
    result = fruitclf.run(image_folder, out=tmp_path / "run", image_size=16, epochs=3,
                          validation_split=0.25, patience=1, verbose=0, precision="float32")
    assert result.metrics["num_val_images"] == 9 and result.metrics["val_accuracy"] is not None
