"""Transfer learning: keras.applications backbones, local weights, two training phases."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from fruitclf import CNNSpec, SpecError, Trainer, WeightsError, build_cnn, load_model, save_model
from fruitclf.backbones import BACKBONES, build_backbone
from fruitclf.cli import main

SIZE = 32
NAMES = ["a", "b", "c"]


def _data(n: int = 12) -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, SIZE, SIZE, 3)).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((x, np.arange(n) % 3)).batch(6)


def _spec(name: str, **changes):  # type: ignore[no-untyped-def]
    return CNNSpec.preset(name, num_classes=3, input_shape=(SIZE, SIZE, 3), weights=None
                          ).replace(**changes)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BACKBONES))
def test_backbone_presets_build_train_save_and_load(name, tmp_path):
    """Check each backbone: describe() = Keras, a few steps train, both formats reload.

    The backbone comes from a weights file, as pretrained weights do, so its first phase
    trains the head (training from random weights is its own test below).
    """
    weights = tmp_path / f"{name}.weights.h5"
    build_backbone(name, (SIZE, SIZE, 3), None).save_weights(weights)
    spec = _spec(name, weights=str(weights))
    trainer = Trainer(spec, class_names=NAMES, seed=0, verbose=0)
    model = trainer.model
    rows = spec.describe().rows
    layers = model.layers[1:]
    assert [layer.name for layer in layers] == [r.name for r in rows]
    for layer, row in zip(layers, rows):
        assert tuple(int(d) for d in layer.output.shape[1:]) == row.output_shape, row.name
        assert layer.count_params() == row.params, row.name
    assert model.count_params() == spec.describe().total_params
    history = trainer.fit(_data(), epochs=1)
    assert history.epochs_run == 1 and np.isfinite(history.metrics["loss"][0])
    images = next(iter(_data()))[0]
    expected = model.predict(images, verbose=0)
    for suffix in (".keras", ".h5"):
        path = save_model(model, tmp_path / f"m{suffix}", class_names=NAMES, spec=spec)
        loaded = load_model(path)
        assert loaded.metadata["spec"]["backbone"] == name
        np.testing.assert_allclose(loaded.model.predict(images, verbose=0), expected,
                                   rtol=1e-5, atol=1e-6)


def test_backbone_preprocessing_is_inside_the_model():
    """Check that each backbone's model takes 0-255 pixels and scales them itself."""
    resnet = build_cnn(_spec("resnet50v2"))
    scale = resnet.get_layer("rescaling")
    assert scale.scale == pytest.approx(1 / 127.5) and scale.offset == pytest.approx(-1.0)
    mobile = build_cnn(_spec("mobilenetv3small"))
    assert "rescaling" not in [layer.name for layer in mobile.layers]
    inner = [layer.name for layer in mobile.get_layer("backbone").layers[:3]]
    assert any("rescaling" in n for n in inner)  # MobileNetV3's own preprocessing


def _weights_file(tmp_path):  # type: ignore[no-untyped-def]
    base = keras.applications.MobileNetV3Small(input_shape=(SIZE, SIZE, 3), include_top=False,
                                               weights=None, include_preprocessing=True)
    rng = np.random.default_rng(1)
    base.set_weights([rng.normal(0, 0.05, w.shape).astype(w.dtype) if w.ndim > 1 else w
                      for w in base.get_weights()])
    path = tmp_path / "mobilenet.weights.h5"
    base.save_weights(path)
    return path, base.get_weights()


@pytest.mark.slow
def test_weights_path_loads_and_stays_frozen_in_phase_one(tmp_path):
    """Check weights=PATH: the backbone holds the file's weights, unchanged by the frozen
    phase; fine-tuning then changes only the unfrozen top layers."""
    path, reference = _weights_file(tmp_path)
    spec = _spec("mobilenetv3small", weights=str(path), fine_tune_layers=10)
    trainer = Trainer(spec, class_names=NAMES, seed=0, learning_rate=0.01, freeze_epochs=2,
                      fine_tune_learning_rate=0.01, verbose=0,
                      last_checkpoint_path=tmp_path / "last.keras")
    backbone = trainer.model.get_layer("backbone")
    for got, want in zip(backbone.get_weights(), reference):
        np.testing.assert_array_equal(got, want)
    head_before = [w.copy() for w in trainer.model.get_layer("predictions").get_weights()]
    trainer.fit(_data(), epochs=2)  # phase one only
    for got, want in zip(backbone.get_weights(), reference):
        np.testing.assert_array_equal(got, want)  # frozen, moving statistics included
    head_after = trainer.model.get_layer("predictions").get_weights()
    assert not all(np.allclose(a, b) for a, b in zip(head_after, head_before))

    resumed = Trainer(spec, class_names=NAMES, seed=0, learning_rate=0.01, freeze_epochs=2,
                      fine_tune_learning_rate=0.01, verbose=0, restore_best=False,
                      last_checkpoint_path=tmp_path / "last.keras")
    history = resumed.fit(_data(), epochs=3, resume=True)  # phase two after the resume
    assert history.epochs_run == 3
    tuned = resumed.model.get_layer("backbone")
    top = tuned.layers[-10:]
    changed = {layer.name for layer in tuned.layers for got, want in
               zip(layer.get_weights(), [reference[i] for i in _indices(tuned, layer)])
               if not np.array_equal(got, want)}
    assert changed, "fine-tuning changed nothing"
    trainable_top = {layer.name for layer in top if layer.trainable and layer.weights}
    assert changed <= trainable_top
    assert not any(isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
                   for layer in tuned.layers)


def _indices(model, layer):  # type: ignore[no-untyped-def]
    """Positions of ``layer``'s weights in ``model.get_weights()``."""
    ids = [id(w) for w in model.weights]
    return [ids.index(id(w)) for w in layer.weights]


def test_offline_imagenet_weights_give_one_clear_error(monkeypatch, tmp_path):
    """Check that a failed ImageNet download names the file, the folder and weights=PATH."""
    from urllib.error import URLError

    import keras.src.utils.file_utils as file_utils

    def offline(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise URLError("no network")

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    spec = CNNSpec.preset("mobilenetv3small", num_classes=3, input_shape=(SIZE, SIZE, 3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(WeightsError, match=r"Cannot download the ImageNet weights of "
                           r"MobileNetV3Small from https://\S+no_top\S*\.h5 .*put it in "
                           r".*models/.*weights=PATH"):
            build_cnn(spec)
    assert not [str(w.message) for w in caught], "no notice about the 224x224 weights"


def test_missing_weights_file_and_bad_specs(tmp_path, capsys, image_folder):
    """Check one-line errors for a missing weights file and invalid backbone specs."""
    with pytest.raises(WeightsError, match="weights file not found: .*nope.h5"):
        build_cnn(_spec("mobilenetv3small", weights=str(tmp_path / "nope.h5")))
    with pytest.raises(SpecError, match="multiples of 32"):
        _spec("mobilenetv3small", input_shape=(40, 40, 3))
    with pytest.raises(SpecError, match="backbone.*one of"):
        _spec("mobilenetv3small", backbone="vgg")
    with pytest.raises(SpecError, match="weights.*without a `backbone`"):
        CNNSpec(weights="imagenet")
    code = main(["train", str(image_folder), "--out", str(tmp_path / "run"), "--preset",
                 "mobilenetv3small", "--weights", str(tmp_path / "nope.h5"), "--image-size",
                 "32", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(
        "fruitclf: error: Backbone weights file not found")


@pytest.mark.slow
def test_weights_none_trains_the_whole_backbone_in_one_phase():
    """Check weights=None: one phase, every backbone layer trainable, batch norm following
    the batches; after fit, inference uses statistics recomputed for the final weights."""
    from fruitclf.training.phases import training_phases

    spec = _spec("mobilenetv3small")
    assert training_phases(spec, 10, 30) == [(0, 30, False)]
    assert training_phases(_spec("mobilenetv3small", weights="w.h5"), 10, 30) == [
        (0, 10, False), (10, 30, True)]
    trainer = Trainer(spec, class_names=NAMES, seed=0, learning_rate=0.01, freeze_epochs=1,
                      verbose=0)
    backbone = trainer.model.get_layer("backbone")
    norms = [layer for layer in backbone.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert backbone.trainable and all(layer.trainable for layer in backbone.layers)
    assert {layer.momentum for layer in norms} == {0.9}
    first = next(layer for layer in backbone.layers if isinstance(layer, keras.layers.Conv2D))
    before = first.get_weights()[0].copy()
    trainer.fit(_data(), epochs=2)
    assert not np.allclose(first.get_weights()[0], before)  # the bottom layer learned
    images = np.concatenate([x for x, _ in _data().as_numpy_iterator()])
    inputs = keras.Model(backbone.input, norms[0].input)(images)
    np.testing.assert_allclose(np.asarray(norms[0].moving_mean),
                               np.mean(np.asarray(inputs), axis=(0, 1, 2)), rtol=1e-4,
                               atol=1e-5)


def test_refresh_batch_norm_averages_the_statistics_of_its_batches():
    """Check refresh_batch_norm against the statistics computed by hand, batch by batch."""
    from fruitclf.model import refresh_batch_norm

    model = build_cnn(_spec("mobilenetv3small"))
    backbone = model.get_layer("backbone")
    norm = next(layer for layer in backbone.layers
            if isinstance(layer, keras.layers.BatchNormalization))
    images = np.random.default_rng(3).integers(0, 256, (30, SIZE, SIZE, 3)).astype(np.float32)
    inputs = np.asarray(keras.Model(backbone.input, norm.input)(images), np.float64)
    batches = tf.data.Dataset.from_tensor_slices((images, np.zeros(30))).batch(10)

    assert refresh_batch_norm(model, batches) == 30  # one batch of all 30
    np.testing.assert_allclose(norm.moving_mean, inputs.mean(axis=(0, 1, 2)), rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(norm.moving_variance, inputs.var(axis=(0, 1, 2)), rtol=1e-3,
                               atol=1e-5)
    assert norm.momentum == pytest.approx(0.9)  # restored

    assert refresh_batch_norm(model, batches, batch_size=10) == 30  # three batches
    parts = inputs.reshape(3, 10, *inputs.shape[1:])
    np.testing.assert_allclose(norm.moving_variance, parts.var(axis=(1, 2, 3)).mean(axis=0),
                               rtol=1e-3, atol=1e-5)
    assert refresh_batch_norm(model, batches, max_images=20) == 20
    np.testing.assert_allclose(norm.moving_mean, inputs[:20].mean(axis=(0, 1, 2)), rtol=1e-4,
                               atol=1e-5)
    assert refresh_batch_norm(build_cnn(CNNSpec.preset("small-data", num_classes=3)),
                              batches) == 0  # no backbone: nothing to do
