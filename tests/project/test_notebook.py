"""The example notebook runs from top to bottom."""

from __future__ import annotations

import shutil

import pytest

from _paths import ROOT

NOTEBOOK = ROOT / "examples" / "worksheet.ipynb"


def test_notebook_outputs_are_stripped():
    """Check that the notebook in the repository carries no outputs."""
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") and not c.get("execution_count")
               for c in nb.cells if c.cell_type == "code")


@pytest.mark.slow
@pytest.mark.docs
def test_worksheet_notebook_runs(tmp_path, monkeypatch):
    """Check that examples/worksheet.ipynb executes without error (2 epochs)."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("FRUITCLF_NOTEBOOK_EPOCHS", "2")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    shutil.copy(NOTEBOOK, tmp_path / NOTEBOOK.name)
    nb = nbformat.read(tmp_path / NOTEBOOK.name, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(str(o.get("text", "")) for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []))
    assert "test accuracy" in outputs
    assert (tmp_path / "worksheet-run" / "model.h5").exists()
