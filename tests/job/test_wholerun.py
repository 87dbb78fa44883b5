"""The whole command: each file decoded once, instant input errors, quiet start-up."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fruitclf import ImageFolderDataset, Preprocessing, Trainer, run
from fruitclf.data.check import decode_count


def _python(code: str, *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def finished_model(image_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "run"
    run(image_folder, out=out, epochs=1, image_size=24, batch_size=8, precision="float32",
        tta=1, verbose=0)
    return out / "model.keras"


def test_a_run_decodes_each_file_once(image_folder, test_folder, tmp_path):
    """Check that check + training + validation + test evaluation decode each file once."""
    files = len(ImageFolderDataset(image_folder)) + len(ImageFolderDataset(test_folder))
    before = decode_count()
    result = run(image_folder, out=tmp_path / "run", test_dir=test_folder, epochs=2,
                 validation_split=0.25, image_size=24, batch_size=8, precision="float32",
                 tta=2, verbose=0)
    assert decode_count() - before == files
    assert result.metrics["num_val_images"] > 0 and result.evaluation is not None


def test_check_alone_keeps_no_images_and_the_kept_ones_equal_the_pipeline(image_folder):
    """Check that a prepared check gives the very arrays a decoding pipeline makes."""
    prep = Preprocessing(image_size=(20, 20))
    plain = ImageFolderDataset(image_folder)
    assert plain.check(progress=False).images == {}
    streamed = np.concatenate([x.numpy() for x, _ in plain.to_tf_dataset(
        preprocessing=prep, batch_size=8, cache=None)])
    prepared = ImageFolderDataset(image_folder)
    report = prepared.check(progress=False, preprocessing=prep)
    assert len(report.images) == len(prepared)
    before = decode_count()
    kept = np.concatenate([x.numpy() for x, _ in prepared.to_tf_dataset(
        preprocessing=prep, batch_size=8)])
    assert decode_count() == before  # nothing read again
    np.testing.assert_array_equal(kept, streamed)
    train, _ = prepared.split(0.25, seed=0)
    before = decode_count()
    next(iter(train.to_tf_dataset(preprocessing=prep, batch_size=4)))
    assert decode_count() == before  # the split's views share the kept images
    assert prepared.check(progress=False, preprocessing=prep, cache_budget=10).images == {}


def test_the_kept_images_exist_once_and_shuffled_pipelines_read_them_as_from_files(
        image_folder):
    """Check that a prepared check keeps its images in one array that TensorFlow reads in
    place (its pipelines gather rows of it: no copy per pipeline), read-only to the caller,
    and that shuffled training batches equal those of a pipeline decoding the files."""
    prep = Preprocessing(image_size=(20, 20))
    prepared = ImageFolderDataset(image_folder)
    report = prepared.check(progress=False, preprocessing=prep)
    assert report.kept is not None
    one = next(iter(report.images.values()))
    assert not one.flags.writeable
    import tensorflow as tf

    capsule = tf.experimental.dlpack.to_dlpack(report.kept.tensor)

    class Exported:  # what numpy asks of a DLPack producer
        def __dlpack__(self, **_: object) -> object:
            return capsule

        def __dlpack_device__(self) -> tuple[int, int]:
            return (1, 0)  # the CPU

    assert np.shares_memory(np.from_dlpack(Exported()), one)  # the same memory, not a copy
    train, val = prepared.split(0.25, seed=3)
    plain_train, _ = ImageFolderDataset(image_folder).split(0.25, seed=3)
    for epoch in range(2):
        kept = [(x.numpy(), y.numpy()) for x, y in train.to_tf_dataset(
            preprocessing=prep, batch_size=4, shuffle=True, seed=5)]
        read = [(x.numpy(), y.numpy()) for x, y in plain_train.to_tf_dataset(
            preprocessing=prep, batch_size=4, shuffle=True, seed=5, cache=None)]
        assert len(kept) == len(read), epoch
        for (kx, ky), (rx, ry) in zip(kept, read):
            np.testing.assert_array_equal(kx, rx)
            np.testing.assert_array_equal(ky, ry)
    assert np.concatenate([y.numpy() for _, y in val.to_tf_dataset(
        preprocessing=prep, batch_size=4)]).tolist() == list(val.labels)


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "{tmp}/missing", "--out", "{tmp}/r"], "Image folder not found"),
    (["train", "{file}", "--out", "{tmp}/r"], "got a file"),
    (["train", "{data}", "--out", "{tmp}/r", "--validation-split", "1.5"],
     "`--validation-split` must"),
    (["train", "{data}", "--out", "{tmp}/r", "--epochs", "0"], "`--epochs` must be"),
    (["evaluate", "{tmp}/missing.keras", "{data}"], "Model file not found"),
])
def test_input_errors_come_before_tensorflow_is_imported(image_folder, tmp_path, argv,
                                                         message):
    """Check that input errors are one line on stderr, exit 1, without importing TensorFlow."""
    (tmp_path / "a-file.txt").write_text("not a folder")
    argv = [a.format(tmp=tmp_path, data=image_folder, file=tmp_path / "a-file.txt")
            for a in argv]
    proc = _python("import sys\nfrom fruitclf.cli import main\n"
                   f"code = main({argv!r})\n"
                   "print('tensorflow' in sys.modules, 'keras' in sys.modules, code)\n")
    assert proc.stdout.split() == ["False", "False", "1"], proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("fruitclf: error: ") and message in proc.stderr
    assert not (tmp_path / "r").exists()


def _command(*argv: str) -> subprocess.CompletedProcess[str]:
    """The ``fruitclf`` command as installed (``entry_point``), TensorFlow's logging unset."""
    return subprocess.run([sys.executable, "-c", "from fruitclf.cli import entry_point; "
                           "entry_point()", *argv], capture_output=True, text=True,
                          timeout=300, env={k: v for k, v in os.environ.items()
                                            if k != "TF_CPP_MIN_LOG_LEVEL"})


def test_the_command_is_quiet_and_exits_with_its_output_and_status(image_folder, tmp_path,
                                                                   finished_model):
    """Check that a command that loads TensorFlow prints nothing of TensorFlow's start-up,
    and that the quick exit keeps the whole output and the exit status."""
    proc = _command("scan", str(image_folder))
    assert proc.returncode == 0 and "no problems found" in proc.stdout
    assert proc.stderr == "", proc.stderr
    image = sorted(Path(image_folder).rglob("*.png"))
    proc = _command("predict", str(finished_model), *map(str, image), str(tmp_path / "x.png"))
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1 and len(lines) == len(image) + 1, proc.stderr
    assert lines[-1].endswith("x.png: error: file not found") and proc.stderr == ""


def test_the_stderr_filter_drops_notices_and_keeps_other_lines(capfd):
    """Check the filter on real file-descriptor writes: notices go, everything else stays."""
    from fruitclf._quiet import filtered_native_stderr

    with filtered_native_stderr():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are "
                    b"written to STDERR\n")
        os.write(2, b"I0000 00:00:1795934232.254232   27536 port.cc:153] oneDNN custom "
                    b"operations are on.\n")
        os.write(2, b"E0000 00:00:1795934233.970704   27536 cuda_platform.cc:52] failed call "
                    b"to cuInit: INTERNAL\n")
        os.write(2, b"2026-11-29 07:28:30.858864: E external/local_xla/xla/stream_executor/"
                    b"cuda/cuda_fft.cc:479] Unable to register cuFFT factory\n")
        os.write(2, b"2026-11-29 07:28:31.000001: I tensorflow/core/platform/cpu_feature_guard"
                    b".cc:210] This TensorFlow binary is optimized\n")
        os.write(2, b"E0000 00:00:1796218225.997498   17382 util.cc:131] oneDNN supports "
                    b"DT_UINT8 only on platforms with AVX-512. Falling back to the default "
                    b"Eigen-based implementation if present.\n")
        os.write(2, b"E0000 00:00:1795934233.970704   27536 kernel.cc:1] a real failure\n")
        os.write(2, b"Traceback (most recent call last): something broke\n")
    err = capfd.readouterr().err.splitlines()
    assert err == ["E0000 00:00:1795934233.970704   27536 kernel.cc:1] a real failure",
                   "Traceback (most recent call last): something broke"]


def test_modules_that_do_not_decode_or_build_import_no_tensorflow():
    """Check that importing every fruitclf module, and work that decodes nothing and builds
    no model (cache plans, spec tables, recipes, splits), leaves TensorFlow and Keras
    unloaded."""
    proc = _python(
        "import importlib, pkgutil, sys\nimport fruitclf\n"
        "names = [m.name for m in pkgutil.walk_packages(fruitclf.__path__, 'fruitclf.')\n"
        "         if m.name != 'fruitclf._losses']  # a Keras loss class, imported to train\n"
        "for name in names:\n    importlib.import_module(name)\n"
        "fruitclf.plan_cache(1000, (64, 64), 3)\n"
        "str(fruitclf.CNNSpec.preset('small-data', num_classes=6).describe())\n"
        "fruitclf.Recipe.preset('worksheet').epochs_for(90)\n"
        "print(len(names), 'tensorflow' in sys.modules, 'keras' in sys.modules)\n")
    count, tensorflow, keras = proc.stdout.split()
    assert int(count) >= 20 and (tensorflow, keras) == ("False", "False"), proc.stderr


def test_training_passes_no_argument_keras_warns_about(image_folder):
    """Check that fit() on a fruitclf pipeline raises no Keras "shuffle" warning."""
    from fruitclf import CNNSpec, ConvBlock, DenseLayer

    spec = CNNSpec(input_shape=(24, 24, 3), num_classes=3, conv_blocks=(ConvBlock(4),),
                   dense_layers=(DenseLayer(8),), name="tiny")
    ds = ImageFolderDataset(image_folder)
    pipeline = ds.to_tf_dataset(image_size=24, batch_size=8, shuffle=True, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(spec, class_names=ds.class_names, verbose=0).fit(pipeline, epochs=1)
    assert not [w for w in caught if "shuffle" in str(w.message)]


def test_figures_show_thumbnails_of_large_photos(tmp_path):
    """Check that grids load a large JPEG as a small thumbnail (drawing full size is slow)."""
    from fruitclf.plotting import THUMBNAIL_SIDE, _load_rgb

    photo = tmp_path / "big.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1500, 2000, 3), np.uint8)).save(
        photo, quality=80)
    thumb = _load_rgb(str(photo))
    assert thumb is not None and max(thumb.shape[:2]) == THUMBNAIL_SIDE
    assert thumb.shape[2] == 3 and _load_rgb(str(tmp_path / "missing.jpg")) is None
