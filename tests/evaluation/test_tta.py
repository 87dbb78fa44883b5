"""Test-time augmentation: views, averaging, flips only for models trained with flips."""

from __future__ import annotations

import numpy as np
import pytest

from fruitclf import Augmentation, Evaluator, ImageFolderDataset, build_cnn, load_model, tta_views
from fruitclf.cli import main


def test_views_are_the_image_its_mirror_and_crops():
    """Check each view's pixels: identity, mirror, central and corner crops resized."""
    image = np.arange(16 * 16 * 3, dtype=np.float32).reshape(1, 16, 16, 3)
    views = [np.asarray(view(image)) for view in tta_views(None)]
    assert len(views) == 8 and all(v.shape == image.shape for v in views)
    np.testing.assert_array_equal(views[0], image)
    np.testing.assert_array_equal(views[1], image[:, :, ::-1, :])
    np.testing.assert_allclose(views[3], views[2][:, :, ::-1, :])
    # A central crop of 14x14 from 16x16 (87.5%) zooms in: the corners move towards the centre.
    assert views[2][0, 0, 0, 0] > image[0, 0, 0, 0]
    assert views[4][0, 0, 0, 0] == pytest.approx(image[0, 0, 0, 0])  # top-left corner kept
    assert views[7][0, -1, -1, 0] == pytest.approx(image[0, -1, -1, 0])  # bottom-right kept
    assert len(tta_views(None, flip=False)) == 6 and len(tta_views(3)) == 3


def test_tta_one_is_plain_predict(trained, test_folder):
    """Check that tta=1 gives exactly the plain probabilities and labels."""
    test = ImageFolderDataset(test_folder, class_names=trained["dataset"].class_names)
    evaluator = Evaluator(trained["model"], test.class_names,
                          preprocessing=trained["preprocessing"])
    plain = evaluator.evaluate(test)
    once = evaluator.evaluate(test, tta=1)
    np.testing.assert_array_equal(plain.probabilities, once.probabilities)
    assert evaluator.predict(test, tta=1).labels == evaluator.predict(test).labels


def test_tta_averages_the_views(trained, test_folder):
    """Check that tta=N averages the model's probabilities over the first N views."""
    model = trained["model"]
    test = ImageFolderDataset(test_folder, class_names=trained["dataset"].class_names)
    evaluator = Evaluator(model, test.class_names, preprocessing=trained["preprocessing"])
    assert not evaluator.flips  # trained without augmentation: no mirror views
    images = np.concatenate([x.numpy() for x, _ in test.to_tf_dataset(
        preprocessing=trained["preprocessing"], batch_size=8)])
    views = tta_views(3, flip=False)
    expected = np.mean([model.predict(np.asarray(view(images)), verbose=0) for view in views],
                       axis=0)
    result = evaluator.evaluate(test, tta=3)
    np.testing.assert_allclose(result.probabilities, expected, rtol=1e-5, atol=1e-6)
    from_arrays = evaluator.predict(images, tta=3)
    np.testing.assert_allclose(from_arrays.probabilities, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(result.probabilities, evaluator.evaluate(test).probabilities)


def test_models_trained_with_flips_use_mirror_views(tiny_spec):
    """Check that flips join the views only when the model was trained with them."""
    flipped = build_cnn(tiny_spec.replace(augmentation=Augmentation(flip="horizontal")))
    assert Evaluator(flipped, ["a", "b", "c"]).flips
    upright = build_cnn(tiny_spec.replace(augmentation=Augmentation(flip="vertical")))
    assert not Evaluator(upright, ["a", "b", "c"]).flips


def test_too_many_views_is_a_clear_error(trained):
    """Check that tta beyond the available views names the maximum."""
    evaluator = Evaluator(trained["model"], trained["dataset"].class_names)
    with pytest.raises(ValueError, match=r"tta=7.*6 views \(no flips"):
        evaluator.predict(np.zeros((1, 24, 24, 3)), tta=7)
    with pytest.raises(ValueError, match="tta=0"):
        evaluator.predict(np.zeros((1, 24, 24, 3)), tta=0)


def test_loaded_model_and_cli_take_tta(trained, test_folder, tmp_path, capsys):
    """Check LoadedModel.predict(tta=) and `fruitclf evaluate/predict --tta`."""
    from fruitclf import save_model

    path = save_model(trained["model"], tmp_path / "m.keras",
                      class_names=trained["dataset"].class_names,
                      preprocessing=trained["preprocessing"])
    loaded = load_model(path)
    files = ImageFolderDataset(test_folder, class_names=loaded.class_names).paths[:4]
    direct = Evaluator(loaded.model, loaded.class_names,
                       preprocessing=loaded.preprocessing).predict(files, tta=4)
    np.testing.assert_allclose(loaded.predict(files, tta=4).probabilities,
                               direct.probabilities)
    assert main(["evaluate", str(path), str(test_folder), "--tta", "4", "--json"]) == 0
    assert '"accuracy"' in capsys.readouterr().out
    assert main(["predict", str(path), *files, "--tta", "9"]) == 1
    assert "Received: --tta 9" in capsys.readouterr().err


def test_train_refuses_too_many_views_before_training(image_folder, tmp_path, capsys):
    """Check that `train --tta 9` fails at once, before any epoch is trained."""
    out = tmp_path / "run"
    assert main(["train", str(image_folder), "--out", str(out), "--image-size", "24",
                 "--epochs", "1", "--tta", "9", "--quiet"]) == 1
    assert "Received: --tta 9" in capsys.readouterr().err
    assert not (out / "history.json").exists()
