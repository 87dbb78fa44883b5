"""Duplicates, train/test leakage and image-quality flags of an image folder, from the
fingerprints its file check took (the methods of :class:`~fruitclf.ImageFolderDataset`)."""

from __future__ import annotations

from .._validation import check_image_size
from .entries import Entry, FolderState
from .quality import (
    DuplicateGroup,
    Fingerprint,
    FingerprintIndex,
    LeakedPair,
    QualityIssue,
    QualityThresholds,
    find_duplicates,
    find_index_leakage,
    find_leakage,
    quality_issues,
)

__all__ = ["FolderFindings"]


class FolderFindings(FolderState):
    """Find what is wrong with the images of a folder; changes nothing."""

    def _fingerprinted(self, progress: bool | None) -> list[tuple[Entry, Fingerprint]]:
        """Every readable image with its fingerprint; checks the files not checked yet."""
        if any(e.path not in self._decoded.checked for e in self._entries):
            self.check(progress=progress)
        prints = self._decoded.prints
        return [(e, prints[e.path]) for e in self._entries if e.path in prints]

    def find_duplicates(
        self, *, threshold: float | None = None, progress: bool | None = None
    ) -> list[DuplicateGroup]:
        """Find groups of files that hold the same photo.

        *Exact* duplicates have the same bytes or the same pixels; *near* duplicates are the
        same photo resized, re-compressed, converted to another format, cropped by up to
        about 10% or made brighter or darker (see :mod:`fruitclf.data.quality`). The
        fingerprints come from :meth:`check`, which is run first if it has not been (a
        file is decoded once for both). Files that cannot be decoded are left out.

        Parameters
        ----------
        threshold : float, optional
            Fingerprint distance (cosine, 0-1) under which two images are near duplicates.
            By default :data:`~fruitclf.settings.NEAR_DUPLICATE_THRESHOLD`, or less in a
            folder of look-alike images such as digits (see
            :func:`~fruitclf.data.quality.resolve_threshold`). Lower finds fewer, closer
            copies.
        progress : bool, optional
            Progress bar of the check, if one runs; by default only on a terminal.

        Returns
        -------
        list of DuplicateGroup
            Sorted by first path. A group whose files are in different classes is a label
            conflict (:attr:`DuplicateGroup.conflicting`).

        Examples
        --------
        >>> raw = fruitclf.ImageFolderDataset("downloads/fruits")
        >>> for group in raw.find_duplicates(progress=False):
        ...     print(group.kind, group.relpaths)
        exact ['acai/01.jpg', 'acai/copy of 01.jpg']
        resized ['acai/02-small.png', 'acai/02.jpg']
        """
        found = self._fingerprinted(progress)
        names = self._class_names
        return find_duplicates([(e.path, e.relpath, names[e.label]) for e, _ in found],
                               [fp for _, fp in found], threshold=threshold)

    def find_leakage(
        self, other: FolderFindings, *, threshold: float | None = None,
        progress: bool | None = None,
    ) -> list[LeakedPair]:
        """Find images of ``other`` (a test folder) that are also in this dataset.

        A test image with a twin among the training images measures memory, not
        generalisation: the test accuracy counts it as a success it did not earn. Twins are
        exact or near duplicates as in :meth:`find_duplicates`.

        Parameters
        ----------
        other : ImageFolderDataset
            The test (or validation) folder.
        threshold : float, optional
            As for :meth:`find_duplicates`.
        progress : bool, optional
            Progress bars of the checks, if they run.

        Returns
        -------
        list of LeakedPair
            One per (training image, test image) pair, sorted by test path; ``relpath`` is
            relative to this dataset's root, ``test_relpath`` to ``other``'s.

        Examples
        --------
        >>> train = fruitclf.ImageFolderDataset("fruits/train")
        >>> test = fruitclf.ImageFolderDataset("fruits/test", class_names=train.class_names)
        >>> [(p.relpath, p.test_relpath, p.kind) for p in train.find_leakage(test)]
        [('acai/07.jpg', 'acai/t07.png', 'resized')]
        """
        if not isinstance(other, FolderFindings):
            raise TypeError(
                f"`other` must be an ImageFolderDataset. Received: {type(other).__name__}"
            )
        mine, theirs = self._fingerprinted(progress), other._fingerprinted(progress)
        return find_leakage([(e.path, e.relpath) for e, _ in mine], [fp for _, fp in mine],
                            [(e.path, e.relpath) for e, _ in theirs],
                            [fp for _, fp in theirs], threshold=threshold)

    def fingerprint_index(self, *, progress: bool | None = None) -> FingerprintIndex:
        """Compact fingerprints of these images, as a model keeps of its training images
        (:class:`~fruitclf.data.quality.FingerprintIndex`, 99 bytes an image).

        :func:`fruitclf.run` stores the index of the images it trained on in the model
        files, so that :meth:`fruitclf.LoadedModel.find_leakage` tells later which test
        images the model has seen. The fingerprints come from :meth:`check` (run first if it
        has not been); files that cannot be decoded are left out.

        Examples
        --------
        >>> len(ds.fingerprint_index(progress=False))
        90
        """
        return FingerprintIndex.from_prints(fp for _, fp in self._fingerprinted(progress))

    def find_in_index(self, index: FingerprintIndex, *, threshold: float | None = None,
                      progress: bool | None = None) -> list[LeakedPair]:
        """Find the images of this folder that a fingerprint index holds (the images a
        model was trained on; see :meth:`fruitclf.LoadedModel.find_leakage`).

        Copies are found as :meth:`find_leakage` finds them, less crops of more than a few
        percent taken from an indexed image (the index keeps the whole image only); the
        index keeps no file names, so ``path`` and ``relpath`` of each pair are ``""``.

        Parameters
        ----------
        index : FingerprintIndex
            See :meth:`fingerprint_index`.
        threshold : float, optional
            As for :meth:`find_duplicates`.
        progress : bool, optional
            Progress bar of the check, if it runs.

        Returns
        -------
        list of LeakedPair
            One per image found, sorted by its path.
        """
        if not isinstance(index, FingerprintIndex):
            raise TypeError(f"`index` must be a FingerprintIndex. Received: "
                            f"{type(index).__name__}")
        found = self._fingerprinted(progress)
        return find_index_leakage(index, [(e.path, e.relpath) for e, _ in found],
                                  [fp for _, fp in found], threshold=threshold)

    def quality_issues(
        self,
        *,
        thresholds: QualityThresholds | None = None,
        image_size: int | tuple[int, int] | None = None,
        progress: bool | None = None,
    ) -> list[QualityIssue]:
        """Flag images that are very dark or bright, blurry, nearly uniform, greyscale in
        a colour dataset, of extreme aspect ratio, or far smaller than the model input.

        Nothing is changed; the flags are hints to look at the images. Each comes with its
        score and the threshold it crossed (:class:`~fruitclf.data.quality.QualityThresholds`
        documents both).

        Parameters
        ----------
        thresholds : QualityThresholds, optional
            When to flag; default ``QualityThresholds()``.
        image_size : int or (height, width), optional
            The model input; without it there is no ``too_small`` flag.
        progress : bool, optional
            Progress bar of the check, if one runs.

        Returns
        -------
        list of QualityIssue
            Sorted by path; an image may have several.

        Examples
        --------
        >>> raw = fruitclf.ImageFolderDataset("downloads/fruits")
        >>> [(q.relpath, q.issue) for q in raw.quality_issues(progress=False)]
        [('acai/night.jpg', 'dark'), ('acai/night.jpg', 'low_information')]
        """
        if thresholds is not None and not isinstance(thresholds, QualityThresholds):
            raise TypeError(
                "`thresholds` must be a QualityThresholds. Received: "
                f"{type(thresholds).__name__}"
            )
        size = check_image_size(image_size) if image_size is not None else None
        found = self._fingerprinted(progress)
        return quality_issues([(e.path, e.relpath) for e, _ in found], [fp for _, fp in found],
                              thresholds=thresholds, image_size=size)

