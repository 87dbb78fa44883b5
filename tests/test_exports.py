"""The public API: everything in __all__, sorted, importable, documented."""

from __future__ import annotations

import inspect

import fruitclf


def test_all_is_sorted_and_complete():
    """Check that __all__ is sorted and lists exactly the public names."""
    assert fruitclf.__all__ == sorted(fruitclf.__all__)
    public = {name for name in dir(fruitclf)
              if not name.startswith("_") and not inspect.ismodule(getattr(fruitclf, name))}
    public -= {"annotations", "TYPE_CHECKING", "Any"}
    assert public == set(fruitclf.__all__) - {"__version__"}


def test_every_public_name_resolves_and_has_an_example():
    """Check that each public name imports and its docstring carries an example or is data."""
    for name in fruitclf.__all__:
        obj = getattr(fruitclf, name)
        if name == "__version__":
            continue
        doc = inspect.getdoc(obj) or ""
        assert doc, name
        if inspect.isfunction(obj) or (inspect.isclass(obj) and
                                       not issubclass(obj, BaseException)):
            assert "Examples" in doc or "Example" in doc, f"{name} has no example"
