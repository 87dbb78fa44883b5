"""The tutorial runs as written, on the demo data it tells readers to write."""

from __future__ import annotations

import logging
import re
import textwrap
import time

import matplotlib
import pytest

from _paths import ROOT

TUTORIAL = ROOT / "docs" / "tutorial.rst"


def code_blocks(text: str) -> list[str]:
    """The ``.. code-block:: python`` blocks of a reST page, in order, dedented."""
    blocks = []
    for match in re.finditer(r"^\.\. code-block:: python\n\n((?:(?:    .*)?\n)+)", text, re.M):
        blocks.append(textwrap.dedent(match.group(1)))
    return blocks


@pytest.mark.slow
@pytest.mark.docs
def test_tutorial_runs_as_written(tmp_path, monkeypatch, capsys, caplog):
    """Check that every Python block of the tutorial runs, in order, in a fresh folder, and
    that fruitclf's calls make TensorFlow warn about nothing (retracing, caches)."""
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.WARNING, logger="tensorflow")  # as in a fresh process
    blocks = code_blocks(TUTORIAL.read_text(encoding="utf-8"))
    assert len(blocks) >= 9 and "write_demo_dataset" in blocks[0]
    namespace: dict[str, object] = {}
    for number, block in enumerate(blocks, 1):
        started = time.perf_counter()
        exec(compile(block, f"tutorial block {number}", "exec"), namespace)
        print(f"block {number}: {time.perf_counter() - started:.1f} s")
    assert (tmp_path / "runs" / "fruits.tflite.labels.txt").read_text().split() == [
        str(d) for d in range(10)]
    assert (tmp_path / "runs" / "fruits" / "report.html").is_file()
    warned = [r.getMessage() for r in caplog.records if r.name == "tensorflow"
              and r.levelno >= 30]
    assert warned == []
