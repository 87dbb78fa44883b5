"""Exports: file size, agreement with the Keras model and test accuracy per format.

Usage::

    python benchmarks/bench_export.py                 # generated photos + flowers12, ~6 min
    python benchmarks/bench_export.py --quick         # generated photos only, ~1 min
    python benchmarks/bench_export.py --precision float32   # train in float32

For each folder, a model is trained with ``fruitclf.run`` (the default ``small-data``
recipe; fewer epochs with ``--quick``), then exported to SavedModel, TFLite (float32,
float16, int8 calibrated on the training folder) and ONNX. Every test image is run through
each export with its own runtime (``tf.saved_model.load``, the TFLite interpreter,
onnxruntime) and compared with the Keras model on the same decoded images (a model trained
in mixed bfloat16, the default where the CPU has it, differs from its float32 export by
bfloat16's rounding, about 1e-3): the largest
difference in probability, the share of images with the same top-1 class, and the test
accuracy of each (one view, no test-time augmentation, so that all see the same input).
The baseline is the Keras model, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FLOWERS = ROOT.parent / "shared" / "datasets" / "flowers12"
sys.path.insert(0, str(ROOT / "tests"))

import fruitclf  # noqa: E402
from _images import write_photo_split  # noqa: E402
from fruitclf.export import run_export  # noqa: E402

EXPORTS = [("savedmodel", "none", ""), ("tflite", "none", ".tflite"),
           ("tflite", "float16", ".tflite"), ("tflite", "int8", ".tflite"),
           ("onnx", "none", ".onnx")]


def _test_images(test: Path, loaded: fruitclf.LoadedModel) -> tuple[np.ndarray, np.ndarray]:
    from fruitclf.data.pipeline import file_images

    ds = fruitclf.ImageFolderDataset(test, class_names=loaded.class_names)
    batches = file_images(ds.paths, loaded.preprocessing, batch_size=64)
    return np.concatenate([np.asarray(b) for b in batches]), np.asarray(ds.labels)


def bench(name: str, train: Path, test: Path, work: Path, epochs: int | None,
          precision: str) -> None:
    start = time.perf_counter()
    result = fruitclf.run(train, out=work / name / "run", epochs=epochs, tta=1, verbose=0,
                          seed=1, precision=precision)
    loaded = fruitclf.load_model(result.files["model.keras"])
    print(f"\n{name}: trained in {time.perf_counter() - start:.0f} s, "
          f"{loaded.metadata.get('precision', 'float32')} (exports compute in float32)")
    images, labels = _test_images(test, loaded)
    keras_probs = loaded.model.predict(images, verbose=0)
    keras_acc = float((keras_probs.argmax(1) == labels).mean())
    print(f"{'export':<18} {'MiB':>6} {'seconds':>8} {'max |dp|':>9} {'same top-1':>10} "
          f"{'accuracy':>8}")
    print(f"{'keras (baseline)':<18} {'':>6} {'':>8} {'':>9} {'':>10} {keras_acc:>8.3f}")
    for fmt, quantize, suffix in EXPORTS:
        out = work / name / f"model-{quantize}{suffix}" if suffix else work / name / "saved"
        began = time.perf_counter()
        exported = fruitclf.export_model(loaded, out, quantize=quantize,
                                         calibration=train if quantize == "int8" else None)
        seconds = time.perf_counter() - began
        probs = run_export(out, fmt, images)
        label = fmt if quantize == "none" else f"{fmt} {quantize}"
        print(f"{label:<18} {exported.size_bytes / 2**20:>6.2f} {seconds:>8.1f} "
              f"{np.abs(probs - keras_probs).max():>9.1e} "
              f"{(probs.argmax(1) == keras_probs.argmax(1)).mean():>10.3f} "
              f"{(probs.argmax(1) == labels).mean():>8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="generated photos, 30 epochs")
    parser.add_argument("--precision", default="auto",
                        help="training precision (default: auto, bfloat16 where native)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train, test = write_photo_split(work / "generated", 6, {"train": 20, "test": 20})
        bench("generated (6 classes, 20 photos each)", train, test, work,
              30 if args.quick else None, args.precision)
        if not args.quick and FLOWERS.is_dir():
            bench("flowers12", FLOWERS / "train", FLOWERS / "test", work, None, args.precision)
        elif not args.quick:
            print(f"\nflowers12 not found at {FLOWERS}: skipped")


if __name__ == "__main__":
    main()
