"""Bad input never crashes a command: bad test files, many-frame GIFs, FIFOs, odd predict
paths, tampered metadata."""

from __future__ import annotations

import json
import os
import shutil
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fruitclf
from _images import write_class_folder, write_many_frame_gif
from fruitclf import (
    CorruptedImagesError,
    ImageFolderDataset,
    ModelFileError,
    load_model,
)
from fruitclf.cli import main

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


