"""Peak memory and time of ``fruitclf predict`` on crafted model files, against the same
command on the untampered model, measured in the same run.

Usage::

    python benchmarks/bench_hostile_models.py            # full-size bombs (2-5 GB), ~2 min
    python benchmarks/bench_hostile_models.py --quick    # 200 MB bombs, ~40 s

Each case is a ``.keras`` file made from one small trained model (the ``small-data``
preset at 32x32, 0.88 M parameters) by rewriting one member: fruitclf's metadata as a zip
bomb (2 GB inflated), Keras's ``config.json`` as a zip bomb (5 GB), the weights as a zip
bomb (4 GB), an input size of 8192 x 8192 on a model that takes any input size, 200,000
class names, and a class name with a line break. ``fruitclf predict`` runs on 4 JPEG photos
in its own process; the table gives its exit status, the length of its error, its peak
resident memory (``ru_maxrss`` of that process) and wall time, and both as a ratio to the
untampered model's run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402

import fruitclf  # noqa: E402
from _images import rewrite_member, write_photo_folder  # noqa: E402
from fruitclf.io import KERAS_ENTRY  # noqa: E402

#: Peak memory allowed for any crafted file.
LIMIT_BYTES = 1.5 * 2**30

MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(proc.returncode, peak, seconds, len(proc.stderr.strip()), sep="\\t")
"""


def metadata_case(model: Path, target: Path, change: object) -> Path:
    with zipfile.ZipFile(model) as archive:
        metadata = json.loads(archive.read(KERAS_ENTRY))
    change(metadata)  # type: ignore[operator]
    return rewrite_member(model, target, KERAS_ENTRY, json.dumps(metadata).encode())


def variable_size_model(folder: Path) -> Path:
    import keras

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    path = fruitclf.save_model(keras.Model(inputs, outputs), folder / "variable.keras",
                               class_names=["a", "b"],
                               preprocessing=fruitclf.Preprocessing(image_size=(32, 32)))
    return metadata_case(path, folder / "variable8192.keras",
                         lambda m: m["preprocessing"].update(image_size=[8192, 8192]))


def measure(model: Path, images: list[str]) -> tuple[int, int, float, int]:
    out = subprocess.run([sys.executable, "-c", MEASURE, sys.executable, "-m", "fruitclf.cli",
                          "predict", str(model), *images], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    code, peak, seconds, err = out.stdout.split()
    return int(code), int(peak), float(seconds), int(err)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 MB bombs instead of GBs")
    args = parser.parse_args()
    scale = 200 << 20 if args.quick else 0
    work = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    photos = write_photo_folder(work / "photos", 2, 2, size=640)
    images = [str(p) for p in sorted(photos.rglob("*.jpg"))]
    spec = fruitclf.CNNSpec.preset("small-data", num_classes=2, input_shape=(32, 32, 3))
    model = fruitclf.build_cnn(spec, seed=0)
    model.compile(optimizer="adamw", loss="categorical_crossentropy")
    model.fit(np.zeros((4, 32, 32, 3)), np.eye(2)[[0, 1, 0, 1]], verbose=0)
    clean = fruitclf.save_model(model, work / "model.keras", class_names=["a", "b"], spec=spec)
    def size(gigabytes: int) -> tuple[int, str]:
        inflated = scale or gigabytes << 30
        return inflated, f"{inflated / 2**30:.1f} GiB"

    (meta, meta_text), (config, config_text), (weights, weights_text) = size(2), size(5), size(4)
    cases = {
        "untampered (baseline)": clean,
        f"metadata zip bomb ({meta_text})": rewrite_member(
            clean, work / "meta.keras", KERAS_ENTRY, inflate_to=meta),
        f"config.json zip bomb ({config_text})": rewrite_member(
            clean, work / "config.keras", "config.json", inflate_to=config),
        f"weights zip bomb ({weights_text})": rewrite_member(
            clean, work / "weights.keras", "model.weights.h5", inflate_to=weights),
        "variable input, 8192x8192": variable_size_model(work),
        "200,000 class names": metadata_case(
            clean, work / "names.keras",
            lambda m: m.update(class_names=[f"c{i}" for i in range(200_000)])),
        "class name with a line break": metadata_case(
            clean, work / "newline.keras", lambda m: m.update(class_names=["a\nb", "c"])),
    }
    base_peak = base_seconds = 0.0
    print(f"{'case':32} {'exit':>4} {'error chars':>11} {'peak MiB':>9} {'x base':>7} "
          f"{'seconds':>8} {'x base':>7}")
    worst = 0
    for name, path in cases.items():
        code, peak, seconds, err = measure(path, images)
        if not base_peak:
            base_peak, base_seconds = peak, seconds
        worst = max(worst, peak)
        print(f"{name:32} {code:>4} {err:>11} {peak / 2**20:>9.0f} {peak / base_peak:>7.2f} "
              f"{seconds:>8.1f} {seconds / base_seconds:>7.2f}")
    print(f"\nlargest peak: {worst / 2**20:.0f} MiB (limit {LIMIT_BYTES / 2**20:.0f} MiB): "
          f"{'OK' if worst < LIMIT_BYTES else 'ABOVE THE LIMIT'}")


if __name__ == "__main__":
    main()
