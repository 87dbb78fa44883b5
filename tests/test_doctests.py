"""The cheap examples in the docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

import fruitclf

MODULES = ["_validation", "config", "data.check", "data.folder", "data.pipeline", "data.quality",
           "data.split", "demo", "evaluation", "io", "job", "model", "plotting", "spec",
           "training"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    """Check that each module's runnable docstring examples pass."""
    module = importlib.import_module(f"fruitclf.{name}")
    result = doctest.testmod(module, extraglobs={"fruitclf": fruitclf},
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
