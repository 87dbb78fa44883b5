"""Safe file operations: atomic writes, moves that never replace, regular files only.

Every file fruitclf writes goes through :func:`atomic_path`: it is written beside its target
under a temporary name that carries :data:`TMP_MARK` and renamed into place only when
complete, so a killed process leaves either the old file or the new one, never half of one.
A kill can still leave the temporary file; :func:`remove_leftovers` deletes those the next
time the folder is used. Write failures (a full disk, a read-only folder) become one
:class:`~fruitclf.exceptions.WriteError` that names the target.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import socket
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .exceptions import WriteError

#: Part of every temporary name, so leftovers of killed writes can be told from user files.
TMP_MARK = ".fruitclf-tmp"


def temporary_name(target: Path) -> Path:
    """A fresh hidden name beside ``target`` that keeps its suffix (Keras checks suffixes)."""
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}{TMP_MARK}{target.suffix}")


def is_leftover(name: str) -> bool:
    """True for the name of a temporary file written by :func:`atomic_path`."""
    return name.startswith(".") and TMP_MARK in name


def remove_leftovers(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that killed writes left directly in ``folder``."""
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            if is_leftover(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def exclusive_lock(lock_path: str | os.PathLike[str], busy: str,
                   error: type[Exception]) -> IO[str] | None:
    """Take an exclusive lock on ``lock_path`` at once, or raise ``busy`` naming the holder.

    The lock lives as long as the returned handle; :func:`release_lock` releases it and
    removes the file. The kernel drops the lock when its process dies, so a lock file left by
    a killed process never blocks. ``busy`` is the message of the ``error`` raised when
    another process holds it, with a ``{holder}`` field (the pid and host written by the
    holder). Returns None where the platform has no advisory locks.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks here
        return None
    for _ in range(100):  # a holder may remove the file between our open and our lock
        try:
            handle = open(lock_path, "a+", encoding="utf-8")  # noqa: SIM115 - returned, held
        except OSError as exc:
            raise write_error(lock_path, exc) from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(handle)
            handle.close()
            raise error(busy.format(holder=holder)) from None
        if _same_file(handle, lock_path):
            break
        handle.close()  # locked a file its holder removed on release: take the new one
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    handle.flush()
    return handle


def _holder(handle: IO[str]) -> str:
    """The pid and host a lock's holder wrote; it writes them just after taking the lock, so
    an empty file is read again for up to half a second before it counts as unknown."""
    for _ in range(10):
        handle.seek(0)
        holder = handle.read().strip()[:200]
        if holder:
            return holder
        time.sleep(0.05)
    return "unknown"


def _same_file(handle: IO[str], path: str | os.PathLike[str]) -> bool:
    try:
        held, named = os.fstat(handle.fileno()), os.stat(path)
    except OSError:
        return False
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)


def release_lock(handle: IO[str] | None, lock_path: str | os.PathLike[str]) -> None:
    """Remove the lock file of :func:`exclusive_lock`, then release the lock.

    The file goes while the lock is still held, so no other process can hold a lock on it;
    a process that opened it just before locks a removed file, sees that, and takes a new one.
    """
    if handle is None:
        return
    try:
        if _same_file(handle, lock_path):
            with contextlib.suppress(OSError):
                os.unlink(lock_path)
    finally:
        handle.close()


def is_locked(lock_path: str | os.PathLike[str]) -> bool:
    """True while another open handle holds the lock on ``lock_path``."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        return False
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class Interrupts:
    """Whether Ctrl-C or SIGTERM arrived inside :func:`deferred_interrupts`."""

    def __init__(self) -> None:
        self.requested = False


@contextlib.contextmanager
def deferred_interrupts(on_first: Callable[[], None] | None = None) -> Iterator[Interrupts]:
    """Hold Ctrl-C and SIGTERM until the caller's current step is done.

    The first signal only sets ``requested`` (and calls ``on_first``): the caller finishes
    its step (the file it is moving, the epoch it is training), records it, and stops. A
    second one raises ``KeyboardInterrupt`` at once. Only the main thread can handle
    signals; elsewhere this changes nothing.
    """
    import signal
    import threading

    state = Interrupts()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    signals = [signal.SIGINT] + ([signal.SIGTERM] if hasattr(signal, "SIGTERM") else [])
    previous = {sig: signal.getsignal(sig) for sig in signals}

    def handler(signum: int, frame: Any) -> None:
        if state.requested:
            raise KeyboardInterrupt
        state.requested = True
        if on_first is not None:
            on_first()

    for sig in signals:
        signal.signal(sig, handler)
    try:
        yield state
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def write_error(target: str | os.PathLike[str], exc: OSError) -> WriteError:
    """The one-line error for a failed write of ``target``."""
    reason = getattr(exc, "reason", None) or exc.strerror or str(exc) or type(exc).__name__
    hint = {errno.ENOSPC: " Free some disk space and run again.",
            errno.EDQUOT: " Free some disk space and run again.",
            errno.EACCES: " Check the folder's permissions.",
            errno.EROFS: " The file system is read-only; choose another folder."}.get(
        exc.errno or 0, "")
    error = WriteError(f"Cannot write {os.fspath(target)!r}: {reason}.{hint}", exc.errno,
                       os.fspath(target))
    error.reason = reason  # so that a wrapper naming another path keeps only the cause
    return error


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``target`` in one rename.

    On any failure the temporary file is removed and ``target`` is left as it was; an
    ``OSError`` becomes a :class:`WriteError` naming ``target``.

    Examples
    --------
    >>> with atomic_path("run/metrics.json") as tmp:  # doctest: +SKIP
    ...     tmp.write_text("{}")
    """
    final = Path(target)
    tmp = temporary_name(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        _fsync(tmp)
        os.replace(tmp, final)
    except OSError as exc:
        raise write_error(final, exc) from None
    finally:
        with contextlib.suppress(OSError):
            if os.path.lexists(tmp):
                os.unlink(tmp)


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file for writing; it replaces ``target`` when the block succeeds."""
    kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    with atomic_path(target) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``target`` atomically."""
    with atomic_open(target) as fh:
        fh.write(text)
    return Path(target)


def write_json(target: str | os.PathLike[str], payload: Any) -> Path:
    """Write ``payload`` as indented JSON to ``target`` atomically."""
    return write_text(target, json.dumps(payload, indent=2, default=str) + "\n")


def read_json(path: str | os.PathLike[str], limit: int) -> Any:
    """The JSON in ``path``, read only if it is a regular file (not a link) of at most
    ``limit`` bytes: a guard before reading a file that may not be fruitclf's.

    Raises
    ------
    OSError
        If it is missing, not a regular file, or larger than ``limit``.
    ValueError
        If it is not JSON.
    """
    target = Path(path)
    if target.is_symlink():
        raise OSError("not a regular file")
    return json.loads(read_text_bounded(target, limit))


def read_text_bounded(path: str | os.PathLike[str], limit: int) -> str:
    """The UTF-8 text of ``path``, read only if it is a regular file of at most ``limit``
    bytes.

    Raises
    ------
    OSError
        If it is missing, not a regular file, or larger than ``limit``.
    ValueError
        If it is not UTF-8 text.
    """
    with open_regular(path) as handle:
        if os.fstat(handle.fileno()).st_size > limit:
            raise OSError(f"larger than {limit >> 20} MiB")
        return handle.read().decode("utf-8")


def save_figure(figure: Any, target: str | os.PathLike[str], *, dpi: int = 100,
                metadata: dict[str, str] | None = None) -> Path:
    """Save a Matplotlib figure to ``target`` atomically (format from the suffix)."""
    fmt = Path(target).suffix.lstrip(".") or "png"
    with atomic_path(target) as tmp:
        figure.savefig(tmp, dpi=dpi, format=fmt, metadata=metadata)
    return Path(target)


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # Keras may write a folder or nothing we can reopen; the rename still orders
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def move_no_replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Move ``source`` to ``target``, failing with ``FileExistsError`` if ``target`` exists.

    A hard link makes the check and the move one step, so a file that appears at ``target``
    meanwhile is never replaced; file systems without hard links (and moves across file
    systems) fall back to a check followed by a copy.
    """
    source, target = os.fspath(source), os.fspath(target)
    try:
        os.link(source, target, follow_symlinks=False)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "File exists", target) from None
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            raise
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "File exists", target) from None
        import shutil

        shutil.move(source, target)
        return
    os.unlink(source)


def regular_file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` must not be opened (a FIFO, socket or device would block or stream), or None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # missing or unreadable: the caller's open() reports it
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISDIR, "a folder"))
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    return f"{kind}, not a regular file; it was not read"


def open_regular(path: str | os.PathLike[str]) -> IO[bytes]:
    """Open ``path`` for reading only if it is a regular file, without blocking on a FIFO.

    Raises
    ------
    OSError
        ``EINVAL`` with a message naming the kind of file, for anything but a regular file.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            reason = regular_file_problem(path) or "not a regular file"
            raise OSError(errno.EINVAL, reason, os.fspath(path))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
