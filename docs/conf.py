"""Sphinx configuration for fruitclf."""

from __future__ import annotations

import os
import sys
from importlib.metadata import version as _version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

project = "fruitclf"
author = "The fruitclf developers"
copyright = "2026, The fruitclf developers"
release = _version("fruitclf")
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
    "_ext.cli_reference",
    "_ext.owned_files",
    "_ext.compat_table",
    "_ext.settings_table",
]

# Numbers the prose quotes, read from the one place the code keeps them.
from fruitclf.data import quality as _quality  # noqa: E402

rst_epilog = f"""
.. |near_duplicate_threshold| replace:: {_quality.NEAR_DUPLICATE_THRESHOLD}
.. |grey_threshold| replace:: {_quality.NEAR_DUPLICATE_THRESHOLD * _quality.GREY_SHARE:.2f}
.. |spread_reference| replace:: {_quality.SPREAD_REFERENCE}
"""

autodoc_typehints = "none"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = False

# Names that docstrings mention in prose types (not importable targets).
# NumPy-style type descriptions ("int, default=3", "sequence of str") are prose, not targets:
# class references are not checked; functions, methods, attributes and exceptions are.
nitpick_ignore_regex = [(r"py:class", r".*")]

doctest_global_setup = "import fruitclf\nfrom fruitclf import *\n"
# Docstring examples (plain ``>>>`` blocks) need the example folders that
# tests/test_doctests.py writes, and run there; this builder tests the ``.. doctest::`` blocks.
doctest_test_doctest_blocks = ""

html_theme = "alabaster"
html_static_path = ["_static"]
html_css_files = ["fruitclf.css"]
html_title = f"fruitclf {release}"
exclude_patterns = ["_build"]
