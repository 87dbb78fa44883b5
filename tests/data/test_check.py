"""The decoder-true file check, the quarantine and its restore."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from _images import random_rgb, write_class_folder, write_ignored, write_zoo
from fruitclf import DatasetError, ImageFolderDataset, restore_quarantine
from fruitclf.data.check import jpeg_ratio, read_image_size, sniff_format


def _tree_digest(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            out[str(path.relative_to(root))] = "link:" + os.readlink(path)
        elif path.is_file():
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture
def zoo(tmp_path: Path) -> tuple[Path, dict[str, str | None]]:
    root = tmp_path / "data"
    rng = np.random.default_rng(7)
    expected = {f"mixed/{k}": v for k, v in write_zoo(root / "mixed", rng).items()}
    write_class_folder(root, 1, 3, seed=3)  # a second class, all valid
    for i in range(3):
        expected[f"class_0/img_{i:03d}.png"] = None
    webp = root / "mixed" / "photo.webp"
    Image.fromarray(random_rgb(rng)).save(webp, "WEBP")
    try:
        tf.io.decode_image(webp.read_bytes(), channels=3, expand_animations=False)
        expected["mixed/photo.webp"] = None
    except tf.errors.OpError:
        expected["mixed/photo.webp"] = "unsupported_format"
    write_ignored(root / "mixed")
    (root / "README.md").write_text("a file outside the class folders")
    return root, expected


def test_check_gives_the_exact_verdict_for_each_file(zoo):
    """Check that every kind of file gets the expected reason (or none when valid)."""
    root, expected = zoo
    ds = ImageFolderDataset(root)
    report = ds.check(progress=False)
    found = {p.relpath: p.reason for p in report.problems}
    assert found == {k: v for k, v in expected.items() if v is not None}
    assert report.num_checked == len(expected)
    assert all(p.message for p in report.problems)
    assert set(ds.relpaths) == set(expected)


def test_ignored_files_are_listed_not_checked(zoo):
    """Check that hidden files, non-image extensions and loose files are listed as ignored."""
    root, _ = zoo
    ignored = {i.path for i in ImageFolderDataset(root).ignored}
    assert {"mixed/.ipynb_checkpoints", "mixed/.DS_Store", "mixed/Thumbs.db", "mixed/notes.txt",
            "README.md"} <= ignored


def test_quarantine_moves_only_flagged_files_and_restore_gives_identical_bytes(zoo, tmp_path):
    """Check that quarantine moves exactly the bad files and restore puts the same bytes back."""
    root, expected = zoo
    before = _tree_digest(root)
    ds = ImageFolderDataset(root)
    report = ds.check(progress=False)
    quarantine = tmp_path / "q"
    result = ds.remove_corrupted(report, quarantine=quarantine)
    bad = {k for k, v in expected.items() if v is not None}
    assert {p.relpath for p in result.removed} == bad
    after = _tree_digest(root)
    assert set(before) - set(after) == bad
    assert all(after[k] == before[k] for k in after)  # nothing else moved or changed
    manifest = json.loads((quarantine / "fruitclf-quarantine.json").read_text())
    assert len(manifest["entries"]) == len(bad)
    assert (quarantine / "mixed" / "truncated.jpg").exists()  # relative path kept
    assert result.lines()[0].startswith("Moved ")
    # The cleaned folder passes a full pipeline pass.
    assert ImageFolderDataset(root).check(progress=False).ok
    for _ in ImageFolderDataset(root).to_tf_dataset(image_size=16, batch_size=4, cache=False):
        pass
    restored = restore_quarantine(quarantine)
    assert len(restored) == len(bad)
    assert _tree_digest(root) == before


def test_dry_run_changes_nothing(zoo):
    """Check that a dry run lists the files and leaves the tree untouched."""
    root, expected = zoo
    before = _tree_digest(root)
    result = ImageFolderDataset(root).remove_corrupted(dry_run=True)
    assert result.dry_run
    assert len(result.removed) == sum(v is not None for v in expected.values())
    assert result.lines()[0].startswith("Would move ")
    assert result.lines()[-1].startswith("Nothing was changed; the files would go to ")
    assert _tree_digest(root) == before
    assert not (root.parent / "data-quarantine").exists()


def test_delete_removes_only_flagged_files(zoo):
    """Check that delete=True unlinks the flagged files (links themselves, not targets)."""
    root, expected = zoo
    before = _tree_digest(root)
    ds = ImageFolderDataset(root)
    ds.remove_corrupted(delete=True)
    after = _tree_digest(root)
    assert set(before) - set(after) == {k for k, v in expected.items() if v is not None}
    assert len(ds) == sum(v is None for v in expected.values())


def test_files_changed_since_the_check_are_skipped(tmp_path):
    """Check that a flagged file rewritten after the check is left alone."""
    root = write_class_folder(tmp_path / "d", 2, 2)
    bad = root / "class_0" / "bad.jpg"
    bad.write_text("oops")
    ds = ImageFolderDataset(root)
    report = ds.check(progress=False)
    bad.write_text("changed since, maybe fixed by the user")
    result = ds.remove_corrupted(report, quarantine=tmp_path / "q")
    assert result.removed == []
    assert result.skipped == [str(bad)]
    assert bad.exists()


def test_quarantine_inside_root_is_refused(zoo):
    """Check that a quarantine folder inside the dataset (a new class!) is an error."""
    root, _ = zoo
    with pytest.raises(ValueError, match="outside the image folder"):
        ImageFolderDataset(root).remove_corrupted(quarantine=root / "quarantine")


def test_restore_refuses_to_overwrite(zoo, tmp_path):
    """Check that restoring over a file that exists again changes nothing."""
    root, _ = zoo
    ImageFolderDataset(root).remove_corrupted(quarantine=tmp_path / "q")
    (root / "mixed" / "zero.jpg").write_bytes(b"new file")
    with pytest.raises(DatasetError, match="exists"):
        restore_quarantine(tmp_path / "q")
    assert (tmp_path / "q" / "mixed" / "truncated.jpg").exists()


def test_restore_needs_a_manifest(tmp_path):
    """Check that restoring from a folder without a manifest names the folder."""
    with pytest.raises(DatasetError, match="No quarantine manifest"):
        restore_quarantine(tmp_path)


def test_reduced_scale_decode_still_catches_truncation(tmp_path):
    """Check that a large truncated JPEG, checked at 1/8 scale, is still flagged."""
    rng = np.random.default_rng(0)
    root = tmp_path / "big"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir(parents=True)
    Image.fromarray(random_rgb(rng, (800, 1200))).save(root / "a" / "big.jpg", quality=90)
    data = (root / "a" / "big.jpg").read_bytes()
    for cut in (0.9, 0.5, 0.1):
        (root / "b" / f"cut{cut}.jpg").write_bytes(data[: int(len(data) * cut)])
    report = ImageFolderDataset(root).check(progress=False)
    assert sorted(p.relpath for p in report.problems) == [
        "b/cut0.1.jpg", "b/cut0.5.jpg", "b/cut0.9.jpg"]
    assert {p.reason for p in report.problems} == {"truncated"}


@pytest.mark.parametrize(
    ("stored", "target", "ratio"),
    [((4000, 3000), (128, 128), 8), ((1000, 1000), (128, 128), 4), ((300, 300), (128, 128), 2),
     ((255, 400), (128, 128), 1), ((128, 128), (128, 128), 1), (None, (64, 64), 1),
     ((4000, 500), (128, 128), 2)],
)
def test_jpeg_ratio_never_goes_below_the_target(stored, target, ratio):
    """Check that the reduced-scale factor keeps the image at least as large as the target."""
    assert jpeg_ratio(stored, target) == ratio


def test_header_sizes_match_pillow(tmp_path):
    """Check that header-read sizes agree with Pillow for every supported format."""
    rng = np.random.default_rng(1)
    image = Image.fromarray(random_rgb(rng, (37, 53)))
    for fmt, ext in (("JPEG", "jpg"), ("PNG", "png"), ("GIF", "gif"), ("BMP", "bmp")):
        path = tmp_path / f"x.{ext}"
        image.save(path, fmt)
        assert read_image_size(path) == (53, 37)
        assert sniff_format(path.read_bytes()[:32]) == fmt
