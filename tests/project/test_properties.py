"""Property tests over image folders drawn from a catalogue of good and bad files.

Whatever the mix: each file gets its verdict, ``clean`` moves exactly the bad files and never
a good one, ``restore`` brings back a byte-identical tree, and training and prediction over
the cleaned folder complete.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import fruitclf
from _images import class_pattern, write_many_frame_gif, write_png_chunks
from fruitclf import ImageFolderDataset, Preprocessing, Trainer, restore_quarantine


def _encoded(fmt: str, label: int, mode: str = "RGB") -> bytes:
    image = Image.fromarray(class_pattern(label, np.random.default_rng(label), 24)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


_JPEG = _encoded("JPEG", 0)
_PNG = _encoded("PNG", 1)

#: kind -> (file name suffix, expected reason or None)
GOOD = {"png": ".png", "jpeg": ".jpg", "gray_png": ".png", "bmp": ".bmp", "gif": ".gif",
        "png_named_jpg": ".jpg"}
BAD = {"empty": (".jpg", "empty_file"), "text": (".png", "not_an_image"),
       "truncated_jpeg": (".jpg", "truncated"), "truncated_png": (".png", "truncated"),
       "bomb_png": (".png", "too_many_pixels"), "gif_bomb": (".gif", "too_many_pixels"),
       "broken_link": (".jpg", "broken_link"), "fifo": (".jpg", "not_a_file")}


def _write(path: Path, kind: str, label: int) -> None:
    if kind in ("png", "jpeg", "gray_png", "bmp", "png_named_jpg"):
        fmt = {"jpeg": "JPEG", "bmp": "BMP"}.get(kind, "PNG")
        path.write_bytes(_encoded(fmt, label, "L" if kind == "gray_png" else "RGB"))
    elif kind == "gif":
        frames = [Image.fromarray(class_pattern(label, np.random.default_rng(i), 24))
                  for i in range(2)]
        frames[0].save(path, "GIF", save_all=True, append_images=frames[1:])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("<html>not found</html>")
    elif kind == "truncated_jpeg":
        path.write_bytes(_JPEG[: len(_JPEG) // 2])
    elif kind == "truncated_png":
        path.write_bytes(_PNG[: len(_PNG) // 2])
    elif kind == "bomb_png":
        write_png_chunks(path, 40000, 40000)
    elif kind == "gif_bomb":
        write_many_frame_gif(path, frames=40, width=2000, height=2000)
    elif kind == "broken_link":
        os.symlink(path.with_name("gone.jpg"), path)
    elif kind == "fifo":
        os.mkfifo(path)


def _tree(root: Path) -> dict[str, str]:
    """Content of every entry, without ever opening a FIFO."""
    out = {}
    for path in sorted(root.rglob("*")):
        mode = path.lstat().st_mode
        rel = str(path.relative_to(root))
        if stat.S_ISLNK(mode):
            out[rel] = "link:" + os.readlink(path)
        elif stat.S_ISFIFO(mode):
            out[rel] = "fifo"
        elif stat.S_ISREG(mode):
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


folders = st.lists(
    st.tuples(st.lists(st.sampled_from(sorted(GOOD)), min_size=1, max_size=3),
              st.lists(st.sampled_from(sorted(BAD)), max_size=3)),
    min_size=2, max_size=3,
)


def _build(base: Path, classes: list[tuple[list[str], list[str]]]) -> tuple[Path, dict]:
    root = base / "data"
    expected: dict[str, str | None] = {}
    for label, (good, bad) in enumerate(classes):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True)
        for i, kind in enumerate(good):
            name = f"good_{i}_{kind}{GOOD[kind]}"
            _write(folder / name, kind, label)
            expected[f"class_{label}/{name}"] = None
        for i, kind in enumerate(bad):
            suffix, reason = BAD[kind]
            name = f"bad_{i}_{kind}{suffix}"
            _write(folder / name, kind, label)
            expected[f"class_{label}/{name}"] = reason
    return root, expected


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(classes=folders)
def test_verdicts_clean_and_restore_over_any_mix(classes):
    """Check verdicts, that clean moves exactly the bad files, and a byte-identical restore."""
    with tempfile.TemporaryDirectory() as tmp:
        root, expected = _build(Path(tmp), classes)
        before = _tree(root)
        report = ImageFolderDataset(root).check(progress=False)
        assert {p.relpath: p.reason for p in report.problems} == {
            k: v for k, v in expected.items() if v is not None}
        ImageFolderDataset(root).remove_corrupted(report, quarantine=Path(tmp) / "q")
        cleaned = _tree(root)
        assert cleaned == {k: v for k, v in before.items() if expected[k] is None}
        assert ImageFolderDataset(root).check(progress=False).ok
        if report.problems:
            restore_quarantine(Path(tmp) / "q")
            assert restore_quarantine(Path(tmp) / "q") == []
        assert _tree(root) == before


@settings(max_examples=3, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(classes=folders)
def test_training_and_predict_complete_over_the_cleaned_folder(classes, tiny_spec):
    """Check that a cleaned folder trains, and predict reports bad files one by one."""
    with tempfile.TemporaryDirectory() as tmp:
        root, expected = _build(Path(tmp), classes)
        spec = tiny_spec.replace(num_classes=len(classes))
        ds = ImageFolderDataset(root)
        bad_paths = [str(root / k) for k, v in expected.items() if v is not None]
        ds.remove_corrupted(quarantine=Path(tmp) / "q")
        prep = Preprocessing(image_size=(24, 24))
        trainer = Trainer(spec, class_names=ds.class_names, seed=0, verbose=0)
        history = trainer.fit(ds.to_tf_dataset(preprocessing=prep, batch_size=4, shuffle=True,
                                               seed=0), epochs=1)
        assert history.epochs_run == 1
        if bad_paths:
            restore_quarantine(Path(tmp) / "q")
        from fruitclf import Evaluator

        predictions = Evaluator(trainer.model, ds.class_names, preprocessing=prep).predict(
            [root])
        assert set(predictions.errors) == set(bad_paths)
        assert sum(label != "" for label in predictions.labels) == len(expected) - len(
            bad_paths)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_value": 0.0, "exclusive": True}, "`x` must be a number > 0.0. Received: x=0.0"),
        ({"max_value": 0.0, "exclusive": True}, "`x` must be a number < 0.0. Received: x=0.0"),
        ({"min_value": 0.0, "max_value": 0.0, "exclusive": True},
         "`x` must be a number strictly between 0.0 and 0.0. Received: x=0.0"),
    ],
)
def test_one_sided_exclusive_bounds_name_the_bound(kwargs, message):
    """Check the one-sided exclusive message (it once said "between 0.0 and None")."""
    from fruitclf._validation import check_float

    with pytest.raises(ValueError, match="must be a number") as info:
        check_float(0.0, "x", **kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_learning_rate_must_be_finite(value, tiny_spec):
    """Check that an infinite or NaN learning rate is refused before anything is built."""
    with pytest.raises(ValueError, match=r"`learning_rate` must be a finite number"):
        fruitclf.Trainer(tiny_spec, class_names=["a", "b", "c"], learning_rate=value)
    with pytest.raises(ValueError, match=r"`learning_rate` must be a finite number"):
        fruitclf.run("nowhere", out="nowhere-run", learning_rate=value)
