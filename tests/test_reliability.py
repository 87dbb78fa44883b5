"""Nothing lost, nothing crashes: resume, run folders, atomic writes, restore, hostile input.

One test (or more) per fault found by killing runs, re-running commands and feeding odd files.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import threading
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

import fruitclf
from _images import write_class_folder, write_many_frame_gif
from fruitclf import (
    CorruptedImagesError,
    DatasetError,
    ImageFolderDataset,
    ModelFileError,
    Preprocessing,
    RunFolderError,
    Trainer,
    TrainingError,
    WriteError,
    load_model,
    restore_quarantine,
    run,
)
from fruitclf._files import TMP_MARK
from fruitclf._runfolder import RunFolder
from fruitclf.cli import main

#: A small, quick run of the default job (augmentation on).
QUICK = {"image_size": 24, "batch_size": 8, "precision": "float32", "tta": 1, "verbose": 0}


def _digests(root: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file under ``root``."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                       p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".fruitclf.lock"}


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(image_folder, test_folder, tmp_path_factory) -> Path:
    """A complete run of 3 epochs with a test folder."""
    out = tmp_path_factory.mktemp("finished") / "run"
    run(image_folder, out=out, test_dir=test_folder, epochs=3, **QUICK)
    return out


# ---------------------------------------------------------------- 1, 14: restore


def _quarantine_scenario(tmp_path: Path) -> tuple[Path, Path, bytes]:
    """Issue item 1: a second file quarantined from the same path as the first."""
    root = write_class_folder(tmp_path / "train", 2, 3, seed=0)
    original = root / "class_0" / "img_000.png"
    first = original.read_bytes()[:40]  # a truncated PNG
    original.write_bytes(first)
    ImageFolderDataset(root).remove_corrupted()
    original.write_text("NEW")  # a new (bad) file at the same path, cleaned again
    ImageFolderDataset(root).remove_corrupted()
    return root, Path(f"{root}-quarantine"), first


def test_restore_refuses_two_files_for_one_path_and_changes_nothing(tmp_path):
    """Check that restore never lets one quarantined file overwrite another (item 1)."""
    root, quarantine, first = _quarantine_scenario(tmp_path)
    before = _tree(quarantine), _tree(root)
    with pytest.raises(DatasetError, match=r"both .*img_000.*and .*img_000\.\d+\.png.* belong"):
        restore_quarantine(quarantine)
    assert (_tree(quarantine), _tree(root)) == before
    manifest = json.loads((quarantine / "fruitclf-quarantine.json").read_text())
    assert len(manifest["entries"]) == 2
    # The user keeps the first file: moving the other out of the quarantine settles it.
    newer = next(p for p in (quarantine / "class_0").iterdir() if p.name != "img_000.png")
    newer.rename(tmp_path / "kept-aside.png")
    assert restore_quarantine(quarantine) == [str(root / "class_0" / "img_000.png")]
    assert (root / "class_0" / "img_000.png").read_bytes() == first
    assert restore_quarantine(quarantine) == []  # idempotent


def test_restore_refuses_a_clash_naming_both_files(tmp_path):
    """Check that a file now at the original path is never replaced, and both are named."""
    root = write_class_folder(tmp_path / "train", 2, 2, seed=0)
    bad = root / "class_1" / "img_001.png"
    bad.write_bytes(b"")
    ImageFolderDataset(root).remove_corrupted(quarantine=tmp_path / "q")
    bad.write_bytes(b"the user's new file")
    with pytest.raises(DatasetError, match=r"img_001\.png' exists, so .*q/class_1/img_001\.png"):
        restore_quarantine(tmp_path / "q")
    assert bad.read_bytes() == b"the user's new file"


def test_restore_that_fails_halfway_is_finished_by_running_it_again(tmp_path, monkeypatch):
    """Check that the manifest is updated per file, so a retry completes (item 14)."""
    root = write_class_folder(tmp_path / "train", 2, 3, seed=0)
    before = _tree(root)
    for name in ("img_000.png", "img_001.png", "img_002.png"):
        path = root / "class_0" / name
        path.write_bytes(path.read_bytes()[:30])
    broken = _tree(root)
    ImageFolderDataset(root).remove_corrupted(quarantine=tmp_path / "q")
    from fruitclf import _files

    real_move, calls = _files.move_no_replace, []

    def flaky_move(source, target):  # type: ignore[no-untyped-def]
        calls.append(source)
        if len(calls) == 2:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(target))
        real_move(source, target)

    monkeypatch.setattr(_files, "move_no_replace", flaky_move)
    with pytest.raises(DatasetError, match="Permission denied. Restored 1 of 3; .* again"):
        restore_quarantine(tmp_path / "q")
    manifest = json.loads((tmp_path / "q" / "fruitclf-quarantine.json").read_text())
    assert len(manifest["entries"]) == 2
    monkeypatch.setattr(_files, "move_no_replace", real_move)
    assert len(restore_quarantine(tmp_path / "q")) == 2
    assert _tree(root) == broken != before
    assert restore_quarantine(tmp_path / "q") == []


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
    before = _digests(tmp_path)
    again = _trainer(tmp_path, learning_rate=0.05)
    resumed = again.fit(train, val, epochs=6, resume=True)
    assert _digests(tmp_path) == before
    assert (resumed.best_epoch, resumed.epochs_run) == (history.best_epoch, 6)
    best = load_model(tmp_path / "best.keras").model.get_weights()
    for got, want in zip(again.model.get_weights(), best):
        np.testing.assert_array_equal(got, want)


def test_resuming_a_finished_job_changes_no_file(finished_run, image_folder, test_folder):
    """Check item 2 on the whole job: `--resume` of a complete run rewrites nothing."""
    before = _digests(finished_run)
    result = run(image_folder, out=finished_run, test_dir=test_folder, epochs=3, resume=True,
                 **QUICK)
    assert _digests(finished_run) == before
    assert result.metrics == json.loads((finished_run / "metrics.json").read_text())


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
    before = _digests(tmp_path)
    resumed = _trainer(tmp_path, patience=1, learning_rate=0.3).fit(train, val, epochs=30,
                                                                    resume=True)
    assert resumed.epochs_run == history.epochs_run and resumed.stopped_early
    assert _digests(tmp_path) == before


def test_resume_with_other_classes_or_settings_refuses_before_touching_anything(
        finished_run, image_folder, test_folder, tmp_path):
    """Check item 5: other classes, image size or spec are refused, naming the change."""
    before = _digests(finished_run)
    fewer = tmp_path / "fewer"
    shutil.copytree(image_folder, fewer)
    shutil.rmtree(fewer / "class_2")
    with pytest.raises(RunFolderError, match=r"other settings \(class_names: .*class_2"):
        run(fewer, out=finished_run, epochs=3, resume=True, **QUICK)
    with pytest.raises(RunFolderError, match=r"image_size: \[24, 24\] -> \[32, 32\]"):
        run(image_folder, out=finished_run, epochs=3, resume=True, **{**QUICK, "image_size": 32})
    assert _digests(finished_run) == before


# ---------------------------------------------------------------- 6-8: run folders, writes


def test_a_folder_holding_another_run_is_refused_unless_overwrite(finished_run, image_folder,
                                                                  tmp_path):
    """Check item 6: refused (naming the run); --overwrite removes that run's files only."""
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match=r"holds another finished run .*--overwrite"):
        run(image_folder, out=out, epochs=1, **QUICK)
    run(image_folder, out=out, epochs=1, overwrite=True, **QUICK)
    names = {p.name for p in out.iterdir()}
    assert "classification_report.txt" not in names and "confusion_matrix.png" not in names
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 1


def test_a_second_process_is_stopped_by_the_lock_and_a_stale_lock_is_ignored(tmp_path):
    """Check item 6: a held folder is refused at once; a dead holder's lock file is not."""
    identity = {"config": {"seed": 1}}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".fruitclf.lock").write_text("pid 999999 on gone-host\n")  # stale
    with (RunFolder(tmp_path / "run", identity, overwrite=False, resume=False),
          pytest.raises(RunFolderError, match=r"in use by another fruitclf process \(pid")):
        RunFolder(tmp_path / "run", identity, overwrite=False, resume=False).__enter__()
    with RunFolder(tmp_path / "run", identity, overwrite=False, resume=False):
        pass  # released on exit


def test_leftovers_of_killed_writes_are_removed_and_history_files_agree(image_folder, tmp_path):
    """Check item 7: stray temporary files go when the folder is next used; CSV = JSON."""
    out = tmp_path / "run"
    out.mkdir()
    stray = out / f".best_model.keras.1a2b3c4d{TMP_MARK}.keras"
    stray.write_bytes(b"half a model")
    user_file = out / ".my-hidden-notes"
    user_file.write_text("keep")
    run(image_folder, out=out, epochs=2, **QUICK)
    assert not stray.exists() and user_file.exists()
    assert not [p for p in out.iterdir() if TMP_MARK in p.name]
    rows = (out / "history.csv").read_text().splitlines()
    assert len(rows) - 1 == len(json.loads((out / "history.json").read_text())["epoch_seconds"])


def test_disk_full_is_one_line_naming_the_file(image_folder, tmp_path, monkeypatch, capsys):
    """Check item 8: ENOSPC while saving gives one line with the path, no traceback."""
    def full_disk(self, filepath, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device", os.fspath(filepath))

    monkeypatch.setattr(keras.Model, "save", full_disk)
    code = main(["train", str(image_folder), "--out", str(tmp_path / "r"), "--epochs", "1",
                 "--image-size", "24", "--batch-size", "8", "--tta", "1", "--quiet"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    err = [line for line in err.splitlines() if line.startswith("fruitclf: error")]
    assert code == 1 and len(err) == 1
    assert err[0].startswith("fruitclf: error: Cannot write ")
    assert "last_checkpoint.keras': No space left on device. Free some disk space" in err[0]
    assert not [p for p in (tmp_path / "r").iterdir() if TMP_MARK in p.name]


def test_a_failed_final_save_writes_none_of_the_final_files(image_folder, tmp_path,
                                                            monkeypatch):
    """Check that the final files land together: one failing leaves none of them."""
    real_save = keras.Model.save

    def full_at_the_end(self, filepath, *args, **kwargs):  # type: ignore[no-untyped-def]
        if ".model.keras" in os.fspath(filepath):
            raise OSError(errno.ENOSPC, "No space left on device", os.fspath(filepath))
        return real_save(self, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", full_at_the_end)
    out = tmp_path / "run"
    with pytest.raises(WriteError, match=r"^Cannot write '.*run/model.keras': No space left"):
        run(image_folder, out=out, epochs=1, **QUICK)
    names = {p.name for p in out.iterdir()}
    assert not names & {"model.h5", "model.keras", "metrics.json", "report.md", "history.png"}
    assert not [n for n in names if TMP_MARK in n]
    assert json.loads((out / "fruitclf-run.json").read_text())["state"] == "training"
    monkeypatch.setattr(keras.Model, "save", real_save)
    result = run(image_folder, out=out, epochs=1, resume=True, **QUICK)  # finishes the run
    assert result.history.epochs_run == 1 and (out / "model.keras").exists()


def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    """Check that an atomic write that fails leaves the old content and no temporary file."""
    from fruitclf import _files

    target = _files.write_text(tmp_path / "metrics.json", "old")
    monkeypatch.setattr(_files.os, "replace", lambda *a: (_ for _ in ()).throw(
        PermissionError(errno.EACCES, "Permission denied")))
    with pytest.raises(WriteError, match=r"metrics.json': Permission denied. Check"):
        _files.write_text(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == [
        "metrics.json"]


# ---------------------------------------------------------------- 9-13: hostile input


@pytest.fixture(scope="module")
def model_file(finished_run) -> Path:
    return finished_run / "model.keras"


def test_evaluate_refuses_bad_test_files_by_name_or_skips_them(model_file, test_folder,
                                                               tmp_path, capsys):
    """Check item 9: a truncated JPEG is named (exit 1, one line), or skipped with --skip-bad."""
    folder = tmp_path / "test"
    shutil.copytree(test_folder, folder)
    victim = sorted(folder.rglob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:200])
    code = main(["evaluate", str(model_file), str(folder)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert victim.name in err[0] and "truncated JPEG" in err[0] and "--skip-bad" in err[0]
    code = main(["evaluate", str(model_file), str(folder), "--skip-bad", "--json"])
    assert code == 0
    loaded = load_model(model_file)
    result = fruitclf.Evaluator(loaded.model, loaded.class_names).evaluate(
        ImageFolderDataset(folder, class_names=loaded.class_names), skip_bad=True)
    assert [p.path for p in result.skipped] == [str(victim)]
    assert len(result.y_true) == len(ImageFolderDataset(folder)) - 1


def test_a_many_frame_gif_is_judged_on_all_its_frames(tmp_path, model_file):
    """Check item 10: the pixel budget counts every frame, in the check and the pipeline."""
    root = write_class_folder(tmp_path / "data", 2, 2, seed=0)
    bomb = write_many_frame_gif(root / "class_0" / "bomb.gif", frames=40, width=2000,
                                height=2000)
    assert bomb.stat().st_size < 1000
    small = write_many_frame_gif(root / "class_1" / "two.gif", frames=2, width=20, height=20)
    problems = ImageFolderDataset(root).check(progress=False).problems
    assert [(p.relpath, p.reason) for p in problems] == [("class_0/bomb.gif", "too_many_pixels")]
    assert "(40 frames of 2000x2000 = 160,000,000 > max_pixels=89,478,485; TensorFlow " \
        "decodes every frame)" in problems[0].message
    with pytest.raises(CorruptedImagesError, match="bomb.gif: too many pixels"):
        ImageFolderDataset(root).to_tf_dataset(image_size=24)
    predictions = load_model(model_file).predict([bomb, small])
    assert predictions.labels[0] == "" and "too many pixels" in predictions.errors[str(bomb)]
    assert predictions.labels[1] != ""


def test_a_fifo_is_reported_never_read(tmp_path):
    """Check item 11: scan and the pipelines do not hang on a FIFO named like an image."""
    root = write_class_folder(tmp_path / "data", 2, 2, seed=0)
    os.mkfifo(root / "class_0" / "x.jpg")
    outcome: dict[str, object] = {}

    def scan() -> None:
        ds = ImageFolderDataset(root)
        outcome["summary"] = ds.summary()
        outcome["report"] = ds.check(progress=False)
        try:
            ds.to_tf_dataset(image_size=24)
        except CorruptedImagesError as exc:
            outcome["pipeline"] = str(exc)

    worker = threading.Thread(target=scan, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "scan blocked on the FIFO"
    report = outcome["report"]
    assert [(p.relpath, p.reason) for p in report.problems] == [  # type: ignore[attr-defined]
        ("class_0/x.jpg", "not_a_file")]
    assert "FIFO" in report.problems[0].message  # type: ignore[attr-defined]
    assert "x.jpg: a FIFO (named pipe), not a regular file" in str(outcome["pipeline"])


def test_predict_handles_repeated_and_missing_paths_per_entry(model_file, test_folder, tmp_path,
                                                              capsys):
    """Check item 12: a repeated path is predicted twice; missing paths are one entry each."""
    image = str(sorted(Path(test_folder).rglob("*.jpg"))[0])
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = str(tmp_path / "missing.jpg")
    predictions = load_model(model_file).predict([image, image, missing, empty])
    assert predictions.labels[0] == predictions.labels[1] != ""
    np.testing.assert_array_equal(predictions.probabilities[0], predictions.probabilities[1])
    assert predictions.errors == {missing: "file not found",
                                  str(empty): predictions.errors[str(empty)]}
    assert predictions.errors[str(empty)].startswith("no images in this folder")
    code = main(["predict", str(model_file), image, image, missing])
    out = capsys.readouterr().out.splitlines()
    assert code == 1 and len(out) == 3 and out[2] == f"{missing}: error: file not found"


def _tamper(source: Path, target: Path, change) -> Path:  # type: ignore[no-untyped-def]
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w") as out:
        for item in archive.infolist():
            data = archive.read(item)
            if item.filename == "fruitclf.json":
                data = json.dumps(change(json.loads(data))).encode()
            out.writestr(item, data)
    return target


@pytest.mark.parametrize(("change", "match"), [
    (lambda m: [m], "expected an object, found list"),
    (lambda m: {**m, "preprocessing": "128x128"}, "preprocessing must be dict, found str"),
    (lambda m: {**m, "preprocessing": {**m["preprocessing"], "image_size": [60000, 60000]}},
     r"`image_size` must be at most 2048 pixels a side. Received: image_size=\(60000, 60000\)"),
    (lambda m: {**m, "class_names": [0, 1, 2]}, "class_names: 0 is not a non-empty str"),
    (lambda m: {**m, "preprocessing": {**m["preprocessing"], "image_size": [32, 32]}},
     r"image_size \[32, 32\] differs from the \[24, 24\] the model was built"),
])
def test_tampered_metadata_is_one_clear_error(model_file, tmp_path, capsys, change, match):
    """Check item 13: a schema check turns damaged metadata into one line, not a traceback."""
    bad = _tamper(model_file, tmp_path / "bad.keras", change)
    with pytest.raises(ModelFileError, match=match):
        load_model(bad)
    code = main(["predict", str(bad), str(model_file)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert "damaged fruitclf metadata" in err[0] or "the metadata was changed" in err[0]


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
