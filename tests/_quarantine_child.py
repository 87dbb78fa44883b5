"""Run one quarantine operation in its own process, optionally killing itself mid-way.

Usage: ``python _quarantine_child.py JSON`` where JSON holds ``op`` ("clean" or
"restore"), ``root``, ``quarantine``, ``files`` (paths relative to root, for clean), and
``kill`` (null, or ``[n, phase]``: SIGKILL this process at the n-th move, at ``phase``
"before" the move, "linked" (between the hard link and the unlink of a move) or "after"
(moved, not yet confirmed in the journal)).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from fruitclf import _files
from fruitclf.data import quarantine
from fruitclf.data.check import FileProblem


def _killing_move(n: int, phase: str):  # type: ignore[no-untyped-def]
    real_move = _files.move_no_replace
    count = {"moves": 0}

    def move(source, target):  # type: ignore[no-untyped-def]
        count["moves"] += 1
        if count["moves"] == n:
            if phase == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            if phase == "linked":
                os.link(source, target, follow_symlinks=False)
                os.kill(os.getpid(), signal.SIGKILL)
            real_move(source, target)
            os.kill(os.getpid(), signal.SIGKILL)
        real_move(source, target)

    return move


def main() -> None:
    job = json.loads(sys.argv[1])
    if job.get("kill"):
        _files.move_no_replace = _killing_move(*job["kill"])  # type: ignore[assignment]
    root = Path(job["root"])
    if job["op"] == "clean":
        problems = []
        for rel in job["files"]:
            st = os.stat(root / rel)
            problems.append(FileProblem(str(root / rel), rel, "corrupt", "planted",
                                        st.st_size, st.st_mtime_ns))
        quarantine.remove_files(problems, root=str(root), quarantine=job["quarantine"],
                                delete=False, dry_run=False)
    else:
        quarantine.restore_quarantine(job["quarantine"])


if __name__ == "__main__":
    main()
