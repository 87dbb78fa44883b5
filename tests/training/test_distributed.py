"""Training on tf.distribute: two workers on 127.0.0.1, a killed worker, resume, mirrored CPUs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from _images import free_ports, write_class_folder

pytestmark = pytest.mark.distributed

TRAIN = ["--image-size", "24", "--batch-size", "8", "--precision", "float32"]


#: A copy and a mirrored copy of one training image: the split keeps the three together.
COPIES = ("class_0/img_000.png", "class_0/img_copy.png", "class_0/img_mirrored.png")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    from PIL import Image

    root = tmp_path_factory.mktemp("distributed")
    train = write_class_folder(root / "train", 3, 16, seed=3)
    original = Image.open(train / COPIES[0])
    original.save(train / COPIES[1])
    original.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(train / COPIES[2])
    return {"train": train,
            "test": write_class_folder(root / "test", 3, 10, seed=4, fmt="JPEG")}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "fruitclf.cli", "train", *argv],
                                stdout=handle, stderr=subprocess.STDOUT, env=_env())


def _workers(data: dict[str, Path], out: Path, logs: Path, *extra: str, test: bool = True
             ) -> list[subprocess.Popen[bytes]]:
    ports = free_ports(2)
    workers = ",".join(f"127.0.0.1:{p}" for p in ports)
    argv = [str(data["train"]), "--out", str(out), *TRAIN, *extra, "--workers", workers]
    if test:
        argv += ["--test", str(data["test"])]
    return [_start([*argv, "--task-index", str(i)], logs / f"worker{i}.log") for i in (1, 0)]


def _wait(procs: list[subprocess.Popen[bytes]], timeout: float = 300) -> list[int]:
    deadline = time.monotonic() + timeout
    return [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in procs]


def _wait_for(log: Path, pattern: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and re.search(pattern, log.read_text(errors="replace"), re.M):
            return
        time.sleep(0.2)
    raise AssertionError(f"{pattern!r} not in {log}:\n{log.read_text(errors='replace')}")


@pytest.mark.slow
def test_two_workers_train_like_one_process(data, tmp_path):
    """Check that two workers on 127.0.0.1 each check half of the files and split the
    folder as one process does (copies kept together), that both finish, that only the
    chief writes the run folder, whose model loads and predicts class names, that each
    worker read only its half of the files, and that the accuracy is in line with one
    process on the same data."""
    import fruitclf

    split = ("--validation-split", "0.25", "--epochs", "12")
    single = _start([str(data["train"]), "--test", str(data["test"]), "--out",
                     str(tmp_path / "single"), *TRAIN, *split,
                     "--strategy", "one_device"], tmp_path / "single.log")
    assert _wait([single]) == [0], (tmp_path / "single.log").read_text()
    out = tmp_path / "run"
    codes = _wait(_workers(data, out, tmp_path, *split))
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in (0, 1)]
    assert codes == [0, 0], logs
    for index, log in enumerate(logs):
        assert f"Worker {index} of 2 checked 25 of 50 images" in log
    parts = json.loads((out / "split.json").read_text())
    assert parts == json.loads((tmp_path / "single" / "split.json").read_text())
    validation = set(parts["validation"])
    assert 8 <= len(validation) <= 16
    assert len({name in validation for name in COPIES}) == 1, "copies on both sides"
    shares = [re.search(r"Worker (\d) of 2 reads (\d+) of (\d+) training images", log)
              for log in logs]
    assert [int(m.group(1)) for m in shares] == [0, 1]
    assert sum(int(m.group(2)) for m in shares) == int(shares[0].group(3)) \
        == 50 - len(validation)
    splits = {re.search(r"Training split (\w+) \(the same on every worker\)", log).group(1)
              for log in logs}
    assert len(splits) == 1
    assert "Worker 1: trained 12 epochs; the chief (worker 0) writes" in logs[1]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["workers"] == 2 and metrics["global_batch_size"] == 16
    assert metrics["learning_rate_scaled"] is False
    alone = json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= min(0.8, alone["test_accuracy"] - 0.15), (metrics, alone)
    loaded = fruitclf.load_model(out / "model.keras")
    labels = loaded.predict([str(data["test"])]).labels
    assert len(labels) == 30 and set(labels) <= set(loaded.class_names)
    assert "global_batch_size" in (out / "report.md").read_text()


@pytest.mark.slow
def test_a_file_that_would_crash_training_stops_every_worker_alike(data, tmp_path):
    """Check that a broken file in one worker's share of the check stops both workers at
    once with the same one-line error (the other worker no longer waits for the chief
    until the collective timeout)."""
    import shutil

    from fruitclf.distribute import WORKER_TIMEOUT

    train = tmp_path / "train"
    shutil.copytree(data["train"], train)
    (train / "class_1" / "img_zz_broken.png").write_bytes(b"<html>not found</html>")
    started = time.monotonic()
    codes = _wait(_workers({"train": train}, tmp_path / "run", tmp_path, "--epochs", "2",
                           test=False), timeout=WORKER_TIMEOUT)
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in (0, 1)]
    assert codes == [1, 1] and time.monotonic() - started < WORKER_TIMEOUT, logs
    errors = [[line for line in log.splitlines() if line.startswith("fruitclf: error:")]
              for log in logs]
    assert errors[0] == errors[1] and len(errors[0]) == 1, logs
    assert "class_1/img_zz_broken.png: not an image" in errors[0][0]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_killed_worker_stops_the_other_with_a_clear_message(data, tmp_path):
    """Check that killing one worker makes the other exit non-zero, within the collective
    timeout, with one line that says what happened and how to go on."""
    from fruitclf.distribute import WORKER_TIMEOUT

    worker, chief = _workers(data, tmp_path / "run", tmp_path, "--epochs", "500", test=False)
    _wait_for(tmp_path / "worker1.log", r"^Epoch 2/500")
    worker.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    worker.wait()
    code = chief.wait(timeout=WORKER_TIMEOUT + 60)
    waited = time.monotonic() - killed
    log = (tmp_path / "worker0.log").read_text()
    assert code == 1 and waited < WORKER_TIMEOUT + 30, (waited, log)
    errors = [line for line in log.splitlines() if line.startswith("fruitclf: error:")]
    assert len(errors) == 1 and "Lost contact with another worker" in errors[0]
    assert "--resume" in errors[0] and "Traceback" not in log


def test_a_worker_alone_gives_up_after_the_connect_timeout(data, tmp_path):
    """Check that a worker whose peers never start stops after --connect-timeout with one
    line, instead of waiting for ever."""
    ports = free_ports(2)
    started = time.monotonic()
    alone = _start([str(data["train"]), "--out", str(tmp_path / "run"), *TRAIN,
                    "--workers", ",".join(f"127.0.0.1:{p}" for p in ports),
                    "--task-index", "1", "--connect-timeout", "5"], tmp_path / "alone.log")
    code = alone.wait(timeout=120)
    log = (tmp_path / "alone.log").read_text()
    assert code != 0 and time.monotonic() - started < 60, log
    assert "did not all start within 5 s (--connect-timeout)" in log
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_resume_under_two_workers(data, tmp_path):
    """Check that two workers killed after a few epochs and started again with --resume
    finish the run with each epoch once in history.json."""
    out = tmp_path / "run"
    args = ("--epochs", "10", "--checkpoint-interval", "0")
    procs = _workers(data, out, tmp_path, *args, test=False)
    _wait_for(tmp_path / "worker0.log", r"^Epoch 4/10")
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
    _wait(procs)
    done = json.loads((out / "history.json").read_text())["epochs_run"]
    assert 3 <= done < 10
    codes = _wait(_workers(data, out, tmp_path, *args, "--resume", test=False))
    chief_log = (tmp_path / "worker0.log").read_text()
    assert codes == [0, 0], chief_log
    assert f"Resuming after epoch {done}" in chief_log
    history = json.loads((out / "history.json").read_text())
    assert history["epochs_run"] == 10
    assert len(history["metrics"]["loss"]) == len(history["epoch_seconds"]) == 10
    epochs = [int(n) for n in re.findall(r"^Epoch (\d+)/10", chief_log, re.M)]
    assert epochs == list(range(done + 1, 11))


    def files() -> dict[str, int]:  # the run's files (the lock aside)
        return {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name[0] != "."}

    before = files()
    assert _wait(_workers(data, out, tmp_path, *args, "--resume", test=False)) == [0, 0]
    assert files() == before  # a finished run: nothing to train, nothing written


MIRRORED = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import fruitclf
    train, test = sys.argv[1], sys.argv[2]
    ds = fruitclf.ImageFolderDataset(train)
    prep = fruitclf.Preprocessing(image_size=(24, 24))
    spec = fruitclf.CNNSpec(input_shape=(24, 24, 3), num_classes=3,
                            conv_blocks=(fruitclf.ConvBlock(8),),
                            dense_layers=(fruitclf.DenseLayer(16),), name="tiny")
    results = {}
    for name, strategy in [("one", None),
                           ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))]:
        trainer = fruitclf.Trainer(spec, class_names=ds.class_names, seed=0, learning_rate=0.01,
                                   preprocessing=prep, strategy=strategy, verbose=0)
        history = trainer.fit(ds.to_tf_dataset(preprocessing=prep, batch_size=8, shuffle=True,
                                               seed=0), epochs=6)
        evaluation = fruitclf.Evaluator(trainer.model, ds.class_names, preprocessing=prep
                                        ).evaluate(fruitclf.ImageFolderDataset(
                                            test, class_names=ds.class_names))
        results[name] = {"loss": history.metrics["loss"], "accuracy": evaluation.accuracy,
                         "replicas": trainer.strategy.num_replicas_in_sync if strategy else 1}
    print(json.dumps(results))
""")


@pytest.mark.slow
def test_mirrored_over_two_cpu_devices_matches_one_device(data, tmp_path):
    """Check that MirroredStrategy over two logical CPU devices trains to the same model
    quality as one device: the same global batch split in two gives the same losses."""
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED)
    proc = subprocess.run([sys.executable, str(script), str(data["train"]), str(data["test"])],
                          capture_output=True, text=True, env=_env(), timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    one, mirrored = results["one"], results["mirrored"]
    assert mirrored["replicas"] == 2
    assert mirrored["accuracy"] == pytest.approx(one["accuracy"], abs=0.1)
    assert mirrored["loss"] == pytest.approx(one["loss"], rel=0.05, abs=1e-3)


def test_cluster_options(monkeypatch):
    """Check that --workers/--task-index become TF_CONFIG, and that bad values and a
    multi-worker strategy without a cluster give one clear error."""
    from fruitclf.distribute import cluster, make_strategy, set_cluster

    monkeypatch.setenv("TF_CONFIG", "")  # restored (to unset) after the test
    monkeypatch.delenv("TF_CONFIG")
    with pytest.raises(ValueError, match="needs a cluster of two or more workers"):
        make_strategy("multi_worker")
    with pytest.raises(ValueError, match="`strategy` must be one of 'auto'"):
        make_strategy("tpu")
    with pytest.raises(ValueError, match="HOST:PORT entries"):
        set_cluster("localhost", 0)
    with pytest.raises(ValueError, match="task_index"):
        set_cluster("a:1,b:2", 2)
    found = set_cluster("a:1, b:2", 1)
    assert not found.is_chief and cluster() == found
    assert json.loads(os.environ["TF_CONFIG"])["task"] == {"type": "worker", "index": 1}


def test_workers_without_task_index_is_refused(capsys, tmp_path, image_folder):
    """Check that --workers without --task-index is one error line."""
    from fruitclf.cli import main

    code = main(["train", str(image_folder), "--out", str(tmp_path / "r"),
                 "--workers", "127.0.0.1:1,127.0.0.1:2"])
    assert code == 1
    assert "`--workers` and `--task-index` go together" in capsys.readouterr().err
