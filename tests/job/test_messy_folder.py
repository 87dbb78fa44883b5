"""A folder as a phone, a zip export or a cleanup leaves it: linked, tiny, nested and empty
classes, files TensorFlow cannot read; and what a user sees of it, in a shell, a plain script
and a notebook."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fruitclf
from _images import write_class_folder
from fruitclf.cli import build_parser, main

FOLDER_COMMANDS = {
    "scan": ["DIR"], "clean": ["DIR"], "samples": ["DIR", "--out", "x.png"],
    "train": ["DIR", "--out", "RUN"], "evaluate": ["M.keras", "DIR"],
    "predict": ["M.keras", "DIR"], "export": ["M.keras", "--out", "x.tflite"],
}
QUICK = ["--epochs", "1", "--image-size", "16", "--batch-size", "8"]
#: What TensorFlow and Keras print that a user cannot act on.
NOISE = ("cuInit", "absl::InitializeLog", "cpu_feature_guard", "rebuild TensorFlow",
         "retracing", "rendezvous", "did not fully read", "XNNPACK", "Reading SavedModel",
         "IProgress", "E0000", "W0000", "I0000")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _copy_classes(source: Path, root: Path, names: list[str]) -> Path:
    for name in names:
        shutil.copytree(source / name, root / name)
    return root


def test_every_command_that_reads_a_folder_takes_follow_links() -> None:
    parser = build_parser()
    for command, argv in FOLDER_COMMANDS.items():
        args = parser.parse_args([command, *argv, "--follow-links"])
        assert args.follow_links is True, command
        assert parser.parse_args([command, *argv]).follow_links is False, command


@pytest.mark.slow  # no TensorFlow-specific behaviour: the newest TensorFlow runs it
def test_a_linked_class_is_named_with_the_fix_and_followed_on_request(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, image_folder: Path) -> None:
    root = _copy_classes(image_folder, tmp_path / "linked", ["class_0", "class_1"])
    (root / "class_2").symlink_to(image_folder / "class_2", target_is_directory=True)

    code, out, err = _run(capsys, "scan", root)
    assert code == 0
    assert "2 classes" in out
    assert "Not followed: 1 link to a folder (class_2)" in out + err
    assert "--follow-links" in out + err
    code, out, _ = _run(capsys, "scan", root, "--follow-links", "--json")
    assert sorted(json.loads(out)["classes"]) == ["class_0", "class_1", "class_2"]

    code, _, err = _run(capsys, "train", root, "--out", tmp_path / "run", *QUICK, "--quiet")
    assert code == 0
    assert "class_2" in err and "--follow-links" in err  # a warning: shown under --quiet
    assert "Not followed: 1 link to a folder (class_2)" in (tmp_path / "run" / "report.md"
                                                             ).read_text()
    code, _, _ = _run(capsys, "train", root, "--follow-links", "--out", tmp_path / "all",
                      *QUICK, "--quiet")
    assert code == 0
    model = tmp_path / "all" / "model.keras"
    assert fruitclf.load_model(model).class_names == ["class_0", "class_1", "class_2"]

    code, out, err = _run(capsys, "predict", model, root, "--json")
    assert len(json.loads(out)) == 24 and "class_2" in err and "--follow-links" in err
    code, out, err = _run(capsys, "predict", model, root, "--json", "--follow-links")
    assert len(json.loads(out)) == 36 and "Not followed" not in err
    code, out, err = _run(capsys, "evaluate", model, root, "--follow-links")
    assert code == 0 and "class_2" in out and "Not followed" not in err


def test_evaluate_says_what_the_test_folder_lacks(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path, finished_run: Path,
                                                  test_folder: Path) -> None:
    partial = _copy_classes(test_folder, tmp_path / "test", ["class_0", "class_1"])
    code, out, err = _run(capsys, "evaluate", finished_run / "model.keras", partial)
    assert code == 0, err
    assert f"'{partial}' has no images of class 'class_2' (no folder of that name)." in err
    assert "Class folder" not in err
    # The report's rows and averages cover the classes the test folder has.
    table = out.split("Classes without test images")[0]
    assert "class_2" not in table
    assert "Classes without test images (not in the table or averages): class_2" in out


@pytest.fixture(scope="module")
def small_and_nested(tmp_path_factory: pytest.TempPathFactory, image_folder: Path) -> Path:
    root = _copy_classes(image_folder, tmp_path_factory.mktemp("small") / "train",
                         ["class_0", "class_1"])
    (root / "lone").mkdir()
    shutil.copy(image_folder / "class_2" / "img_000.png", root / "lone" / "only.png")
    (root / "class_0" / "from phone").mkdir()
    for name in ("img_000.png", "img_001.png"):
        shutil.move(root / "class_0" / name, root / "class_0" / "from phone" / name)
    return root


def test_small_classes_and_nested_folders_are_reported(
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, tmp_path: Path,
        small_and_nested: Path) -> None:
    warning = "Classes with fewer than 5 images: lone (1)."
    nested = "Sub-folders inside class folders count for their class: class_0/from phone"
    code, out, _ = _run(capsys, "scan", small_and_nested)
    assert code == 0 and warning in out and nested in out

    dataset = fruitclf.ImageFolderDataset(small_and_nested)
    with caplog.at_level("WARNING", logger="fruitclf"):
        _, validation = dataset.split(0.2, seed=0)
    assert "lone" not in {dataset.class_names[label] for label in validation.labels}
    assert "The validation split (0.2) has no image of 'lone'" in caplog.text

    code, _, err = _run(capsys, "train", small_and_nested, "--out", tmp_path / "run", *QUICK,
                        "--quiet")
    assert code == 0 and warning in err and err.count(warning) == 1
    report = (tmp_path / "run" / "report.md").read_text()
    assert warning in report and nested in report


def test_after_clean_empties_a_class_train_says_how_to_go_on_once(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, image_folder: Path) -> None:
    root = _copy_classes(image_folder, tmp_path / "train", ["class_0", "class_1"])
    (root / "class_2").mkdir()
    good = (image_folder / "class_2" / "img_000.png").read_bytes()
    (root / "class_2" / "broken.png").write_bytes(good[: len(good) // 2])
    assert _run(capsys, "clean", root, "--quarantine", tmp_path / "q")[0] == 0
    assert not (tmp_path / "q" / ".fruitclf-quarantine.lock").exists()
    code, _, err = _run(capsys, "train", root, "--out", tmp_path / "run", *QUICK)
    assert code == 1
    # One message, not a warning and then an error.
    assert err.count("Class folders without images") == 1 and "has no images" not in err, err
    assert f"rmdir {root / 'class_2'}" in err


def test_a_dry_run_names_the_reason_and_where_files_would_go(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, image_folder: Path) -> None:
    root = _copy_classes(image_folder, tmp_path / "train", ["class_0", "class_1"])
    scan = root / "class_1" / "scan.tif"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(scan, "TIFF")
    code, out, _ = _run(capsys, "clean", root, "--dry-run")
    assert code == 0
    assert f"Would move {scan}: unsupported format (TIFF)" in out
    assert "corrupt" not in out
    assert f"the files would go to {root}-quarantine" in out
    assert scan.exists() and not Path(f"{root}-quarantine").exists()


@pytest.fixture(scope="module")
def agreeable_run(tmp_path_factory: pytest.TempPathFactory) -> fruitclf.RunResult:
    """A run on two classes no model confuses (black and white), so no label error."""
    root = tmp_path_factory.mktemp("agree") / "train"
    for name, value in (("black", 0), ("white", 255)):
        (root / name).mkdir(parents=True)
        for index in range(6):
            Image.fromarray(np.full((16, 16, 3), value, np.uint8)).save(
                root / name / f"{index}.png")
    return fruitclf.run(root, out=root.parent / "run", image_size=16, epochs=8, batch_size=4,
                        verbose=0)


def test_no_label_error_figure_and_no_lock_file_are_left(
        agreeable_run: fruitclf.RunResult) -> None:
    out = agreeable_run.out_dir
    assert agreeable_run.label_errors == []
    assert not (out / "label_errors.png").exists() and "label_errors" not in agreeable_run.files
    report = (out / "report.md").read_text()
    assert "agrees with the label of every training" in report
    assert "label_errors.png" not in report
    assert not (out / ".fruitclf.lock").exists()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_a_run_displays_in_a_notebook_as_its_report_begins(
        agreeable_run: fruitclf.RunResult) -> None:
    shown = agreeable_run._repr_html_()
    assert shown.startswith(f"<h3>fruitclf run: {agreeable_run.out_dir}</h3>")
    assert "<p>Trained 8 epochs on 12 images in " in shown
    assert re.search(r"\d\.\d{5,}", shown) is None  # rounded, not 0.949999988079071
    assert ">None<" not in shown and "<td>train_seconds</td>" in shown
    assert shown.count("<img ") == 2  # curves and samples: no empty label-error figure


def test_notebook_displays_are_short_rounded_and_escaped(tmp_path: Path) -> None:
    root = write_class_folder(tmp_path / "t", 2, 3)
    summary = fruitclf.ImageFolderDataset(root).summary()._repr_html_()
    assert "<th>class</th><th>images</th>" in summary and "<td>class_0</td><td>3</td>" in summary
    probabilities = np.array([[0.123456789, 0.876543211], [0.5, 0.5]])
    predictions = fruitclf.Predictions(
        np.array([1, -1]), ["b", ""], probabilities, ["a", "b"],
        paths=["<img src=x onerror=alert(1)>.png", "gone.png"], errors={"gone.png": "missing"})
    shown = predictions._repr_html_()
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in shown and "<img" not in shown
    assert "<td>0.8770</td>" in shown or "<td>0.877</td>" in shown
    assert "error: missing" in shown and "1 unreadable" in shown
    result = fruitclf.EvaluationResult(np.array([0, 1]), np.array([0, 0]), probabilities,
                                       ["a", "b<"])
    shown = result._repr_html_()
    assert shown.startswith("<p>Accuracy 0.5000 on 2 images (95% interval 0.095–0.905; "
                           "loss ") and "b&lt;" in shown


def test_a_plain_script_prints_one_line_per_epoch_and_no_tensorflow_notices(
        tmp_path: Path, image_folder: Path, test_folder: Path) -> None:
    scans = tmp_path / "scans"
    (scans / "paper").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(scans / "paper" / "a.tif", "TIFF")
    shutil.copy(image_folder / "class_0" / "img_000.png", scans / "paper" / "b.png")
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        import fruitclf

        result = fruitclf.run({str(image_folder)!r}, test_dir={str(test_folder)!r},
                              out={str(tmp_path / "run")!r}, image_size=16, epochs=2,
                              batch_size=8)
        loaded = fruitclf.load_model(result.files["model.keras"])
        loaded.predict([{str(test_folder)!r}], tta=2)
        fruitclf.Evaluator(loaded.model, loaded.class_names,
                           preprocessing=loaded.preprocessing).evaluate(
            fruitclf.ImageFolderDataset({str(test_folder)!r},
                                        class_names=loaded.class_names), tta=4)
        fruitclf.export_model(loaded, {str(tmp_path / "m.tflite")!r})
        fruitclf.explain(loaded, {str(test_folder)!r})
        print(fruitclf.ImageFolderDataset({str(scans)!r}).check(progress=False))
    """))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "PYTEST"))}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr
    epochs = re.findall(r"^Epoch (\d)/2 - [\d.]+s - .*loss: [\d.]+$", proc.stdout, re.M)
    assert epochs == ["1", "2"], proc.stdout
    assert "paper/a.tif: unsupported format (TIFF)" in proc.stdout
    assert not [word for word in NOISE if word in proc.stderr], proc.stderr
    assert proc.stderr.strip() == "", proc.stderr


@pytest.mark.slow
@pytest.mark.docs
def test_a_notebook_shows_results_without_tensorflow_notices(
        tmp_path: Path, image_folder: Path, test_folder: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    cells = [
        "import fruitclf",
        f"summary = fruitclf.ImageFolderDataset({str(image_folder)!r}).summary()\nsummary",
        f"result = fruitclf.run({str(image_folder)!r}, test_dir={str(test_folder)!r}, "
        f"out={str(tmp_path / 'run')!r}, image_size=16, epochs=2, batch_size=8)\nresult",
        "result.evaluation",
        f"fruitclf.load_model(result.files['model.keras']).predict([{str(test_folder)!r}])",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    streams = "".join(o.get("text", "") for c in nb.cells for o in c.outputs
                      if o.output_type == "stream" and o.get("name") == "stderr")
    assert not [word for word in NOISE if word in streams], streams
    html = [next((o["data"].get("text/html", "") for o in c.outputs
                  if o.output_type == "execute_result"), "") for c in nb.cells]
    assert "<th>class</th><th>images</th>" in html[1]
    assert html[2].startswith("<h3>fruitclf run: ") and "<p>Test accuracy " in html[2]
    assert re.search(r"\d\.\d{5,}", html[2]) is None and ">None<" not in html[2]
    assert html[3].startswith("<p>Accuracy ") and "<pre>" in html[3]
    assert "predictions" in html[4] and "<table>" in html[4]
