"""Would more photos help? ``fruitclf.learning_curve`` on real and generated folders.

Trains the default recipe (``fruitclf.run``, as ``fruitclf learning-curve`` does) on 25, 50,
75 and 100% of each class's photos, several seeds each, tests every model on the folder's
test photos, and prints per share the photos per class, every run's accuracy, the median,
the range and the 95% interval of the median run, then the fitted curve's forecast at twice
the photos and its sentence. Folders:

- ``flowers12-15``: the first 15 training photos of each class of
  ``../shared/datasets/flowers12`` (its 240 test photos), skipped with a message when absent;
- ``shapes``: five generated shape classes, 20 photos each (as in ``bench_accuracy.py``).

Run ``python benchmarks/bench_curve.py`` (two seeds of 40 epochs each, about 15 minutes on
2 cores); ``--epochs 0`` trains every run for the recipe's epochs (about 5 times longer:
small shares get the recipe's 300 epochs).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_accuracy import FLOWERS, _shapes, _subset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["flowers12-15", "shapes"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=40,
                        help="epochs of every run (0: the recipe's, from the data size; "
                        "about 5 times longer)")
    args = parser.parse_args()

    import fruitclf

    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        for name in args.datasets:
            if name.startswith("flowers12"):
                if not FLOWERS.is_dir():
                    print(f"{name}: skipped ({FLOWERS} is absent)")
                    continue
                train, test = _subset(FLOWERS / "train", 15, where), FLOWERS / "test"
            else:
                folder = _shapes(where)
                train, test = folder / "train", folder / "test"
            start = time.perf_counter()
            options = {"epochs": args.epochs} if args.epochs else {}
            curve = fruitclf.learning_curve(train, test_dir=test, out=where / f"curve-{name}",
                                            seeds=args.seeds, **options)
            print(f"\n{name}: {len(curve.seeds)} seeds, {args.epochs or 'the recipe'} epochs, "
                  f"{curve.num_test_images} test photos, {time.perf_counter() - start:.0f} s")
            print("| share | photos a class | runs | median | range | 95% interval |")
            print("|---|---|---|---|---|---|")
            for share, photos, row, median, (low, high) in zip(
                    curve.fractions, curve.photos_per_class, curve.accuracy, curve.medians,
                    curve.intervals):
                print(f"| {share:.0%} | {photos:.1f} | {', '.join(f'{a:.3f}' for a in row)} | "
                      f"{median:.3f} | {min(row):.3f}–{max(row):.3f} | "
                      f"{low:.3f}–{high:.3f} |")
            forecast = curve.predict(2 * curve.photos_per_class[-1])
            print(f"fit: {curve.fit}; forecast at twice the photos: {forecast}")
            print(curve.sentence)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
