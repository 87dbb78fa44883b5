"""Unlabelled photos (``run(unlabeled=...)``, ``--unlabeled``): checked like a class folder,
labelled by a first model, trained on when it is confident, resumable, never touched."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from _images import write_class_folder
from _runs import QUICK, digests
from fruitclf import CorruptedImagesError, DatasetError, ImageFolderDataset, run
from fruitclf.cli import main
from fruitclf.data.check import FileProblem
from fruitclf.data.unlabeled import PseudoLabels

#: The CLI spelling of QUICK.
QUICK_FLAGS = ["--image-size", "24", "--batch-size", "8", "--precision", "float32",
               "--tta", "1", "--quiet"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):  # type: ignore[no-untyped-def]
    """Unlabelled photos of the three classes, in sub-folders and loose, with a truncated
    file, a text file and a copy of a test image."""
    root = tmp_path_factory.mktemp("unlabeled") / "photos"
    write_class_folder(root / "batch1", 3, 6, seed=7)
    loose = root / "batch1" / "class_0" / "img_000.png"
    shutil.copy(loose, root / "loose.png")
    (root / "broken.png").write_bytes(loose.read_bytes()[:60])
    (root / "notes.txt").write_text("not a photo")
    return root


def _stopped_at(owner, name, train, out, settings, monkeypatch):  # type: ignore[no-untyped-def]
    """Run until ``owner.name`` is called, and stop there as Ctrl-C would."""

    def stopped(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(owner, name, stopped)
        with pytest.raises(KeyboardInterrupt):
            run(train, out=out, **settings)


def test_the_first_model_labels_the_photos_and_they_train_the_final_model(
        image_folder, test_folder, photos, tmp_path, capsys):
    """Check the whole path from the command line: bad photos left out and named, a test
    image among the photos reported as leakage, every readable photo labelled with its
    confidence, those over the threshold in the final training set, the folder untouched."""
    photos = shutil.copytree(photos, tmp_path / "photos")
    shutil.copy(next((test_folder / "class_1").iterdir()), photos / "from_test.jpg")
    before = digests(photos)
    out = tmp_path / "run"
    assert main(["train", str(image_folder), "--test", str(test_folder), "--out", str(out),
                 "--unlabeled", str(photos), "--epochs", "8", "--learning-rate", "0.01",
                 "--pseudo-label-threshold", "0.4", *QUICK_FLAGS]) == 0
    assert digests(photos) == before
    err = capsys.readouterr().err
    assert "1 of 21 photos in the unlabeled folder" in err and "broken.png: truncated" in err
    assert "twin in the training or unlabeled folder" in err

    labels = PseudoLabels.load(out / "pseudo_labels.json")
    assert labels.root == str(photos) and labels.threshold == 0.4
    assert len(labels.images) == 20
    # At least 10 of the 36 labelled images (4 a class here) were held out from the first
    # model to fit its temperature; the kept photos are those whose scaled confidence is
    # >= 0.4.
    first = labels.first_model
    assert first["calibration_images"] >= 10 and first["trained_on"] == 36 - first[
        "calibration_images"]
    assert 0.0 <= first["calibration_accuracy"] <= 1.0 and labels.temperature > 0
    assert [p.path for p in labels.refused] == [str(photos / "broken.png")]
    assert all(p.kept == (p.confidence >= 0.4) for p in labels.images)
    # The first model learnt the classes: most photos in a class folder get that class.
    sorted_photos = [p for p in labels.images if p.relpath.startswith("batch1/")]
    right = [p.relpath.split("/")[1] == p.predicted for p in sorted_photos]
    assert np.mean(right) >= 0.7

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["unlabeled_images"] == 20 and metrics["unlabeled_refused"] == 1
    assert metrics["pseudo_labeled_images"] == len(labels.kept) > 0
    assert metrics["num_train_images"] == 36  # the labelled ones
    leaked = json.loads((out / "leakage.json").read_text())
    assert any(p["path"].endswith("from_test.jpg") for p in leaked)
    assert metrics["num_leaked_test_images"] >= 1
    assert (out / "teacher.keras").exists()
    report = (out / "report.md").read_text()
    assert "Unlabelled photos" in report and "1 could not be decoded" in report
    assert "twin (an exact or near duplicate) in the training or unlabeled folder" in report
    assert f"Test accuracy of the first model: {metrics['first_model_test_accuracy']:.4f}" \
        in report
    assert f"temperature of {labels.temperature:.2f}" in report
    marker = json.loads((out / "fruitclf-run.json").read_text())
    assert {"teacher.keras", "pseudo_labels.json"} <= set(marker["owns"])
    settings = marker["identity"]["config"]
    assert settings["unlabeled"] == str(photos) and settings["pseudo_label_threshold"] == 0.4


def test_a_run_stopped_after_the_labels_resumes_without_training_the_first_model_again(
        image_folder, photos, tmp_path, monkeypatch):
    """Check that resume reads pseudo_labels.json instead of labelling again, trains the
    final model on the same photos, and that a finished run is left as it is."""
    from fruitclf import job

    out = tmp_path / "run"
    common = {"unlabeled": photos, "epochs": 2, "pseudo_label_threshold": 0.0, **QUICK}
    _stopped_at(job._Job, "train", image_folder, out, common, monkeypatch)
    written = digests(out)
    assert "pseudo_labels.json" in written and "teacher.keras" in written

    def no_teacher(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the first model trained again")

    with monkeypatch.context() as patch:
        patch.setattr(job.PseudoLabels, "from_predictions", no_teacher)
        result = run(image_folder, out=out, resume=True, **common)
    assert digests(out)["pseudo_labels.json"] == written["pseudo_labels.json"]
    assert result.metrics["pseudo_labeled_images"] == 19  # threshold 0: every readable one
    assert result.history.epochs_run == 2
    finished = digests(out)
    run(image_folder, out=out, resume=True, **common)
    assert digests(out) == finished


def test_unlabeled_folders_that_cannot_work_are_refused_before_training(
        image_folder, test_folder, tmp_path):
    """Check the errors: missing, empty, the training or test folder itself, the run folder
    inside it, nothing readable, a threshold outside 0-1."""
    out = tmp_path / "run"
    with pytest.raises(DatasetError, match=r"unlabelled folder .*nowhere.* does not exist"):
        run(image_folder, out=out, unlabeled=tmp_path / "nowhere", **QUICK)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"No images found in the unlabelled folder"):
        run(image_folder, out=out, unlabeled=tmp_path / "empty", **QUICK)
    with pytest.raises(DatasetError, match=r"holds 36 images of the training folder"):
        run(image_folder, out=out, unlabeled=image_folder, **QUICK)
    with pytest.raises(DatasetError, match=r"holds 15 images of the test folder"):
        run(image_folder, out=out, test_dir=test_folder, unlabeled=test_folder, **QUICK)
    with pytest.raises(ValueError, match=r"pseudo_label_threshold.*1.5"):
        run(image_folder, out=out, unlabeled=test_folder, pseudo_label_threshold=1.5, **QUICK)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(ValueError, match=r"unlabeled folder"):
        run(image_folder, out=bad / "run", unlabeled=bad, **QUICK)
    with pytest.raises(CorruptedImagesError, match=r"None of the 1 photos in the unlabeled"):
        run(image_folder, out=out, unlabeled=bad, **QUICK)
    assert not out.exists()
    few = write_class_folder(tmp_path / "few", 3, 6, seed=3)
    with pytest.raises(DatasetError, match=r"at least 20 labelled training images; .*few.* "
                                           r"has 18"):
        run(few, out=tmp_path / "few-run", unlabeled=test_folder, **QUICK)
    assert not (tmp_path / "few-run").exists()


def test_pseudo_labels_keep_photos_from_the_threshold_and_read_back(image_folder, tmp_path):
    """Check the rule (confidence >= threshold), the counts and the file round trip."""
    photos = ImageFolderDataset.unsorted(image_folder, class_names=["a", "b", "c"])
    assert len(photos) == 36 and photos.relpaths[0] == "class_0/img_000.png"
    probabilities = np.full((36, 3), 0.1)
    probabilities[:, 2] = 0.8
    probabilities[:12] = [0.5, 0.3, 0.2]  # exactly the threshold: kept
    probabilities[12:18] = [0.2, 0.45, 0.35]  # below: left out
    refused = [FileProblem("x/broken.png", "broken.png", "truncated", "truncated")]
    labels = PseudoLabels.from_predictions(photos, probabilities, 0.5, refused)
    assert labels.kept_counts(["a", "b", "c"]) == {"a": 12, "b": 0, "c": 18}
    assert labels.labels(["a", "b", "c"])[photos.paths[0]] == 0
    labelled = ImageFolderDataset(image_folder)
    both = labelled.with_images(photos, labels.labels(["a", "b", "c"]))
    assert len(both) == 36 + 30 and both.root == labelled.root
    assert both.class_counts == {"class_0": 12 + 12, "class_1": 12, "class_2": 12 + 18}
    labels.save(tmp_path / "p.json")
    assert PseudoLabels.load(tmp_path / "p.json") == labels
    # A temperature above 1 (an over-confident first model) flattens the probabilities
    # before the threshold: 0.8 (of 0.8, 0.1, 0.1) becomes 0.5, 0.5 (of 0.5, 0.3, 0.2)
    # about 0.39.
    hot = PseudoLabels.from_predictions(photos, probabilities, 0.45, temperature=3.0)
    assert hot.kept_counts(["a", "b", "c"]) == {"a": 0, "b": 0, "c": 18}
    assert hot.temperature == 3.0 and hot.images[-1].confidence == pytest.approx(0.5, 1e-4)
    assert hot.images[0].confidence == pytest.approx(0.3876, 1e-3)
    hot.save(tmp_path / "hot.json")
    assert PseudoLabels.load(tmp_path / "hot.json") == hot
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    with pytest.raises(DatasetError, match=r"other.json.* is not a pseudo-label file"):
        PseudoLabels.load(tmp_path / "other.json")


def test_unlabeled_photos_under_several_workers_are_refused(image_folder, photos, tmp_path,
                                                            monkeypatch):
    """Check that a multi-worker cluster is refused with one clear line before anything is
    checked or written (the first model must label the photos before the final one starts)."""
    from fruitclf import job

    class TwoWorkers:
        class cluster_resolver:  # the attribute TensorFlow's strategies have
            task_type, task_id = "worker", 0

            @staticmethod
            def cluster_spec():  # type: ignore[no-untyped-def]
                class Spec:
                    def as_dict(self):  # type: ignore[no-untyped-def]
                        return {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
                return Spec()

    monkeypatch.setattr(job, "make_strategy", lambda option: TwoWorkers())
    with pytest.raises(ValueError, match=r"`unlabeled` trains in one process"):
        run(image_folder, out=tmp_path / "run", unlabeled=photos, **QUICK)
    assert not (tmp_path / "run").exists()


def test_a_run_stopped_before_the_labels_resumes_the_first_model_where_it_stopped(
        image_folder, photos, tmp_path, monkeypatch):
    """Check that a stop between the first model's training and its labels resumes from
    ``teacher.keras`` without training that model again."""
    from fruitclf import job

    out = tmp_path / "run"
    common = {"unlabeled": photos, "epochs": 2, "checkpoint_interval": 0.0,
              "pseudo_label_threshold": 0.0, **QUICK}
    _stopped_at(job.PseudoLabels, "from_predictions", image_folder, out, common, monkeypatch)
    teacher = digests(out)["teacher.keras"]
    assert not (out / "pseudo_labels.json").exists()
    calls = []
    original = job.Trainer.fit

    def counted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        history = original(self, *args, **kwargs)
        calls.append(history.epochs_run)
        return history

    monkeypatch.setattr(job.Trainer, "fit", counted)
    result = run(image_folder, out=out, resume=True, **common)
    assert digests(out)["teacher.keras"] == teacher
    assert calls == [2, 2] and result.metrics["pseudo_labeled_images"] > 0


def test_calibration_split_holds_out_a_fifth_or_at_least_ten(image_folder, tmp_path):
    """Check the held-out share: a fifth of each class, more when that is under 10 images,
    never a class emptied, the same for the same seed."""
    from fruitclf.data.unlabeled import calibration_split

    big = ImageFolderDataset(write_class_folder(tmp_path / "big", 4, 20, seed=5))
    split = calibration_split(big, seed=1)
    assert split.counts()["validation"] == dict.fromkeys(big.class_names, 4)
    small = calibration_split(ImageFolderDataset(image_folder), seed=1)
    assert len(small.validation) >= 10 and min(small.counts()["training"].values()) >= 6
    assert not set(small.training.paths) & set(small.validation.paths)
    again = calibration_split(ImageFolderDataset(image_folder), seed=1)
    assert again.validation.paths == small.validation.paths


def test_a_first_model_that_is_often_wrong_keeps_no_photo(tmp_path, caplog):
    """Check the guard against a first model whose labels cannot be trusted: classes of pure
    noise are learnt by heart but not recognised on the held-out images, so the fitted
    temperature flattens its probabilities and no photo reaches the default threshold."""
    rng = np.random.default_rng(0)
    noise = tmp_path / "noise"
    for label in range(3):
        (noise / f"class_{label}").mkdir(parents=True)
        for i in range(14):
            Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(
                noise / f"class_{label}" / f"img_{i:02d}.png")
    photos = write_class_folder(tmp_path / "photos", 3, 5, seed=9)
    result = run(noise, out=tmp_path / "run", unlabeled=photos, epochs=30,
                 learning_rate=0.01, **QUICK)
    labels = PseudoLabels.load(result.files["pseudo_labels"])
    assert labels.temperature > 2.0 and labels.first_model["calibration_accuracy"] < 0.7
    assert labels.kept == [] and result.metrics["pseudo_labeled_images"] == 0
    assert "none of the 15 unlabelled photos reached a calibrated confidence of 0.8" \
        in caplog.text
    assert result.metrics["num_train_images"] == 42  # the labelled images alone
