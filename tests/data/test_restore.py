"""Restoring what clean quarantined: never over another file, finished after a failure."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from _images import write_class_folder
from _runs import tree
from fruitclf import (
    DatasetError,
    ImageFolderDataset,
    restore_quarantine,
)

# ---------------------------------------------------------------- 1, 14: restore


def _quarantine_scenario(tmp_path: Path) -> tuple[Path, Path, bytes]:
    """Issue item 1: a second file quarantined from the same path as the first."""
    root = write_class_folder(tmp_path / "train", 2, 3, seed=0)
    original = root / "class_0" / "img_000.png"
    first = original.read_bytes()[:40]  # a truncated PNG
    original.write_bytes(first)
    ImageFolderDataset(root).remove_corrupted()
    original.write_text("NEW")  # a new (bad) file at the same path, cleaned again
    ImageFolderDataset(root).remove_corrupted()
    return root, Path(f"{root}-quarantine"), first


def test_restore_refuses_two_files_for_one_path_and_changes_nothing(tmp_path):
    """Check that restore never lets one quarantined file overwrite another (item 1)."""
    root, quarantine, first = _quarantine_scenario(tmp_path)
    before = tree(quarantine), tree(root)
    with pytest.raises(DatasetError, match=r"both .*img_000.*and .*img_000\.\d+\.png.* belong"):
        restore_quarantine(quarantine)
    assert (tree(quarantine), tree(root)) == before
    manifest = json.loads((quarantine / "fruitclf-quarantine.json").read_text())
    assert len(manifest["entries"]) == 2
    # The user keeps the first file: moving the other out of the quarantine settles it.
    newer = next(p for p in (quarantine / "class_0").iterdir() if p.name != "img_000.png")
    newer.rename(tmp_path / "kept-aside.png")
    assert restore_quarantine(quarantine) == [str(root / "class_0" / "img_000.png")]
    assert (root / "class_0" / "img_000.png").read_bytes() == first
    assert restore_quarantine(quarantine) == []  # idempotent


def test_restore_refuses_a_clash_naming_both_files(tmp_path):
    """Check that a file now at the original path is never replaced, and both are named."""
    root = write_class_folder(tmp_path / "train", 2, 2, seed=0)
    bad = root / "class_1" / "img_001.png"
    bad.write_bytes(b"")
    ImageFolderDataset(root).remove_corrupted(quarantine=tmp_path / "q")
    bad.write_bytes(b"the user's new file")
    with pytest.raises(DatasetError, match=r"img_001\.png' exists, so .*q/class_1/img_001\.png"):
        restore_quarantine(tmp_path / "q")
    assert bad.read_bytes() == b"the user's new file"


def test_restore_that_fails_halfway_is_finished_by_running_it_again(tmp_path, monkeypatch):
    """Check that the manifest is updated per file, so a retry completes (item 14)."""
    root = write_class_folder(tmp_path / "train", 2, 3, seed=0)
    before = tree(root)
    for name in ("img_000.png", "img_001.png", "img_002.png"):
        path = root / "class_0" / name
        path.write_bytes(path.read_bytes()[:30])
    broken = tree(root)
    ImageFolderDataset(root).remove_corrupted(quarantine=tmp_path / "q")
    from fruitclf import _files

    real_move, calls = _files.move_no_replace, []

    def flaky_move(source, target):  # type: ignore[no-untyped-def]
        calls.append(source)
        if len(calls) == 2:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(target))
        real_move(source, target)

    monkeypatch.setattr(_files, "move_no_replace", flaky_move)
    with pytest.raises(DatasetError, match="Permission denied. Restored 1 of 3; .* again"):
        restore_quarantine(tmp_path / "q")
    manifest = json.loads((tmp_path / "q" / "fruitclf-quarantine.json").read_text())
    assert len(manifest["entries"]) == 2
    monkeypatch.setattr(_files, "move_no_replace", real_move)
    assert len(restore_quarantine(tmp_path / "q")) == 2
    assert tree(root) == broken != before
    assert restore_quarantine(tmp_path / "q") == []


