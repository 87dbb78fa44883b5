"""A real training run killed with SIGKILL at random moments, then resumed, equals an
uninterrupted one: same history, each epoch once, models that load, no stray files."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from _shell import AS_FROM_A_TERMINAL
from fruitclf import load_model
from fruitclf._files import TMP_MARK

pytestmark = pytest.mark.slow

EPOCHS = 12
ARGS = ["--epochs", str(EPOCHS), "--image-size", "24", "--batch-size", "8", "--tta", "1",
        "--precision", "float32", "--checkpoint-interval", "0", "--quiet"]
#: Where each round kills: in an epoch, while a checkpoint is written, during the final save.
ROUNDS = ("epoch", "checkpoint", "epoch", "checkpoint", "final")


def _command(train: Path, test: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c",
            AS_FROM_A_TERMINAL + "import sys; from fruitclf.cli import main; sys.exit(main())",
            "train", str(train), "--test", str(test), "--out", str(out), *ARGS, *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


def _epochs_done(out: Path) -> int:
    try:
        return len(json.loads((out / "history.json").read_text())["epoch_seconds"])
    except (OSError, ValueError, KeyError):
        return 0


def _moment_reached(kind: str, out: Path, start_epochs: int, delay_until: float) -> bool:
    names = os.listdir(out) if out.exists() else []
    temporaries = [n for n in names if TMP_MARK in n]
    if kind == "checkpoint":
        return any("checkpoint" in n or "best_model" in n for n in temporaries)
    if kind == "final":
        return any(n.startswith((".model.", ".metrics.", ".report.")) for n in temporaries)
    return _epochs_done(out) > start_epochs and time.monotonic() >= delay_until


def _kill_round(command: list[str], kind: str, out: Path, rng: random.Random) -> str:
    """Start the run, SIGKILL it at the chosen moment; say what happened."""
    start_epochs = _epochs_done(out)
    process = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    delay_until = float("inf")
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if kind == "epoch" and delay_until == float("inf") and _epochs_done(out) > start_epochs:
            delay_until = time.monotonic() + rng.uniform(0.0, 0.3)
        if _moment_reached(kind, out, start_epochs, delay_until):
            process.send_signal(signal.SIGKILL)
            process.communicate()
            return f"killed ({kind}) after epoch {_epochs_done(out)}"
        time.sleep(0.002)
    if process.poll() is None:
        process.kill()
        pytest.fail(f"training did not finish: {process.communicate()[1].decode()[-2000:]}")
    _, err = process.communicate()
    assert process.returncode == 0, err.decode()[-2000:]
    return f"finished before the {kind} kill"


def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(
        image_folder, test_folder, tmp_path):
    """Check 5 rounds of SIGKILL + resume against an uninterrupted run of the same seed."""
    reference = tmp_path / "reference"
    done = subprocess.run(_command(image_folder, test_folder, reference), env=_env(),
                          capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-2000:]

    seed = random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    out = tmp_path / "killed"
    log = []
    for number, kind in enumerate(ROUNDS):
        extra = ("--resume",) if number else ()
        log.append(_kill_round(_command(image_folder, test_folder, out, *extra), kind, out, rng))
    finish = subprocess.run(_command(image_folder, test_folder, out, "--resume"), env=_env(),
                            capture_output=True, timeout=600)
    context = f"rng seed {seed}: {log}"
    assert finish.returncode == 0, f"{context}\n{finish.stderr.decode()[-2000:]}"
    assert sum(entry.startswith("killed") for entry in log) >= 3, context
    print(context)

    want = json.loads((reference / "history.json").read_text())
    got = json.loads((out / "history.json").read_text())
    assert got["epochs_run"] == want["epochs_run"] == EPOCHS, context
    assert len(got["epoch_seconds"]) == EPOCHS, context  # each epoch once
    assert set(got["metrics"]) == set(want["metrics"]), context
    worst = max(abs(a - b) for name, values in want["metrics"].items()
                for a, b in zip(got["metrics"][name], values))
    print(f"largest history difference: {worst:.3g}")
    for name, values in want["metrics"].items():
        assert len(got["metrics"][name]) == EPOCHS, (name, context)
        np.testing.assert_allclose(got["metrics"][name], values, rtol=1e-6, atol=1e-7,
                                   err_msg=f"{name}; {context}")
    metrics = json.loads((out / "metrics.json").read_text())
    reference_metrics = json.loads((reference / "metrics.json").read_text())
    for key in ("best_epoch", "epochs_run", "test_accuracy"):
        assert metrics[key] == reference_metrics[key], (key, context)
    for name in ("model.h5", "model.keras"):
        loaded, expected = load_model(out / name), load_model(reference / name)
        for a, b in zip(loaded.model.get_weights(), expected.model.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"{name}; {context}")
    strays = [p.name for p in out.rglob("*") if TMP_MARK in p.name]
    assert not strays, f"{strays}; {context}"
    assert (out / "report.md").exists() and (out / "classification_report.txt").exists()


def test_a_second_process_on_the_same_run_folder_stops_at_once(image_folder, test_folder,
                                                               tmp_path, capsys):
    """Check that a run folder in use refuses a second `fruitclf train`, naming the first."""
    from fruitclf.cli import main

    out = tmp_path / "run"
    first = subprocess.Popen(_command(image_folder, test_folder, out), env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while _epochs_done(out) == 0 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before the second started"
        started = time.monotonic()
        code = main(["train", str(image_folder), "--out", str(out), *ARGS, "--resume"])
        err = capsys.readouterr().err
        assert code == 1 and time.monotonic() - started < 30
        assert f"is in use by another fruitclf process (pid {first.pid} on" in err
    finally:
        first.kill()
        first.communicate()


def test_ctrl_c_finishes_the_epoch_saves_and_resume_completes(image_folder, test_folder,
                                                              tmp_path):
    """Check SIGINT: the epoch ends, the checkpoint is written (despite a long interval), the
    command says how to resume, and the resumed run has each epoch once."""
    out = tmp_path / "run"
    slow_writes = [a if a != "0" else "3600" for a in _command(image_folder, test_folder, out)]
    process = subprocess.Popen(slow_writes, env=_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _epochs_done(out) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err.decode()[-2000:]
    assert "Run the same command with --resume to continue." in err.decode()
    saved = load_model(out / "last_checkpoint.keras").metadata["history"]["epochs_run"]
    assert 2 <= saved < EPOCHS
    done = subprocess.run(_command(image_folder, test_folder, out, "--resume"), env=_env(),
                          capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    history = json.loads((out / "history.json").read_text())
    assert history["epochs_run"] == EPOCHS and len(history["epoch_seconds"]) == EPOCHS
