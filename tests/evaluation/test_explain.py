"""Where the model looks: Grad-CAM heat maps (fruitclf.explain, fruitclf explain, the run's
attention.png)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fruitclf
from _images import write_corner_folder
from fruitclf.cli import main
from fruitclf.model import refresh_batch_norm


@pytest.fixture(scope="module")
def corner_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The default CNN (no augmentation: a flip would move the corner) trained on images whose
    class is the shape in their top-left corner."""
    root = write_corner_folder(tmp_path_factory.mktemp("corner") / "train", 40, 48, seed=0)
    dataset = fruitclf.ImageFolderDataset(root)
    spec = fruitclf.CNNSpec.preset("small-data", num_classes=2, input_shape=(48, 48, 3)
                                   ).replace(augmentation=None)
    preprocessing = fruitclf.Preprocessing(image_size=(48, 48))
    trainer = fruitclf.Trainer(spec, class_names=dataset.class_names, seed=0,
                               learning_rate=0.003, preprocessing=preprocessing, verbose=0)
    trainer.fit(dataset.to_tf_dataset(preprocessing=preprocessing, batch_size=16, shuffle=True,
                                      seed=0), epochs=8)
    test = write_corner_folder(tmp_path_factory.mktemp("corner") / "test", 8, 48, seed=1)
    return {"model": trainer.model, "class_names": dataset.class_names, "test": test,
            "preprocessing": preprocessing}


@pytest.mark.slow
def test_the_heat_map_is_on_the_corner_that_decides_the_class(corner_model) -> None:
    test = corner_model["test"]
    explanation = fruitclf.explain(corner_model["model"], test,
                                   class_names=corner_model["class_names"],
                                   preprocessing=corner_model["preprocessing"])
    truth = [Path(p).parent.name for p in explanation.paths]
    assert explanation.predicted == truth  # the model learned the corner
    assert explanation.layer == "act4" and explanation.targets == explanation.predicted
    maps = explanation.heatmaps
    assert maps.shape == (16, 48, 48) and maps.min() >= 0.0 and maps.max() <= 1.0
    corner = maps[:, :24, :24].sum(axis=(1, 2)) / maps.sum(axis=(1, 2))
    # The top-left quarter is 25% of the image; it holds most of every heat map.
    assert np.median(corner) > 0.5 and corner.min() > 0.4, corner.round(2)


@pytest.mark.slow
def test_a_chosen_class_and_layer_and_bad_requests(corner_model) -> None:
    images = np.stack([np.asarray(Image.open(p), np.float32) for p in
                       sorted(Path(corner_model["test"]).rglob("*.png"))[:2]])
    model, names = corner_model["model"], corner_model["class_names"]
    other = fruitclf.explain(model, images, class_names=names, targets=[names[1], names[1]],
                             layer="act3")
    assert other.targets == [names[1]] * 2 and other.layer == "act3"
    with pytest.raises(ValueError, match=r"`layer` must name a layer with a spatial feature "
                       r"map, one of .*act4.*Received: layer='global_pool'"):
        fruitclf.explain(model, images, class_names=names, layer="global_pool")
    with pytest.raises(ValueError, match="`targets` must be class names of the model"):
        fruitclf.explain(model, images, class_names=names, targets=["x", "y"])
    with pytest.raises(ValueError, match="`class_names` is needed with a Keras model"):
        fruitclf.explain(model, images)
    with pytest.raises(ValueError, match=r"shape \(n, 48, 48, 3\)"):
        fruitclf.explain(model, images[:, :10], class_names=names)


def test_a_backbone_preset_is_explained_from_its_feature_map(tmp_path: Path) -> None:
    """Under global average pooling and one Dense layer, Grad-CAM's channel weights are the
    Dense weights of the class over the map's area (Selvaraju et al., 2017, section 3.1):
    the heat map is ReLU(features @ W[:, class]), scaled to a peak of 1 and resized."""
    import tensorflow as tf

    spec = fruitclf.CNNSpec.preset("mobilenetv3small", num_classes=2,
                                   input_shape=(96, 96, 3)).replace(weights=None)
    model = fruitclf.build_cnn(spec, seed=0)
    images = np.random.default_rng(0).integers(0, 255, (3, 96, 96, 3)).astype(np.float32)
    refresh_batch_norm(model, [images])  # statistics of these images, not of the initialiser
    explanation = fruitclf.explain(model, images, class_names=["a", "b"], targets=["b"] * 3)
    assert explanation.layer == "backbone"
    assert explanation.heatmaps.shape == (3, 96, 96)
    assert np.allclose(explanation.probabilities, np.asarray(model(images, training=False)),
                       atol=1e-4)

    features = images
    for layer in model.layers[1:]:
        features = layer(features, training=False)
        if layer.name == "backbone":
            break
    features = np.asarray(features)
    kernel = np.asarray(model.get_layer("predictions").kernel)
    cam = np.maximum(features @ kernel[:, 1], 0.0)
    assert cam.shape == (3, 3, 3) and (cam.max(axis=(1, 2)) > 0).all()
    cam /= cam.max(axis=(1, 2), keepdims=True)
    expected = tf.image.resize(cam[..., None], (96, 96), method="bilinear").numpy()[..., 0]
    np.testing.assert_allclose(explanation.heatmaps, expected, atol=1e-4)


@pytest.mark.slow
def test_explain_command_writes_its_figure_and_arrays(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, corner_model) -> None:
    model = tmp_path / "corner.keras"
    fruitclf.save_model(corner_model["model"], model, class_names=corner_model["class_names"],
                        preprocessing=corner_model["preprocessing"])
    test = Path(corner_model["test"])
    (tmp_path / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "explained"
    code = main(["explain", str(model), str(test / "shape_0"), str(tmp_path / "broken.png"),
                 "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 1 and "broken.png: error:" in printed and "Explained 8 images" in printed
    with np.load(out / "heatmaps.npz") as saved:
        assert saved["heatmaps"].shape == (8, 48, 48) and len(saved["paths"]) == 8
    assert (out / "attention.png").is_file() and (out / "fruitclf-explanation.json").is_file()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "attention.png").write_bytes(b"my own figure")
    code = main(["explain", str(model), str(test / "shape_0"), "--out", str(tmp_path / "mine")])
    assert code != 0 and "did not write" in capsys.readouterr().err
    assert (tmp_path / "mine" / "attention.png").read_bytes() == b"my own figure"


def test_a_run_with_a_test_folder_shows_where_its_model_looks(finished_run: Path) -> None:
    with Image.open(finished_run / "attention.png") as figure:
        assert figure.size[0] > 300
    report = (finished_run / "report.md").read_text(encoding="utf-8")
    assert "![Where the model looks](attention.png)" in report
