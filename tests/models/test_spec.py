"""CNNSpec: presets, describe() against Keras, JSON round trip, validation."""

from __future__ import annotations

import json

import keras
import pytest

from fruitclf import Augmentation, CNNSpec, ConvBlock, DenseLayer, SpecError, build_cnn


def layer_output_shape(layer) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    """A layer's output shape without the batch dimension."""
    return tuple(int(d) for d in layer.output.shape[1:])


SPECS = [
    CNNSpec.preset("keras-mnist"),
    CNNSpec.preset("worksheet", num_classes=6),
    CNNSpec.preset("worksheet", num_classes=3, input_shape=(64, 48, 3),
                   augmentation=Augmentation()),
    CNNSpec(input_shape=(33, 31, 1), num_classes=4, head="global_average",
            conv_blocks=(ConvBlock(8, kernel_size=(5, 3), strides=2, padding="valid",
                                   batch_norm=True, dropout=0.1, pool="average",
                                   pool_size=3, pool_strides=1, kernel_regularizer="l2"),
                         ConvBlock(6, pool=None)),
            dense_layers=(DenseLayer(7, activation="tanh", dropout=0.2,
                                     kernel_regularizer="l1_l2"),),
            kernel_initializer="he_normal"),
]


def _handwritten_keras_mnist() -> keras.Model:
    layers = keras.layers
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)),
        layers.Flatten(), layers.Dense(128, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])


def _handwritten_worksheet() -> keras.Model:
    layers = keras.layers
    return keras.Sequential([
        keras.Input((128, 128, 3)), layers.Rescaling(1 / 255),
        layers.Conv2D(32, (3, 3), strides=1, padding="same", activation="relu"),
        layers.MaxPooling2D((2, 2), strides=2),
        layers.Conv2D(32, (3, 3), padding="same", activation="relu"),
        layers.MaxPooling2D((2, 2), strides=2),
        layers.Flatten(), layers.Dense(64, activation="relu"),
        layers.Dense(128, activation="relu"), layers.Dense(6, activation="softmax"),
    ])


def test_presets_match_the_hand_written_models():
    """Check that preset parameter counts equal Keras's for the hand-written models."""
    assert CNNSpec.preset("keras-mnist").describe().total_params == 225_034
    assert build_cnn(CNNSpec.preset("keras-mnist")).count_params() == \
        _handwritten_keras_mnist().count_params() == 225_034
    worksheet = CNNSpec.preset("worksheet", num_classes=6)
    assert build_cnn(worksheet).count_params() == _handwritten_worksheet().count_params()
    assert worksheet.describe().total_params == 2_116_454


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name + str(s.input_shape))
def test_describe_agrees_with_keras_layer_by_layer(spec):
    """Check every row of describe() against the built model's layers."""
    model = build_cnn(spec, seed=0)
    rows = spec.describe().rows
    layers = model.layers[1:] if isinstance(model.layers[0], keras.layers.InputLayer) \
        else model.layers
    assert [layer.name for layer in layers] == [r.name for r in rows]
    for layer, row in zip(layers, rows):
        assert layer_output_shape(layer) == row.output_shape, row.name
        assert layer.count_params() == row.params, row.name
    assert model.count_params() == spec.describe().total_params


def test_describe_shows_the_worksheet_arithmetic():
    """Check that describe() prints the arithmetic learners check by hand."""
    text = str(CNNSpec.preset("keras-mnist").describe())
    for piece in ("(28 - 3)/1 + 1 = 26", "3*3*1*32 + 32 = 320", "5*5*64 = 1600",
                  "1600*128 + 128 = 204928", "Total params: 225,034"):
        assert piece in text


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name + str(s.input_shape))
def test_json_round_trip_is_exact(spec, tmp_path):
    """Check that to_dict/from_dict and JSON files round-trip to equal specs."""
    data = spec.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert CNNSpec.from_dict(data) == spec
    assert CNNSpec.from_dict(data).to_dict() == data
    spec.to_json(tmp_path / "spec.json")
    assert CNNSpec.from_json(tmp_path / "spec.json") == spec


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_shape": (0, 28, 1)}, r"input_shape.*Received: input_shape=\(0, 28, 1\)"),
        ({"input_shape": (28, 28, 4)}, "1 \\(grayscale\\) or 3"),
        ({"num_classes": 1}, "num_classes"),
        ({"head": "pool"}, "head='pool'"),
        ({"output_activation": "relu"}, "output_activation='relu'"),
        ({"kernel_initializer": "xavier"}, "kernel_initializer='xavier'"),
        ({"conv_blocks": (ConvBlock(8, padding="valid"),) * 5, "input_shape": (28, 28, 1)},
         "too small"),
        ({"name": "my model"}, "Python identifier"),
    ],
)
def test_invalid_specs_fail_in_the_constructor(kwargs, match):
    """Check that invalid specs raise SpecError naming the field before any layer exists."""
    with pytest.raises(SpecError, match=match):
        CNNSpec(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"filters": 0}, "filters=0"), ({"filters": 8, "padding": "full"}, "padding='full'"),
     ({"filters": 8, "dropout": 1.5}, "dropout"), ({"filters": 8, "pool": "min"}, "pool='min'"),
     ({"filters": 8, "kernel_regularizer": "l3"}, "kernel_regularizer='l3'")],
)
def test_invalid_conv_blocks(kwargs, match):
    """Check that ConvBlock validates its fields."""
    with pytest.raises(SpecError, match=match):
        ConvBlock(**kwargs)


def test_from_dict_names_a_typo_and_suggests_the_field():
    """Check that an unknown key in JSON is named with the closest valid field."""
    data = CNNSpec.preset("worksheet").to_dict()
    data["conv_blocks"][0]["filter"] = 16
    with pytest.raises(SpecError, match=r"Unknown field 'filter'.*Did you mean 'filters'"):
        CNNSpec.from_dict(data)
    with pytest.raises(SpecError, match="Did you mean 'num_classes'"):
        CNNSpec.from_dict({"num_class": 3})


def test_from_json_reports_bad_files(tmp_path):
    """Check that a missing or malformed spec file gives a SpecError with the path."""
    with pytest.raises(SpecError, match="Cannot read spec file"):
        CNNSpec.from_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SpecError, match="not valid JSON"):
        CNNSpec.from_json(tmp_path / "bad.json")


def test_unknown_preset_lists_the_presets():
    """Check that an unknown preset name lists the available ones."""
    with pytest.raises(ValueError, match="worksheet, keras-mnist"):
        CNNSpec.preset("resnet")


def test_same_seed_same_weights():
    """Check that build_cnn(seed=...) is reproducible without global seeding."""
    spec = CNNSpec.preset("keras-mnist")
    a, b, c = build_cnn(spec, seed=1), build_cnn(spec, seed=1), build_cnn(spec, seed=2)
    assert all((x == y).all() for x, y in zip(a.get_weights(), b.get_weights()))
    assert not all((x == y).all() for x, y in zip(a.get_weights(), c.get_weights()))


def test_build_cnn_rejects_non_specs():
    """Check that build_cnn names the wrong type."""
    with pytest.raises(TypeError, match="CNNSpec"):
        build_cnn({"num_classes": 3})  # type: ignore[arg-type]
