"""What fruitclf owns: the one declaration of the files each command may write or remove.

Every command that replaces or removes a file asks this module first:

- a **run folder** (``fruitclf train``/``demo``, :func:`fruitclf.run`) owns the files in
  :data:`RUN_FILES`, and only once its marker, ``fruitclf-run.json``, lists them; exports
  made into a run folder belong to its run too;
- an **evaluation folder** (``fruitclf evaluate --out``) owns :data:`EVALUATION_FILES` once
  its marker, ``fruitclf-evaluation.json``, is there;
- an **export** owns its file or SavedModel folder and the two sidecars beside it, once its
  metadata says ``fruitclf-export`` (:func:`export_files`, :func:`foreign_export_entries`);
- a **quarantine** owns what its list, ``fruitclf-quarantine.json``, names.

A file with one of these names that no marker or list accounts for is the user's: it is
never replaced or removed, and the command refuses, naming it. Outputs are never placed
inside an image folder (:func:`check_outside`), where they would become a class or a
training image.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from . import _files

__all__ = ["CURVE_FILES", "EVALUATION_FILES", "EXPLANATION_FILES", "RUN_FILES", "RunFile",
           "check_outside", "export_files"]


@dataclasses.dataclass(frozen=True)
class RunFile:
    """One file a command writes into a folder it owns."""

    #: The key of the file in ``RunResult.files`` and in the marker.
    role: str
    #: The file's name in the folder.
    name: str
    #: What it holds, for the report's "Files" section and the docs.
    description: str
    #: ``"marker"``, ``"training"`` (written while training, kept by a resume) or
    #: ``"final"`` (written together at the end).
    phase: str


RUN_MARKER = "fruitclf-run.json"
RUN_LOCK = ".fruitclf.lock"

#: Every file a run writes, in the order the report lists them.
RUN_FILES: tuple[RunFile, ...] = (
    RunFile("marker", RUN_MARKER, "which run owns this folder: its settings, classes, spec, "
            "state and files", "marker"),
    RunFile("split", "split.json", "which images trained and which validated (read by "
            "--resume)", "training"),
    RunFile("checkpoint", "best_model.keras", "the best epoch's model while training",
            "training"),
    RunFile("last_checkpoint", "last_checkpoint.keras", "the latest epoch's model and "
            "optimizer state (read by --resume)", "training"),
    RunFile("history_json", "history.json", "loss and accuracy per epoch (read by --resume)",
            "training"),
    RunFile("history_csv", "history.csv", "loss and accuracy per epoch, as CSV", "training"),
    RunFile("teacher", "teacher.keras", "with --unlabeled: the first model, trained on the "
            "labelled images, that labelled the unlabelled photos (read by --resume)",
            "training"),
    RunFile("pseudo_labels", "pseudo_labels.json", "with --unlabeled: each unlabelled photo, "
            "the first model's class and confidence, and whether it trained the final model",
            "training"),
    RunFile("model.h5", "model.h5", "the same model in HDF5, for older tools", "final"),
    RunFile("model.keras", "model.keras", "the trained model with its class names (Keras "
            "format)", "final"),
    RunFile("history", "history.png", "training curves", "final"),
    RunFile("samples", "samples.png", "one training image per class", "final"),
    RunFile("label_errors", "label_errors.png", "training images the model calls another "
            "class (only when there are some)", "final"),
    RunFile("confusion_matrix", "confusion_matrix.png", "test confusion matrix", "final"),
    RunFile("misclassified", "misclassified.png", "test images the model got wrong", "final"),
    RunFile("classification_report", "classification_report.txt", "precision, recall and F1 "
            "per class on the test folder, with intervals", "final"),
    RunFile("predictions", "predictions.csv", "each test image's class, prediction and "
            "probabilities (read by fruitclf compare)", "final"),
    RunFile("calibration", "calibration.png", "reliability diagram of the test predictions",
            "final"),
    RunFile("attention", "attention.png", "where the model looks (Grad-CAM): the misclassified "
            "test images and one correct image per class", "final"),
    RunFile("leakage", "leakage.json", "test images with a twin in the training folder",
            "final"),
    RunFile("metrics", "metrics.json", "the results above, as JSON", "final"),
    RunFile("report", "report.md", "this report, as Markdown", "final"),
    RunFile("report_html", "report.html", "this report, as one web page", "final"),
)
RUN_FILE = {f.role: f for f in RUN_FILES}
#: The names a version-1 marker (before the list of owned files) stood for.
LEGACY_RUN_NAMES = frozenset(
    f.name for f in RUN_FILES
    if f.role not in ("label_errors", "leakage", "report_html", "predictions", "calibration",
                      "attention"))

EVALUATION_MARKER = "fruitclf-evaluation.json"
#: Every file ``fruitclf evaluate --out`` writes.
EVALUATION_FILES: tuple[RunFile, ...] = (
    RunFile("marker", EVALUATION_MARKER, "which model and test folder were evaluated",
            "marker"),
    RunFile("classification_report", "classification_report.txt", "precision, recall and F1 "
            "per class", "final"),
    RunFile("evaluation", "evaluation.json", "accuracy, loss, predictions and problems, as "
            "JSON", "final"),
    RunFile("predictions", "predictions.csv", "each test image's class, prediction and "
            "probabilities (read by fruitclf compare)", "final"),
    RunFile("calibration", "calibration.png", "reliability diagram", "final"),
    RunFile("confusion_matrix", "confusion_matrix.png", "the confusion matrix", "final"),
    RunFile("misclassified", "misclassified.png", "test images the model got wrong", "final"),
)

EXPLANATION_MARKER = "fruitclf-explanation.json"
#: Every file ``fruitclf explain --out`` writes.
EXPLANATION_FILES: tuple[RunFile, ...] = (
    RunFile("marker", EXPLANATION_MARKER, "which model and images were explained", "marker"),
    RunFile("attention", "attention.png", "each image with its Grad-CAM heat map", "final"),
    RunFile("heatmaps", "heatmaps.npz", "the heat maps as arrays (heatmaps, paths, "
            "predicted, targets, class_names)", "final"),
)

CURVE_MARKER = "fruitclf-learning-curve.json"
#: Every file ``fruitclf learning-curve --out`` writes at the top of its folder; its runs
#: are run folders under ``runs/``, each owned by its own marker.
CURVE_FILES: tuple[RunFile, ...] = (
    RunFile("marker", CURVE_MARKER, "which training and test folders the curve is of",
            "marker"),
    RunFile("curve", "learning_curve.png", "test accuracy against photos per class, with the "
            "fitted curve", "final"),
    RunFile("curve_json", "learning_curve.json", "every run's accuracy, the medians, their "
            "intervals, the fit and its forecast", "final"),
)

#: The ``Software`` text of the PNG figures single commands write to a path the user names
#: (``fruitclf samples --out``, ``fruitclf compare --figure``): such a file is replaced only
#: when it carries its command's text.
FIGURE_SOFTWARE = {"samples": "fruitclf samples", "compare": "fruitclf compare"}


def is_command_figure(path: str | os.PathLike[str], command: str) -> bool:
    """True when ``path`` is a PNG figure written by ``fruitclf COMMAND``."""
    if not os.path.isfile(path) or os.path.islink(path):
        return False
    try:
        from PIL import Image

        with Image.open(path) as image:
            return bool(image.format == "PNG"
                        and image.info.get("Software") == FIGURE_SOFTWARE[command])
    except (OSError, ValueError):
        return False


QUARANTINE_LIST = "fruitclf-quarantine.json"
QUARANTINE_LOCK = ".fruitclf-quarantine.lock"

# ------------------------------------------------------------------------------ exports

EXPORT_FORMAT = "fruitclf-export"
#: What a SavedModel export folder may hold (top level; ``variables``/``assets`` below).
SAVEDMODEL_ENTRIES = frozenset({"saved_model.pb", "fingerprint.pb", "variables", "assets"})
SAVEDMODEL_ASSETS = frozenset({"labels.txt", "fruitclf.json"})
_VARIABLES_FILE = re.compile(r"variables\.(index|data-\d+-of-\d+)")
#: Sidecars larger than this are not export metadata (a guard when reading unknown files).
_SIDECAR_LIMIT = 4 << 20


def export_files(target: str | os.PathLike[str]) -> tuple[Path, Path, Path]:
    """The export itself and its two sidecars: ``<out>.labels.txt`` and ``<out>.json``."""
    path = Path(target)
    return path, path.with_name(f"{path.name}.labels.txt"), path.with_name(f"{path.name}.json")


def _json_file(path: Path) -> Any:
    try:
        return _files.read_json(path, _SIDECAR_LIMIT)
    except (OSError, ValueError):
        return None


def is_export(target: str | os.PathLike[str]) -> bool:
    """True when ``target``'s metadata (its sidecar, or a SavedModel's asset) says fruitclf
    exported it."""
    path, _, sidecar = export_files(target)
    candidates = [sidecar]
    if path.is_dir() and not path.is_symlink():
        candidates.append(path / "assets" / "fruitclf.json")
    for candidate in candidates:
        metadata = _json_file(candidate)
        if isinstance(metadata, dict) and metadata.get("format") == EXPORT_FORMAT:
            return True
    return False


def foreign_export_entries(target: str | os.PathLike[str]) -> list[str]:
    """What in an existing export target an export did not write: every entry when it is
    not an export, else anything in a SavedModel folder beyond the SavedModel's own files."""
    path, labels, sidecar = export_files(target)
    present = [p for p in (path, labels, sidecar) if os.path.lexists(p)]
    if not present:
        return []
    if not is_export(path):
        if path.is_dir() and not path.is_symlink():  # name what is in the user's folder
            present = [*sorted(path.iterdir()), *present[1:]]
        return [os.fspath(p) for p in present]
    if not path.is_dir() or path.is_symlink():
        return []
    foreign = []
    for entry in sorted(path.iterdir()):
        if entry.name not in SAVEDMODEL_ENTRIES:
            foreign.append(os.fspath(entry))
        elif entry.name in ("variables", "assets"):
            allowed = (SAVEDMODEL_ASSETS if entry.name == "assets" else None)
            if not entry.is_dir() or entry.is_symlink():
                foreign.append(os.fspath(entry))
                continue
            for inner in sorted(entry.iterdir()):
                ok = (inner.name in allowed if allowed is not None
                      else bool(_VARIABLES_FILE.fullmatch(inner.name)))
                if not ok or not inner.is_file() or inner.is_symlink():
                    foreign.append(os.fspath(inner))
        elif not entry.is_file() or entry.is_symlink():
            foreign.append(os.fspath(entry))
    return foreign


def remove_export(target: str | os.PathLike[str]) -> list[Path]:
    """Remove an export and its sidecars, only if every entry is the export's own.

    Returns what was removed; raises ``FileExistsError`` naming the first foreign entry.
    """
    foreign = foreign_export_entries(target)
    if foreign:
        raise FileExistsError(f"{foreign[0]!r} was not written by an export")
    path, labels, sidecar = export_files(target)
    removed = []
    if path.is_dir() and not path.is_symlink():
        for sub in ("variables", "assets"):
            if (path / sub).is_dir():
                for inner in (path / sub).iterdir():
                    inner.unlink()
                (path / sub).rmdir()
        for inner in path.iterdir():
            inner.unlink()
        path.rmdir()
        removed.append(path)
    for file in (path, labels, sidecar):
        if os.path.lexists(file) and not os.path.isdir(file):
            os.unlink(file)
            removed.append(file)
    return removed


def exports_in(folder: str | os.PathLike[str]) -> list[Path]:
    """The exports written directly into ``folder`` (found by their ``.json`` sidecars)."""
    found = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        if entry.name.endswith(".json"):
            target = Path(entry.path[: -len(".json")])
            if os.path.lexists(target) and is_export(target):
                found.append(target)
    return sorted(found)


# ------------------------------------------------------------------------------ inputs


def check_outside(output: str | os.PathLike[str], inputs: Mapping[str, Any],
                  option: str) -> None:
    """Refuse an output path inside (or equal to) one of the image folders ``inputs``.

    ``inputs`` maps a description (``"training folder"``) to a folder or None. Links are
    followed, so a path that reaches an image folder through a link is refused too.

    Raises
    ------
    ValueError
        Naming the option, the output and the image folder.
    """
    out = os.path.realpath(os.fspath(output))
    for what, folder in inputs.items():
        if folder is None:
            continue
        root = os.path.realpath(os.fspath(folder))
        if out == root or out.startswith(root.rstrip(os.sep) + os.sep):
            raise ValueError(
                f"`{option}` must be outside the {what}, or what fruitclf writes there would "
                f"be read as images or a class. Received: {option}={os.fspath(output)!r} "
                f"inside {os.fspath(folder)!r}")


def names_in(folder: str | os.PathLike[str], names: Iterable[str]) -> list[str]:
    """Which of ``names`` exist directly in ``folder`` (links and folders included)."""
    return [name for name in names if os.path.lexists(os.path.join(folder, name))]
