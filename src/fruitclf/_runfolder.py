"""Run folders that belong to one run: ownership, a lock, and files that land together.

A run folder holds a marker, ``fruitclf-run.json``, that says which run wrote it (settings,
classes, spec) and whether it finished. :class:`RunFolder` refuses a folder holding another
run unless asked to overwrite (which removes only that run's files) or to resume it (which
needs the same settings), holds an exclusive lock while the run writes, and writes the final
files under temporary names first and renames them into place together at the end.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from . import _files, _ownership
from .exceptions import RunFolderError

logger = logging.getLogger("fruitclf")

MARKER = _ownership.RUN_MARKER
LOCK = _ownership.RUN_LOCK
#: Files written while training (checkpoints, history, split); kept by a resume.
TRAINING_FILES = tuple(f.name for f in _ownership.RUN_FILES if f.phase == "training")
#: Files written once at the end; written together.
FINAL_FILES = tuple(f.name for f in _ownership.RUN_FILES if f.phase == "final")
RUN_FILES = tuple(f.name for f in _ownership.RUN_FILES)
#: Settings that may differ when resuming (they do not change what is trained; a resume
#: reads the split it saved, so how it was made does not matter either).
RESUMABLE_CHANGES = frozenset({"epochs", "tta", "cache", "checkpoint_interval",
                               "group_duplicates"})


class RunFolder:
    """The folder of one run, held for the duration of a ``with`` block.

    Parameters
    ----------
    path : path-like
        The run folder (created if missing).
    identity : mapping
        What makes two runs the same run: settings, class names, spec.
    overwrite : bool
        Replace another run found in the folder.
    resume : bool
        Continue the run found in the folder (which must have the same identity).
    """

    def __init__(self, path: str | os.PathLike[str], identity: Mapping[str, Any], *,
                 overwrite: bool, resume: bool) -> None:
        if overwrite and resume:
            raise ValueError("Pass `overwrite` or `resume`, not both: one replaces the run in "
                             "the folder, the other continues it.")
        self.path = Path(path)
        self.identity = json.loads(json.dumps(dict(identity)))  # as the marker stores it
        self.overwrite = overwrite
        self.resume = resume
        self.previous: dict[str, Any] | None = None
        self._lock: IO[str] | None = None
        self._staged: list[tuple[Path, Path]] = []

    # ------------------------------------------------------------------ holding the folder

    def __enter__(self) -> RunFolder:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _files.write_error(self.path, exc) from None
        self._acquire()
        try:
            _files.remove_leftovers(self.path)
            self._claim()
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.discard_staged()
        self._release()

    def _acquire(self) -> None:
        self._lock = _files.exclusive_lock(
            self.path / LOCK, f"Run folder {str(self.path)!r} is in use by another fruitclf "
            "process ({holder}). Wait for it to finish, or choose another --out.",
            RunFolderError)

    def _release(self) -> None:
        _files.release_lock(self._lock, self.path / LOCK)  # no lock file left behind
        self._lock = None

    # ------------------------------------------------------------------ ownership

    def _claim(self) -> None:
        found = _ownership.names_in(self.path, RUN_FILES)
        if not found:
            return
        previous = self._read_marker()
        owned = _owned_names(previous)
        foreign = [name for name in found if name not in owned]
        if foreign:
            raise RunFolderError(
                f"{str(self.path)!r} holds {_listed(foreign)}, which no fruitclf run in this "
                "folder wrote; fruitclf never replaces a file it did not write. Move "
                f"{'it' if len(foreign) == 1 else 'them'} away, or choose another --out."
            )
        if self.resume:
            if previous is None:  # pragma: no cover - no marker means every file is foreign
                raise RunFolderError(f"Cannot resume in {str(self.path)!r}: no {MARKER}.")
            self._check_same_run(previous)
            self.previous = previous
            return
        if self.overwrite:
            self._remove_previous(found)
            return
        raise RunFolderError(
            f"{str(self.path)!r} holds {self._describe(previous, found)}. Pass --overwrite to "
            "replace it (removes that run's files), --resume to continue it, or choose "
            "another --out."
        )

    def _remove_previous(self, found: list[str]) -> None:
        """Remove the previous run's files (and exports made into the folder) and nothing
        else; the marker goes last, so a kill in between leaves a folder still owned."""
        exports = _ownership.exports_in(self.path)
        for target in exports:
            try:
                _ownership.remove_export(target)
            except FileExistsError as exc:
                raise RunFolderError(
                    f"Cannot replace the run in {str(self.path)!r}: its export "
                    f"{str(target)!r} holds files an export did not write ({exc}). Move them "
                    "away and run again."
                ) from None
        for name in sorted(found, key=lambda n: n == MARKER):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path / name)
        left = len(list(self.path.iterdir())) - 1  # the lock
        logger.info("Removed the previous run's files from %s%s.", self.path,
                    f" (and {len(exports)} exports)" if exports else "")
        if left > 0:
            logger.info("Left %d other entries in %s as they were.", left, self.path)

    def _read_marker(self) -> dict[str, Any] | None:
        marker = self.path / MARKER
        if not os.path.lexists(marker):
            return None
        try:
            payload = _files.read_json(marker, MARKER_LIMIT)
        except (OSError, ValueError) as exc:
            raise RunFolderError(f"Cannot read {str(marker)!r}: {_one_line(exc)}. It may not "
                                 "be fruitclf's: move it away, or choose another --out."
                                 ) from None
        if not isinstance(payload, dict) or payload.get("format") != "fruitclf-run":
            raise RunFolderError(f"{str(marker)!r} is not a fruitclf run marker: move it "
                                 "away, or choose another --out.")
        return payload

    @staticmethod
    def _describe(previous: Mapping[str, Any] | None, found: list[str]) -> str:
        if previous is None:
            return f"files of another run ({', '.join(found[:4])})"
        config = previous.get("identity", {}).get("config", {})
        state = "finished" if previous.get("state") == "complete" else "unfinished"
        return (f"another {state} run (spec {config.get('spec')!r}, "
                f"{len(previous.get('identity', {}).get('class_names', []))} classes, "
                f"started {previous.get('started', '?')})")

    def _check_same_run(self, previous: Mapping[str, Any]) -> None:
        before = previous.get("identity", {})
        after = self.identity
        changes = []
        for key in sorted(set(before) | set(after)):
            if key == "config":
                old, new = before.get(key, {}), after.get(key, {})
                changes += [f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
                            for k in sorted(set(old) | set(new))
                            if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k)]
            elif before.get(key) != after.get(key):
                changes.append(f"{key}: {_short(before.get(key))} -> {_short(after.get(key))}")
        if changes:
            raise RunFolderError(
                f"Cannot resume the run in {str(self.path)!r} with other settings ("
                + "; ".join(changes) + "). Use the same settings (only the number of epochs "
                "may change), or pass --overwrite to start again."
            )

    def complete_for(self, epochs: int) -> bool:
        """True when the run being resumed finished with at least ``epochs`` epochs."""
        if self.previous is None or self.previous.get("state") != "complete":
            return False
        if self.previous.get("stopped_early"):
            return True
        before = self.previous.get("identity", {}).get("config", {}).get("epochs")
        return isinstance(before, int) and before >= epochs

    def mark(self, state: str, files: Mapping[str, Path] | None = None, *,
             stopped_early: bool = False) -> None:
        """Write the marker: ``training`` at the start, ``complete`` after the last file."""
        payload = {
            "format": "fruitclf-run", "version": 2, "state": state,
            "owns": list(RUN_FILES),
            "started": (self.previous or {}).get("started") or _now(),
            "updated": _now(), "identity": self.identity,
            "files": {role: path.name for role, path in (files or {}).items()},
            "stopped_early": stopped_early,
        }
        _files.write_json(self.path / MARKER, payload)

    # ------------------------------------------------------------------ final files

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[Path]:
        """Yield a temporary path for the final file ``name``; :meth:`commit` moves it."""
        final = self.path / name
        tmp = _files.temporary_name(final)
        try:
            yield tmp
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise _files.write_error(final, exc) from None
        self._staged.append((tmp, final))

    def commit(self) -> list[Path]:
        """Move every staged file into place and remove final files this run did not write."""
        written = {final.name for _, final in self._staged}
        for name in FINAL_FILES:
            if name not in written:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path / name)
        moved = []
        for tmp, final in self._staged:
            try:
                os.replace(tmp, final)
            except OSError as exc:
                raise _files.write_error(final, exc) from None
            moved.append(final)
        self._staged = []
        return moved

    def discard_staged(self) -> None:
        """Remove staged files that were never committed (after a failure)."""
        for tmp, _ in self._staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self._staged = []


#: A marker larger than this is not one (a guard before reading an unknown file).
MARKER_LIMIT = 16 << 20


def _owned_names(marker: Mapping[str, Any] | None) -> set[str]:
    """The file names a run marker accounts for: the files it lists (version 2), or the
    files of a version-1 run plus the final files it recorded."""
    if marker is None:
        return set()
    owns = marker.get("owns")
    if isinstance(owns, list):
        names = {n for n in owns if isinstance(n, str) and n in RUN_FILES}
    else:
        files = marker.get("files")
        recorded = files.values() if isinstance(files, dict) else []
        names = set(_ownership.LEGACY_RUN_NAMES) | {n for n in recorded if n in RUN_FILES}
    return names | {MARKER}


def _listed(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _one_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def claim_output_folder(path: str | os.PathLike[str], files: tuple[_ownership.RunFile, ...],
                        describe: Mapping[str, Any]) -> None:
    """Make ``path`` a folder of ``files`` (the first is its marker), refusing, before
    anything is written, when it holds a file of those names that its marker does not
    account for. A folder whose marker lists the files is the command's own: they are
    replaced. ``describe`` goes into the marker (what wrote the folder)."""
    folder = Path(path)
    marker = folder / files[0].name
    fmt = marker.name.removesuffix(".json")
    found = _ownership.names_in(folder, [f.name for f in files])
    owned: set[str] = set()
    if os.path.lexists(marker):
        payload: Any = None
        with contextlib.suppress(OSError, ValueError):
            payload = _files.read_json(marker, MARKER_LIMIT)
        if isinstance(payload, dict) and payload.get("format") == fmt:
            listed = payload.get("owns")
            owned = {n for n in listed if isinstance(n, str)} if isinstance(listed, list) else set()
            owned.add(marker.name)
    foreign = [name for name in found if name not in owned]
    if foreign:
        raise RunFolderError(
            f"{str(folder)!r} holds {_listed(foreign)}, which fruitclf did not write there; "
            "it never replaces a file it did not write. Move "
            f"{'it' if len(foreign) == 1 else 'them'} away, or choose another --out.")
    _files.write_json(marker, {"format": fmt, "version": 1, "updated": _now(),
                               "owns": [f.name for f in files], **describe})
