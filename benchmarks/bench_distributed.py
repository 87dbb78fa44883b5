"""One process against two workers on this machine: wall time, step time and accuracy.

Usage::

    python benchmarks/bench_distributed.py             # about 8 minutes
    python benchmarks/bench_distributed.py --quick     # one seed, fewer epochs

Generated photo-like pictures (6 classes, 40 training and 20 test each, 96 px, trained at
64 px) train with the default ``small-data`` recipe for a fixed number of epochs, as
``fruitclf train`` in one process (``--strategy one_device``) and as two workers on
127.0.0.1 (``--workers ... --task-index``), for seeds 1-3. Both run at the same per-replica
batch (32), so the two workers step through a global batch of 64: half the steps per epoch.
Printed per configuration: the median (range) of the command's wall time, the training
seconds, the time per step and the test accuracy (one view). On one machine two workers
share the same cores, so this measures the cost of the distribution (process start, the
gradient all-reduce over gRPC), not a speed-up; the closing paragraph of
``docs/howto/distributed.rst`` discusses real clusters.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from _images import free_ports, write_photo_split  # noqa: E402

BATCH = 32


def _command(train: Path, test: Path, out: Path, epochs: int, seed: int) -> list[str]:
    return [sys.executable, "-m", "fruitclf.cli", "train", str(train), "--test", str(test),
            "--out", str(out), "--epochs", str(epochs), "--seed", str(seed), "--batch-size",
            str(BATCH), "--tta", "1", "--quiet"]


def _run(commands: list[list[str]]) -> float:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    start = time.perf_counter()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for c in commands]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"failed: {err.decode()[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seeds = [1] if args.quick else [1, 2, 3]
    epochs = 10 if args.quick else 40
    results: dict[str, list[dict[str, float]]] = {"one process": [], "2 workers": []}
    with tempfile.TemporaryDirectory() as tmp:
        train, test = write_photo_split(Path(tmp) / "data", 6, {"train": 40, "test": 20})
        for seed in seeds:
            for name in results:
                out = Path(tmp) / f"{name.replace(' ', '-')}-{seed}"
                base = _command(train, test, out, epochs, seed)
                if name == "one process":
                    wall = _run([[*base, "--strategy", "one_device"]])
                    replicas = 1
                else:
                    workers = ",".join(f"127.0.0.1:{p}" for p in free_ports(2))
                    wall = _run([[*base, "--workers", workers, "--task-index", str(i)]
                                 for i in (1, 0)])
                    replicas = 2
                metrics = json.loads((out / "metrics.json").read_text())
                steps = math.ceil(240 / (BATCH * replicas)) * metrics["epochs_run"]
                results[name].append({
                    "wall": wall, "train": metrics["train_seconds"],
                    "step_ms": 1000 * metrics["train_seconds"] / steps,
                    "accuracy": metrics["test_accuracy"]})
                print(f"seed {seed} {name}: {results[name][-1]}", flush=True)
    print(f"\n{epochs} epochs, 240 training images, per-replica batch {BATCH}, seeds {seeds}")
    print(f"{'':<12} {'wall s':>16} {'train s':>16} {'ms/step':>16} {'accuracy':>20}")
    for name, rows in results.items():
        cells = []
        for key, fmt in (("wall", ".0f"), ("train", ".0f"), ("step_ms", ".0f"),
                         ("accuracy", ".3f")):
            values = [r[key] for r in rows]
            cells.append(f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-"
                         f"{max(values):{fmt}})")
        print(f"{name:<12} {cells[0]:>16} {cells[1]:>16} {cells[2]:>16} {cells[3]:>20}")


if __name__ == "__main__":
    main()
