"""Exports run with their own runtimes and agree with the Keras model; labels travel along."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import fruitclf
from _images import write_class_folder
from fruitclf.cli import main
from fruitclf.export import sidecar_paths

FORMATS = {"savedmodel": "", "tflite": ".tflite", "onnx": ".onnx"}


@pytest.fixture(scope="module")
def export_data(tmp_path_factory) -> dict[str, Path]:
    """A training folder and a 60-image held-out folder of the same three classes."""
    root = tmp_path_factory.mktemp("export-data")
    return {"train": write_class_folder(root / "train", 3, 16, seed=3),
            "test": write_class_folder(root / "test", 3, 20, seed=4)}


def _train(folder: Path, out: Path, precision: str) -> Path:
    spec = fruitclf.CNNSpec(
        input_shape=(24, 24, 3), num_classes=3, name="tiny_aug",
        conv_blocks=(fruitclf.ConvBlock(8, kernel_size=3, batch_norm=True),),
        dense_layers=(fruitclf.DenseLayer(16),),
        augmentation=fruitclf.Augmentation(flip="horizontal", rotation=0.05))
    ds = fruitclf.ImageFolderDataset(folder)
    prep = fruitclf.Preprocessing(image_size=(24, 24))
    trainer = fruitclf.Trainer(spec, class_names=ds.class_names, seed=0, learning_rate=0.01,
                               preprocessing=prep, precision=precision, verbose=0)
    trainer.fit(ds.to_tf_dataset(preprocessing=prep, batch_size=8, shuffle=True, seed=0),
                epochs=6)
    return fruitclf.save_model(trainer.model, out, class_names=ds.class_names,
                               preprocessing=prep, spec=spec)


@pytest.fixture(scope="module")
def model_file(export_data, tmp_path_factory) -> Path:
    """A small CNN with an augmentation block and batch norm, trained in float32."""
    return _train(export_data["train"], tmp_path_factory.mktemp("m32") / "model.keras",
                  "float32")


@pytest.fixture(scope="module")
def bf16_model_file(export_data, tmp_path_factory) -> Path:
    """The same CNN trained in mixed bfloat16."""
    return _train(export_data["train"], tmp_path_factory.mktemp("mbf16") / "model.keras",
                  "mixed_bfloat16")


def _images(folder: Path, count: int) -> np.ndarray:
    paths = sorted(str(p) for p in folder.rglob("*.png"))[:count]
    return np.stack([_read(p) for p in paths]).astype(np.float32)


def _read(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((24, 24)))


def _labelled(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    paths = sorted(folder.rglob("*.png"))
    images = np.stack([_read(str(p)) for p in paths]).astype(np.float32)
    labels = np.array([int(p.parent.name.split("_")[1]) for p in paths])
    return images, labels


def _run_with_runtime(path: Path, fmt: str, images: np.ndarray) -> np.ndarray:
    """Probabilities from the export's own runtime, not from fruitclf."""
    if fmt == "savedmodel":
        import tensorflow as tf

        serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        return serve(image=tf.constant(images))["probabilities"].numpy()
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == ["image"]
        return session.run(["probabilities"], {"image": images})[0]
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        with warnings.catch_warnings():  # TensorFlow >= 2.18 points to LiteRT on every use
            warnings.filterwarnings("ignore", category=UserWarning,
                                    module=r"tensorflow\.lite\.python\.interpreter")
            interpreter = tf.lite.Interpreter(model_path=str(path))
    else:
        interpreter = Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner("serving_default")
    return np.concatenate([runner(image=images[i:i + 1])["probabilities"]
                           for i in range(len(images))])


def _labels_inside(path: Path, fmt: str) -> list[str]:
    """Class names read from inside the export (TFLite: its sidecar)."""
    if fmt == "savedmodel":
        import tensorflow as tf

        asset = tf.saved_model.load(str(path)).labels_file.asset_path.numpy().decode()
        return Path(asset).read_text().split("\n")[:-1]
    if fmt == "onnx":
        import onnxruntime

        meta = onnxruntime.InferenceSession(str(path)).get_modelmeta().custom_metadata_map
        return json.loads(meta["class_names"])
    return json.loads(sidecar_paths(path)[1].read_text())["class_names"]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_float32_export_matches_the_keras_model(fmt, model_file, export_data, tmp_path):
    """Check that each format, run by its runtime, gives the Keras model's labels and
    probabilities within 1e-4 on 20 images, and carries the class names."""
    out = tmp_path / f"fruits{FORMATS[fmt]}"
    result = fruitclf.export_model(model_file, out, format=fmt)
    loaded = fruitclf.load_model(model_file)
    images = _images(export_data["test"], 20)
    expected = loaded.model.predict(images, verbose=0)
    got = _run_with_runtime(out, fmt, images)
    assert (got.argmax(1) == expected.argmax(1)).all()
    assert np.abs(got - expected).max() < 1e-4
    assert result.top1_agreement == 1.0 and result.max_difference < 1e-4
    labels_txt, metadata_json = sidecar_paths(out)
    assert labels_txt.read_text().splitlines() == loaded.class_names
    assert json.loads(metadata_json.read_text())["class_names"] == loaded.class_names
    assert _labels_inside(out, fmt) == loaded.class_names
    assert fruitclf.read_export_metadata(out)["preprocessing"]["image_size"] == [24, 24]
    assert result.size_bytes > 0 and result.path == os.fspath(out)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_bfloat16_trained_model_exports(fmt, bf16_model_file, export_data, tmp_path):
    """Check that a model trained in mixed bfloat16 exports to every format as float32 and
    predicts the Keras model's labels."""
    out = tmp_path / f"bf16{FORMATS[fmt]}"
    fruitclf.export_model(bf16_model_file, out)
    loaded = fruitclf.load_model(bf16_model_file)
    assert loaded.metadata["precision"] == "mixed_bfloat16"
    images = _images(export_data["test"], 20)
    expected = loaded.model.predict(images, verbose=0)
    got = _run_with_runtime(out, fmt, images)
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.95
    assert np.abs(got - expected).max() < 0.02  # bfloat16 keeps about 3 significant digits
    assert fruitclf.read_export_metadata(out)["trained_precision"] == "mixed_bfloat16"


def test_quantized_tflite_sizes_agreement_and_accuracy(model_file, export_data, tmp_path):
    """Check float16 and int8 TFLite exports: smaller files, probabilities close to the
    Keras model (float16 within 1e-3, int8 within 0.05) and int8 accuracy on a 60-image
    generated set within 5 points of the Keras model's."""
    images, labels = _labelled(export_data["test"])
    keras_probs = fruitclf.load_model(model_file).model.predict(images, verbose=0)
    plain = fruitclf.export_model(model_file, tmp_path / "m.tflite")
    half = fruitclf.export_model(model_file, tmp_path / "m16.tflite", quantize="float16")
    int8 = fruitclf.export_model(model_file, tmp_path / "m8.tflite", quantize="int8",
                                 calibration=export_data["train"])
    assert half.size_bytes < 0.7 * plain.size_bytes
    assert int8.size_bytes < 0.5 * plain.size_bytes
    half_probs = _run_with_runtime(tmp_path / "m16.tflite", "tflite", images)
    int8_probs = _run_with_runtime(tmp_path / "m8.tflite", "tflite", images)
    assert np.abs(half_probs - keras_probs).max() < 1e-3
    assert np.abs(int8_probs - keras_probs).max() < 0.05
    keras_accuracy = (keras_probs.argmax(1) == labels).mean()
    int8_accuracy = (int8_probs.argmax(1) == labels).mean()
    assert keras_accuracy > 0.9
    assert int8_accuracy >= keras_accuracy - 0.05
    assert fruitclf.read_export_metadata(tmp_path / "m8.tflite")["quantize"] == "int8"


def test_existing_exports_are_kept_unless_overwrite(model_file, tmp_path):
    """Check that an existing export or sidecar stops the export before anything is written,
    and that overwrite=True replaces a SavedModel folder only while it holds nothing else."""
    out = tmp_path / "saved"
    fruitclf.export_model(model_file, out)
    marker = out / "mine.txt"
    marker.write_text("keep")
    with pytest.raises(fruitclf.ExportError, match="already exist.*overwrite=True"):
        fruitclf.export_model(model_file, out)
    assert marker.read_text() == "keep"
    sidecar_paths(tmp_path / "other.onnx")[0].write_text("mine\n")
    with pytest.raises(fruitclf.ExportError, match=r"other\.onnx\.labels\.txt"):
        fruitclf.export_model(model_file, tmp_path / "other.onnx")
    assert not (tmp_path / "other.onnx").exists()
    with pytest.raises(fruitclf.ExportError, match=r"mine\.txt' is not part of one"):
        fruitclf.export_model(model_file, out, overwrite=True)
    assert marker.read_text() == "keep"
    marker.unlink()
    fruitclf.export_model(model_file, out, overwrite=True)
    assert (out / "saved_model.pb").is_file()
    assert not [p for p in tmp_path.iterdir() if ".fruitclf-tmp" in p.name]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"out": "m.h5"}, r"Cannot tell the export format from .*m\.h5"),
        ({"out": "m.onnx", "format": "tflite"}, r"format='tflite' writes a \.tflite file"),
        ({"out": "m.tflite", "format": "coreml"}, r"`format` must be one of 'savedmodel'"),
        ({"out": "m.onnx", "quantize": "int8"}, "Quantisation is available for TFLite"),
        ({"out": "m.tflite", "quantize": "int8"}, "calibration=<folder of images>"),
        ({"out": "m.tflite", "quantize": "int4"}, "`quantize` must be one of"),
        ({"out": "m.tflite", "calibration": "nowhere"}, "Calibration folder not found"),
    ],
)
def test_bad_arguments_name_the_fix(kwargs, match, model_file, tmp_path, monkeypatch):
    """Check that wrong formats, quantisation and calibration give one clear error."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises((fruitclf.ExportError, ValueError), match=match):
        fruitclf.export_model(model_file, **kwargs)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("missing", ["tf2onnx", "onnx"])
def test_missing_extra_is_one_line_naming_it(missing, model_file, tmp_path, monkeypatch,
                                             capsys):
    """Check that ONNX export without its packages says which extra to install, in the
    library and as one line from the command."""
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import <missing>` fail
    with pytest.raises(fruitclf.MissingExtraError, match=r'pip install "fruitclf\[export\]"'):
        fruitclf.export_model(model_file, tmp_path / "m.onnx")
    assert main(["export", str(model_file), "--out", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("fruitclf: error: ONNX export needs") and "\n" not in err
    assert 'pip install "fruitclf[export]"' in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("runtime", ["TensorFlow Lite", "LiteRT"])
def test_tflite_runtime_is_chosen_not_warned_about(runtime, model_file, tmp_path, monkeypatch):
    """Check that a TFLite export is checked with LiteRT when it is installed, else with
    TensorFlow's interpreter, whose notice pointing to LiteRT (TensorFlow 2.18-2.21) is not
    raised under warnings-as-errors, and that the result names the runtime it ran on."""
    if runtime == "LiteRT":
        pytest.importorskip("ai_edge_litert.interpreter")
    else:
        monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
        monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = fruitclf.export_model(model_file, tmp_path / "m.tflite")
    assert result.runtime.startswith(f"{runtime} ") and result.top1_agreement == 1.0
    assert f"with {result.runtime}:" in result.summary()


def test_a_tensorflow_without_tflite_names_litert(tmp_path, monkeypatch):
    """Check that where neither LiteRT nor tf.lite.Interpreter exists, running a TFLite
    export says what to install."""
    import tensorflow as tf

    from fruitclf.export import tflite_interpreter

    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.delattr(tf.lite, "Interpreter")
    with pytest.raises(fruitclf.MissingExtraError, match="pip install ai-edge-litert"):
        tflite_interpreter(tmp_path / "m.tflite")


@pytest.mark.cli
def test_export_command(model_file, export_data, tmp_path, capsys):
    """Check that `fruitclf export` writes the file and sidecars and prints the check."""
    out = tmp_path / "fruits.tflite"
    code = main(["export", str(model_file), "--out", str(out), "--quantize", "int8",
                 "--calibration", str(export_data["train"])])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert out.is_file() and sidecar_paths(out)[0].is_file()
    assert "int8 quantised" in printed and "same class on" in printed
    assert str(sidecar_paths(out)[0]) in printed
