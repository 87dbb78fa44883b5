"""Checks on the code itself: short functions, one place for each default and each list."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import fruitclf

SRC = Path(fruitclf.__file__).parent
MAX_LINES = 60  # lines of code in one function, docstring, blank lines and comments aside


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> int:
    body = node.body
    first = body[0]
    has_doc = (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
               and isinstance(first.value.value, str))
    start = (first.end_lineno or first.lineno) + 1 if has_doc else first.lineno
    end = node.end_lineno or node.lineno
    return sum(1 for line in lines[start - 1:end]
               if line.strip() and not line.strip().startswith("#"))


def test_no_function_is_longer_than_60_lines():
    """Check that every function in src/ reads as one step or a short list of steps."""
    long = {}
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                count = _code_lines(node, lines)
                if count >= MAX_LINES:
                    long[f"{path.relative_to(SRC)}:{node.name}"] = count
    assert long == {}


def test_run_takes_its_defaults_from_run_config():
    """Check that run()'s defaults are RunConfig's, so the two cannot drift apart."""
    from fruitclf import RunConfig

    signature = inspect.signature(fruitclf.run)
    for name in ("spec", "seed", "augment", "interpolation", "cache", "checkpoint_interval"):
        assert signature.parameters[name].default == getattr(RunConfig, name), name


def test_the_cli_reads_its_choices_and_defaults_from_the_library():
    """Check that the CLI's presets, precisions and defaults are the library's."""
    from fruitclf import CNNSpec, RunConfig
    from fruitclf._compat import PRECISIONS
    from fruitclf.cli import build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command")
    train = commands.choices["train"]
    options = {a.dest: a for a in train._actions}
    assert tuple(options["preset"].choices) == tuple(CNNSpec.PRESETS)
    assert tuple(options["precision"].choices) == tuple(PRECISIONS)
    for name in ("seed", "interpolation", "cache", "checkpoint_interval"):
        assert options[name].default == getattr(RunConfig, name), name


def test_describe_and_build_cnn_follow_one_plan():
    """Check that the layer table, the plan and the built model name the same layers."""
    from fruitclf import CNNSpec, ConvBlock, DenseLayer, build_cnn

    spec = CNNSpec(input_shape=(32, 32, 3), num_classes=4,
                   conv_blocks=(ConvBlock(4, batch_norm=True, dropout=0.1), ConvBlock(8)),
                   dense_layers=(DenseLayer(8, dropout=0.2),), head="global_average",
                   head_dropout=0.1)
    planned = [layer.name for layer in spec.layer_plan()]
    assert [row.name for row in spec.describe().rows] == planned
    assert [layer.name for layer in build_cnn(spec).layers[1:]] == planned


def _private_members() -> dict[str, set[str]]:
    """For each class of src/, the private names it defines (methods, self._x attributes)."""
    members: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                names = members.setdefault(node.name, set())
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        names.add(inner.name)
                    elif isinstance(inner, ast.AnnAssign) and isinstance(inner.target, ast.Name):
                        names.add(inner.target.id)  # declared on the class
                    elif (isinstance(inner, ast.Attribute) and isinstance(inner.value, ast.Name)
                          and inner.value.id in ("self", "cls")):
                        names.add(inner.attr)
    return {k: {n for n in v if n.startswith("_") and not n.startswith("__")}
            for k, v in members.items()}


def test_no_code_reaches_into_another_classes_private_members():
    """Check that no function uses a private member of a fruitclf class other than its own
    (``trainer._save`` from the run monitor, ``dataset._decoded`` from the evaluator)."""
    members = _private_members()
    owned_anywhere = set().union(*members.values())
    found = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and node.attr in owned_anywhere):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            enclosing, up = None, parents.get(node)
            while up is not None and enclosing is None:
                enclosing = up if isinstance(up, ast.ClassDef) else None
                up = parents.get(up)
            own = members.get(enclosing.name, set()) if enclosing is not None else set()
            bases = {b.id for b in (enclosing.bases if enclosing else [])
                     if isinstance(b, ast.Name)}
            own = own.union(*(members.get(b, set()) for b in bases))
            if node.attr not in own:
                found.append(f"{path.relative_to(SRC)}:{node.lineno} {ast.unparse(node)}")
    assert found == []


def test_no_private_module_is_imported_from_outside_its_package():
    """Check that ``fruitclf.pkg._mod`` is imported only inside ``fruitclf.pkg`` (the
    top-level helpers, ``fruitclf._files`` and the like, serve the whole library)."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        package = list(path.relative_to(SRC).parent.parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.ImportFrom) and node.level):
                continue
            base = package[:len(package) - (node.level - 1)]
            target = base + (node.module.split(".") if node.module else [])
            for i, part in enumerate(target):
                if part.startswith("_") and not part.startswith("__"):
                    if package[:i] != target[:i]:
                        found.append(f"{path.relative_to(SRC)}:{node.lineno} {node.module}")
                    break
    assert found == []


def test_no_class_is_longer_than_400_lines():
    """Check that every class of src/ is one concept: a larger one is split into named
    parts (ImageFolderDataset's finding, cleaning and splitting; the Trainer's monitor,
    phases and resume)."""
    long = {}
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 400:
                    long[f"{path.relative_to(SRC)}:{node.name}"] = length
    assert long == {}
