"""The quarantine list survives concurrent cleans, signals and kills, and restore trusts only
what it recorded: real files, real processes, real signals, crafted lists.

``FRUITCLF_QUARANTINE_EXAMPLES`` sets how many random sequences the property test tries
(default 12; the closing numbers of the ownership work used 500).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _paths import SRC, TESTS
from fruitclf import DatasetError, ImageFolderDataset, restore_quarantine
from fruitclf.cli import main
from fruitclf.data.quarantine import JOURNAL_NAME, MANIFEST_NAME, _Quarantine

CHILD = TESTS / "_quarantine_child.py"


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _bad_folder(root: Path, classes: int, per_class: int) -> Path:
    """Class folders of small files that are not images (each flagged by the check)."""
    for c in range(classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            (folder / f"bad_{i:04d}.png").write_bytes(f"not a png {c} {i}\n".encode() * 3)
    return root


def _listed(qdir: Path) -> set[str]:
    return {e["quarantined"] for e in
            json.loads((qdir / MANIFEST_NAME).read_text())["entries"]}


def _quarantined(qdir: Path) -> set[str]:
    own = {MANIFEST_NAME, JOURNAL_NAME, ".fruitclf-quarantine.lock"}
    return {p.relative_to(qdir).as_posix() for p in qdir.rglob("*")
            if p.is_file() and p.name not in own}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(CHILD.parent)])}


def _cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "fruitclf.cli", *args], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def _child(job: dict) -> int:
    return subprocess.run([sys.executable, str(CHILD), json.dumps(job)], env=_env(),
                          capture_output=True, text=True, timeout=120).returncode


@pytest.mark.slow  # no TensorFlow-specific behaviour: the newest TensorFlow runs it
@pytest.mark.cli
def test_two_cleans_on_one_quarantine_lose_no_entry(tmp_path):
    """Check item 4: two clean processes started together on one quarantine: one stops at
    once naming the other, and every moved file is in the list; restore brings back the
    folder byte for byte."""
    root = _bad_folder(tmp_path / "data", 4, 60)
    qdir = tmp_path / "q"
    start = _tree(root)
    procs = [_cli("clean", str(root), "--quarantine", str(qdir)) for _ in range(2)]
    results = [_finish(p) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0, results
    if codes[1] != 0:
        assert any("in use by another fruitclf process (pid" in err for _, err in results)
    assert _quarantined(qdir) == _listed(qdir) and len(_listed(qdir)) == 240
    restored = restore_quarantine(qdir)
    assert len(restored) == 240 and not restored.unaccounted
    assert _tree(root) == start and not _quarantined(qdir)


@pytest.mark.cli
def test_sigterm_during_clean_finishes_the_file_and_keeps_the_list_complete(tmp_path):
    """Check item 5: SIGTERM in the middle of a clean ends it with "interrupted" after the
    current file; every moved file is listed and restore gives back the identical tree."""
    root = _bad_folder(tmp_path / "data", 2, 400)
    qdir = tmp_path / "q"
    start = _tree(root)
    proc = _cli("clean", str(root), "--quarantine", str(qdir))
    deadline = time.monotonic() + 120
    while not (qdir / JOURNAL_NAME).exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    code, err = _finish(proc)
    moved = _quarantined(qdir)
    assert code == 130 and "fruitclf: interrupted" in err, err
    assert 0 < len(moved) < 800
    assert moved == _listed(qdir) and not (qdir / JOURNAL_NAME).exists()
    assert main(["restore", str(qdir)]) == 0
    assert _tree(root) == start and not _quarantined(qdir)


@pytest.mark.parametrize("phase", ["before", "linked", "after"])
def test_a_clean_killed_at_any_point_of_a_move_is_settled_by_restore(tmp_path, phase):
    """Check that SIGKILL before, inside (linked, not unlinked) or after a move leaves a
    journal from which restore puts every file back."""
    root = _bad_folder(tmp_path / "data", 2, 5)
    qdir = tmp_path / "q"
    start = _tree(root)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    code = _child({"op": "clean", "root": str(root), "quarantine": str(qdir), "files": files,
                   "kill": [4, phase]})
    assert code == -signal.SIGKILL
    assert (qdir / JOURNAL_NAME).exists()
    restored = restore_quarantine(qdir)
    assert len(restored) == (3 if phase == "before" else 4)
    assert _tree(root) == start and not _quarantined(qdir)


def test_a_second_process_is_refused_while_the_quarantine_is_held(tmp_path, capsys):
    """Check that clean and restore stop at once, naming the holder, while another process
    holds the quarantine."""
    root = _bad_folder(tmp_path / "data", 2, 3)
    qdir = tmp_path / "q"
    assert _finish(_cli("clean", str(root), "--quarantine", str(qdir)))[0] == 0
    with _Quarantine(qdir).held(create=False):
        code, err = _finish(_cli("restore", str(qdir)))
        assert code == 1
        assert f"in use by another fruitclf process (pid {os.getpid()}" in err


# ------------------------------------------------------------------ restore trusts nothing


@pytest.fixture
def quarantined(tmp_path):
    """An image folder with two bad files moved into a quarantine."""
    root = _bad_folder(tmp_path / "data", 2, 1)
    qdir = tmp_path / "q"
    start = _tree(root)
    ImageFolderDataset(root).remove_corrupted(quarantine=qdir)
    return root, qdir, start


def _edit(qdir: Path, change) -> None:  # type: ignore[no-untyped-def]
    manifest = json.loads((qdir / MANIFEST_NAME).read_text())
    change(manifest)
    (qdir / MANIFEST_NAME).write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: m["entries"][0].update(quarantined="../secret/secret.txt"),
         "not inside the quarantine"),
        (lambda m: m["entries"][0].update(original="/tmp/victimhome/.bashrc"),
         r"'/tmp/victimhome/.bashrc' is not inside the image folder"),
        (lambda m: m["entries"][0].update(original=m["root"] + "/../elsewhere/x.png"),
         "is not inside the image folder"),
        (lambda m: m["entries"][0].update(quarantined=MANIFEST_NAME),
         "not inside the quarantine"),
        (lambda m: m["entries"][0].pop("sha256"), "has no checksum .*--trust-list"),
        (lambda m: m.update(root="/nonexistent/fruits"),
         "'/nonexistent/fruits', does not exist"),
    ],
)
def test_restore_refuses_a_list_that_reaches_outside(quarantined, tmp_path, change, match):
    """Check item 6: restore moves only files inside the quarantine, only under the recorded
    root, only with a recorded checksum, and only while that root exists; else nothing."""
    _, qdir, _ = quarantined
    secret = tmp_path / "secret" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("secret")
    _edit(qdir, change)
    before = _tree(tmp_path)
    with pytest.raises(DatasetError, match=match):
        restore_quarantine(qdir)
    assert _tree(tmp_path) == before
    assert not Path("/tmp/victimhome").exists()


def test_trust_list_restores_entries_without_checksums_but_keeps_containment(quarantined):
    """Check that --trust-list restores entries without a checksum, and still refuses an
    entry that points outside."""
    root, qdir, start = quarantined
    _edit(qdir, lambda m: [e.pop("sha256") for e in m["entries"]])
    assert main(["restore", str(qdir)]) == 1
    assert main(["restore", str(qdir), "--trust-list"]) == 0
    assert _tree(root) == start


def test_restore_after_the_image_folder_moved_refuses_naming_it(quarantined, tmp_path,
                                                                capsys):
    """Check that a restore whose image folder was moved names the recorded folder instead of
    recreating it with only the bad files."""
    root, qdir, _ = quarantined
    root.rename(tmp_path / "renamed")
    assert main(["restore", str(qdir)]) == 1
    assert f"{str(root)!r}, does not exist" in capsys.readouterr().err
    assert not root.exists()


def test_files_the_list_does_not_name_are_reported(quarantined, capsys):
    """Check that a file in the quarantine that its list does not account for is named and
    makes restore exit 1, while listed files are restored."""
    root, qdir, start = quarantined
    stray = qdir / "class_0" / "stray.png"
    stray.write_text("who put me here")
    assert main(["restore", str(qdir)]) == 1
    out = capsys.readouterr().out
    assert f"Not in the quarantine list, left where it is: {stray}" in out
    assert _tree(root) == start and stray.exists()


def test_a_quarantine_serves_one_image_folder(quarantined, tmp_path):
    """Check that cleaning another folder into a quarantine that holds files of the first is
    refused, so that restore can check every path against one root."""
    _, qdir, _ = quarantined
    other = _bad_folder(tmp_path / "other", 2, 1)
    with pytest.raises(DatasetError, match="holds files of another image folder"):
        ImageFolderDataset(other).remove_corrupted(quarantine=qdir)
    assert len(list(other.rglob("*.png"))) == 2


# ------------------------------------------------------------------ property


_ops = st.lists(
    st.tuples(st.sampled_from(["clean", "restore"]),
              st.sets(st.integers(0, 7), min_size=1, max_size=8),
              st.one_of(st.none(), st.tuples(st.integers(1, 4),
                                             st.sampled_from(["before", "linked", "after"])))),
    min_size=1, max_size=5)


@pytest.mark.slow  # no TensorFlow-specific behaviour: the newest TensorFlow runs it
@settings(max_examples=int(os.environ.get("FRUITCLF_QUARANTINE_EXAMPLES", "12")),
          deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                HealthCheck.too_slow])
@given(ops=_ops)
def test_any_sequence_of_clean_kill_and_restore_ends_with_the_original_tree(tmp_path_factory,
                                                                            ops):
    """Check that after any sequence of cleans and restores, each possibly killed at any
    point of a move, a last restore gives back the starting tree byte for byte and leaves
    no file in the quarantine."""
    base = tmp_path_factory.mktemp("prop")
    root = _bad_folder(base / "data", 2, 4)
    qdir = base / "q"
    start = _tree(root)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    for op, chosen, kill in ops:
        present = [files[i] for i in sorted(chosen) if (root / files[i]).exists()]
        if op == "clean" and present:
            _child({"op": "clean", "root": str(root), "quarantine": str(qdir),
                    "files": present, "kill": kill})
        elif op == "restore" and qdir.exists():
            _child({"op": "restore", "root": str(root), "quarantine": str(qdir),
                    "kill": kill})
    if qdir.exists():
        restored = restore_quarantine(qdir)
        assert not restored.unaccounted
        assert not _quarantined(qdir)
    assert _tree(root) == start


def test_restore_never_follows_a_link_out_of_the_image_folder(quarantined, tmp_path):
    """Check that when a class folder was replaced by a link to a folder outside the image
    folder, restore refuses instead of writing through the link."""
    root, qdir, _ = quarantined
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "class_0").rmdir()
    (root / "class_0").symlink_to(outside, target_is_directory=True)
    with pytest.raises(DatasetError, match="is not inside the image folder"):
        restore_quarantine(qdir)
    assert not list(outside.iterdir())
