"""Model files that are not what they claim, class names that cannot label a model, and
training that diverges: each refused or stopped with one short line, before memory is spent.
"""

from __future__ import annotations

import json
import os
import unicodedata
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import fruitclf
from _images import rewrite_member
from fruitclf import DatasetError, ImageFolderDataset, ModelFileError, Trainer, load_model
from fruitclf.cli import main
from fruitclf.io import KERAS_ENTRY


@pytest.fixture(scope="module")
def keras_file(trained, tmp_path_factory) -> Path:
    """The conftest model, saved as .keras with its spec."""
    path = tmp_path_factory.mktemp("hostile") / "model.keras"
    fruitclf.save_model(trained["model"], path, class_names=trained["dataset"].class_names,
                        preprocessing=trained["preprocessing"], spec=trained["spec"])
    return path


def _metadata(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read(KERAS_ENTRY))


@pytest.mark.parametrize("member", [KERAS_ENTRY, "config.json", "model.weights.h5"])
def test_a_zip_bomb_member_is_refused_before_it_is_read(keras_file, tmp_path, member, capsys):
    """Check item 7: a member that inflates past its limit (metadata, Keras config, weights
    beyond what the spec's parameters fill) is refused by size, naming the member."""
    limits = {KERAS_ENTRY: 17 << 20, "config.json": 65 << 20, "model.weights.h5": 40 << 20}
    bomb = rewrite_member(keras_file, tmp_path / "bomb.keras", member, inflate_to=limits[member])
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(ModelFileError, match=rf"{member}.* MiB"):
        load_model(bomb)
    assert main(["predict", str(bomb), str(keras_file)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and len(err) < 400


def test_member_names_that_climb_out_are_refused_without_warnings(keras_file, tmp_path,
                                                                  recwarn):
    """Check that a .keras archive with ``../`` member names is refused in one line and
    without zipfile or Keras warnings."""
    crafted = rewrite_member(keras_file, tmp_path / "climb.keras", "none",
                       extra={f"../evil{i}.txt": b"x" for i in range(8)})
    with pytest.raises(ModelFileError, match="unsafe name"):
        load_model(crafted)
    assert not recwarn.list


@pytest.mark.parametrize(("image_size", "match"), [
    ([8192, 8192], "at most 2048 pixels a side"),
    ([64, 64], r"differs from the \[24, 24\] the model was built"),
])
def test_a_stored_input_size_no_run_could_produce_is_refused(keras_file, tmp_path,
                                                             image_size, match):
    """Check item 8: an input size above any fruitclf run's, or other than the spec's, is
    refused as damaged metadata before any image is decoded."""
    metadata = _metadata(keras_file)
    metadata["preprocessing"]["image_size"] = image_size
    crafted = rewrite_member(keras_file, tmp_path / "big.keras", KERAS_ENTRY,
                       json.dumps(metadata).encode())
    with pytest.raises(ModelFileError, match=match):
        load_model(crafted)


def test_a_variable_size_model_is_bounded_too(tmp_path):
    """Check item 8 on a model whose input size is variable (no spec to compare with)."""
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Dense(2, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(inputs))
    path = fruitclf.save_model(keras.Model(inputs, outputs), tmp_path / "v.keras",
                               class_names=["a", "b"],
                               preprocessing=fruitclf.Preprocessing(image_size=(32, 32)))
    metadata = _metadata(path)
    metadata["preprocessing"]["image_size"] = [8192, 8192]
    crafted = rewrite_member(path, tmp_path / "v8192.keras", KERAS_ENTRY,
                             json.dumps(metadata).encode())
    with pytest.raises(ModelFileError, match="2048 pixels"):
        load_model(crafted)
    assert load_model(path).preprocessing.image_size == (32, 32)


@pytest.mark.parametrize(("names", "match"), [
    (["a\nb", "c"], "control character or line break"),
    (["a\u2028b", "c"], "control character or line break"),
    ([unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")],
     "Unicode normalisation"),
    (["Apple", "apple"], "letter case"),
])
def test_class_folders_that_cannot_label_a_model_are_refused(tmp_path, names, match):
    """Check item 9: class folders with control characters, or that differ only in Unicode
    normalisation or letter case, are refused at once, naming the folder."""
    root = tmp_path / "data"
    for i, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True)
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / "1.png")
    if len(os.listdir(root)) < len(names):
        pytest.skip("this file system folds the two names into one folder")
    with pytest.raises(DatasetError, match=match):
        ImageFolderDataset(root)


@pytest.mark.parametrize(("names", "match"), [
    (["a\nb", "c", "d"], "control character"),
    ([f"class{i}" for i in range(200_000)], "200000 classes, above the limit"),
    (["x" * 10_000, "b", "c"], "longer than 255 characters"),
])
def test_tampered_class_names_give_one_short_line(keras_file, tmp_path, names, match, capsys):
    """Check items 9-10: stored class names that cannot label outputs (a line break, 200,000
    names, a 10,000-character name) are one error line of a few hundred characters."""
    metadata = _metadata(keras_file)
    metadata["class_names"] = names
    crafted = rewrite_member(keras_file, tmp_path / "names.keras", KERAS_ENTRY,
                       json.dumps(metadata).encode())
    with pytest.raises(ModelFileError, match=match):
        load_model(crafted)
    assert main(["predict", str(crafted), str(keras_file)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and len(err) < 500


def test_a_wrong_class_count_error_stays_short(trained):
    """Check that a class-name list of the wrong length is shown cut, not whole."""
    with pytest.raises(ValueError, match=r"characters\)$") as info:
        Trainer(trained["spec"], class_names=[f"c{i}" for i in range(100_000)])
    assert len(str(info.value)) < 500


def test_a_lambda_layer_is_refused_as_unsafe_saying_how_to_load_it(tmp_path):
    """Check that a model file with a Lambda layer is refused as unsafe, with the way to load
    a file one trusts, and that it loads with safe_mode=False."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(x))
    path = fruitclf.save_model(keras.Model(inputs, outputs), tmp_path / "lambda.keras",
                               class_names=["a", "b"])
    with pytest.raises(ModelFileError, match=r"refused as unsafe.*safe_mode=False"):
        load_model(path)
    assert load_model(path, safe_mode=False).class_names == ["a", "b"]


# ------------------------------------------------------------------ non-finite training


def test_a_diverging_run_stops_and_keeps_the_last_finite_weights(image_folder, tmp_path,
                                                                 caplog):
    """Check that a loss that overflows (a weight penalty of 1e30) stops training at the
    first non-finite epoch with one warning, that the model keeps finite weights and
    predicts finite probabilities, and that metrics.json and the report say so."""
    spec = fruitclf.CNNSpec(
        input_shape=(24, 24, 3), num_classes=3, name="overflowing",
        conv_blocks=(fruitclf.ConvBlock(4, kernel_regularizer="l2", regularization=1e30),),
        dense_layers=(fruitclf.DenseLayer(8),))
    result = fruitclf.run(image_folder, out=tmp_path / "run", spec=spec, epochs=5,
                          image_size=24, batch_size=8, precision="float32", tta=1, verbose=0)
    epoch = result.history.non_finite_epoch
    assert epoch is not None and result.history.epochs_run == epoch < 5
    assert all(np.isfinite(w).all() for w in result.model.get_weights())
    probabilities = load_model(tmp_path / "run" / "model.keras").predict(
        str(image_folder)).probabilities
    assert np.isfinite(probabilities).all()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["non_finite_epoch"] == epoch and metrics["stopped_early"] is True
    assert "became infinite or NaN" in (tmp_path / "run" / "report.md").read_text()
    warnings = [r for r in caplog.records if "infinite or NaN" in r.getMessage()]
    assert len(warnings) == 1


def test_non_finite_batch_norm_statistics_stop_training_too(image_folder):
    """Check that batch-norm statistics that became infinite while the loss stays finite
    (training uses the batch's own statistics) stop training, and are rolled back."""
    ds = ImageFolderDataset(image_folder)
    prep = fruitclf.Preprocessing(image_size=(24, 24))
    spec = fruitclf.CNNSpec.preset("small-data", num_classes=3, input_shape=(24, 24, 3))
    trainer = Trainer(spec, class_names=ds.class_names, seed=0, preprocessing=prep, verbose=0)

    class Poison(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):  # type: ignore[no-untyped-def]
            if epoch == 1:  # after the monitor's check: seen at the end of epoch 3
                for weight in self.model.weights:
                    if "moving_variance" in (getattr(weight, "path", None) or weight.name):
                        weight.assign(np.full(weight.shape, np.inf, np.float32))

    trainer.user_callbacks.append(Poison())
    pipeline = ds.to_tf_dataset(preprocessing=prep, batch_size=8, shuffle=True, seed=0)
    history = trainer.fit(pipeline, epochs=6)
    assert history.non_finite_epoch == 3 and history.epochs_run == 3
    assert np.isfinite(history.metrics["loss"]).all()  # only the statistics were infinite
    assert all(np.isfinite(w).all() for w in trainer.model.get_weights())
    assert history.best_epoch == 2
