"""Reproducible training/validation splits of an image folder, saved and reloaded as JSON."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import _files

if TYPE_CHECKING:
    from .folder import ImageFolderDataset, _Entry

__all__ = ["SPLIT_FORMAT", "DatasetSplit", "validation_relpaths"]

SPLIT_FORMAT = "fruitclf-split"


def validation_relpaths(entries: Sequence[_Entry], num_classes: int, fraction: float, seed: int,
                        stratify: bool) -> set[str]:
    """The relative paths that go to validation; see :meth:`ImageFolderDataset.split`."""
    if fraction == 0.0:
        return set()

    def rank(entry: _Entry) -> int:
        digest = hashlib.blake2b(f"{seed}\0{entry.relpath}".encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "big")

    if not stratify:
        return {e.relpath for e in entries if rank(e) / 2**64 < fraction}
    validation: set[str] = set()
    for label in range(num_classes):
        members = sorted((e for e in entries if e.label == label), key=rank)
        n = len(members)
        k = round(n * fraction)
        if n >= 2:
            k = min(max(k, 1), n - 1)
        validation.update(e.relpath for e in members[:k])
    return validation


@dataclasses.dataclass(frozen=True)
class DatasetSplit:
    """Training and validation parts of an :class:`ImageFolderDataset`.

    Unpacks as ``train, validation = split``.

    Attributes
    ----------
    training, validation : ImageFolderDataset
        The two parts (same root and classes).
    validation_split : float
        The requested share of validation images.
    seed : int
        The hash seed.
    stratify : bool
        Whether class proportions were kept.

    Examples
    --------
    >>> split = ds.split(0.2, seed=123)
    >>> train, val = split
    >>> split.counts()["validation"]["acai"], split.validation_split
    (3, 0.2)
    >>> split.save("split.json")
    """

    training: ImageFolderDataset
    validation: ImageFolderDataset
    validation_split: float
    seed: int
    stratify: bool

    @property
    def validation_fraction(self) -> float:
        """Deprecated name of :attr:`validation_split`."""
        warnings.warn("`DatasetSplit.validation_fraction` is deprecated; use "
                      "`validation_split`.", DeprecationWarning, stacklevel=2)
        return self.validation_split

    def __iter__(self) -> Iterator[ImageFolderDataset]:
        return iter((self.training, self.validation))

    def to_dict(self) -> dict[str, Any]:
        """Return the split as plain JSON types (relative paths)."""
        return {
            "format": SPLIT_FORMAT,
            "version": 1,
            "root": self.training.root,
            "class_names": self.training.class_names,
            "validation_split": self.validation_split,
            "seed": self.seed,
            "stratify": self.stratify,
            "training": self.training.relpaths,
            "validation": self.validation.relpaths,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the split as JSON; :meth:`ImageFolderDataset.load_split` reads it back.

        Examples
        --------
        >>> ds.split(0.2, seed=1).save("run/split.json")
        >>> train, val = ds.load_split("run/split.json")
        >>> len(train), len(val)
        (72, 18)
        """
        _files.write_json(path, self.to_dict())

    def counts(self) -> Mapping[str, dict[str, int]]:
        """Images per class in each part."""
        return {"training": self.training.class_counts,
                "validation": self.validation.class_counts}
