"""Removing what a check or the duplicate finder flagged from an image folder: moved into
the quarantine (or deleted when asked), never anything else (the methods of
:class:`~fruitclf.ImageFolderDataset`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from . import check as _check
from . import quarantine as _quarantine
from .check import CheckReport
from .findings import FolderFindings
from .quality import DuplicateGroup
from .quarantine import CleanReport

__all__ = ["FolderCleaning"]

logger = logging.getLogger("fruitclf")


def _one_destination(quarantine: str | os.PathLike[str] | None, delete: bool) -> None:
    """Refuse a quarantine folder together with ``delete=True`` (before any work)."""
    if delete and quarantine is not None:
        raise ValueError(
            "Pass either `quarantine` (move files there) or `delete=True`, not both. "
            f"Received: quarantine={os.fspath(quarantine)!r}, delete=True"
        )


class FolderCleaning(FolderFindings):
    """Move or delete the flagged files of a folder, with a list to restore them."""

    def remove_duplicates(
        self,
        groups: Sequence[DuplicateGroup] | None = None,
        *,
        quarantine: str | os.PathLike[str] | None = None,
        delete: bool = False,
        dry_run: bool = False,
    ) -> CleanReport:
        """Keep one file of each duplicate group; move (by default) or delete the others.

        The file kept is the one with the most pixels (then the largest file, then the first
        path). Groups whose copies are in different classes are left alone with a warning:
        which label is right is yours to decide. Moves use the same quarantine folder and
        manifest as :meth:`remove_corrupted`, so :func:`fruitclf.restore_quarantine` puts
        every file back; a file changed since the check is skipped.

        Parameters
        ----------
        groups : sequence of DuplicateGroup, optional
            Groups of :meth:`find_duplicates` of this dataset; by default it is run.
        quarantine, delete, dry_run
            As for :meth:`remove_corrupted`.

        Returns
        -------
        CleanReport
            The copies moved or deleted (or that would be, in a dry run).

        Examples
        --------
        >>> raw = fruitclf.ImageFolderDataset("downloads/fruits")
        >>> for line in raw.remove_duplicates(dry_run=True).lines()[:-1]:
        ...     print(line.replace("Would move downloads/fruits/", ""))
        acai/copy of 01.jpg: exact duplicate of acai/01.jpg
        acai/02-small.png: resized duplicate of acai/02.jpg
        """
        _one_destination(quarantine, delete)
        groups = self.find_duplicates() if groups is None else groups
        known = {e.path: e for e in self._entries}
        surplus: list[_check.FileProblem] = []
        for group in groups:
            foreign = [p for p in group.paths if p not in known]
            if foreign:
                raise ValueError(
                    f"`groups` lists files that are not in this dataset, e.g. {foreign[0]!r}. "
                    "Pass the groups of this dataset's own find_duplicates()."
                )
            if group.conflicting:
                logger.warning("Left alone, the copies are in different classes (decide which "
                               "label is right): %s", ", ".join(group.paths))
                continue
            surplus += self._surplus_copies(group)
        return self._remove(surplus, quarantine, delete, dry_run)

    def _remove(self, files: Sequence[_check.FileProblem],
                quarantine: str | os.PathLike[str] | None, delete: bool, dry_run: bool
                ) -> CleanReport:
        """Move or delete ``files`` (unchanged since read) and drop them from this dataset."""
        result = _quarantine.remove_files(files, root=self._root, quarantine=quarantine,
                                     delete=delete, dry_run=dry_run)
        if not dry_run:
            gone = {p.path for p in result.removed}
            self._entries = [e for e in self._entries if e.path not in gone]
        return result

    def _surplus_copies(self, group: DuplicateGroup) -> list[_check.FileProblem]:
        prints = self._decoded.prints

        def rank(path: str) -> tuple[int, int]:
            fp = prints.get(path)
            if fp is None:
                return (0, 0)
            return (-fp.measures.width * fp.measures.height, -fp.file_size)

        order = sorted(range(len(group.paths)), key=lambda i: rank(group.paths[i]))
        keep, kept = group.relpaths[order[0]], prints.get(group.paths[order[0]])
        if kept is None or not _quarantine.same_file(group.paths[order[0]], kept.file_size,
                                                kept.mtime_ns):
            logger.warning("Left alone, the copy to keep changed since the check: %s",
                           group.paths[order[0]])
            return []
        return [
            _check.FileProblem(
                group.paths[i], group.relpaths[i], "duplicate",
                f"{group.kind} duplicate of {keep}",
                prints[group.paths[i]].file_size if group.paths[i] in prints else -1,
                prints[group.paths[i]].mtime_ns if group.paths[i] in prints else -1,
            )
            for i in order[1:]
        ]

    def remove_corrupted(
        self,
        report: CheckReport | None = None,
        *,
        quarantine: str | os.PathLike[str] | None = None,
        delete: bool = False,
        dry_run: bool = False,
    ) -> CleanReport:
        """Move (by default) or delete the files a check flagged.

        Only files listed in ``report`` are touched, and only if they have not changed since
        the check. Moved files keep their path relative to the root inside the quarantine
        folder, which gets a JSON manifest that :func:`fruitclf.restore_quarantine` reads.
        Each file is logged as ``Moved <path>: <reason>`` (``Deleted ...`` with
        ``delete=True``). The removed files are dropped from this dataset.

        Parameters
        ----------
        report : CheckReport, optional
            A report of :meth:`check`; by default a new check is run.
        quarantine : path-like, optional
            Where to move the files; default ``<root>-quarantine`` beside the root. Must be
            outside the root.
        delete : bool, default=False
            Delete instead of moving.
        dry_run : bool, default=False
            Change nothing; report what would be done.

        Returns
        -------
        CleanReport

        Examples
        --------
        >>> raw = fruitclf.ImageFolderDataset("downloads/fruits")
        >>> print(raw.remove_corrupted(dry_run=True))
        Would move downloads/fruits/acai/07.jpg: truncated JPEG file (...)
        Would move downloads/fruits/guarana/notes.png: not an image (text or HTML, ... bytes)
        Nothing was changed; the files would go to .../downloads/fruits-quarantine (...).
        """
        _one_destination(quarantine, delete)
        if report is None:
            report = self.check()
        known = {e.path for e in self._entries}
        foreign = [p.path for p in report.problems if p.path not in known]
        if foreign:
            raise ValueError(
                f"`report` lists files that are not in this dataset, e.g. {foreign[0]!r}. "
                "Pass the report of this dataset's own check()."
            )
        return self._remove(report.problems, quarantine, delete, dry_run)

