"""Files -> arrays: image folders, decoder-true checks, splits and ``tf.data`` pipelines.

- :mod:`~fruitclf.data.folder`: :class:`ImageFolderDataset` (discovery, counts, summary).
- :mod:`~fruitclf.data.check`: the file check with the training decoder.
- :mod:`~fruitclf.data.quarantine`: moving flagged files aside with a list, and back.
- :mod:`~fruitclf.data.split`: reproducible training/validation splits.
- :mod:`~fruitclf.data.pipeline`: :class:`Preprocessing`, cache planning, ``tf.data``.

TensorFlow is imported only when something is decoded or a pipeline is built.
"""

from __future__ import annotations

from .check import IMAGE_EXTENSIONS, CheckReport, FileProblem, ImageStore, describe_problems
from .folder import DatasetSummary, IgnoredFile, ImageFolderDataset, image_files
from .loading import CheckedImages, load_checked
from .pipeline import CachePlan, Preprocessing, build_pipeline, plan_cache, set_pipeline_epoch
from .quarantine import CleanReport, RestoredFiles, restore_quarantine
from .split import DatasetSplit

__all__ = [
    "IMAGE_EXTENSIONS",
    "CachePlan",
    "CheckReport",
    "CheckedImages",
    "CleanReport",
    "DatasetSplit",
    "DatasetSummary",
    "FileProblem",
    "IgnoredFile",
    "ImageFolderDataset",
    "ImageStore",
    "Preprocessing",
    "RestoredFiles",
    "build_pipeline",
    "describe_problems",
    "image_files",
    "load_checked",
    "plan_cache",
    "restore_quarantine",
    "set_pipeline_epoch",
]
