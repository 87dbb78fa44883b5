"""The docstring examples run and print what they show.

They run in a folder that holds what the examples name: ``fruits/train`` and ``fruits/test``
(six classes of small photo-like JPEGs, one test photo a re-saved training photo) and
``downloads/fruits`` (the same training photos with a truncated JPEG, a text file, a copy, a
resized copy and a black frame). Examples that need a trained model keep ``+SKIP``.
"""

from __future__ import annotations

import doctest
import importlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fruitclf
from _images import photo_like

MODULES = ["_arrays", "_validation", "config", "data.check", "data.folder", "data.pipeline",
           "data.quality", "data.split", "demo", "distribute", "evaluation", "export", "io",
           "job", "model", "plotting", "spec", "training.trainer", "settings", "data.entries",
           "data.findings", "data.cleaning", "data.quarantine", "data.loading", "data.nearpairs",
           "data._mapped", "data.unlabeled"]
FRUITS = ["acai", "cupuacu", "graviola", "guarana", "pupunha", "tucuma"]


@pytest.fixture(scope="module")
def examples_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("doctest")
    rng = np.random.default_rng(0)
    for part, count in (("train", 15), ("test", 5)):
        for label, name in enumerate(FRUITS):
            folder = root / "fruits" / part / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(photo_like(rng, label, 48)).save(
                    folder / f"{'t' if part == 'test' else ''}{i + 1:02d}.jpg", quality=90)
    (root / "fruits/train/acai/.DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "fruits/train/notes.txt").write_text("photos from the market, May\n")
    Image.open(root / "fruits/train/acai/07.jpg").resize((40, 40)).save(
        root / "fruits/test/acai/t07.png")
    (root / "fruits/unsorted").mkdir()
    for i in range(4):
        Image.fromarray(photo_like(rng, i, 48)).save(root / f"fruits/unsorted/IMG_{i + 1:04d}.jpg")
    raw = root / "downloads" / "fruits"
    shutil.copytree(root / "fruits" / "train", raw)
    data = (raw / "acai" / "07.jpg").read_bytes()
    (raw / "acai" / "07.jpg").write_bytes(data[: len(data) // 2])
    (raw / "guarana" / "notes.png").write_text("<html>404 Not Found</html>" * 30)
    shutil.copyfile(raw / "acai" / "01.jpg", raw / "acai" / "copy of 01.jpg")
    Image.open(raw / "acai" / "02.jpg").resize((32, 32)).save(raw / "acai" / "02-small.png")
    Image.new("RGB", (48, 48)).save(raw / "acai" / "night.jpg")
    return root


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, examples_folder, monkeypatch):
    """Check that each module's docstring examples pass, and that some of them run."""
    monkeypatch.chdir(examples_folder)
    module = importlib.import_module(f"fruitclf.{name}")
    extraglobs = {"fruitclf": fruitclf,
                  "ds": fruitclf.ImageFolderDataset("fruits/train"),
                  "raw": fruitclf.ImageFolderDataset("downloads/fruits")}
    result = doctest.testmod(module, extraglobs=extraglobs,
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0, f"fruitclf.{name} has no example that runs"
