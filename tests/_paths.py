"""Where the repository's parts are, for tests in any folder below ``tests/``."""

from __future__ import annotations

from pathlib import Path

#: The repository root.
ROOT = Path(__file__).resolve().parents[1]
#: The package sources (``PYTHONPATH`` for subprocesses that import fruitclf).
SRC = ROOT / "src"
#: The helpers beside this file (``_images``, ``_quarantine_child``).
TESTS = ROOT / "tests"
#: The real image folders shared beside the repository (absent in some checkouts).
DATASETS = ROOT.parent / "shared" / "datasets"
