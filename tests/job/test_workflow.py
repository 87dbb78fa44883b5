"""The worksheet, end to end, through the Python API and fruitclf.run."""

from __future__ import annotations

import json

import pytest

import fruitclf


def test_worksheet_end_to_end(tmp_path, image_folder, test_folder):
    """Check the worksheet's steps 1-7 as library calls, on generated images."""
    ds = fruitclf.ImageFolderDataset(image_folder)  # 1. load
    assert ds.plot_samples(rows=2, seed=0).axes  # look at the data
    assert ds.check(progress=False).ok  # 2. check (nothing to clean here)
    train, val = ds.split(0.25, seed=123)  # 3. split
    prep = fruitclf.Preprocessing(image_size=(24, 24), interpolation="nearest")
    train_tf = train.to_tf_dataset(preprocessing=prep, batch_size=16, shuffle=True, seed=123)
    val_tf = val.to_tf_dataset(preprocessing=prep, batch_size=16)
    spec = fruitclf.CNNSpec.preset("worksheet", num_classes=ds.num_classes,
                                   input_shape=(24, 24, 3))  # 4. the worksheet CNN
    trainer = fruitclf.Trainer(spec, class_names=ds.class_names, seed=123, patience=5,
                               checkpoint_path=tmp_path / "best.keras", preprocessing=prep,
                               verbose=0)
    history = trainer.fit(train_tf, val_tf, epochs=15)  # 5. train
    assert history.plot().axes
    test = fruitclf.ImageFolderDataset(test_folder, class_names=ds.class_names)
    evaluator = fruitclf.Evaluator(trainer.model, ds.class_names, preprocessing=prep)
    result = evaluator.evaluate(test)  # 6. evaluate
    assert result.accuracy >= 0.8  # the classes are easy to tell apart
    fruitclf.save_model(trainer.model, tmp_path / "model.h5", class_names=ds.class_names,
                        preprocessing=prep, spec=spec, training=history.summary())  # 7. save
    loaded = fruitclf.load_model(tmp_path / "model.h5")
    again = fruitclf.Evaluator(loaded.model, loaded.class_names,
                               preprocessing=loaded.preprocessing).evaluate(test)
    assert again.accuracy == result.accuracy
    assert loaded.predict(test.paths[:3]).labels[0] in ds.class_names
    assert "precision" in result.classification_report()


def test_run_writes_every_file(tmp_path, image_folder, test_folder):
    """Check that fruitclf.run writes the whole run folder with correct metrics."""
    result = fruitclf.run(image_folder, test_dir=test_folder, out=tmp_path / "run",
                          spec="worksheet", image_size=24, batch_size=8, epochs=3, patience=2,
                          verbose=0)
    expected = {"model.h5", "model.keras", "best_model.keras", "last_checkpoint.keras",
                "history.json", "history.csv", "history.png", "samples.png", "split.json",
                "classification_report.txt", "confusion_matrix.png", "misclassified.png",
                "metrics.json", "report.md"}
    assert expected <= {p.name for p in (tmp_path / "run").iterdir()}
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in ("val_accuracy", "best_epoch", "epochs_run", "train_seconds",
                "images_per_second", "test_accuracy", "test_loss"):
        assert metrics[key] is not None, key
    assert metrics["epochs_run"] == result.history.epochs_run
    assert metrics["test_accuracy"] == pytest.approx(result.evaluation.accuracy)
    report = (tmp_path / "run" / "report.md").read_text()
    for piece in ("## Settings", "| augment | True |", "Total params", "confusion_matrix.png",
                  "| tensorflow |"):
        assert piece in report
    assert "<img" in result._repr_html_()
    loaded = fruitclf.load_model(tmp_path / "run" / "model.keras")
    assert loaded.metadata["training"]["test_accuracy"] == pytest.approx(
        metrics["test_accuracy"])


def test_run_stops_on_corrupted_files(tmp_path, image_folder):
    """Check that run refuses a folder with bad files and points to fruitclf clean."""
    import shutil

    root = tmp_path / "data"
    shutil.copytree(image_folder, root)
    (root / "class_1" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut")
    with pytest.raises(fruitclf.CorruptedImagesError, match="broken.jpg.*fruitclf clean") as e:
        fruitclf.run(root, out=tmp_path / "run", epochs=1)
    assert e.value.paths == [str(root / "class_1" / "broken.jpg")]
    assert not (tmp_path / "run").exists()
