"""Shared pieces of the tests that run whole jobs: quick settings and file digests."""

from __future__ import annotations

import hashlib
from pathlib import Path

#: A small, quick run of the default job (augmentation on).
QUICK = {"image_size": 24, "batch_size": 8, "precision": "float32", "tta": 1, "verbose": 0}


def digests(root: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file under ``root`` (the run folder's lock aside)."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                       p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".fruitclf.lock"}


def tree(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}
