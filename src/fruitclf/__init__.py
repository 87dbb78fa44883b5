"""fruitclf: from a folder of images sorted by class to a trained, saved Keras classifier.

Everything public is importable from the top level::

    import fruitclf

    ds = fruitclf.ImageFolderDataset("fruits/train")
    result = fruitclf.run("fruits/train", test_dir="fruits/test", out="runs/fruits")

Names are imported on first use, so ``import fruitclf`` (and ``fruitclf --help``) does not
start TensorFlow until a name that needs it is touched. When fruitclf is the first to start
TensorFlow, TensorFlow's C++ start-up notices (CPU features, "failed call to cuInit" on a
machine without a GPU) are left out; import ``tensorflow`` before using fruitclf to see them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__
from .exceptions import CorruptedImagesError as CorruptedImagesError
from .exceptions import DatasetError as DatasetError
from .exceptions import ExportError as ExportError
from .exceptions import FruitclfError as FruitclfError
from .exceptions import MissingExtraError as MissingExtraError
from .exceptions import ModelFileError as ModelFileError
from .exceptions import RunFolderError as RunFolderError
from .exceptions import SpecError as SpecError
from .exceptions import TrainingError as TrainingError
from .exceptions import VersionCompatibilityError as VersionCompatibilityError
from .exceptions import WeightsError as WeightsError
from .exceptions import WriteError as WriteError

if TYPE_CHECKING:
    from .attention import Explanation as Explanation
    from .attention import explain as explain
    from .calibration import CalibrationResult as CalibrationResult
    from .calibration import calibrate_model as calibrate_model
    from .compare import RunComparison as RunComparison
    from .compare import compare_runs as compare_runs
    from .config import Recipe as Recipe
    from .config import RunConfig as RunConfig
    from .config import TrainingChoices as TrainingChoices
    from .curve import LearningCurve as LearningCurve
    from .curve import learning_curve as learning_curve
    from .data import CachePlan as CachePlan
    from .data import DatasetSplit as DatasetSplit
    from .data import DatasetSummary as DatasetSummary
    from .data import IgnoredFile as IgnoredFile
    from .data import ImageFolderDataset as ImageFolderDataset
    from .data import Preprocessing as Preprocessing
    from .data import plan_cache as plan_cache
    from .data.check import CheckReport as CheckReport
    from .data.check import FileProblem as FileProblem
    from .data.check import ImageStore as ImageStore
    from .data.quality import DuplicateGroup as DuplicateGroup
    from .data.quality import LeakedPair as LeakedPair
    from .data.quality import QualityIssue as QualityIssue
    from .data.quality import QualityThresholds as QualityThresholds
    from .data.quarantine import CleanReport as CleanReport
    from .data.quarantine import RestoredFiles as RestoredFiles
    from .data.quarantine import restore_quarantine as restore_quarantine
    from .data.unlabeled import PseudoLabel as PseudoLabel
    from .data.unlabeled import PseudoLabels as PseudoLabels
    from .demo import DemoDataset as DemoDataset
    from .demo import write_demo_dataset as write_demo_dataset
    from .evaluation import EvaluationResult as EvaluationResult
    from .evaluation import Evaluator as Evaluator
    from .evaluation import Misclassified as Misclassified
    from .evaluation import Predictions as Predictions
    from .evaluation import tta_views as tta_views
    from .export import ExportResult as ExportResult
    from .export import export_model as export_model
    from .export import read_export_metadata as read_export_metadata
    from .io import LoadedModel as LoadedModel
    from .io import load_model as load_model
    from .io import read_metadata as read_metadata
    from .io import save_model as save_model
    from .job import RunResult as RunResult
    from .job import run as run
    from .model import build_augmentation as build_augmentation
    from .model import build_cnn as build_cnn
    from .plotting import plot_confusion_matrix as plot_confusion_matrix
    from .plotting import plot_history as plot_history
    from .plotting import plot_images as plot_images
    from .plotting import plot_reliability as plot_reliability
    from .plotting import plot_samples as plot_samples
    from .spec import Augmentation as Augmentation
    from .spec import CNNSpec as CNNSpec
    from .spec import ConvBlock as ConvBlock
    from .spec import DenseLayer as DenseLayer
    from .spec import LayerRow as LayerRow
    from .spec import PlannedLayer as PlannedLayer
    from .spec import SpecDescription as SpecDescription
    from .training import Trainer as Trainer
    from .training import TrainingHistory as TrainingHistory

_LAZY = {
    "LearningCurve": "curve",
    "learning_curve": "curve",
    "CheckReport": "data",
    "CleanReport": "data",
    "FileProblem": "data",
    "ImageStore": "data",
    "restore_quarantine": "data",
    "RestoredFiles": "data",
    "DuplicateGroup": "data.quality",
    "LeakedPair": "data.quality",
    "QualityIssue": "data.quality",
    "QualityThresholds": "data.quality",
    "PseudoLabel": "data.unlabeled",
    "PseudoLabels": "data.unlabeled",
    "CachePlan": "data",
    "DatasetSplit": "data",
    "DatasetSummary": "data",
    "IgnoredFile": "data",
    "ImageFolderDataset": "data",
    "Preprocessing": "data",
    "plan_cache": "data",
    "DemoDataset": "demo",
    "write_demo_dataset": "demo",
    "EvaluationResult": "evaluation",
    "Evaluator": "evaluation",
    "Misclassified": "evaluation",
    "Predictions": "evaluation",
    "tta_views": "evaluation",
    "Explanation": "attention",
    "explain": "attention",
    "ExportResult": "export",
    "export_model": "export",
    "read_export_metadata": "export",
    "LoadedModel": "io",
    "load_model": "io",
    "read_metadata": "io",
    "save_model": "io",
    "CalibrationResult": "calibration",
    "calibrate_model": "calibration",
    "RunComparison": "compare",
    "compare_runs": "compare",
    "Recipe": "config",
    "RunConfig": "config",
    "TrainingChoices": "config",
    "RunResult": "job",
    "run": "job",
    "build_augmentation": "model",
    "build_cnn": "model",
    "plot_confusion_matrix": "plotting",
    "plot_history": "plotting",
    "plot_images": "plotting",
    "plot_reliability": "plotting",
    "plot_samples": "plotting",
    "Augmentation": "spec",
    "CNNSpec": "spec",
    "ConvBlock": "spec",
    "DenseLayer": "spec",
    "LayerRow": "spec",
    "PlannedLayer": "spec",
    "SpecDescription": "spec",
    "Trainer": "training",
    "TrainingHistory": "training",
}

__all__ = [
    "Augmentation",
    "CNNSpec",
    "CachePlan",
    "CalibrationResult",
    "CheckReport",
    "CleanReport",
    "ConvBlock",
    "CorruptedImagesError",
    "DatasetError",
    "DatasetSplit",
    "DatasetSummary",
    "DemoDataset",
    "DenseLayer",
    "DuplicateGroup",
    "EvaluationResult",
    "Evaluator",
    "Explanation",
    "ExportError",
    "ExportResult",
    "FileProblem",
    "FruitclfError",
    "IgnoredFile",
    "ImageFolderDataset",
    "ImageStore",
    "LayerRow",
    "LeakedPair",
    "LearningCurve",
    "LoadedModel",
    "Misclassified",
    "MissingExtraError",
    "ModelFileError",
    "PlannedLayer",
    "Predictions",
    "Preprocessing",
    "PseudoLabel",
    "PseudoLabels",
    "QualityIssue",
    "QualityThresholds",
    "Recipe",
    "RestoredFiles",
    "RunComparison",
    "RunConfig",
    "RunFolderError",
    "RunResult",
    "SpecDescription",
    "SpecError",
    "Trainer",
    "TrainingChoices",
    "TrainingError",
    "TrainingHistory",
    "VersionCompatibilityError",
    "WeightsError",
    "WriteError",
    "__version__",
    "build_augmentation",
    "build_cnn",
    "calibrate_model",
    "compare_runs",
    "explain",
    "export_model",
    "learning_curve",
    "load_model",
    "plan_cache",
    "plot_confusion_matrix",
    "plot_history",
    "plot_images",
    "plot_reliability",
    "plot_samples",
    "read_export_metadata",
    "read_metadata",
    "restore_quarantine",
    "run",
    "save_model",
    "tta_views",
    "write_demo_dataset",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fruitclf' has no attribute {name!r}")
    from . import _quiet

    _quiet.install()  # fruitclf starts TensorFlow from here on: without its start-up notices
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    # The public names and the module's own dunders; not the helpers this file imports.
    return sorted(set(__all__) | {name for name in globals() if name.startswith("__")})
