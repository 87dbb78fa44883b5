"""Numbers a user can trust: intervals in a run's results, predictions.csv, and two runs
compared photo by photo (fruitclf.compare_runs, fruitclf compare)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fruitclf
from fruitclf.cli import main
from fruitclf.stats import wilson_interval


def _result(correct: list[bool], paths: list[str], classes: tuple[str, ...] = ("a", "b")
            ) -> fruitclf.EvaluationResult:
    """An evaluation of images alternating between the classes, right where ``correct``."""
    y_true = np.array([i % len(classes) for i in range(len(correct))])
    y_pred = np.where(correct, y_true, (y_true + 1) % len(classes))
    probabilities = np.full((len(correct), len(classes)), 0.1 / (len(classes) - 1))
    probabilities[np.arange(len(correct)), y_pred] = 0.9
    return fruitclf.EvaluationResult(y_true, y_pred, probabilities, list(classes), paths=paths)


def _write(folder: Path, result: fruitclf.EvaluationResult, root: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predictions.csv").write_text(result.to_csv(root=root), encoding="utf-8")
    return folder


def _pair(tmp_path: Path, a: list[bool], b: list[bool]) -> tuple[Path, Path]:
    root = tmp_path / "test"
    paths = [str(root / ("a" if i % 2 == 0 else "b") / f"{i:02d}.png") for i in range(len(a))]
    return (_write(tmp_path / "run_a", _result(a, paths), root),
            _write(tmp_path / "run_b", _result(b, paths), root))


def test_two_runs_are_compared_photo_by_photo(tmp_path: Path) -> None:
    # 30 photos: both right on 20, only B on 9, only A on 1.
    a = [True] * 20 + [False] * 9 + [True]
    b = [True] * 20 + [True] * 9 + [False]
    run_a, run_b = _pair(tmp_path, a, b)
    comparison = fruitclf.compare_runs(run_a, run_b)
    assert (comparison.both_correct, comparison.only_a_correct, comparison.only_b_correct,
            comparison.neither_correct) == (20, 1, 9, 0)
    assert comparison.a_accuracy == pytest.approx(21 / 30)
    assert comparison.b_accuracy == pytest.approx(29 / 30)
    assert comparison.p_value == pytest.approx(22 / 1024)
    low, high = comparison.difference_interval
    assert 0 < low < comparison.difference < high
    assert comparison.sentence == ("B is better: 9 photos right that A got wrong, 1 the other "
                                   "way (p = 0.021).")
    assert len(comparison.disagreements()) == 10
    reversed_ = fruitclf.compare_runs(run_b, run_a)
    assert reversed_.sentence.startswith("A is better: 9 photos right that B got wrong")
    assert reversed_.difference_interval == pytest.approx((-high, -low))


def test_a_small_difference_is_called_chance(tmp_path: Path) -> None:
    a = [True] * 24 + [False] * 6
    b = [True] * 22 + [False, True, True, False, True, False, False, False]
    run_a, run_b = _pair(tmp_path, a, b)
    comparison = fruitclf.compare_runs(run_a, run_b)
    assert comparison.sentence.startswith("No clear difference: 2 photos only B got right, "
                                          "1 only A (p = 1.00")
    same = fruitclf.compare_runs(run_a, run_a)
    assert same.sentence == "A and B got the same 24 of 30 photos right: no difference to test."
    assert same.p_value == 1.0 and same.difference == 0.0


def test_runs_on_different_test_images_are_refused_naming_them(tmp_path: Path) -> None:
    root = tmp_path / "test"
    paths = [str(root / "a" / f"{i}.png") for i in range(6)]
    run_a = _write(tmp_path / "a", _result([True] * 6, paths), root)
    run_b = _write(tmp_path / "b", _result([True] * 6, [*paths[:5], str(root / "a/x.png")]),
                   root)
    with pytest.raises(fruitclf.DatasetError, match=r"not tested on the same images: 1 only "
                       r"in A \(a/5.png\); 1 only in B \(a/x.png\)"):
        fruitclf.compare_runs(run_a, run_b)
    relabelled = _write(tmp_path / "c", _result([True] * 6, paths, ("b", "a")), root)
    with pytest.raises(fruitclf.DatasetError, match=r"give 6 test images different classes "
                       r"\(a/0.png, a/1.png, a/2.png and 3 more\)"):
        fruitclf.compare_runs(run_a, relabelled)


def test_what_is_not_a_predictions_table_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"No predictions.csv at .*nowhere.*--test"):
        fruitclf.compare_runs(tmp_path / "nowhere", tmp_path / "nowhere")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "predictions.csv").write_text("name,label\nfoo,bar\n")
    with pytest.raises(fruitclf.DatasetError, match="not a predictions table written by "
                       "fruitclf"):
        fruitclf.compare_runs(tmp_path / "x", tmp_path / "x")
    (tmp_path / "x" / "predictions.csv").write_text(
        "path,file,true,predicted,confidence,probability:a\nfoo,,a,a\n")
    with pytest.raises(fruitclf.DatasetError, match="line 2 has 4 columns, the header 6"):
        fruitclf.compare_runs(tmp_path / "x", tmp_path / "x")
    (tmp_path / "x" / "predictions.csv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(fruitclf.DatasetError, match="cannot be read as a predictions table"):
        fruitclf.compare_runs(tmp_path / "x", tmp_path / "x")


def test_a_run_reports_intervals_and_writes_its_predictions(finished_run: Path) -> None:
    metrics = json.loads((finished_run / "metrics.json").read_text())
    with open(finished_run / "predictions.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == metrics["num_test_images"] == 15
    assert set(rows[0]) == {"path", "file", "true", "predicted", "confidence",
                            "probability:class_0", "probability:class_1",
                            "probability:class_2"}
    assert all(not Path(row["path"]).is_absolute() and Path(row["file"]).is_file()
               for row in rows)
    right = sum(row["true"] == row["predicted"] for row in rows)
    assert metrics["test_accuracy"] == pytest.approx(right / 15)
    assert metrics["test_accuracy_interval"] == pytest.approx(list(wilson_interval(right, 15)))
    assert 0.0 <= metrics["test_calibration_error"] <= 1.0
    report = (finished_run / "report.md").read_text(encoding="utf-8")
    low, high = metrics["test_accuracy_interval"]
    assert f"Test accuracy {metrics['test_accuracy']:.4f} (95% interval {low:.4f}–{high:.4f})" \
        in report
    assert "Calibration error" in report and "calibration.png" in report
    assert "| min confidence | answered | coverage | accuracy |" in report
    text = (finished_run / "classification_report.txt").read_text(encoding="utf-8")
    assert "95% intervals (Wilson score): accuracy" in text
    with Image.open(finished_run / "calibration.png") as figure:
        assert figure.size[0] > 300


@pytest.mark.slow
def test_evaluate_reproduces_the_run_and_compare_reads_both(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, finished_run: Path,
        test_folder: Path) -> None:
    """evaluate uses the test-time views the model's run measured with (recorded in the
    model), so it gives the run's number; compare of the run and that evaluation finds no
    difference."""
    from fruitclf.io import copy_with_metadata

    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert fruitclf.read_metadata(finished_run / "model.keras")["training"]["tta"] == 1
    assert fruitclf.load_model(finished_run / "model.keras").tta == 1  # the run's (QUICK)
    code = main(["evaluate", str(finished_run / "model.keras"), str(test_folder), "--json",
                 "--out", str(tmp_path / "eval")])
    shown = json.loads(capsys.readouterr().out)
    assert code == 0 and shown["tta"] == 1
    assert shown["accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert shown["accuracy_interval"] == pytest.approx(metrics["test_accuracy_interval"])
    assert (tmp_path / "eval" / "calibration.png").is_file()
    four = copy_with_metadata(finished_run / "model.keras", tmp_path / "four.keras", {
        "training": {**fruitclf.read_metadata(finished_run / "model.keras")["training"],
                     "tta": 4}})
    loaded = fruitclf.load_model(four)
    expected = loaded.evaluator().evaluate(
        fruitclf.ImageFolderDataset(test_folder, class_names=loaded.class_names), tta=4)
    code = main(["evaluate", str(four), str(test_folder), "--json"])
    shown = json.loads(capsys.readouterr().out)
    assert shown["tta"] == 4 and shown["accuracy"] == pytest.approx(expected.accuracy)
    assert loaded.predict(test_folder).probabilities == pytest.approx(
        loaded.predict(test_folder, tta=4).probabilities)
    run = finished_run

    figure = tmp_path / "disagree.png"
    code = main(["compare", str(run), str(tmp_path / "eval"), "--json", "--figure",
                 str(figure)])
    compared = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {"a_accuracy", "b_accuracy", "difference", "difference_interval", "p_value",
            "only_a_correct", "only_b_correct"} <= set(compared)
    assert compared["only_a_correct"] == compared["only_b_correct"] == 0
    assert compared["a_accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert figure.is_file()
    code = main(["compare", str(run), str(tmp_path / "eval"), "--figure", str(figure)])
    out = capsys.readouterr().out
    assert code == 0 and "B - A: +0.0000" in out and "no difference to test" in out

    mine = tmp_path / "mine.png"  # the user's own picture
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(mine)
    before = mine.read_bytes()
    code = main(["compare", str(run), str(tmp_path / "eval"), "--figure", str(mine)])
    err = capsys.readouterr().err
    assert code != 0 and "is not a comparison figure fruitclf wrote" in err
    assert mine.read_bytes() == before


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_calibration_and_unsure_answers_round_trip(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, finished_run: Path,
        image_folder: Path, suffix: str) -> None:
    import shutil

    from _images import write_class_folder

    holdout = write_class_folder(tmp_path / "holdout", 3, 6, seed=7)
    training_photo = sorted((image_folder / "class_0").iterdir())[0]
    shutil.copy(training_photo, holdout / "class_0" / "copy_of_a_training_photo.png")
    out = tmp_path / f"calibrated{suffix}"
    code = main(["calibrate", str(finished_run / f"model{suffix}"), str(holdout), "--out",
                 str(out), "--min-confidence", "0.6", "--json"])
    fitted = json.loads(capsys.readouterr().out)
    left_out = [Path(p).name for p in fitted["left_out"]]
    assert code == 0 and fitted["images"] + len(left_out) == 19
    assert "copy_of_a_training_photo.png" in left_out  # (generated look-alikes may join it)

    base = fruitclf.load_model(finished_run / f"model{suffix}")
    calibrated = fruitclf.load_model(out)
    assert base.temperature == 1.0 and base.min_confidence is None
    assert calibrated.temperature == pytest.approx(fitted["temperature"])
    assert calibrated.min_confidence == 0.6
    photos = fruitclf.ImageFolderDataset(holdout, class_names=base.class_names).exclude(
        fitted["left_out"])
    raw, scaled = base.evaluator().evaluate(photos), calibrated.evaluator().evaluate(photos)
    assert (raw.y_pred == scaled.y_pred).all()  # the classes never change
    assert scaled.loss <= raw.loss + 1e-9       # the temperature that fits these photos best
    assert scaled.calibration_error == pytest.approx(fitted["calibration_error_after"])

    predictions = calibrated.predict(photos)   # the stored threshold applies by default
    unsure = predictions.confidences < 0.6
    assert predictions.unsure.tolist() == unsure.tolist()
    assert all((label == "unsure") == flag for label, flag in zip(predictions.labels, unsure))
    assert calibrated.predict(photos, min_confidence=0.0).unsure.sum() == 0
    code = main(["predict", str(out), str(holdout / "class_1"), "--json",
                 "--min-confidence", "1.0"])
    records = json.loads(capsys.readouterr().out)
    assert all(r["unsure"] and r["label"] == "unsure" and r["top_k"][0]["label"]
               for r in records)
    code = main(["predict", str(out), str(holdout / "class_1"), "--min-confidence", "1.0"])
    assert ", below 1)" in capsys.readouterr().out
    code = main(["predict", str(out), str(holdout)])  # the stored threshold
    shown = capsys.readouterr().out
    assert shown.count(", below 0.6)") == int(calibrated.predict(holdout).unsure.sum())

    before = out.read_bytes()
    code = main(["calibrate", str(finished_run / f"model{suffix}"), str(holdout), "--out",
                 str(out)])
    assert code != 0 and "exists" in capsys.readouterr().err and out.read_bytes() == before
    code = main(["predict", str(out), str(holdout), "--min-confidence", "1.5"])
    assert code != 0 and "--min-confidence 1.5" in capsys.readouterr().err
    if suffix == ".keras":
        result = fruitclf.export_model(out, tmp_path / "calibrated.tflite")
        decision = fruitclf.read_export_metadata(result.path)["decision"]
        assert decision == {"temperature": pytest.approx(fitted["temperature"]),
                            "min_confidence": 0.6}


def test_too_few_held_out_photos_are_refused(tmp_path: Path, finished_run: Path,
                                             image_folder: Path) -> None:
    from _images import write_class_folder

    few = write_class_folder(tmp_path / "few", 3, 2, seed=9)
    with pytest.raises(fruitclf.DatasetError, match=r"at least 10 labelled photos the model "
                       r"did not train on; .* has 6"):
        fruitclf.calibrate_model(finished_run / "model.keras", few, tmp_path / "c.keras")
    with pytest.raises(ValueError, match=r"`out` must be a .keras file like the model"):
        fruitclf.calibrate_model(finished_run / "model.keras", few, tmp_path / "c.h5")
    with pytest.raises(ValueError, match="must be outside the calibration folder"):
        fruitclf.calibrate_model(finished_run / "model.keras", image_folder,
                                 image_folder / "c.keras")
