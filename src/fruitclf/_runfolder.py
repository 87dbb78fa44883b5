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
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from . import _files
from .exceptions import RunFolderError

logger = logging.getLogger("fruitclf")

MARKER = "fruitclf-run.json"
LOCK = ".fruitclf.lock"
#: Files written while training (checkpoints, history, split); kept by a resume.
TRAINING_FILES = ("split.json", "best_model.keras", "last_checkpoint.keras", "history.json",
                  "history.csv")
#: Files written once at the end; written together.
FINAL_FILES = ("model.h5", "model.keras", "history.png", "samples.png", "confusion_matrix.png",
               "misclassified.png", "classification_report.txt", "metrics.json", "report.md")
RUN_FILES = (MARKER, *TRAINING_FILES, *FINAL_FILES)
#: Settings that may differ when resuming (they do not change what is trained).
RESUMABLE_CHANGES = frozenset({"epochs", "tta", "cache", "checkpoint_interval"})


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
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory locks here
            return
        lock_path = self.path / LOCK
        try:
            handle = open(lock_path, "a+", encoding="utf-8")  # noqa: SIM115 - held until __exit__
        except OSError as exc:
            raise _files.write_error(lock_path, exc) from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunFolderError(
                f"Run folder {str(self.path)!r} is in use by another fruitclf process "
                f"({holder}). Wait for it to finish, or choose another --out."
            ) from None
        # The kernel drops the lock when its process dies, so a lock left by a killed run
        # never blocks; the holder's line below is only for the message above.
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._lock = handle

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing releases the lock
            self._lock = None

    # ------------------------------------------------------------------ ownership

    def _claim(self) -> None:
        found = [name for name in RUN_FILES if os.path.lexists(self.path / name)]
        if not found:
            return
        previous = self._read_marker()
        if self.resume:
            if previous is None:
                raise RunFolderError(
                    f"Cannot resume in {str(self.path)!r}: it has run files "
                    f"({', '.join(found[:4])}) but no {MARKER}, so their settings are unknown. "
                    "Pass --overwrite to start again."
                )
            self._check_same_run(previous)
            self.previous = previous
            return
        if self.overwrite:
            for name in found:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path / name)
            logger.info("Removed the previous run's files from %s.", self.path)
            return
        raise RunFolderError(
            f"{str(self.path)!r} holds {self._describe(previous, found)}. Pass --overwrite to "
            "replace it (removes that run's files), --resume to continue it, or choose "
            "another --out."
        )

    def _read_marker(self) -> dict[str, Any] | None:
        marker = self.path / MARKER
        if not marker.exists():
            return None
        try:
            payload = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RunFolderError(f"Cannot read {str(marker)!r}: {exc}. Pass --overwrite to "
                                 "start again.") from None
        if not isinstance(payload, dict) or payload.get("format") != "fruitclf-run":
            raise RunFolderError(f"{str(marker)!r} is not a fruitclf run marker. Pass "
                                 "--overwrite to start again.")
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
            "format": "fruitclf-run", "version": 1, "state": state,
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


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
