"""Evaluator: metrics, report, confusion matrix, misclassified files, predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fruitclf import DatasetError, Evaluator, ImageFolderDataset
from fruitclf.evaluation import EvaluationResult


def test_evaluate_on_a_test_folder(trained, test_folder):
    """Check accuracy, loss, report and confusion matrix on a folder, with file paths."""
    evaluator = Evaluator(trained["model"], trained["dataset"].class_names,
                          preprocessing=trained["preprocessing"])
    test = ImageFolderDataset(test_folder, class_names=trained["dataset"].class_names)
    result = evaluator.evaluate(test)
    assert result.paths == test.paths
    # The same numbers computed here, straight from the model's outputs.
    images = np.concatenate([x.numpy() for x, _ in test.to_tf_dataset(
        preprocessing=trained["preprocessing"], batch_size=8)])
    probs = trained["model"].predict(images, verbose=0)
    assert result.accuracy == pytest.approx(float(np.mean(probs.argmax(1) == test.labels)))
    picked = probs[np.arange(len(probs)), test.labels]
    assert result.loss == pytest.approx(float(-np.mean(np.log(np.clip(picked, 1e-7, 1)))),
                                        rel=1e-4)
    report = result.classification_report(output_dict=True)
    assert set(report) >= {"class_0", "class_1", "class_2", "accuracy"}
    assert report["accuracy"] == pytest.approx(result.accuracy)
    assert result.confusion_matrix().sum() == 15
    assert "class_0" in result.classification_report()
    wrong = result.misclassified()
    assert len(wrong) == int((result.y_true != result.y_pred).sum())
    fig = result.plot_confusion_matrix(normalize=True)
    assert fig.axes[0].get_ylabel() == "True label"
    fig = result.plot_misclassified()
    shown = [ax for ax in fig.axes if ax.images]
    if wrong:
        assert len(shown) == min(len(wrong), 16)
        first = wrong[0]
        assert shown[0].get_title() == (f"{first.true_label} -> {first.predicted_label}\n"
                                        f"({first.confidence:.2f})")
    else:
        assert [ax.get_title() for ax in shown] == ["no misclassified images"]


def test_metrics_are_computed_correctly():
    """Check accuracy, cross-entropy, misclassified order and zero-division handling."""
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0], [0.3, 0.7, 0.0]])
    result = EvaluationResult(np.array([0, 1, 1, 0]), probs.argmax(1), probs,
                              ["a", "b", "never"], ["p0", "p1", "p2", "p3"])
    assert result.accuracy == 0.5
    expected = -np.mean(np.log([0.9, 0.8, 0.4, 0.3]))
    assert result.loss == pytest.approx(expected)
    assert [m.path for m in result.misclassified()] == ["p3", "p2"]
    np.testing.assert_array_equal(result.confusion_matrix(), [[1, 1, 0], [1, 1, 0], [0, 0, 0]])
    report = result.classification_report(output_dict=True)
    # A class without test images has no recall: it is left out of the rows and the macro
    # average (which a 0 for it would pull down), and named under the text table.
    assert "never" not in report
    assert report["macro avg"]["recall"] == pytest.approx(0.5)
    assert result.classification_report().rstrip().endswith(
        "Classes without test images (not in the table or averages): never")
    # A class with test images but no prediction: precision 0, no warning, no crash.
    lonely = EvaluationResult(np.array([0, 1]), np.array([0, 0]), probs[:2], ["a", "b"])
    assert lonely.classification_report(output_dict=True)["b"]["precision"] == 0.0


def test_predict_from_arrays_files_and_folders(trained, tmp_path):
    """Check predictions with class names from every input kind, unreadable files reported."""
    model, ds = trained["model"], trained["dataset"]
    evaluator = Evaluator(model, ds.class_names, preprocessing=trained["preprocessing"])
    from_files = evaluator.predict(ds.paths[:3], top_k=2)
    assert len(from_files) == 3 and all(name in ds.class_names for name in from_files.labels)
    assert len(from_files.top()[0]) == 2
    batch = next(iter(ds.to_tf_dataset(preprocessing=trained["preprocessing"], batch_size=3)))
    from_array = evaluator.predict(batch[0].numpy())
    assert from_array.labels == from_files.labels
    assert evaluator.predict(batch[0].numpy()[0]).labels == from_files.labels[:1]
    bad = tmp_path / "folder" / "broken.jpg"
    bad.parent.mkdir()
    bad.write_text("not an image")
    (tmp_path / "folder" / "good.png").write_bytes(Path(ds.paths[0]).read_bytes())
    mixed = evaluator.predict(tmp_path / "folder")
    records = mixed.to_records()
    assert [Path(r["path"]).name for r in records] == ["broken.jpg", "good.png"]
    assert "error" in records[0] and "not an image" in records[0]["error"]
    assert records[1]["label"] == from_files.labels[0]
    assert records[1]["top_k"][0]["label"] == records[1]["label"]


def test_predicting_with_one_model_after_another_is_not_reported_as_retracing(caplog):
    """Check that predicting with several fresh models in turn (a run's model, then the same
    model loaded from its file) makes TensorFlow warn about nothing, while each model's
    predict function is traced at most twice (its batch size, then any) over many calls."""
    import logging

    import keras

    tensorflow_logger = logging.getLogger("tensorflow")
    level = tensorflow_logger.level
    tensorflow_logger.setLevel(logging.WARNING)  # as in a fresh process
    rng = np.random.default_rng(0)

    def fresh_evaluator() -> Evaluator:
        model = keras.Sequential([
            keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3),
            keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, activation="softmax")])
        return Evaluator(model, ["a", "b"])

    try:
        evaluator = fresh_evaluator()
        for count in (5, 9, 3, 4, 1):
            probs = evaluator._probabilities(
                rng.random((count, 8, 8, 3), dtype=np.float32), batch_size=4, tta=2)
            assert probs.shape == (count, 2)
        assert evaluator.model.predict_function.experimental_get_tracing_count() <= 2
        for _ in range(6):  # one short prediction each: six traces in six calls
            fresh_evaluator()._probabilities(rng.random((2, 8, 8, 3), dtype=np.float32),
                                             batch_size=4)
    finally:
        tensorflow_logger.setLevel(level)
    warned = [r.getMessage() for r in caplog.records
              if r.name == "tensorflow" and r.levelno >= logging.WARNING]
    assert warned == []


def test_predict_errors(trained, tmp_path):
    """Check clear errors for wrong shapes, missing files and mismatched classes."""
    evaluator = Evaluator(trained["model"], trained["dataset"].class_names)
    with pytest.raises(ValueError, match=r"shape \(n, 24, 24, 3\).*\(2, 8, 8, 3\)"):
        evaluator.predict(np.zeros((2, 8, 8, 3)))
    with pytest.raises(ValueError, match="2 names but the model has 3"):
        Evaluator(trained["model"], ["a", "b"])
    other = ImageFolderDataset(trained["dataset"].root,
                               class_names=["class_2", "class_1", "class_0"])
    with pytest.raises(DatasetError, match="differ from the model's"):
        evaluator.evaluate(other)


def test_predict_on_a_folder_skips_what_the_dataset_skips(trained, tmp_path):
    """Check that a folder given to predict follows the dataset's rule for image files."""
    from PIL import Image

    folder = tmp_path / "photos"
    for rel in ("a.png", "sub/b.png", "__MACOSX/c.png", ".cache/d.png", "sub/.e.png",
                "notes.txt"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".png"):
            Image.new("RGB", (24, 24)).save(folder / rel)
        else:
            (folder / rel).write_text("not an image")
    evaluator = Evaluator(trained["model"], trained["dataset"].class_names,
                          preprocessing=trained["preprocessing"])
    predictions = evaluator.predict([folder])
    assert predictions.paths == [str(folder / "a.png"), str(folder / "sub" / "b.png")]


def test_confusion_matrix_shows_accuracy_and_leaves_zeros_blank():
    """Check that the confusion matrix titles its accuracy, prints no zero cells and keeps
    its axis labels inside the figure with twelve long class names."""
    from fruitclf import plot_confusion_matrix

    names = [f"long class name {i}" for i in range(12)]
    matrix = np.diag(np.full(12, 9))
    matrix[0, 1] = 2
    fig = plot_confusion_matrix(matrix, names)
    ax = fig.axes[0]
    assert ax.get_title() == "Confusion matrix: accuracy 0.982 (108/110)"
    assert sorted(t.get_text() for t in ax.texts) == ["2"] + ["9"] * 12
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    inside = fig.bbox
    for label in (ax.yaxis.label, ax.xaxis.label, ax.title):
        box = label.get_window_extent(renderer)
        assert box.x0 >= inside.x0 and box.y0 >= inside.y0 and box.x1 <= inside.x1, label


def test_history_plot_marks_the_epoch_the_model_kept():
    """Check that the curves mark the kept epoch with a line, a legend entry and a star on
    the validation curve."""
    from fruitclf import plot_history

    history = {"loss": [1.0, 0.8, 0.7], "val_loss": [1.1, 0.9, 1.0],
               "accuracy": [0.5, 0.6, 0.7], "val_accuracy": [0.4, 0.5, 0.6]}
    fig = plot_history(history, best_epoch=2, marked_label="model kept")
    for ax, values in zip(fig.axes, (history["val_loss"], history["val_accuracy"])):
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "model kept (epoch 2)" in legend
        stars = [line for line in ax.get_lines() if line.get_marker() == "*"]
        assert [tuple(s.get_xydata()[0]) for s in stars] == [(2.0, values[1])]


def test_a_grid_of_one_image_keeps_its_title_whole():
    """Check that the figure is wide enough for its title with a single image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from fruitclf import plot_images

    fig = plot_images([np.zeros((8, 8, 3))], ["5 -> 9"], rows=1,
                      suptitle="Misclassified images (true -> predicted)")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    box = fig._suptitle.get_window_extent(canvas.get_renderer())
    assert box.x0 >= 0 and box.x1 <= fig.bbox.x1

