from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import matplotlib
import pytest

from _images import write_class_folder

matplotlib.use("Agg")

#: Test processes at most under ``-n auto`` (pytest-xdist): each imports TensorFlow (~1 GB).
MAX_WORKERS = 4


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Workers for ``-n auto``: one per core, at most MAX_WORKERS."""
    return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else os.cpu_count() or 1, MAX_WORKERS))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Start the slow tests first, so that under several workers none of them is left to run
    alone at the end (the order within each group is kept)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three learnable classes of 24x24 PNG images, 12 each (read-only by convention)."""
    return write_class_folder(tmp_path_factory.mktemp("images") / "train", 3, 12, seed=0)


@pytest.fixture(scope="session")
def test_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test folder with the same three classes (JPEG files)."""
    return write_class_folder(tmp_path_factory.mktemp("images") / "test", 3, 5, seed=1,
                              fmt="JPEG")


@pytest.fixture(scope="session")
def tiny_spec():  # type: ignore[no-untyped-def]
    from fruitclf import CNNSpec, ConvBlock, DenseLayer

    return CNNSpec(input_shape=(24, 24, 3), num_classes=3,
                   conv_blocks=(ConvBlock(4, kernel_size=3),), dense_layers=(DenseLayer(8),),
                   name="tiny")


@pytest.fixture(scope="session")
def trained(image_folder: Path, tiny_spec, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A tiny model trained for a few epochs, with its dataset and preprocessing."""
    from fruitclf import ImageFolderDataset, Preprocessing, Trainer

    ds = ImageFolderDataset(image_folder)
    prep = Preprocessing(image_size=(24, 24))
    trainer = Trainer(tiny_spec, class_names=ds.class_names, seed=0, learning_rate=0.01,
                      preprocessing=prep, verbose=0)
    pipeline = ds.to_tf_dataset(preprocessing=prep, batch_size=8, shuffle=True, seed=0)
    history = trainer.fit(pipeline, epochs=8)
    return {"model": trainer.model, "dataset": ds, "preprocessing": prep, "history": history,
            "spec": tiny_spec}


@pytest.fixture(scope="session")
def finished_run(image_folder, test_folder, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """A complete run of 3 epochs with a test folder (read-only by convention)."""
    from _runs import QUICK
    from fruitclf import run

    out = tmp_path_factory.mktemp("finished") / "run"
    run(image_folder, out=out, test_dir=test_folder, epochs=3, **QUICK)
    return out

