"""Reproducible training/validation splits of an image folder, saved and reloaded as JSON."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .. import _files
from ..exceptions import DatasetError
from ..settings import SETTINGS
from .entries import Entry, FolderState

if TYPE_CHECKING:
    from .folder import ImageFolderDataset

__all__ = ["SPLIT_FORMAT", "DatasetSplit", "FolderSplits", "validation_relpaths"]

SPLIT_FORMAT = "fruitclf-split"

logger = logging.getLogger("fruitclf")


def validation_relpaths(entries: Sequence[Entry], num_classes: int, fraction: float, seed: int,
                        stratify: bool, groups: Sequence[Sequence[str]] = ()) -> set[str]:
    """The relative paths that go to validation; see :meth:`ImageFolderDataset.split`.

    ``groups`` are relative paths that must stay on one side (copies of one photo).
    """
    if fraction == 0.0:
        return set()

    def rank(relpath: str) -> int:
        digest = hashlib.blake2b(f"{seed}\0{relpath}".encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "big")

    if not stratify:
        validation = {e.relpath for e in entries if rank(e.relpath) / 2**64 < fraction}
    else:
        validation = set()
        for label in range(num_classes):
            members = sorted((e.relpath for e in entries if e.label == label), key=rank)
            n = len(members)
            k = round(n * fraction)
            if n >= 2:
                k = min(max(k, 1), n - 1)
            validation.update(members[:k])
    return _together(entries, validation, groups, rank) if groups else validation


def _together(entries: Sequence[Entry], validation: set[str],
              groups: Sequence[Sequence[str]], rank: Callable[[str], int]) -> set[str]:
    """``validation`` with each group on the side of its first-ranked member, then any class
    left without a training image given back its groups, so that it still trains."""
    validation = set(validation)
    known = {e.relpath for e in entries}
    placed = [[p for p in group if p in known] for group in groups]
    placed = [group for group in placed if len(group) > 1]
    for group in placed:
        if min(group, key=rank) in validation:
            validation.update(group)
        else:
            validation.difference_update(group)
    label = {e.relpath: e.label for e in entries}
    trained = {label[e.relpath] for e in entries if e.relpath not in validation}
    for group in placed:
        if any(label[p] not in trained for p in group):
            validation.difference_update(group)
            trained.update(label[p] for p in group)
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
    group_duplicates : bool
        Whether copies of one photo were kept on one side (False for a split file written
        before this choice existed).

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
    group_duplicates: bool = False

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
            "group_duplicates": self.group_duplicates,
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


class FolderSplits(FolderState):
    """Split a folder into training and validation, reproducibly, and reload a split."""

    def split(
        self,
        validation_split: float = 0.2,
        *,
        seed: int = 123,
        stratify: bool = True,
        group_duplicates: bool = True,
        validation_fraction: float | None = None,
    ) -> DatasetSplit:
        """Split into training and validation, reproducibly.

        Each file gets a rank from a hash of ``seed`` and its relative path, so the split
        depends only on the file names and the seed: the same on every machine and run. With
        ``stratify=True`` each class contributes ``round(n * validation_split)`` images
        (at least one, and at least one left for training, when it has two or more), and
        adding a file moves at most one existing file of its class between the subsets. With
        ``stratify=False`` each file's subset depends on its own hash alone, so adding files
        never moves existing ones; class proportions are then only approximate.

        With ``group_duplicates=True`` (the default) copies of one photo, as
        :meth:`find_duplicates` groups them, go to one side together: the side of the member
        that ranks first, or training when a class would otherwise keep no training image.
        A photo in training and its resized or mirrored copy in validation would make the
        validation accuracy measure memory, not generalisation. The split then depends on
        the images' content as well as their names and needs the fingerprints of
        :meth:`check` (run first if it has not been; a file is decoded once); the groups'
        files are logged.

        Parameters
        ----------
        validation_split : float, default=0.2
            Share of images for validation, 0 to 0.9 (:data:`fruitclf.settings.SETTINGS`);
            0 gives an empty validation part. The same name as :func:`fruitclf.run`'s and
            the CLI's ``--validation-split``.
        seed : int, default=123
            Seed of the hash.
        stratify : bool, default=True
            Keep class proportions.
        group_duplicates : bool, default=True
            Keep each group of duplicates on one side.
        validation_fraction : float, optional
            Deprecated spelling of ``validation_split``.

        Returns
        -------
        DatasetSplit
            Unpacks as ``train, validation``.

        Raises
        ------
        DatasetError
            If the dataset cannot train (fewer than 2 classes, an empty class folder).

        Examples
        --------
        >>> train, val = ds.split(0.2, seed=123)
        >>> len(train), len(val)
        (72, 18)
        """
        if validation_fraction is not None:
            warnings.warn("`validation_fraction` is deprecated; pass `validation_split` (the "
                          "name run() and the CLI use).", DeprecationWarning, stacklevel=2)
            validation_split = validation_fraction
        fraction = SETTINGS["validation_split"].check(validation_split)
        seed = SETTINGS["seed"].check(seed)
        self.require_trainable()
        groups: list[list[str]] = []
        if group_duplicates and fraction > 0:
            dataset = cast("ImageFolderDataset", self)
            groups = [g.relpaths for g in dataset.find_duplicates(progress=False)]
        validation = validation_relpaths(self._entries, self.num_classes, fraction, seed,
                                         stratify, groups)
        if groups:
            logger.info("Kept %d group%s of copies (%d files) on one side of the split.",
                        len(groups), "" if len(groups) == 1 else "s",
                        sum(len(g) for g in groups))
        return self._make_split(validation, fraction, seed, stratify, group_duplicates)

    def _make_split(
        self, validation: set[str], fraction: float, seed: int, stratify: bool,
        group_duplicates: bool = False,
    ) -> DatasetSplit:
        train = [e for e in self._entries if e.relpath not in validation]
        val = [e for e in self._entries if e.relpath in validation]
        if fraction > 0 and val:
            held, trained = {e.label for e in val}, {e.label for e in train}
            unseen = [name for label, name in enumerate(self._class_names)
                      if label in trained and label not in held]
            if unseen:
                logger.warning(
                    "The validation split (%g) has no image of %s: %s too few images to "
                    "hold one out. Validation accuracy does not measure %s; add photos.",
                    fraction, ", ".join(repr(n) for n in unseen),
                    "it has" if len(unseen) == 1 else "they have",
                    "it" if len(unseen) == 1 else "them")
        view = type(self)._from_entries  # views of the ImageFolderDataset this part is of
        return DatasetSplit(
            training=cast("ImageFolderDataset", view(self, train)),
            validation=cast("ImageFolderDataset", view(self, val)),
            validation_split=fraction,
            seed=seed,
            stratify=stratify,
            group_duplicates=group_duplicates,
        )

    def load_split(self, path: str | os.PathLike[str]) -> DatasetSplit:
        """Rebuild a split saved with :meth:`DatasetSplit.save`.

        Raises
        ------
        DatasetError
            If the file is not a split of this dataset (other classes, or files that are
            not in the folder any more).
        """
        try:
            payload = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"Cannot read split file {os.fspath(path)!r}: {exc}") from exc
        if not isinstance(payload, dict) or payload.get("format") != SPLIT_FORMAT:
            raise DatasetError(f"{os.fspath(path)!r} is not a fruitclf split file.")
        if payload["class_names"] != self._class_names:
            raise DatasetError(
                f"Split file {os.fspath(path)!r} has classes {payload['class_names']!r}, "
                f"this dataset has {self._class_names!r}."
            )
        known = {e.relpath for e in self._entries}
        listed = set(payload["training"]) | set(payload["validation"])
        missing = sorted(listed - known)
        if missing:
            raise DatasetError(
                f"Split file {os.fspath(path)!r} lists {len(missing)} files not in "
                f"{self._root!r}, e.g. {missing[0]!r}."
            )
        new = sorted(known - listed)
        if new:
            logger.info("%d files are not in the split file; they go to training.", len(new))
        key = "validation_split" if "validation_split" in payload else "validation_fraction"
        return self._make_split(set(payload["validation"]), float(payload[key]),
                                int(payload["seed"]), bool(payload["stratify"]),
                                bool(payload.get("group_duplicates", False)))

