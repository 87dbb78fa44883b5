"""Keep TensorFlow's start-up chatter out of fruitclf's output.

TensorFlow's C++ side logs through absl straight to file descriptor 2 while it is imported and
while it first looks for devices ("All log messages before absl::InitializeLog() ...", oneDNN
and CPU-feature notes, "Could not find cuda drivers", ``cuInit`` failures on machines without
a GPU); ``TF_CPP_MIN_LOG_LEVEL`` no longer reaches all of it. :func:`install` makes the first
``import tensorflow`` run with file descriptor 2 captured, then writes back every captured
line that is not one of those known notices, so real errors stay visible.

The CLI installs it (``fruitclf -v`` does not); the library installs it when a fruitclf name
is first used (``fruitclf.run``, ``fruitclf.ImageFolderDataset``, ...), because fruitclf then
starts TensorFlow. Nothing is installed at ``import fruitclf``, and a program that imports
TensorFlow itself first sees TensorFlow exactly as it is.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from types import ModuleType
from typing import Any, TextIO, TypeVar

_T = TypeVar("_T")

#: Start-up notices of TensorFlow/absl/XLA that say nothing the user can act on.
_PREFIX = (r"(?:[{levels}]\d{{4}} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] "  # absl (TF >= 2.18)
           r"|\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [{levels}] \S+:\d+\] )")  # TF <= 2.17
NOISE = re.compile(
    r"^(?:WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions:"
    r"|fully_quantize: \d+, inference_type: "  # the TFLite converter's quantisation summary
    r"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."
    # libjpeg's notes on a damaged JPEG, which the file check reports itself
    r"|(?:Corrupt JPEG data|Premature end of JPEG file|Improper call to JPEG library"
    r"|Invalid JPEG file structure|Invalid SOS parameters|Unsupported marker type"
    r"|Bogus marker length|Not a JPEG file)"
    + "|" + _PREFIX.format(levels="IW")
    + "|" + _PREFIX.format(levels="E")
    + r"(?:.*(?:cuInit|CUDA|cuda|cuDNN|cuFFT|cuBLAS|TensorRT)"
    # oneDNN's note that this CPU runs some uint8 operations on Eigen instead
    + r"|oneDNN supports DT_UINT8 only on platforms with AVX-512"
    # TensorFlow's own note on a JPEG cut short, which the file check reports itself
    + r"|Premature end of JPEG data))"
)


#: False after :func:`show_everything` (``fruitclf -v``): nothing is captured or left out.
_ENABLED = True


def show_everything() -> None:
    """Leave TensorFlow's output as it is from now on (``fruitclf -v``)."""
    global _ENABLED
    _ENABLED = False
    uninstall()


@contextlib.contextmanager
def filtered_native_stderr() -> Iterator[TextIO]:
    """Capture file descriptor 2 in the block; write back the lines that are not noise.

    fruitclf wraps its own calls that make TensorFlow's C++ side talk (the first import,
    TFLite conversion, decoding damaged files in the check) in it; a no-op after
    :func:`show_everything`. Yields the stream a progress bar should write to meanwhile:
    the real standard error (``sys.stderr`` itself in a notebook, where it is not file
    descriptor 2).
    """
    if not _ENABLED:
        yield sys.stderr
        return
    sys.stderr.flush()
    saved = os.dup(2)
    live = (os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
            if _is_descriptor_2(sys.stderr) else None)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield live if live is not None else sys.stderr
        finally:
            sys.stderr.flush()
            if live is not None:
                live.close()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode(errors="replace").splitlines()
                    if line.strip() and not NOISE.match(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def read_pipeline(pipeline: Iterable[_T]) -> Iterator[_T]:
    """The elements of a ``tf.data`` pipeline read eagerly, inside
    :func:`filtered_native_stderr`: TensorFlow 2.16 logs "Local rendezvous is aborting with
    status: OUT_OF_RANGE: End of sequence" at the end of every such read, a notice, not an
    error. What the loop's body writes to standard error meanwhile is written after it."""
    with filtered_native_stderr():
        yield from pipeline


def _is_descriptor_2(stream: Any) -> bool:
    try:
        return bool(stream.fileno() == 2)
    except (AttributeError, OSError, ValueError):  # a notebook's stream, a StringIO
        return False


class _Loaded(importlib.abc.Loader):
    """Hands the import system a module that is already imported."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.spec = module.__spec__

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return self.module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self.spec  # the import system set ours; give back the real one


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Imports TensorFlow, and finds its devices, inside :func:`filtered_native_stderr`."""

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if name != "tensorflow":
            return None
        uninstall()
        with filtered_native_stderr():
            module = importlib.import_module("tensorflow")
            config: Any = getattr(module, "config", None)
            with contextlib.suppress(Exception):  # device discovery logs the cuInit lines
                config.list_physical_devices()
        return importlib.util.spec_from_loader(name, _Loaded(module))


_FINDER = _QuietTensorFlowImport()


def install() -> None:
    """Quiet the first ``import tensorflow`` of this process (a no-op once imported)."""
    if _ENABLED and "tensorflow" not in sys.modules and _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def uninstall() -> None:
    """Remove the import hook (TensorFlow imports as usual afterwards)."""
    with contextlib.suppress(ValueError):
        sys.meta_path.remove(_FINDER)
