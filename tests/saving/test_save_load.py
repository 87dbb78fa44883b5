"""save_model / load_model: metadata kept, identical predictions, clear errors."""

from __future__ import annotations

import zipfile

import keras
import numpy as np
import pytest

from fruitclf import (
    ModelFileError,
    Preprocessing,
    build_cnn,
    load_model,
    read_metadata,
    save_model,
)


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_round_trip_keeps_metadata_and_predictions(trained, tmp_path, suffix):
    """Check that a saved and reloaded model predicts identically and keeps its metadata."""
    model, ds = trained["model"], trained["dataset"]
    path = tmp_path / f"model{suffix}"
    save_model(model, path, class_names=ds.class_names, preprocessing=trained["preprocessing"],
               spec=trained["spec"], training=trained["history"].summary())
    loaded = load_model(path)
    assert loaded.class_names == ds.class_names
    assert loaded.preprocessing == trained["preprocessing"]
    assert loaded.metadata["spec"] == trained["spec"].to_dict()
    assert loaded.metadata["training"]["epochs_run"] == 8
    assert set(loaded.metadata["versions"]) >= {"fruitclf", "tensorflow", "keras"}
    batch = next(iter(ds.to_tf_dataset(preprocessing=trained["preprocessing"], batch_size=36)))
    np.testing.assert_array_equal(loaded.model.predict(batch[0], verbose=0),
                                  model.predict(batch[0], verbose=0))
    predictions = loaded.predict(ds.paths[:4], top_k=2)
    assert predictions.labels == [ds.class_names[i] for i in
                                  model.predict(batch[0][:4], verbose=0).argmax(axis=1)]
    assert read_metadata(path)["class_names"] == ds.class_names
    # Plain Keras still reads the file.
    assert keras.saving.load_model(path, compile=False).count_params() == model.count_params()


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_augmentation_and_precision_survive_both_formats(tmp_path, precision):
    """Check that random layers and mixed precision save and load in .h5 and .keras."""
    from fruitclf import Augmentation, CNNSpec

    spec = CNNSpec.preset("keras-mnist", num_classes=2, augmentation=Augmentation(flip=None))
    model = build_cnn(spec, seed=0, precision=precision)
    x = np.random.default_rng(0).integers(0, 256, (2, 28, 28, 1)).astype(np.float32)
    for suffix in (".h5", ".keras"):
        save_model(model, tmp_path / f"m{suffix}", class_names=["a", "b"],
                   preprocessing=Preprocessing(image_size=(28, 28), color_mode="grayscale"))
        reloaded = load_model(tmp_path / f"m{suffix}").model
        assert reloaded.get_layer("conv1").dtype_policy.name == precision
        np.testing.assert_array_equal(reloaded.predict(x, verbose=0),
                                      model.predict(x, verbose=0))


def test_save_is_atomic_and_leaves_no_temporary_files(trained, tmp_path):
    """Check that saving writes only the target, replacing an older file."""
    target = tmp_path / "model.keras"
    target.write_bytes(b"old")
    save_model(trained["model"], target, class_names=trained["dataset"].class_names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]
    assert zipfile.is_zipfile(target)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "Model file not found"),
        (b"hello, not a model", "not a Keras model file"),
        (b"PK\x03\x04truncated", "damaged"),
    ],
)
def test_bad_model_files_give_clear_errors(tmp_path, content, match):
    """Check that missing, foreign and damaged files raise ModelFileError naming the path."""
    path = tmp_path / "model.keras"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelFileError, match=match) as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_truncated_model_files_are_rejected(trained, tmp_path):
    """Check that a cut .h5 or .keras file raises ModelFileError, not a raw traceback."""
    for suffix in (".h5", ".keras"):
        path = tmp_path / f"m{suffix}"
        save_model(trained["model"], path, class_names=trained["dataset"].class_names)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(ModelFileError, match=str(path.name)):
            load_model(path)


def test_plain_keras_files_without_metadata_are_named(trained, tmp_path):
    """Check that a Keras file saved without fruitclf says what is missing."""
    path = tmp_path / "plain.keras"
    trained["model"].save(path)
    with pytest.raises(ModelFileError, match="without fruitclf metadata"):
        load_model(path)


def test_folder_and_wrong_suffix(trained, tmp_path):
    """Check that a SavedModel-style folder and a wrong suffix give clear errors."""
    with pytest.raises(ModelFileError, match="is a folder"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match=r"\.keras or \.h5"):
        save_model(trained["model"], tmp_path / "m.pb", class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="2 names but the model has 3"):
        save_model(trained["model"], tmp_path / "m.h5", class_names=["a", "b"])
