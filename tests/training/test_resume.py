"""Resume: a killed or stopped run continues exactly, a finished one changes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

import fruitclf
from _runs import QUICK, digests
from fruitclf import (
    ImageFolderDataset,
    Preprocessing,
    RunFolderError,
    Trainer,
    TrainingError,
    load_model,
    run,
)

# ---------------------------------------------------------------- 2-5: resume


def _trainer(tmp_path: Path, **kwargs):  # type: ignore[no-untyped-def]
    from fruitclf import CNNSpec, ConvBlock, DenseLayer

    spec = CNNSpec(input_shape=(24, 24, 3), num_classes=3, conv_blocks=(ConvBlock(4),),
                   dense_layers=(DenseLayer(8, dropout=0.2),), augmentation=fruitclf.Augmentation(),
                   name="tiny_augmented")
    options = {"class_names": ["class_0", "class_1", "class_2"], "seed": 0, "verbose": 0,
               "preprocessing": Preprocessing(image_size=(24, 24)),
               "checkpoint_path": tmp_path / "best.keras",
               "last_checkpoint_path": tmp_path / "last.keras",
               "history_path": tmp_path / "history.json", "checkpoint_interval": 0, **kwargs}
    return Trainer(spec, **options)


def _pipelines(image_folder: Path):  # type: ignore[no-untyped-def]
    split = ImageFolderDataset(image_folder).split(0.25, seed=0)
    prep = Preprocessing(image_size=(24, 24))
    return (split.training.to_tf_dataset(preprocessing=prep, batch_size=8, shuffle=True,
                                         seed=0),
            split.validation.to_tf_dataset(preprocessing=prep, batch_size=8))


class _Kill(keras.callbacks.Callback):  # type: ignore[misc]
    """Stops the process's training the hard way after an epoch (as a kill would)."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def on_epoch_end(self, epoch, logs=None):  # type: ignore[no-untyped-def]
        if epoch + 1 == self.after:
            raise KeyboardInterrupt


def test_resumed_training_equals_an_uninterrupted_run(image_folder, tmp_path):
    """Check that a run stopped after epoch 2 and resumed has the same history (item 4).

    Augmentation and dropout on, cosine schedule, label smoothing, float32 on CPU.
    """
    recipe = {"optimizer": "adamw", "schedule": "cosine", "weight_decay": 0.01,
              "label_smoothing": 0.1, "warmup_epochs": 1}
    train, val = _pipelines(image_folder)
    whole = _trainer(tmp_path / "whole", **recipe).fit(train, val, epochs=5)
    train, val = _pipelines(image_folder)
    with pytest.raises(KeyboardInterrupt):
        _trainer(tmp_path / "cut", callbacks=[_Kill(2)], **recipe).fit(train, val, epochs=5)
    train, val = _pipelines(image_folder)
    resumed = _trainer(tmp_path / "cut", **recipe).fit(train, val, epochs=5, resume=True)
    assert resumed.epochs_run == 5
    for name in ("loss", "val_loss", "accuracy", "lr"):
        np.testing.assert_allclose(resumed.metrics[name], whole.metrics[name], rtol=1e-6)


def test_the_data_order_of_an_epoch_depends_on_seed_and_epoch_only(image_folder):
    """Check that a new pipeline set to epoch k gives the k-th pass of an old one."""
    from fruitclf.data import set_pipeline_epoch

    def labels_of(pipeline) -> list[int]:  # type: ignore[no-untyped-def]
        return [int(v) for _, y in pipeline for v in y.numpy()]

    prep = Preprocessing(image_size=(24, 24))
    ds = ImageFolderDataset(image_folder)
    first = ds.to_tf_dataset(preprocessing=prep, batch_size=8, shuffle=True, seed=3)
    passes = [labels_of(first) for _ in range(3)]
    assert passes[0] != passes[1] != passes[2]  # reshuffled every pass
    again = ds.to_tf_dataset(preprocessing=prep, batch_size=8, shuffle=True, seed=3)
    assert set_pipeline_epoch(again, 2)
    assert labels_of(again) == passes[2]


def test_resuming_a_finished_run_changes_no_file_and_keeps_the_best_weights(
        image_folder, tmp_path):
    """Check item 2 on the Trainer: best weights back in the model, nothing written."""
    train, val = _pipelines(image_folder)
    history = _trainer(tmp_path, learning_rate=0.05).fit(train, val, epochs=6)
    before = digests(tmp_path)
    again = _trainer(tmp_path, learning_rate=0.05)
    resumed = again.fit(train, val, epochs=6, resume=True)
    assert digests(tmp_path) == before
    assert (resumed.best_epoch, resumed.epochs_run) == (history.best_epoch, 6)
    best = load_model(tmp_path / "best.keras").model.get_weights()
    for got, want in zip(again.model.get_weights(), best):
        np.testing.assert_array_equal(got, want)


def test_resuming_a_finished_job_changes_no_file(finished_run, image_folder, test_folder):
    """Check item 2 on the whole job: `--resume` of a complete run rewrites nothing."""
    before = digests(finished_run)
    result = run(image_folder, out=finished_run, test_dir=test_folder, epochs=3, resume=True,
                 **QUICK)
    assert digests(finished_run) == before
    assert result.metrics == json.loads((finished_run / "metrics.json").read_text())


@pytest.mark.slow
def test_resume_with_augmentation_saves_both_formats(image_folder, tmp_path):
    """Check item 3: a resumed run (augmentation on) saves .h5 and .keras, all of one run."""
    out = tmp_path / "q"
    run(image_folder, out=out, epochs=2, **QUICK)
    result = run(image_folder, out=out, epochs=3, resume=True, **QUICK)
    assert result.history.epochs_run == 3
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 3
    assert len(json.loads((out / "history.json").read_text())["epoch_seconds"]) == 3
    for name in ("model.h5", "model.keras"):
        loaded = load_model(out / name)
        assert loaded.metadata["training"]["epochs_run"] == 3


def test_resuming_an_early_stopped_run_trains_no_further(image_folder, tmp_path):
    """Check item 5: a run that stopped early stays stopped."""
    train, val = _pipelines(image_folder)
    history = _trainer(tmp_path, patience=1, learning_rate=0.3).fit(train, val, epochs=30)
    assert history.stopped_early and history.epochs_run < 30
    before = digests(tmp_path)
    resumed = _trainer(tmp_path, patience=1, learning_rate=0.3).fit(train, val, epochs=30,
                                                                    resume=True)
    assert resumed.epochs_run == history.epochs_run and resumed.stopped_early
    assert digests(tmp_path) == before


def test_resume_with_other_classes_or_settings_refuses_before_touching_anything(
        finished_run, image_folder, test_folder, tmp_path):
    """Check item 5: other classes, image size or spec are refused, naming the change."""
    before = digests(finished_run)
    fewer = tmp_path / "fewer"
    shutil.copytree(image_folder, fewer)
    shutil.rmtree(fewer / "class_2")
    with pytest.raises(RunFolderError, match=r"other settings \(class_names: .*class_2"):
        run(fewer, out=finished_run, epochs=3, resume=True, **QUICK)
    with pytest.raises(RunFolderError, match=r"image_size: \[24, 24\] -> \[32, 32\]"):
        run(image_folder, out=finished_run, epochs=3, resume=True, **{**QUICK, "image_size": 32})
    assert digests(finished_run) == before


def test_training_refuses_to_resume_from_a_checkpoint_of_other_classes(image_folder, tmp_path):
    """Check that the Trainer itself refuses a checkpoint written for other classes."""
    train, val = _pipelines(image_folder)
    _trainer(tmp_path).fit(train, val, epochs=1)
    other = _trainer(tmp_path, class_names=["x", "y", "z"])
    with pytest.raises(TrainingError, match=r"trained on classes \['class_0'"):
        other.fit(train, val, epochs=2, resume=True)


def test_checkpoints_follow_the_interval_and_always_land_at_the_end(image_folder, tmp_path,
                                                                    monkeypatch):
    """Check the checkpoint interval: 0 writes every epoch, an hour writes once, at the end."""
    writes: list[str] = []
    real_save = Trainer.save_checkpoint

    def counting_save(self, path, *args, **kwargs):  # type: ignore[no-untyped-def]
        writes.append(Path(path).name)
        return real_save(self, path, *args, **kwargs)

    monkeypatch.setattr(Trainer, "save_checkpoint", counting_save)
    train, val = _pipelines(image_folder)
    _trainer(tmp_path / "every").fit(train, val, epochs=4)
    assert writes.count("last.keras") == 4
    writes.clear()
    history = _trainer(tmp_path / "hourly", checkpoint_interval=3600).fit(train, val, epochs=4)
    assert writes == ["best.keras", "last.keras"]
    assert history.checkpoint_seconds > 0
    best = load_model(tmp_path / "hourly" / "best.keras")
    assert best.metadata["training"]["best_epoch"] == history.best_epoch


def test_a_run_killed_before_its_first_checkpoint_resumes_from_the_start(image_folder,
                                                                         tmp_path):
    """Check that a long interval loses work but never exactness."""
    train, val = _pipelines(image_folder)
    whole = _trainer(tmp_path / "whole").fit(train, val, epochs=4)
    with pytest.raises(KeyboardInterrupt):
        _trainer(tmp_path / "cut", checkpoint_interval=3600, callbacks=[_Kill(2)]).fit(
            train, val, epochs=4)
    assert not (tmp_path / "cut" / "last.keras").exists()
    resumed = _trainer(tmp_path / "cut").fit(*_pipelines(image_folder), epochs=4, resume=True)
    np.testing.assert_allclose(resumed.metrics["loss"], whole.metrics["loss"], rtol=1e-6)
