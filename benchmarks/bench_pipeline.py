"""Input pipeline and precision benchmark: fruitclf against the worksheet's pipeline, in one run.

Usage::

    python benchmarks/bench_pipeline.py                 # generated data, about 8 minutes
    python benchmarks/bench_pipeline.py --data DIR      # your own image folder
    python benchmarks/bench_pipeline.py --quick         # smaller, for a smoke test
    python benchmarks/bench_pipeline.py --only-whole    # only the whole-process comparison

First the whole process as a user runs it, each in a fresh process: the worksheet notebook's
steps (load, fit, save ``model.h5``, plot) against ``fruitclf train`` (with the worksheet
preset, and with its defaults), ``--whole-epochs`` epochs: total wall time, and the time from
the process start to the first training step and from the last step to the exit.

Each configuration trains the worksheet CNN (128x128) for a few epochs in its own process, so
that its peak RSS is its own, and reports images/second for the cold first epoch and the
median steady epoch, each as a ratio to (a), the worksheet pipeline measured in the same run:

(a) ``image_dataset_from_directory(..., interpolation="nearest", batch_size=32)`` +
    ``.map(lambda x, y: (rescale(x), y))``, the worksheet CNN, Adam;
(b) fruitclf's default pipeline and Trainer, float32;
(c) the same with ``precision="mixed_bfloat16"`` (what ``"auto"`` picks on a CPU with native
    bfloat16);
(d) the model's own limit: random tensors already in memory, cached.

Then the accuracy of float32 and bfloat16 on the generated data (median of 3 seeds), and the
file-check benchmark: fruitclf's check against a Pillow ``verify()`` loop and a Pillow
full-load loop on a folder seeded with truncated JPEGs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

IMAGE_SIZE = (128, 128)
BATCH = 32
CLASSES = 4


# ---------------------------------------------------------------------------- data


def _photo(rng: Any, label: int, width: int, height: int) -> Any:
    """A smooth, photo-like image whose class shows as a coloured blob and a tint."""
    import numpy as np
    from PIL import Image

    small_w, small_h = max(8, width // 64), max(8, height // 64)
    base = rng.integers(40, 200, (small_h, small_w, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:small_h, 0:small_w]
    cy = small_h * (0.25 + 0.5 * ((label * 37) % 100) / 100)
    cx = small_w * (0.25 + 0.5 * ((label * 61) % 100) / 100)
    blob = np.exp(-(((yy - cy) / (small_h / 5)) ** 2 + ((xx - cx) / (small_w / 5)) ** 2))
    base[..., label % 3] += 90 * blob
    base[..., (label + 1) % 3] += 25 * (label // 3)
    base += rng.normal(0, 12, base.shape)
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    return image.resize((width, height), Image.Resampling.BICUBIC)


def write_photos(root: Path, per_class: int, sizes: tuple[int, int], seed: int) -> Path:
    """Write ``per_class`` JPEGs per class with sides drawn from ``sizes``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for label in range(CLASSES):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            width = int(rng.integers(*sizes))
            height = int(width * rng.uniform(0.7, 1.3))
            _photo(rng, label, width, height).save(folder / f"{i:04d}.jpg", quality=88)
    return root


# ---------------------------------------------------------------------------- workers


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _EpochTimer:
    def __init__(self) -> None:
        import keras

        class Timer(keras.callbacks.Callback):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__()
                self.times: list[float] = []

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                self.times.append(time.perf_counter() - self.start)

        self.callback = Timer()


def _worksheet_model(num_classes: int, rescale_inside: bool) -> Any:
    import keras

    layers = [keras.Input((*IMAGE_SIZE, 3))]
    if rescale_inside:
        layers.append(keras.layers.Rescaling(1 / 255))
    layers += [
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2, strides=2),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2, strides=2),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(num_classes, activation="softmax"),
    ]
    model = keras.Sequential(layers)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def worker(config: str, data: str, epochs: int, seed: int) -> dict[str, Any]:
    """Train one configuration; return per-epoch times, image count and accuracy."""
    import numpy as np
    import tensorflow as tf

    timer = _EpochTimer().callback
    if config == "worksheet":
        import keras

        ds = keras.utils.image_dataset_from_directory(
            data, image_size=IMAGE_SIZE, interpolation="nearest", batch_size=BATCH, seed=seed)
        num_classes = len(ds.class_names)
        rescale = keras.layers.Rescaling(1 / 255)
        ds = ds.map(lambda x, y: (rescale(x), y))
        model = _worksheet_model(num_classes, rescale_inside=False)
        model.fit(ds, epochs=epochs, callbacks=[timer], verbose=0)
        count = int(sum(1 for _ in ds.unbatch()))
        return {"epoch_seconds": timer.times, "images": count, "rss_mib": _peak_rss_mib()}
    if config == "limit":
        x = np.random.default_rng(seed).integers(0, 256, (1024, *IMAGE_SIZE, 3)).astype(
            np.float32)
        y = np.random.default_rng(seed).integers(0, CLASSES, 1024)
        ds = tf.data.Dataset.from_tensor_slices((x, y)).cache().batch(BATCH).prefetch(
            tf.data.AUTOTUNE)
        model = _worksheet_model(CLASSES, rescale_inside=True)
        model.fit(ds, epochs=epochs, callbacks=[timer], verbose=0)
        return {"epoch_seconds": timer.times, "images": 1024, "rss_mib": _peak_rss_mib()}

    import fruitclf

    precision = {"fp32": "float32", "bf16": "mixed_bfloat16"}[config.split("-")[0]]
    full = fruitclf.ImageFolderDataset(data)
    # Timing runs train on every image, like (a); accuracy runs hold out a validation split.
    train, val = full.split(0.2, seed=seed) if config.endswith("-acc") else (full, None)
    prep = fruitclf.Preprocessing(image_size=IMAGE_SIZE)
    # As a run does it: the file check decodes each image once, for the pipeline too; its
    # time counts as part of the cold epoch.
    check_start = time.perf_counter()
    if hasattr(fruitclf.ImageFolderDataset, "exclude"):  # decode-once fruitclf
        full.check(preprocessing=prep, progress=False)
    else:
        full.check(progress=False)
    check_seconds = time.perf_counter() - check_start
    train_tf = train.to_tf_dataset(preprocessing=prep, batch_size=BATCH, shuffle=True,
                                   seed=seed)
    spec = fruitclf.CNNSpec.preset("worksheet", num_classes=full.num_classes)
    trainer = fruitclf.Trainer(spec, seed=seed, precision=precision, verbose=0,
                               callbacks=[timer])
    history = trainer.fit(train_tf, epochs=epochs, num_train_images=len(train))
    timer.times[0] += check_seconds
    result: dict[str, Any] = {"epoch_seconds": timer.times, "images": len(train),
                              "rss_mib": _peak_rss_mib(), "loss": history.metrics["loss"]}
    if val is not None:
        evaluation = fruitclf.Evaluator(trainer.model, full.class_names,
                                        preprocessing=prep).evaluate(val)
        result["val_accuracy"] = evaluation.accuracy
    return result


# ---------------------------------------------------------------------------- whole process


def _record_step_times(path: str) -> None:
    """Make every ``keras.Model.fit`` of this process note its first and last training step;
    write them to ``path`` at exit."""
    import atexit

    import keras

    times: dict[str, float] = {}

    class StepTimes(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            times.setdefault("first_step", time.time())

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            times["last_step"] = time.time()

        def on_train_end(self, logs: Any = None) -> None:  # the command may skip atexit
            Path(path).write_text(json.dumps(times))

    fit = keras.Model.fit

    def timed_fit(self: Any, *args: Any, callbacks: Any = None, **kwargs: Any) -> Any:
        return fit(self, *args, callbacks=[*(callbacks or []), StepTimes()], **kwargs)

    keras.Model.fit = timed_fit
    atexit.register(lambda: Path(path).write_text(json.dumps(times)))


def whole_worker(config: str, data: str, out: str, epochs: int) -> None:
    """One whole job, as a user runs it: the notebook's steps, or the ``fruitclf`` command."""
    _record_step_times(os.environ["BENCH_STEP_TIMES"])
    if config == "worksheet":
        import keras
        from matplotlib import pyplot as plt

        ds = keras.utils.image_dataset_from_directory(
            data, image_size=IMAGE_SIZE, interpolation="nearest", batch_size=BATCH, seed=0)
        rescale = keras.layers.Rescaling(1 / 255)
        model = _worksheet_model(len(ds.class_names), rescale_inside=False)
        history = model.fit(ds.map(lambda x, y: (rescale(x), y)), epochs=epochs, verbose=0)
        Path(out).mkdir(parents=True, exist_ok=True)
        model.save(f"{out}/model.h5")
        plt.plot(history.history["loss"])
        plt.savefig(f"{out}/history.png")
        return
    import fruitclf.cli

    extra = {
        "fruitclf-worksheet": ["--preset", "worksheet", "--precision", "float32"],
        "fruitclf-worksheet-auto": ["--preset", "worksheet", "--precision", "auto"],
    }.get(config, [])
    if extra:  # the notebook's work: every image, every epoch, no augmentation
        extra += ["--patience", "0", "--val-split", "0", "--tta", "1", "--no-augment"]
    sys.argv = ["fruitclf", "train", data, "--out", out, "--epochs", str(epochs), "--quiet",
                *extra]
    entry = getattr(fruitclf.cli, "entry_point", None)  # the `fruitclf` command itself
    if entry is not None:
        entry()
    raise SystemExit(fruitclf.cli.main())


def run_whole(config: str, data: Path, epochs: int, tmp: Path) -> dict[str, float]:
    """Wall time of the whole process, and from its start to the first step and from the
    last step to its exit."""
    out, stamps = tmp / f"out-{config}", tmp / f"steps-{config}.json"
    env = {**os.environ, "BENCH_STEP_TIMES": str(stamps)}
    start = time.time()
    proc = subprocess.run(
        [sys.executable, __file__, "--whole-worker", config, "--data", str(data), "--out",
         str(out), "--epochs", str(epochs)], capture_output=True, text=True, env=env,
        check=False)
    end = time.time()
    if proc.returncode != 0:
        raise RuntimeError(f"{config} failed:\n{proc.stderr[-3000:]}")
    steps = json.loads(stamps.read_text())
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    return {"total": end - start, "to_first_step": steps["first_step"] - start,
            "last_step_to_exit": end - steps["last_step"]}


def bench_whole(data: Path, epochs: int, repeats: int, tmp: Path) -> dict[str, dict[str, float]]:
    configs = {"(a) worksheet notebook": "worksheet",
               "(b) fruitclf --preset worksheet, fp32": "fruitclf-worksheet",
               "(c) fruitclf --preset worksheet, auto": "fruitclf-worksheet-auto",
               "(d) fruitclf, defaults (small-data)": "fruitclf-default"}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in configs}
    for _ in range(repeats):
        for name, config in configs.items():
            runs[name].append(run_whole(config, data, epochs, tmp))
    rows = {name: min(results, key=lambda r: r["total"]) for name, results in runs.items()}
    base = rows["(a) worksheet notebook"]["total"]
    print(f"\nWhole process on {data.name}, {epochs} epochs, best of {repeats} runs")
    print(f"{'configuration':<40}{'total s':>9}{'x (a)':>7}{'start->1st step':>17}"
          f"{'last step->exit':>17}")
    for name, row in rows.items():
        print(f"{name:<40}{row['total']:>9.1f}{base / row['total']:>7.2f}"
              f"{row['to_first_step']:>17.1f}{row['last_step_to_exit']:>17.1f}")
    return rows


def run_worker(config: str, data: Path, epochs: int, seed: int = 0) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", config, "--data", str(data), "--epochs",
         str(epochs), "--seed", str(seed)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {config} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- file check


def bench_check(root: Path) -> list[dict[str, Any]]:
    """Time fruitclf's check against Pillow loops on a folder with truncated JPEGs."""
    from PIL import Image

    import fruitclf

    files = sorted(str(p) for p in root.rglob("*.jpg"))
    rows = []

    def pillow(verify: bool) -> int:
        bad = 0
        for path in files:
            try:
                with Image.open(path) as im:
                    if verify:
                        im.verify()
                    else:
                        im.load()
            except Exception:  # the notebook loop catches everything it can
                bad += 1
        return bad

    for name, fn in (
        ("Pillow verify() loop", lambda: pillow(True)),
        ("Pillow full-load loop", lambda: pillow(False)),
        ("fruitclf check", lambda: len(fruitclf.ImageFolderDataset(root).check(
            progress=False).problems)),
    ):
        start = time.perf_counter()
        caught = fn()
        seconds = time.perf_counter() - start
        rows.append({"method": name, "files_per_s": len(files) / seconds, "caught": caught})
    return rows


# ---------------------------------------------------------------------------- report


def summarise(results: list[dict[str, Any]]) -> dict[str, float]:
    """Cold and median steady img/s of the fastest of repeated runs, and its peak RSS.

    Repeats are interleaved with the other configurations and the fastest one is kept, which
    damps interference from other load on the machine (it never makes a run look faster than
    it ran).
    """
    rows = []
    for result in results:
        times = result["epoch_seconds"]
        steady = times[1:] or times
        rows.append({"cold": result["images"] / times[0],
                     "steady": result["images"] / statistics.median(steady),
                     "rss": result["rss_mib"]})
    best = max(rows, key=lambda r: r["steady"])
    best["cold"] = max(r["cold"] for r in rows)
    return best


def print_table(title: str, rows: dict[str, dict[str, float]]) -> None:
    base = rows["(a) worksheet pipeline"]
    print(f"\n{title}")
    print(f"{'configuration':<34}{'cold img/s':>11}{'x (a)':>7}{'steady img/s':>14}"
          f"{'x (a)':>7}{'peak RSS MiB':>14}")
    for name, row in rows.items():
        cold = f"{row['cold']:>11.0f}{row['cold'] / base['cold']:>7.2f}" if row["cold"] else \
            f"{'-':>11}{'-':>7}"
        print(f"{name:<34}{cold}{row['steady']:>14.0f}{row['steady'] / base['steady']:>7.2f}"
              f"{row['rss']:>14.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="image folder to use")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per configuration")
    parser.add_argument("--quick", action="store_true", help="small data, for a smoke test")
    parser.add_argument("--seeds", type=int, default=3, help="seeds for the accuracy check")
    parser.add_argument("--repeats", type=int, default=2, help="runs per timing configuration")
    parser.add_argument("--whole-epochs", type=int, default=12,
                        help="epochs of the whole-process comparison")
    parser.add_argument("--only-whole", action="store_true",
                        help="only the whole-process comparison (on the large photos)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--whole-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, str(args.data), args.epochs, args.seed)))
        return 0
    if args.whole_worker:
        whole_worker(args.whole_worker, str(args.data), args.out, args.epochs)
        return 0

    start = time.perf_counter()
    print(f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}")
    import keras
    import tensorflow as tf

    import fruitclf
    from fruitclf._compat import cpu_has_native_bf16

    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, fruitclf "
          f"{fruitclf.__version__}; native bfloat16: "
          f"{cpu_has_native_bf16()}")
    scale = 4 if args.quick else 1
    with tempfile.TemporaryDirectory() as tmp:
        sets: dict[str, Path] = {}
        if args.data is not None:
            sets["your data"] = args.data
        else:
            sets["large photos (2000-4000 px)"] = write_photos(
                Path(tmp) / "large", 60 // scale, (2000, 4000), seed=1)
            if not args.only_whole:
                sets["small photos (150-400 px)"] = write_photos(
                    Path(tmp) / "small", 120 // scale, (150, 400), seed=2)
            print(f"Generated data in {time.perf_counter() - start:.0f} s")
        whole_data = sets.get("your data") or sets["large photos (2000-4000 px)"]
        bench_whole(whole_data, args.whole_epochs, args.repeats, Path(tmp))
        if args.only_whole:
            return 0
        for title, folder in sets.items():
            configs = (("(a) worksheet pipeline", "worksheet"), ("(b) fruitclf, float32", "fp32"),
                       ("(c) fruitclf, mixed_bfloat16", "bf16"),
                       ("(d) in-memory limit (random)", "limit"))
            results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in configs}
            for _ in range(args.repeats):
                for name, config in configs:
                    results[name].append(run_worker(config, folder, args.epochs))
            rows = {name: summarise(runs) for name, runs in results.items()}
            rows["(d) in-memory limit (random)"]["cold"] = 0.0
            print_table(f"{title}: worksheet CNN at 128x128, batch {BATCH}, "
                        f"{args.epochs} epochs, best of {args.repeats} runs", rows)
            fp32, bf16 = rows["(b) fruitclf, float32"], rows["(c) fruitclf, mixed_bfloat16"]
            limit = rows["(d) in-memory limit (random)"]
            print(f"bf16 / fp32 steady: {bf16['steady'] / fp32['steady']:.2f}x; "
                  f"fp32 / in-memory limit: {fp32['steady'] / limit['steady']:.2f}")

        accuracy_data = sets.get("your data") or sets["small photos (150-400 px)"]
        print(f"\nAccuracy on {accuracy_data.name} (validation split, {args.epochs + 2} epochs, "
              f"median of {args.seeds} seeds)")
        for config in ("fp32-acc", "bf16-acc"):
            accs = [run_worker(config, accuracy_data, args.epochs + 2, seed)["val_accuracy"]
                    for seed in range(args.seeds)]
            print(f"  {config[:4]}: median {statistics.median(accs):.3f}  "
                  f"(seeds: {', '.join(f'{a:.3f}' for a in accs)})")

        check_root = write_photos(Path(tmp) / "check", 60 // scale, (600, 1200), seed=3)
        truncated = 0
        for path in sorted(check_root.rglob("*.jpg"))[::10]:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) * 2 // 3])
            truncated += 1
        print(f"\nFile check on {sum(1 for _ in check_root.rglob('*.jpg'))} JPEGs "
              f"(600-1200 px), {truncated} truncated")
        rows_check = bench_check(check_root)
        full_load = next(r for r in rows_check if r["method"] == "Pillow full-load loop")
        for row in rows_check:
            print(f"  {row['method']:<24}{row['files_per_s']:>9.0f} files/s "
                  f"{row['files_per_s'] / full_load['files_per_s']:>6.2f}x full-load  "
                  f"caught {row['caught']}/{truncated}")
    print(f"\nTotal time: {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
