"""The public API: everything in __all__, sorted, importable, documented."""

from __future__ import annotations

import inspect

import fruitclf


def test_all_is_sorted_and_complete():
    """Check that __all__ is sorted and lists exactly the public names."""
    assert fruitclf.__all__ == sorted(fruitclf.__all__)
    public = {name for name in dir(fruitclf)
              if not name.startswith("_") and not inspect.ismodule(getattr(fruitclf, name))}
    assert public == set(fruitclf.__all__) - {"__version__"}
    assert not {"annotations", "TYPE_CHECKING", "Any", "importlib"} & set(dir(fruitclf))


def test_every_public_name_resolves_and_has_an_example():
    """Check that each public name imports and its docstring has a doctest example (a
    ``>>>`` line, not just the word), exceptions and data aside."""
    import doctest

    parser = doctest.DocTestParser()
    for name in fruitclf.__all__:
        obj = getattr(fruitclf, name)
        if name == "__version__":
            continue
        doc = inspect.getdoc(obj) or ""
        assert doc, name
        if inspect.isfunction(obj) or (inspect.isclass(obj) and
                                       not issubclass(obj, BaseException)):
            assert parser.get_examples(doc), f"{name} has no example"


def test_most_examples_run():
    """Check that at most a quarter of the docstring examples are skipped (those that need
    a trained model); the others run in tests/test_doctests.py."""
    import doctest
    import importlib
    import pkgutil

    skip = doctest.OPTIONFLAGS_BY_NAME["SKIP"]
    total = skipped = 0
    for info in pkgutil.walk_packages(fruitclf.__path__, "fruitclf."):
        module = importlib.import_module(info.name)
        for test in doctest.DocTestFinder().find(module):
            total += len(test.examples)
            skipped += sum(1 for e in test.examples if e.options.get(skip))
    assert total >= 100 and skipped <= total / 4, (skipped, total)


def _documented_fields(cls: type) -> set[str]:
    """Fields with a ``#:`` comment (Sphinx's attribute doc comment) right above them, or an
    entry in the docstring's Attributes section."""
    import itertools
    import re

    names = set()
    for owner in cls.__mro__[:-1]:  # a base dataclass documents its own fields
        source = inspect.getsource(owner).splitlines()
        for above, line in itertools.pairwise(source):
            field = re.match(r"\s+(\w+)\s*:", line)
            if field and above.strip().startswith("#:"):
                names.add(field.group(1))
        for line in (inspect.getdoc(owner) or "").splitlines():
            head, sep, _ = line.partition(" : ")
            if sep and not line.startswith(" "):
                names.update(part.strip() for part in head.split(","))
    return names


def test_every_field_of_a_public_dataclass_is_documented():
    """Check that the API pages can show every field: each has a ``#:`` comment or an
    Attributes entry (a trailing ``# comment`` is invisible to Sphinx)."""
    import dataclasses

    missing = {}
    for name in fruitclf.__all__:
        obj = getattr(fruitclf, name)
        if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
            undocumented = {f.name for f in dataclasses.fields(obj)} - _documented_fields(obj)
            if undocumented:
                missing[name] = sorted(undocumented)
    assert missing == {}
