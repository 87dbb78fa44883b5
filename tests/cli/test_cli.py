"""The fruitclf command: real commands on generated folders, JSON outputs, one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fruitclf
from _images import write_zoo
from fruitclf.cli import build_parser, main

pytestmark = pytest.mark.cli


def _run(capsys, *argv: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def dirty(tmp_path, image_folder) -> Path:
    root = tmp_path / "dirty"
    shutil.copytree(image_folder, root)
    write_zoo(root / "class_1", np.random.default_rng(0))
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, image_folder, test_folder) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", str(image_folder), "--out", str(out), "--test", str(test_folder),
                 "--image-size", "24", "--epochs", "2", "--batch-size", "8", "--quiet"]) == 0
    return out


def test_train_help_says_where_each_default_comes_from():
    """Check that train --help names the recipe defaults and never prints "default: None"."""
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    for name in ("train", "demo"):
        text = " ".join(subparsers.choices[name].format_help().split())
        assert "(default: None)" not in text, name
    text = " ".join(subparsers.choices["train"].format_help().split())
    assert "small-data 64; worksheet 128" in text and "small-data 4" in text
    assert "mobilenetv3small" in text and "--weights" in text


def test_help_has_an_example_for_every_command():
    """Check that every subcommand's --help carries an example."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    for name, sub in subparsers.choices.items():
        assert f"fruitclf {name}" in sub.format_help(), name


def test_help_runs_as_a_program():
    """Check that the installed entry point answers --help without error."""
    proc = subprocess.run([sys.executable, "-m", "fruitclf.cli", "--help"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "scan" in proc.stdout


def test_scan_json(capsys, dirty):
    """Check scan --json: classes, counts and problems with relative paths, nothing changed."""
    before = sorted(p.name for p in dirty.rglob("*"))
    code, out, _ = _run(capsys, "scan", str(dirty), "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["classes"]["class_0"] == 12
    assert payload["num_images"] == sum(payload["classes"].values())
    problems = {p["path"]: p["reason"] for p in payload["problems"]}
    assert "class_1/truncated.jpg" in problems and "truncated" in problems[
        "class_1/truncated.jpg"]
    assert "class_1/plain.jpg" not in problems
    assert sorted(p.name for p in dirty.rglob("*")) == before


def test_clean_dry_run_then_quarantine(capsys, dirty, tmp_path):
    """Check clean: dry run lists, quarantine moves, a second clean finds nothing."""
    code, out, _ = _run(capsys, "clean", str(dirty), "--dry-run")
    assert code == 0 and f"Would move {dirty / 'class_1' / 'truncated.jpg'}: truncated JPEG" in out
    assert (dirty / "class_1" / "truncated.jpg").exists()
    code, out, _ = _run(capsys, "clean", str(dirty), "--quarantine", str(tmp_path / "q"))
    assert code == 0
    assert f"Moved {dirty / 'class_1' / 'truncated.jpg'}: truncated JPEG" in out
    assert (tmp_path / "q" / "class_1" / "truncated.jpg").exists()
    code, out, _ = _run(capsys, "clean", str(dirty))
    assert out.strip() == "No corrupted images found."
    code, out, _ = _run(capsys, "restore", str(tmp_path / "q"))
    assert code == 0 and (dirty / "class_1" / "truncated.jpg").exists()


def test_clean_json_and_delete(capsys, dirty):
    """Check clean --delete --json reports the removed files."""
    code, out, _ = _run(capsys, "clean", str(dirty), "--delete", "--json")
    payload = json.loads(out)
    assert code == 0 and payload["action"] == "delete"
    assert not (dirty / "class_1" / "zero.jpg").exists()
    assert (dirty / "class_1" / "plain.jpg").exists()


def test_samples_writes_a_png(capsys, image_folder, tmp_path):
    """Check that samples writes the sample grid."""
    out_file = tmp_path / "s" / "samples.png"
    code, _, _ = _run(capsys, "samples", str(image_folder), "--out", str(out_file), "--seed", "1")
    assert code == 0 and out_file.read_bytes().startswith(b"\x89PNG")


def test_spec_shows_the_table_and_json(capsys):
    """Check that spec prints the worksheet table and valid JSON."""
    code, out, _ = _run(capsys, "spec", "--preset", "worksheet", "--image-size", "128",
                        "--classes", "6")
    assert code == 0 and "Total params: 2,116,454" in out and "3*3*3*32 + 32 = 896" in out
    code, out, _ = _run(capsys, "spec", "--preset", "keras-mnist", "--json")
    assert json.loads(out)["num_classes"] == 10


def test_train_writes_the_run_folder(run_dir, test_folder):
    """Check that train wrote the models, figures, report and metrics."""
    names = {p.name for p in run_dir.iterdir()}
    assert {"model.h5", "model.keras", "last_checkpoint.keras", "history.png", "samples.png",
            "confusion_matrix.png", "misclassified.png", "classification_report.txt",
            "metrics.json", "report.md", "history.json", "history.csv", "split.json"} <= names
    # The small-data recipe keeps the last epoch: no best-epoch checkpoint, no validation.
    assert "best_model.keras" not in names
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["best_epoch"] == 2
    assert metrics["val_accuracy"] is None and metrics["num_val_images"] == 0
    assert metrics["num_train_images"] == 36
    # The reported accuracy is the saved model's on the test folder, with the run's 4 views.
    loaded = fruitclf.load_model(run_dir / "model.keras")
    test = fruitclf.ImageFolderDataset(test_folder, class_names=loaded.class_names)
    evaluator = fruitclf.Evaluator(loaded.model, loaded.class_names,
                                   preprocessing=loaded.preprocessing)
    assert metrics["test_accuracy"] == pytest.approx(evaluator.evaluate(test, tta=4).accuracy)
    report = (run_dir / "report.md").read_text()
    assert "| schedule | cosine |" in report and "| spec | small-data |" in report


def test_evaluate_json(capsys, run_dir, test_folder, tmp_path):
    """Check evaluate --json gives accuracy, loss, the scikit-learn report and what the
    model's training index says of the test images."""
    code, out, _ = _run(capsys, "evaluate", str(run_dir / "model.h5"), str(test_folder),
                        "--json", "--out", str(tmp_path / "eval"))
    payload = json.loads(out)
    assert code == 0 and set(payload) == {
        "accuracy", "accuracy_interval", "loss", "calibration_error", "tta", "report",
        "leakage_checked", "num_leaked_test_images", "accuracy_without_leaked",
        "accuracy_without_leaked_interval", "leakage"}
    assert payload["report"]["accuracy"] == pytest.approx(payload["accuracy"])
    assert payload["leakage_checked"] is True
    assert payload["num_leaked_test_images"] == len(payload["leakage"])
    assert (tmp_path / "eval" / "confusion_matrix.png").exists()


def test_predict_json_reports_unreadable_files(capsys, run_dir, test_folder, tmp_path):
    """Check predict --json: one object per file, errors reported, not fatal."""
    bad = tmp_path / "bad.png"
    bad.write_text("<html>nope</html>")
    good = sorted(Path(test_folder).rglob("*.jpg"))[0]
    code, out, _ = _run(capsys, "predict", str(run_dir / "model.keras"), str(good), str(bad),
                        "--top-k", "2", "--json")
    records = json.loads(out)
    assert code == 1 and len(records) == 2  # 1: not every file could be predicted
    assert records[0]["label"] in {"class_0", "class_1", "class_2"}
    assert len(records[0]["top_k"]) == 2 and records[0]["top_k"][0]["label"] == records[0][
        "label"]
    assert "error" in records[1]
    code, out, _ = _run(capsys, "predict", str(run_dir / "model.keras"), str(good))
    assert code == 0 and out.startswith(f"{good}: class_")


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["train", "{missing}", "--out", "{tmp}/r"], "Image folder not found"),
        (["train", "{train}", "--out", "{tmp}/r", "--epochs", "0"],
         "`--epochs` must be a positive int. Received: --epochs 0"),
        (["train", "{train}", "--out", "{tmp}/r", "--image-size", "0"],
         "`--image-size` must be .* Received: --image-size 0"),
        (["train", "{train}", "--out", "{tmp}/r", "--validation-split", "1.5"],
         "`--validation-split` must be .* Received: --validation-split 1.5"),
        (["train", "{train}", "--out", "{tmp}/r", "--val-split", "1.5"],
         "^[^_]*Received: --validation-split 1.5"),
        (["predict", "{run}", "{train}"], r"is a run folder.*pass the model in it: .*model\.keras"),
        (["train", "{train}", "--out", "{tmp}/r", "--test", "{other}"],
         "not among the known classes"),
        (["train", "{train}", "--out", "{tmp}/r", "--spec", "{typo}"], "Did you mean 'filters'"),
        (["train", "{dirty}", "--out", "{tmp}/r"], "would crash training.*fruitclf clean"),
        (["evaluate", "{tmp}/none.h5", "{train}"], "Model file not found"),
        (["predict", "{notmodel}", "{train}"], "not a Keras model file"),
        (["scan", "{missing}"], "Image folder not found"),
    ],
)
def test_errors_are_one_line(capsys, tmp_path, image_folder, dirty, argv, match):
    """Check that bad input gives one 'fruitclf: error:' line and a non-zero exit."""
    import re

    other = tmp_path / "other" / "kiwi"
    other.mkdir(parents=True)
    (other / "x.png").write_bytes(next(Path(image_folder).rglob("*.png")).read_bytes())
    typo = tmp_path / "spec.json"
    typo.write_text(json.dumps({"num_classes": 3, "conv_blocks": [{"filter": 8}]}))
    notmodel = tmp_path / "model.h5"
    notmodel.write_text("hello")
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"PK")
    values = {"missing": tmp_path / "missing", "tmp": tmp_path, "train": image_folder, "run": run,
              "other": tmp_path / "other", "typo": typo, "dirty": dirty, "notmodel": notmodel}
    code, _, err = _run(capsys, *[a.format(**values) for a in argv])
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("fruitclf: error:")]
    assert len(lines) == 1 and re.search(match, lines[0]), err
    assert "Traceback" not in err


def test_a_mistyped_command_gets_a_suggestion(capsys):
    """Check that a near miss of a command name says which command was meant."""
    with pytest.raises(SystemExit) as exit_info:
        main(["tran", "data/train"])
    assert exit_info.value.code == 2
    assert "unknown command 'tran'; did you mean 'train'?" in capsys.readouterr().err


def test_every_option_says_what_it_does(capsys):
    """Check that every option of every command has help, and that no help shows
    "(default: None)" or two defaults."""
    import re

    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            assert action.help, (name, action.option_strings or action.dest)
        text = sub.format_help()
        assert "(default: None)" not in text, name
        for entry in re.split(r"\n  (?=-)", text):
            assert entry.count("(default:") <= 1, (name, entry)


@pytest.mark.slow
@pytest.mark.docs
def test_demo_runs_on_a_fresh_folder(capsys, tmp_path):
    """Check that demo writes the digits and a complete run (short training)."""
    code, out, _ = _run(capsys, "demo", "--out", str(tmp_path / "demo"), "--epochs", "2",
                        "--quiet")
    assert code == 0 and "Report:" in out
    assert len(list((tmp_path / "demo" / "data" / "train").rglob("*.png"))) == 1347
    metrics = json.loads((tmp_path / "demo" / "run" / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.5
    report = (tmp_path / "demo" / "run" / "report.md").read_text()
    for setting in ("| spec | small-data |", "| tta | 1 |", "| precision | float32 |",
                    "| image_size | [32, 32] |"):
        assert setting in report  # the demo's own defaults over the recipe's
    code, out, _ = _run(capsys, "demo", "--out", str(tmp_path / "demo"), "--epochs", "1",
                        "--quiet")
    assert code == 0  # a second demo in the same folder reuses its data


def test_log_lines_are_printed_once(capsys, image_folder, tmp_path):
    """Check that a progress line reaches stderr once, even with a root handler installed."""
    import logging

    root_handler = logging.StreamHandler()
    logging.getLogger().addHandler(root_handler)
    try:
        code, _, err = _run(capsys, "train", str(image_folder), "--out", str(tmp_path / "r"),
                            "--image-size", "16", "--epochs", "1")
    finally:
        logging.getLogger().removeHandler(root_handler)
    assert code == 0
    assert err.count("Run written to") == 1
