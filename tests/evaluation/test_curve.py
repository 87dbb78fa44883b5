"""Would more photos help? The learning curve: subsets, the fit, its sentence, the command."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

import fruitclf
from _runs import QUICK, digests
from fruitclf.cli import main
from fruitclf.curve import LearningCurve, _leakage_warned_once, _subset, fit_saturating
from fruitclf.job import LEAKAGE_WARNING


def test_a_share_keeps_that_part_of_every_class(image_folder: Path) -> None:
    dataset = fruitclf.ImageFolderDataset(image_folder)  # 3 classes of 12
    half = _subset(dataset, 0.5, seed=1)
    assert np.bincount(half.labels).tolist() == [6, 6, 6]
    assert _subset(dataset, 0.5, seed=1).paths == half.paths
    assert _subset(dataset, 0.5, seed=2).paths != half.paths
    assert np.bincount(_subset(dataset, 0.01, seed=1).labels).tolist() == [1, 1, 1]
    assert len(_subset(dataset, 1.0, seed=3)) == 36


def test_the_fit_recovers_a_saturating_curve() -> None:
    photos = np.array([4.0, 8.0, 12.0, 16.0, 30.0])
    accuracy = 0.95 - 0.8 * photos ** -0.7
    top, gap, rate = fit_saturating(photos, accuracy)
    assert (top, gap, rate) == pytest.approx((0.95, 0.8, 0.7), abs=1e-3)
    assert fit_saturating([4, 8], [0.5, 0.6]) is None


def _curve(medians: list[float], tested: int) -> LearningCurve:
    from fruitclf.stats import wilson_interval

    photos = [4.0, 8.0, 11.0, 15.0]
    return LearningCurve([0.25, 0.5, 0.75, 1.0], photos, [1], [[m] for m in medians],
                         [wilson_interval(round(m * tested), tested) for m in medians], tested,
                         fit_saturating(photos, medians), [["r"]] * 4, 1.0)


def test_the_sentence_says_rising_flat_and_when_it_cannot_tell() -> None:
    rising = _curve([0.40, 0.60, 0.70, 0.77], 400)
    assert rising.sentence.startswith("The curve still rises: about 0.75 at 15 photos a class "
                                      "(median of the runs 0.77)")
    assert "rough guess" not in rising.sentence
    assert rising.predict(30) > rising.predict(15)
    flat = _curve([0.80, 0.81, 0.80, 0.81], 400)
    assert flat.sentence.startswith("The curve is flat")
    noisy = _curve([0.40, 0.60, 0.70, 0.77], 30)
    assert "cannot tell these points apart" in noisy.sentence
    figure = rising.plot()
    assert figure.axes[0].get_xlabel() == "Training photos per class"


def test_the_leakage_warning_is_said_once_for_all_the_runs(
        caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("fruitclf")
    with caplog.at_level(logging.WARNING, logger="fruitclf"):
        with _leakage_warned_once():
            for leaked in (3, 5):  # the runs on 25% and 50% of the photos
                log.warning(LEAKAGE_WARNING, leaked, 30, "training folder", "t.png", "a.png",
                            "mirrored", "counts them")
                log.warning("Run with %d leaked.", leaked)
        log.warning(LEAKAGE_WARNING, 7, 30, "training folder", "t.png", "a.png", "exact",
                    "counts them")
    said = [r.getMessage() for r in caplog.records]
    assert [m[:8] for m in said if "have a twin" in m] == ["3 of 30 ", "7 of 30 "]
    assert "Run with 3 leaked." in said and "Run with 5 leaked." in said


@pytest.mark.slow
def test_the_command_trains_each_share_resumes_and_keeps_foreign_files(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, image_folder: Path,
        test_folder: Path) -> None:
    out = tmp_path / "curve"
    curve = fruitclf.learning_curve(image_folder, test_dir=test_folder, out=out,
                                    fractions=[0.5, 1.0], seeds=[1], epochs=2, **QUICK)
    assert curve.photos_per_class == [6.0, 12.0] and curve.num_test_images == 15
    assert len(curve.accuracy) == 2 and all(0 <= a[0] <= 1 for a in curve.accuracy)
    saved = json.loads((out / "learning_curve.json").read_text())
    assert {"fractions", "medians", "intervals", "fit", "sentence",
            "forecast_at_twice"} <= set(saved)
    assert (out / "learning_curve.png").is_file()
    runs = digests(out / "runs")
    code = main(["learning-curve", str(image_folder), "--test", str(test_folder), "--out",
                 str(out), "--fractions", "0.5,1", "--seeds", "1", "--epochs", "2",
                 "--image-size", "24", "--batch-size", "8", "--precision", "float32",
                 "--tta", "1"])
    printed = capsys.readouterr().out
    assert code == 0 and "50% (6.0 photos a class): median" in printed
    assert digests(out / "runs") == runs  # finished runs are read back, not trained again
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "learning_curve.png").write_bytes(b"mine")
    code = main(["learning-curve", str(image_folder), "--test", str(test_folder), "--out",
                 str(tmp_path / "mine"), "--epochs", "1"])
    assert code != 0 and "did not write" in capsys.readouterr().err
    assert (tmp_path / "mine" / "learning_curve.png").read_bytes() == b"mine"
    code = main(["learning-curve", str(image_folder), "--test", str(test_folder), "--out",
                 str(tmp_path / "x"), "--fractions", "0,1"])
    assert code != 0 and "`--fractions` must be shares of the photos above 0" in (
        capsys.readouterr().err)
