"""Run folders: another run refused, one process at a time, atomic writes, failed writes."""

from __future__ import annotations

import errno
import json
import os
import shutil

import keras
import pytest

from _runs import QUICK
from fruitclf import (
    RunFolderError,
    WriteError,
    run,
)
from fruitclf._files import TMP_MARK
from fruitclf._runfolder import RunFolder
from fruitclf.cli import main

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


@pytest.mark.slow  # no TensorFlow-specific behaviour: the newest TensorFlow runs it
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




def test_a_lock_file_goes_with_its_lock_and_a_late_opener_takes_a_new_one(tmp_path,
                                                                        monkeypatch):
    """Check that releasing a lock removes its file while still holding it, and that a
    process that opened the file just before (and so locks a removed file) notices and takes
    a new one: two holders at once are impossible."""
    import builtins

    from fruitclf import _files

    path = tmp_path / ".fruitclf.lock"
    first = _files.exclusive_lock(path, "busy: {holder}", RuntimeError)
    real_open = builtins.open
    raced: list[bool] = []

    def open_then_holder_finishes(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        handle = real_open(file, *args, **kwargs)
        if not raced and os.fspath(file) == os.fspath(path):
            raced.append(True)
            _files.release_lock(first, path)  # between our open and our lock
        return handle

    monkeypatch.setattr(builtins, "open", open_then_holder_finishes)
    second = _files.exclusive_lock(path, "busy: {holder}", RuntimeError)
    monkeypatch.undo()
    assert raced and second is not None
    assert os.fstat(second.fileno()).st_ino == os.stat(path).st_ino  # the file now named
    with pytest.raises(RuntimeError, match=rf"busy: pid {os.getpid()} on "):
        _files.exclusive_lock(path, "busy: {holder}", RuntimeError)
    _files.release_lock(second, path)
    assert not path.exists()
