"""Never touch what is not ours: run folders, exports, evaluation folders and outputs.

Each test plants a user's file where fruitclf writes, runs the real command, and checks that
the file is untouched and the command says why it refused.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fruitclf
from _paths import SRC
from _runs import QUICK, tree
from _shell import AS_FROM_A_TERMINAL
from fruitclf import ExportError, RunFolderError, run
from fruitclf._files import TMP_MARK
from fruitclf._ownership import EVALUATION_FILES, RUN_FILES
from fruitclf.cli import main


def _tree(root: Path) -> dict[str, str]:
    return {k: v for k, v in tree(root).items() if not k.endswith(".fruitclf.lock")}


@pytest.fixture(scope="module")
def leaky_test(image_folder, test_folder, tmp_path_factory) -> Path:
    """The test folder plus one training image: a leaked test image."""
    folder = tmp_path_factory.mktemp("leaky") / "test"
    shutil.copytree(test_folder, folder)
    twin = sorted((image_folder / "class_0").iterdir())[0]
    shutil.copy(twin, folder / "class_0" / "twin.png")
    return folder


@pytest.fixture(scope="module")
def finished(image_folder, leaky_test, tmp_path_factory) -> Path:
    """A complete 2-epoch run with a test folder that leaks (so it has leakage.json)."""
    out = tmp_path_factory.mktemp("owned") / "run"
    run(image_folder, out=out, test_dir=leaky_test, epochs=2, **QUICK)
    return out


def test_every_file_a_run_writes_is_declared(finished):
    """Check that a finished run folder holds only declared files (and its lock)."""
    declared = {f.name for f in RUN_FILES} | {".fruitclf.lock"}
    written = {p.name for p in finished.iterdir()}
    assert written <= declared, written - declared
    assert {"report.html", "leakage.json", "label_errors.png"} <= written
    marker = json.loads((finished / "fruitclf-run.json").read_text())
    assert set(marker["owns"]) == {f.name for f in RUN_FILES}


@pytest.mark.parametrize("name", ["report.html", "leakage.json", "label_errors.png",
                                  "model.keras"])
def test_a_user_file_with_a_run_file_name_is_never_replaced(image_folder, tmp_path, name):
    """Check that train refuses a folder holding a user's file with a run file's name, with
    and without --overwrite, and changes nothing."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / name).write_text("my own file")
    for extra in ({}, {"overwrite": True}):
        with pytest.raises(RunFolderError, match=rf"holds {name}, which no fruitclf run"):
            run(image_folder, out=out, epochs=1, **QUICK, **extra)
    assert (out / name).read_text() == "my own file"
    assert sorted(p.name for p in out.iterdir()) == [name]  # not even a lock file left


def test_overwrite_removes_the_previous_runs_files_exports_and_nothing_else(
        finished, image_folder, tmp_path):
    """Check that --overwrite over a run with a test folder leaves no stale leakage.json,
    removes exports made into the folder, and keeps the user's own files."""
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    fruitclf.export_model(out / "model.keras", out / "fruits.tflite")
    fruitclf.export_model(out / "model.keras", out / "saved")
    (out / "notes.txt").write_text("mine")
    (out / "photos").mkdir()
    (out / "photos" / "a.jpg").write_bytes(b"not really a photo")
    run(image_folder, out=out, epochs=1, overwrite=True, **QUICK)
    names = {p.name for p in out.iterdir()}
    assert not names & {"leakage.json", "classification_report.txt", "confusion_matrix.png",
                        "fruits.tflite", "fruits.tflite.json", "fruits.tflite.labels.txt",
                        "saved", "saved.json", "saved.labels.txt"}
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "photos" / "a.jpg").read_bytes() == b"not really a photo"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1 and "num_leaked_test_images" not in metrics


def test_overwrite_refuses_an_export_in_the_run_folder_holding_user_files(finished,
                                                                        image_folder, tmp_path):
    """Check that a SavedModel export in a run folder that a user added files to stops the
    overwrite before any file is removed."""
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    fruitclf.export_model(out / "model.keras", out / "saved")
    (out / "saved" / "notes.txt").write_text("mine")
    before = _tree(out)
    with pytest.raises(RunFolderError, match=r"notes\.txt"):
        run(image_folder, out=out, epochs=1, overwrite=True, **QUICK)
    assert _tree(out) == before


def test_a_damaged_marker_is_refused_even_with_overwrite(image_folder, tmp_path):
    """Check that a fruitclf-run.json fruitclf cannot read is not taken as a licence to
    remove files, with or without --overwrite."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "fruitclf-run.json").write_text('{"format": "something-else"}')
    (out / "model.h5").write_text("mine")
    for extra in ({}, {"overwrite": True}):
        with pytest.raises(RunFolderError, match="not a fruitclf run marker: move it away"):
            run(image_folder, out=out, epochs=1, **QUICK, **extra)
    assert (out / "model.h5").read_text() == "mine"


def test_savedmodel_overwrite_never_deletes_a_users_folder(finished, tmp_path, capsys):
    """Check item 1: export --overwrite onto a folder of the user's refuses, naming what is
    there, and leaves it byte-identical."""
    folder = tmp_path / "mine"
    (folder / "photos").mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    (folder / "photos" / "p.jpg").write_bytes(b"jpeg")
    before = _tree(folder)
    code = main(["export", str(finished / "model.keras"), "--format", "savedmodel", "--out",
                 str(folder), "--overwrite"])
    err = capsys.readouterr().err
    assert code == 1 and "replaces only an export that fruitclf wrote" in err
    assert "notes.txt" in err and len(err.strip().splitlines()) == 1
    assert _tree(folder) == before
    assert not [p for p in tmp_path.iterdir() if TMP_MARK in p.name]


@pytest.mark.parametrize("suffix", [".tflite", ".onnx"])
def test_file_export_overwrite_replaces_only_a_fruitclf_export(finished, tmp_path, suffix):
    """Check that a user's file (or sidecar) at the export path is refused with --overwrite,
    and that an export fruitclf wrote is replaced."""
    target = tmp_path / f"model{suffix}"
    target.write_bytes(b"the user's own model")
    with pytest.raises(ExportError, match="not part of one"):
        fruitclf.export_model(finished / "model.keras", target, overwrite=True)
    assert target.read_bytes() == b"the user's own model"
    target.unlink()
    labels = tmp_path / f"model{suffix}.labels.txt"
    labels.write_text("my labels\n")
    with pytest.raises(ExportError, match=r"labels\.txt' is not part of one"):
        fruitclf.export_model(finished / "model.keras", target, overwrite=True)
    assert labels.read_text() == "my labels\n"
    labels.unlink()
    fruitclf.export_model(finished / "model.keras", target)
    result = fruitclf.export_model(finished / "model.keras", target, overwrite=True)
    assert result.top1_agreement == 1.0


def test_a_killed_exports_work_folder_is_removed_and_a_running_one_kept(finished, tmp_path):
    """Check that the hidden work folder of an export that was killed goes with the next
    export of the same target, while one still locked by a running export stays."""
    from fruitclf._files import exclusive_lock

    target = tmp_path / "fruits.onnx"
    stale = tmp_path / f".fruits.onnx.abc123{TMP_MARK}"
    (stale / "savedmodel").mkdir(parents=True)
    (stale / "savedmodel" / "saved_model.pb").write_bytes(b"half")
    busy = tmp_path / f".fruits.onnx.def456{TMP_MARK}"
    busy.mkdir()
    lock = exclusive_lock(busy / ".lock", "{holder}", RuntimeError)
    other = tmp_path / f".other.onnx.abc123{TMP_MARK}"
    other.mkdir()
    try:
        fruitclf.export_model(finished / "model.keras", target)
        assert not stale.exists() and busy.exists() and other.exists()
    finally:
        assert lock is not None
        lock.close()


@pytest.mark.parametrize("where", ["train", "test"])
def test_a_run_folder_inside_an_image_folder_is_refused(image_folder, test_folder, tmp_path,
                                                        capsys, where):
    """Check item 3: --out inside the training or test folder is refused before anything is
    written (it would become a class)."""
    train = tmp_path / "train"
    shutil.copytree(image_folder, train)
    inside = (train if where == "train" else test_folder) / "myrun"
    code = main(["train", str(train), "--test", str(test_folder), "--out", str(inside),
                 "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "`--out` must be outside the" in err and "Received: --out" in err
    assert not inside.exists()


def test_outputs_inside_image_folders_are_refused_for_every_command(finished, image_folder,
                                                                    test_folder, tmp_path,
                                                                    capsys):
    """Check that evaluate --out, export --out (calibration folder), samples --out and a
    quarantine inside the image folder are refused, with nothing written."""
    model = str(finished / "model.keras")
    before = _tree(test_folder), _tree(image_folder)
    commands = [
        ["evaluate", model, str(test_folder), "--out", str(test_folder / "eval")],
        ["export", model, "--out", str(image_folder / "m.tflite"), "--calibration",
         str(image_folder)],
        ["samples", str(image_folder), "--out", str(image_folder / "class_0" / "s.png")],
        ["clean", str(image_folder), "--quarantine", str(image_folder / "q")],
    ]
    for command in commands:
        assert main(command) == 1, command
        err = capsys.readouterr().err
        assert "must be outside the" in err, (command, err)
    assert (_tree(test_folder), _tree(image_folder)) == before


def test_evaluate_out_keeps_its_own_files_and_refuses_anyone_elses(finished, test_folder,
                                                                   tmp_path, capsys):
    """Check that evaluate --out refuses a run folder (whose confusion matrix is the run's)
    and a folder with a user's file of its names, and replaces its own evaluation."""
    model = str(finished / "model.keras")
    before = _tree(finished)
    assert main(["evaluate", model, str(test_folder), "--out", str(finished)]) == 1
    assert "confusion_matrix.png" in capsys.readouterr().err
    assert _tree(finished) == before
    out = tmp_path / "eval"
    out.mkdir()
    (out / "evaluation.json").write_text("mine")
    assert main(["evaluate", model, str(test_folder), "--out", str(out)]) == 1
    assert (out / "evaluation.json").read_text() == "mine"
    (out / "evaluation.json").unlink()
    for _ in range(2):  # the second replaces the first's files
        assert main(["evaluate", model, str(test_folder), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {f.name for f in EVALUATION_FILES}


def test_samples_out_replaces_only_its_own_image(image_folder, tmp_path, capsys):
    """Check that samples --out refuses to replace a user's picture and replaces a sample
    grid it wrote itself."""
    photo = tmp_path / "holiday.png"
    photo.write_bytes(b"\x89PNG my holiday")
    assert main(["samples", str(image_folder), "--out", str(photo)]) == 1
    assert "holiday.png" in capsys.readouterr().err
    assert photo.read_bytes() == b"\x89PNG my holiday"
    grid = tmp_path / "grid.png"
    for _ in range(2):
        assert main(["samples", str(image_folder), "--out", str(grid)]) == 0


@pytest.mark.cli
@pytest.mark.parametrize("delay", [0.4, 0.8, 1.6])
def test_ctrl_c_during_start_up_is_one_line(image_folder, tmp_path, delay):
    """Check that Ctrl-C while the command builds its parser or loads TensorFlow prints
    ``fruitclf: interrupted`` and exits 130, without a traceback."""
    import signal
    import time

    src = SRC
    proc = subprocess.Popen(
        [sys.executable, "-c",
         AS_FROM_A_TERMINAL + "from fruitclf.cli import entry_point; entry_point()",
         "train", str(image_folder), "--out", str(tmp_path / "run"), "--epochs", "1"],
        env={**os.environ, "PYTHONPATH": str(src)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == [err.strip().splitlines()[-1]]
    assert err.strip().startswith("fruitclf: interrupted")


def _scan_parsing_with(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    """``fruitclf scan tmp_path`` as run from a terminal, with ``code`` (which defines a
    ``build_parser``) in place of the command's own parser."""
    script = (AS_FROM_A_TERMINAL + "\nimport fruitclf.cli as cli\n" + code
              + "cli.build_parser = build_parser\ncli.entry_point()\n")
    return subprocess.run([sys.executable, "-c", script, "scan", str(tmp_path)],
                          env={**os.environ, "PYTHONPATH": str(SRC)}, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.cli
def test_ctrl_c_turned_into_an_import_error_is_still_an_interrupt(tmp_path):
    """Check that Ctrl-C landing in an extension module's import, which Python reports as an
    ``ImportError`` without the ``KeyboardInterrupt`` (numpy's ``PyCapsule_Import`` of
    ``datetime``), still ends the command with ``fruitclf: interrupted`` and status 130."""

    done = _scan_parsing_with(
        tmp_path,
        "import os, signal, time\n"
        "def build_parser():\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        time.sleep(5)\n"
        "    except KeyboardInterrupt:\n"
        "        raise ImportError('PyCapsule_Import could not import module \"datetime\"')\n")
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "fruitclf: interrupted."


@pytest.mark.cli
def test_ctrl_c_during_an_import_waits_for_the_import_to_return(tmp_path):
    """Check that Ctrl-C while a module is being imported is raised once the import returns:
    code that an extension module's import runs from C can print a ``KeyboardInterrupt``
    raised inside it and go on (here a module that does the same in Python), which left a
    traceback above ``fruitclf: interrupted``."""

    (tmp_path / "slow_module.py").write_text(
        "import os, signal, time, traceback\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(0.5)\n"
        "except KeyboardInterrupt:\n"
        "    traceback.print_exc()\n"
        "FINISHED = True\n")
    done = _scan_parsing_with(
        tmp_path,
        "import sys, time\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "def build_parser():\n"
        "    import slow_module\n"
        "    print('imported', slow_module.FINISHED, file=sys.stderr)\n"
        "    time.sleep(5)\n")
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "imported True\nfruitclf: interrupted.", done.stderr


@pytest.mark.cli
@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_under_tensorflows_code_is_raised_once_it_returns(tmp_path, presses):
    """Check that Ctrl-C in code that TensorFlow's code called (as its C++ calls back into
    Python while it traces or flattens, and may print the interrupt, or turn it into a
    ``SystemError``, and go on) is raised once TensorFlow's code returns, and that a second
    Ctrl-C stops at once."""
    import time

    done_at = time.monotonic()
    done = _scan_parsing_with(
        tmp_path,
        "import os, signal, sys, time, traceback\n"
        "tensorflow_code = {'__name__': 'tensorflow.python.util.nest_util'}\n"
        "exec('def flatten(callback):\\n    return callback()\\n', tensorflow_code)\n"
        "def callback():\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        time.sleep(0.3)\n"
        f"        if {presses} == 2:\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "            time.sleep(8)\n"
        "    except KeyboardInterrupt:\n"
        f"        if {presses} == 1:\n"
        "            traceback.print_exc()\n"
        "        raise\n"
        "def build_parser():\n"
        "    tensorflow_code['flatten'](callback)\n"
        "    print('returned', file=sys.stderr)\n"
        "    time.sleep(5)\n")
    assert done.returncode == 130, done.stderr
    expected = ("returned\n" if presses == 1 else "") + "fruitclf: interrupted."
    assert done.stderr.strip() == expected, done.stderr
    assert time.monotonic() - done_at < 6


def test_an_output_that_reaches_an_image_folder_through_a_link_is_refused(image_folder,
                                                                          tmp_path):
    """Check that --out given as a link into the training folder is refused like the
    folder itself."""
    train = tmp_path / "train"
    shutil.copytree(image_folder, train)
    link = tmp_path / "runs"
    link.symlink_to(train, target_is_directory=True)
    with pytest.raises(ValueError, match="must be outside the training folder"):
        run(train, out=link / "fruits", epochs=1, **QUICK)
    assert sorted(p.name for p in train.iterdir()) == ["class_0", "class_1", "class_2"]
