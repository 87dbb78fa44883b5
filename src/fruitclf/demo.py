"""The built-in demo dataset: scikit-learn's handwritten digits as an image folder.

scikit-learn ships 1,797 labelled 8x8 digit images (:func:`sklearn.datasets.load_digits`), so
the demo needs no download. :func:`write_demo_dataset` renders them as upscaled PNG files in
``train/<digit>/`` and ``test/<digit>/`` folders, the same layout as a photo dataset, so the
demo exercises exactly the folder workflow.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from ._validation import check_float, check_int
from .spec import Augmentation

__all__ = ["DEMO_AUGMENTATION", "DEMO_SETTINGS", "DemoDataset", "write_demo_dataset"]

#: Where ``fruitclf demo`` departs from the recipe, and why (its ``--help`` says so).
DEMO_SETTINGS = {
    "image_size": (32, "digits are 8x8 pictures"),
    "augment": (True, "digits: small turns, zooms and shifts, no flips"),
    "tta": (1, "crops do not help on digits"),
    "precision": ("float32", "32x32 digits are too small for bfloat16 to pay off"),
}

#: Augmentation that suits digits: small turns and zooms, no flips (a flipped 2 is no 2).
DEMO_AUGMENTATION = Augmentation(flip=None, rotation=0.03, zoom=0.08, contrast=0.0,
                                 translation=0.05)


@dataclasses.dataclass(frozen=True)
class DemoDataset:
    """Where :func:`write_demo_dataset` wrote the demo images.

    Attributes
    ----------
    root : pathlib.Path
        The folder holding ``train/`` and ``test/``.
    train_dir, test_dir : pathlib.Path
        The two image folders (one sub-folder per digit).
    num_train, num_test : int
        Images written to each.

    Examples
    --------
    >>> demo = write_demo_dataset("demo-data")
    >>> demo.train_dir
    PosixPath('demo-data/train')
    """

    root: Path
    train_dir: Path
    test_dir: Path
    num_train: int
    num_test: int


def write_demo_dataset(
    path: str | os.PathLike[str],
    *,
    image_size: int = 32,
    test_fraction: float = 0.25,
    train_per_class: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> DemoDataset:
    """Write scikit-learn's 1,797 digit images as PNG files in class folders.

    Parameters
    ----------
    path : path-like
        Folder to create; ``train/`` and ``test/`` go inside.
    image_size : int, default=32
        Side of the written images (upscaled from 8x8 with bicubic interpolation).
    test_fraction : float, default=0.25
        Share of each digit's images written to ``test/``.
    train_per_class : int, optional
        Write at most this many training images per digit (the test images stay): 15 gives
        a folder the size of the worksheet's fruits. Default: all of them.
    seed : int, default=0
        Seed of the train/test assignment.
    overwrite : bool, default=False
        Allow writing into a non-empty ``train/`` or ``test/`` (files are replaced, nothing
        else is deleted).

    Returns
    -------
    DemoDataset

    Raises
    ------
    FileExistsError
        If ``path/train`` or ``path/test`` exists and is not empty, unless ``overwrite``.

    Examples
    --------
    >>> demo = write_demo_dataset("demo-data", overwrite=True)
    >>> demo.num_train, demo.num_test
    (1347, 450)
    >>> small = write_demo_dataset("small-demo", train_per_class=15)
    >>> small.num_train, small.num_test
    (150, 450)
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    image_size = check_int(image_size, "image_size", min_value=8)
    test_fraction = check_float(test_fraction, "test_fraction", min_value=0.0, max_value=1.0,
                                exclusive=True)
    seed = check_int(seed, "seed")
    if train_per_class is not None:
        train_per_class = check_int(train_per_class, "train_per_class", min_value=1)
    root = Path(path)
    train_dir, test_dir = root / "train", root / "test"
    for folder in (train_dir, test_dir):
        if folder.exists() and any(folder.iterdir()) and not overwrite:
            raise FileExistsError(
                f"{str(folder)!r} exists and is not empty. Choose another folder or pass "
                "overwrite=True (--overwrite)."
            )
    digits = load_digits()
    rng = np.random.default_rng(seed)
    counts = {"train": 0, "test": 0}
    for label in range(10):
        indices = np.flatnonzero(digits.target == label)
        rng.shuffle(indices)
        n_test = round(len(indices) * test_fraction)
        for rank, index in enumerate(indices):
            subset = "test" if rank < n_test else "train"
            if subset == "train" and train_per_class is not None and (
                    rank - n_test >= train_per_class):
                break
            folder = root / subset / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            pixels = (digits.images[index] * (255.0 / 16.0)).round().astype(np.uint8)
            image = Image.fromarray(pixels).resize(
                (image_size, image_size), Image.Resampling.BICUBIC
            )
            image.save(folder / f"digit_{index:04d}.png", optimize=False)
            counts[subset] += 1
    return DemoDataset(root, train_dir, test_dir, counts["train"], counts["test"])
