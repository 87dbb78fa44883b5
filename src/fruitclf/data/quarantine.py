"""The quarantine: flagged files moved aside with a list that can always put them back.

A quarantine folder belongs to one image folder and holds, besides the moved files:

- ``fruitclf-quarantine.json``, the list: the image folder (``root``) and one entry per
  moved file (where it was, where it is, why, and its SHA-256);
- ``fruitclf-quarantine.journal`` while a ``clean`` or ``restore`` runs: one JSON line
  written (and flushed to disk) *before* each move, saying what is about to move, and one
  after. A process killed at any point leaves a journal from which the next ``clean`` or
  ``restore`` finds out where every file is, finishes the half-done move, and folds the
  journal into the list;
- ``.fruitclf-quarantine.lock``, held while one process works on the quarantine; a second
  ``clean`` or ``restore`` stops at once, naming the holder.

Ctrl-C or SIGTERM lets the current file finish, writes the list and stops. ``restore``
moves only files inside the quarantine whose checksum it recorded, only to places under the
recorded image folder, and names every file it cannot account for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import stat
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from .. import _files
from .._ownership import QUARANTINE_LIST, QUARANTINE_LOCK, check_outside
from ..exceptions import DatasetError
from .check import FileProblem

__all__ = ["CleanReport", "RestoredFiles", "remove_files", "restore_quarantine"]

logger = logging.getLogger("fruitclf")

MANIFEST_NAME = QUARANTINE_LIST
JOURNAL_NAME = "fruitclf-quarantine.journal"
#: A list or journal larger than this is refused before it is read (a guard against files
#: that are not fruitclf's).
_LIST_LIMIT = 256 << 20
_OWN_FILES = frozenset({MANIFEST_NAME, JOURNAL_NAME, QUARANTINE_LOCK})


@dataclasses.dataclass
class CleanReport:
    """What :meth:`ImageFolderDataset.remove_corrupted` did (or would do, in a dry run).

    Attributes
    ----------
    action : str
        ``"quarantine"`` or ``"delete"``.
    dry_run : bool
        True when nothing was changed.
    removed : list of FileProblem
        Files moved or deleted (or that would be, in a dry run).
    skipped : list of str
        Flagged files left alone because they changed or vanished since the check.
    quarantine : str or None
        The quarantine folder, when moving.
    manifest : str or None
        The manifest that :func:`fruitclf.restore_quarantine` reads.

    Examples
    --------
    >>> raw = fruitclf.ImageFolderDataset("downloads/fruits")
    >>> result = raw.remove_corrupted(dry_run=True)
    >>> for line in result.lines():
    ...     print(line)
    Would move downloads/fruits/acai/07.jpg: truncated JPEG file (...)
    Would move downloads/fruits/guarana/notes.png: not an image (text or HTML, ... bytes)
    Nothing was changed; the files would go to .../downloads/fruits-quarantine (...).
    """

    action: str
    dry_run: bool
    removed: list[FileProblem]
    skipped: list[str]
    quarantine: str | None
    manifest: str | None

    def lines(self) -> list[str]:
        """One line per file with the reason, as logged; a dry run that would move files
        ends with where they would go. ``No corrupted images found.`` when there were none."""
        if not self.removed and not self.skipped:
            return ["No corrupted images found."]
        verb = removal_verb(self.action == "delete", self.dry_run)
        out = [f"{verb} {p.path}: {p.message}" for p in self.removed]
        out += [f"Skipped (changed since the check): {path}" for path in self.skipped]
        if self.dry_run and self.removed and self.quarantine is not None:
            out.append(f"Nothing was changed; the files would go to {self.quarantine} (with "
                       "their folders, and a list to restore them from).")
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON types."""
        return {
            "action": self.action,
            "dry_run": self.dry_run,
            "removed": [p.to_dict() for p in self.removed],
            "skipped": list(self.skipped),
            "quarantine": self.quarantine,
            "manifest": self.manifest,
        }

    def __str__(self) -> str:
        return "\n".join(self.lines())


class RestoredFiles(list[str]):
    """The original paths :func:`restore_quarantine` restored (or would restore), a list.

    Attributes
    ----------
    unaccounted : list of str
        Files in the quarantine that its list does not name: left where they are.

    Examples
    --------
    >>> restored = fruitclf.restore_quarantine("data/train-quarantine")  # doctest: +SKIP
    >>> list(restored), restored.unaccounted  # doctest: +SKIP
    (['data/train/apple/broken.jpg'], [])
    """

    def __init__(self, paths: Iterable[str] = (), unaccounted: Iterable[str] = ()) -> None:
        super().__init__(paths)
        self.unaccounted = list(unaccounted)


def removal_verb(delete: bool, dry_run: bool) -> str:
    """What happens to a removed file, for the lines that list them: moved or deleted."""
    if delete:
        return "Would delete" if dry_run else "Deleted"
    return "Would move" if dry_run else "Moved"


def same_file(path: str, size: int, mtime_ns: int) -> bool:
    """True when ``path`` still has the size and modification time it had when read."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_size == size and st.st_mtime_ns == mtime_ns


def _unchanged(problem: FileProblem) -> bool:
    if problem.reason not in ("unreadable", "broken_link"):
        return same_file(problem.path, problem.size, problem.mtime_ns)
    try:
        st = os.lstat(problem.path) if problem.reason == "broken_link" else os.stat(problem.path)
    except OSError:
        return os.path.lexists(problem.path)
    return st.st_size == problem.size and st.st_mtime_ns == problem.mtime_ns


def _sha256(path: str | os.PathLike[str]) -> str | None:
    """What identifies the file a move carries: the SHA-256 of its bytes; for a link, of its
    target path; for a FIFO, socket or device, its kind; for a file that cannot be read, its
    size and modification time (a move keeps both). None when it is gone."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return "link:" + hashlib.sha256(os.readlink(path).encode()).hexdigest()
    if not stat.S_ISREG(st.st_mode):
        return f"special:{stat.S_IFMT(st.st_mode):o}"
    digest = hashlib.sha256()
    try:
        with _files.open_regular(path) as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return f"stat:{st.st_size}:{st.st_mtime_ns}"
    return digest.hexdigest()


def default_quarantine(root: str | os.PathLike[str]) -> Path:
    """The quarantine folder used when none is given: ``<root>-quarantine`` beside the root."""
    root_path = Path(root).absolute()
    return root_path.with_name(f"{root_path.name}-quarantine")


# --------------------------------------------------------------------------------------------
# The list and its journal
# --------------------------------------------------------------------------------------------


class _Quarantine:
    """A quarantine folder held by this process: its list, its journal, its lock."""

    def __init__(self, qdir: Path) -> None:
        self.qdir = qdir
        self.manifest_path = qdir / MANIFEST_NAME
        self.journal_path = qdir / JOURNAL_NAME
        self.manifest: dict[str, Any] = {}
        self._lock: IO[str] | None = None
        self._journal: IO[str] | None = None
        self.dirty = False  # the list in memory differs from the one on disk
        self._dropped: set[str] = set()  # struck from the list, removed at the next read

    @contextlib.contextmanager
    def held(self, *, create: bool) -> Iterator[_Quarantine]:
        """Lock the folder, settle what a killed process left, and fold the journal into the
        list on the way out."""
        if create:
            try:
                self.qdir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _files.write_error(self.qdir, exc) from None
        self._lock = _files.exclusive_lock(
            self.qdir / QUARANTINE_LOCK,
            f"Quarantine {str(self.qdir)!r} is in use by another fruitclf process "
            "({holder}). Wait for it to finish, then run the command again.", DatasetError)
        try:
            self.manifest = self._read_manifest()
            if os.path.lexists(self.journal_path):
                self._replay_journal()
                self.compact()
            yield self
        finally:
            try:
                self._close_journal()
                if self.dirty:
                    self.compact()
            finally:
                _files.release_lock(self._lock, self.qdir / QUARANTINE_LOCK)
                self._lock = None

    @property
    def entries(self) -> list[dict[str, Any]]:
        """The list's entries; those struck by :meth:`drop` are removed here, once for all
        the drops since the last read (a restore strikes one entry per file it moves)."""
        entries: list[dict[str, Any]] = self.manifest.setdefault("entries", [])
        if self._dropped:
            entries[:] = [e for e in entries
                          if not (isinstance(e, dict) and e.get("quarantined") in self._dropped)]
            self._dropped.clear()
        return entries

    def _read_manifest(self) -> dict[str, Any]:
        path = self.manifest_path
        if not os.path.lexists(path):
            return {"format": "fruitclf-quarantine", "version": 2, "entries": []}
        try:
            manifest = _files.read_json(path, _LIST_LIMIT)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"Cannot read quarantine manifest {str(path)!r}: {exc}") from None
        if (not isinstance(manifest, dict) or not isinstance(manifest.get("entries"), list)
                or manifest.get("format", "fruitclf-quarantine") != "fruitclf-quarantine"):
            raise DatasetError(f"{str(path)!r} is not a fruitclf quarantine manifest.")
        return manifest

    def _replay_journal(self) -> None:
        """Apply what a killed clean or restore journaled after the list was last written;
        a move journaled but not confirmed is finished or undone from where the file is."""
        path = self.journal_path
        if path.stat().st_size > _LIST_LIMIT:
            raise DatasetError(f"{str(path)!r} is too large to be a fruitclf journal.")
        pending: dict[str, dict[str, Any]] = {}
        listed = {e.get("quarantined") for e in self.entries if isinstance(e, dict)}
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # the torn last line of a killed write: its move never started
            if not isinstance(record, dict) or not isinstance(record.get("quarantined"), str):
                continue
            key = record["quarantined"]
            op = record.get("op")
            if op in ("move", "restore"):
                pending[key] = record
            elif op == "moved":
                entry = pending.pop(key, None)
                if entry is not None and key not in listed:
                    self.entries.append(_entry(entry))
                    listed.add(key)
            elif op == "abandoned":
                pending.pop(key, None)
            elif op == "restored":
                pending.pop(key, None)
                self.drop(key)
                listed.discard(key)
        for key, record in pending.items():
            self._settle(key, record, listed)

    def _settle(self, key: str, record: dict[str, Any], listed: set[Any]) -> None:
        """Finish a move that a killed process started: the file is at one end or the other
        (or, between the hard link and the unlink of a move, at both)."""
        source, target = ((record["original"], str(self.qdir / key)) if record["op"] == "move"
                          else (str(self.qdir / key), record["original"]))
        at_source, at_target = os.path.lexists(source), os.path.lexists(target)
        if at_source and at_target and _same_inode(source, target):
            os.unlink(source)
            at_source = False
        moved = at_target and not at_source
        if record["op"] == "move":
            if moved and key not in listed:
                self.entries.append(_entry(record))
                listed.add(key)
                logger.warning("Finished a move that a stopped clean began: %s", source)
        elif moved:
            self.drop(key)
            logger.warning("Finished a restore that a stopped restore began: %s", target)

    def drop(self, key: str) -> None:
        """Strike the entry of the quarantined file ``key`` from the list."""
        self.dirty = True
        self._dropped.add(key)

    def compact(self) -> None:
        """Write the list, then remove the journal it now holds."""
        self.manifest["entries"] = self.entries  # applies the pending drops
        self.manifest["version"] = max(2, int(self.manifest.get("version", 2)))
        self.manifest["format"] = "fruitclf-quarantine"
        _files.write_json(self.manifest_path, self.manifest)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.journal_path)
        self.dirty = False

    def journal(self, record: dict[str, Any]) -> None:
        """Append one line to the journal and flush it to disk before going on."""
        self.dirty = True
        if self._journal is None:
            try:
                self._journal = open(self.journal_path, "a", encoding="utf-8")  # noqa: SIM115
            except OSError as exc:
                raise _files.write_error(self.journal_path, exc) from None
        try:
            self._journal.write(json.dumps(record) + "\n")
            self._journal.flush()
            os.fsync(self._journal.fileno())
        except OSError as exc:
            raise _files.write_error(self.journal_path, exc) from None

    def _close_journal(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None


def _entry(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "op"}


def _same_inode(a: str, b: str) -> bool:
    try:
        first, second = os.lstat(a), os.lstat(b)
    except OSError:
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


# --------------------------------------------------------------------------------------------
# Moving files in
# --------------------------------------------------------------------------------------------


def remove_files(
    problems: Iterable[FileProblem],
    *,
    root: str,
    quarantine: str | os.PathLike[str] | None,
    delete: bool,
    dry_run: bool,
) -> CleanReport:
    """Move (or delete) exactly the flagged files; see ``ImageFolderDataset.remove_corrupted``."""
    root_path = Path(root).resolve()
    qdir: Path | None = None
    if not delete:
        qdir = Path(quarantine) if quarantine is not None else default_quarantine(root)
        check_outside(qdir, {"image folder": root}, "quarantine")
    report = CleanReport(action="delete" if delete else "quarantine", dry_run=dry_run,
                         removed=[], skipped=[], quarantine=str(qdir) if qdir else None,
                         manifest=str(qdir / MANIFEST_NAME) if qdir else None)
    problems = list(problems)
    if dry_run or not problems:
        for problem in problems:
            _take(problem, report, lambda p: None)
        return report
    with _files.deferred_interrupts() as stop:
        if qdir is None:
            _remove_each(problems, report, lambda p: os.unlink(p.path), stop)
        else:
            with _Quarantine(qdir).held(create=True) as held:
                _claim_root(held, root_path)
                _remove_each(problems, report, lambda p: _quarantine_one(held, p), stop)
    return report


def _remove_each(problems: Iterable[FileProblem], report: CleanReport,
                 act: Any, stop: _files.Interrupts) -> None:
    for problem in problems:
        if stop.requested:
            logger.warning("Stopped after %d files; the quarantine list is complete.",
                           len(report.removed))
            raise KeyboardInterrupt(f"stopped after {len(report.removed)} files")
        _take(problem, report, act)


def _take(problem: FileProblem, report: CleanReport, act: Any) -> None:
    if not _unchanged(problem):
        logger.warning("Skipped (changed since the check): %s", problem.path)
        report.skipped.append(problem.path)
        return
    act(problem)
    report.removed.append(problem)
    logger.info("%s %s: %s", removal_verb(report.action == "delete", report.dry_run),
                problem.path, problem.message)


def _claim_root(held: _Quarantine, root: Path) -> None:
    """A quarantine serves one image folder: its list records which."""
    recorded = held.manifest.get("root")
    if recorded and held.entries and os.path.abspath(recorded) != str(root):
        raise DatasetError(
            f"Quarantine {str(held.qdir)!r} holds files of another image folder, "
            f"{recorded!r}. Pass another --quarantine for {str(root)!r}.")
    if recorded != str(root):
        held.manifest["root"] = str(root)
        held.compact()  # the root is on disk before the first move


def _quarantine_one(held: _Quarantine, problem: FileProblem) -> None:
    """Journal the move, move the file under a name nothing else has, confirm."""
    target = _free_name(held.qdir, problem.relpath)
    key = target.relative_to(held.qdir).as_posix()
    record = {"op": "move", "original": str(Path(problem.path).absolute()),
              "quarantined": key, "reason": problem.message, "code": problem.reason,
              "sha256": _sha256(problem.path)}
    held.journal(record)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        _files.move_no_replace(problem.path, target)
    except FileExistsError:  # appeared since the name was chosen: journal the next name
        held.journal({"op": "abandoned", "quarantined": key})
        _quarantine_one(held, problem)
        return
    held.journal({"op": "moved", "quarantined": key})
    held.entries.append(_entry(record))


def _free_name(qdir: Path, relpath: str) -> Path:
    target = qdir / relpath
    rel = Path(relpath)
    for _ in range(100):
        if not os.path.lexists(target):
            return target
        target = (qdir / rel).with_name(f"{rel.stem}.{time.time_ns()}{rel.suffix}")
    raise DatasetError(f"Cannot find a free name for {relpath!r} in {str(qdir)!r}.")


# --------------------------------------------------------------------------------------------
# Moving files back
# --------------------------------------------------------------------------------------------


def restore_quarantine(
    quarantine: str | os.PathLike[str], *, dry_run: bool = False, trust_list: bool = False
) -> RestoredFiles:
    """Move quarantined files back to where they were found.

    Nothing is ever overwritten: if a file now exists at an original path, or two
    quarantined files belong at the same path, nothing is moved and the error names both
    files. Only files inside the quarantine whose SHA-256 the list recorded are moved, and
    only to places under the image folder the list records, which must still exist. Each
    move is journaled before it starts, so a restore that fails halfway (a permission error,
    a kill) is finished by running it again. An entry whose file was taken out of the
    quarantine by hand is dropped with a warning; a file in the quarantine that the list
    does not name is left there and named (``RestoredFiles.unaccounted``).

    Parameters
    ----------
    quarantine : path-like
        A folder written by :meth:`ImageFolderDataset.remove_corrupted`.
    dry_run : bool, default=False
        Only report what would be restored.
    trust_list : bool, default=False
        Restore entries that have no checksum (lists written by hand or by old versions).
        The rules on where files come from and go to still hold.

    Returns
    -------
    RestoredFiles
        The original paths restored (or that would be), a list.

    Raises
    ------
    DatasetError
        If the folder has no list, the list names a file outside the quarantine or a place
        outside its image folder, an entry has no checksum (without ``trust_list``), the
        image folder is gone, a quarantined file changed since it was moved, a file exists
        at an original path, two files belong at one path, another process holds the
        quarantine, or a move fails (the message says how many were restored and how to
        finish).

    Examples
    --------
    >>> fruitclf.restore_quarantine("data/train-quarantine")  # doctest: +SKIP
    ['data/train/apple/broken.jpg']
    """
    qdir = Path(quarantine)
    if not os.path.lexists(qdir / MANIFEST_NAME) and not os.path.lexists(qdir / JOURNAL_NAME):
        raise DatasetError(
            f"No quarantine manifest in {str(qdir)!r} (expected {MANIFEST_NAME}). "
            "Pass the folder that `fruitclf clean` moved files into."
        )
    with _files.deferred_interrupts() as stop, _Quarantine(qdir).held(create=False) as held:
        todo, problems = _plan_restore(held, trust_list)
        if problems:
            held.dirty = False  # entries found gone are dropped by the restore that runs
            shown = problems[:5] + ([f"and {len(problems) - 5} more"] if len(problems) > 5
                                    else [])
            raise DatasetError(f"Cannot restore from {str(qdir)!r}: " + "; ".join(shown)
                               + ". Nothing was changed.")
        listed = {str(e["quarantined"]) for e in held.entries if isinstance(e, dict)}
        unaccounted = _unaccounted(qdir, listed)
        restored = RestoredFiles((str(e["original"]) for e in todo), unaccounted)
        if not dry_run:
            for done, entry in enumerate(todo):
                if stop.requested:
                    raise KeyboardInterrupt(f"stopped after {done} files")
                _restore_one(held, entry, done, len(todo))
    for path in restored.unaccounted:
        logger.warning("Not in the quarantine list, left where it is: %s", path)
    return restored


def _restore_one(held: _Quarantine, entry: dict[str, Any], done: int, total: int) -> None:
    key, original = str(entry["quarantined"]), str(entry["original"])
    source = held.qdir / key
    held.journal({"op": "restore", "quarantined": key, "original": original})
    try:
        Path(original).parent.mkdir(parents=True, exist_ok=True)
        _files.move_no_replace(source, original)
    except OSError as exc:
        raise DatasetError(
            f"Cannot restore {str(source)!r} to {original!r}: {exc.strerror or exc}. "
            f"Restored {done} of {total}; fix the cause and run restore again to finish."
        ) from None
    held.journal({"op": "restored", "quarantined": key})
    held.drop(key)
    logger.info("Restored: %s", original)


def _inside(path: str, folder: str) -> bool:
    """True when ``path`` is strictly below ``folder``, the links of its folders followed
    (not of its last part: a move carries a link itself)."""
    if not os.path.isabs(path) or ".." in Path(path).parts:
        return False
    head, tail = os.path.split(path)
    while head and not os.path.lexists(head):
        head, name = os.path.split(head)
        tail = os.path.join(name, tail)
    real = os.path.join(os.path.realpath(head), tail)
    base = os.path.realpath(folder).rstrip(os.sep) + os.sep
    return real.startswith(base)


def _plan_restore(held: _Quarantine, trust_list: bool) -> tuple[list[dict[str, Any]],
                                                                 list[str]]:
    """The entries to move back and the problems that stop a restore; entries whose file
    is no longer in the quarantine are dropped from the list."""
    qdir, root = held.qdir, held.manifest.get("root")
    problems: list[str] = []
    if held.entries and not (isinstance(root, str) and os.path.isdir(root)):
        return [], [f"the image folder the files came from, {root!r}, does not exist (was it "
                    "moved or renamed?). Put it back, or move the files by hand"]
    todo: list[dict[str, Any]] = []
    claimed: dict[str, Path] = {}
    for entry in list(held.entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("original"), str) or (
                not isinstance(entry.get("quarantined"), str)):
            problems.append(f"damaged list entry {str(entry)[:100]}")
            continue
        source, original = qdir / entry["quarantined"], entry["original"]
        if not _inside(os.path.abspath(source), os.path.abspath(qdir)) or (
                Path(entry["quarantined"]).name in _OWN_FILES):
            problems.append(f"the entry for {original[:200]!r} names "
                            f"{entry['quarantined'][:200]!r}, which is not inside the quarantine")
            continue
        if not _inside(original, str(root)):
            problems.append(f"{original[:200]!r} is not inside the image folder {root!r} the "
                            "list records")
            continue
        digest = entry.get("sha256")
        if digest is None and not trust_list:
            problems.append(f"the entry for {original[:200]!r} has no checksum (pass "
                            "--trust-list to restore entries without one)")
            continue
        if not os.path.lexists(source):
            if os.path.lexists(original) and (digest is None or _sha256(original) == digest):
                logger.info("Already restored: %s", original)
            else:
                logger.warning("No longer in the quarantine, dropped from its manifest: %s", source)
            held.drop(entry["quarantined"])
            continue
        if digest is not None and _sha256(source) != digest:
            problems.append(f"{str(source)!r} changed since it was quarantined")
        if os.path.lexists(original):
            problems.append(f"{original!r} exists, so {str(source)!r} cannot go back there "
                            "(move one of them away)")
        if original in claimed:
            problems.append(f"both {str(claimed[original])!r} and {str(source)!r} belong at "
                            f"{original!r} (move one of them out of the quarantine)")
        claimed[original] = source
        todo.append(entry)
    return todo, problems


def _unaccounted(qdir: Path, listed: set[str]) -> list[str]:
    """Files (and links) in the quarantine that its list does not name."""
    found = []
    for folder, dirs, files in os.walk(qdir):
        dirs.sort()
        for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = Path(folder) / name
            key = path.relative_to(qdir).as_posix()
            if key in _OWN_FILES or _files.is_leftover(name) or key in listed:
                continue
            found.append(str(path))
    return found
