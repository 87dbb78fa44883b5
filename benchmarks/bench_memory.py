"""Memory scaling: peak RSS of a training epoch as the dataset grows, against the cache budget.

Usage::

    python benchmarks/bench_memory.py                       # 1k, 4k, 16k images, 256 MiB budget
    python benchmarks/bench_memory.py --sizes 500 2000 --budget-mib 64

Each size trains the worksheet CNN (128x128) for one epoch in its own process with fruitclf's
default pipeline and the given in-memory cache budget, and prints the cache decision
(``plan_cache``), the estimated decoded size and the peak RSS. Up to the budget the decoded
images are cached in memory, so RSS grows with the dataset by about the estimate; past it the
pipeline streams (or uses a file cache, with ``--file-cache``) and RSS stops growing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

IMAGE_SIZE = (128, 128)


def write_images(root: Path, count: int, classes: int = 4) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / f"class_{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)
        Image.fromarray(small).resize((160, 160)).save(folder / f"{i:05d}.jpg", quality=85)
    return root


def worker(data: str, budget: int, file_cache: str | None) -> dict[str, object]:
    import fruitclf

    ds = fruitclf.ImageFolderDataset(data)
    cache = file_cache if file_cache else "auto"
    plan = fruitclf.plan_cache(len(ds), IMAGE_SIZE, cache=cache, budget=budget)
    pipeline = ds.to_tf_dataset(image_size=IMAGE_SIZE, batch_size=32, shuffle=True, seed=0,
                                cache=cache, cache_budget=budget)
    spec = fruitclf.CNNSpec.preset("worksheet", num_classes=ds.num_classes)
    trainer = fruitclf.Trainer(spec, seed=0, verbose=0)
    start = time.perf_counter()
    trainer.fit(pipeline, epochs=1, num_train_images=len(ds))
    return {"images": len(ds), "cache": plan.kind, "estimate_mib": plan.nbytes / 2**20,
            "seconds": time.perf_counter() - start,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--budget-mib", type=int, default=256)
    parser.add_argument("--file-cache", action="store_true",
                        help="past the budget, cache in files instead of streaming")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cache-path", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    budget = args.budget_mib * 2**20
    if args.worker:
        print(json.dumps(worker(args.worker, budget, args.cache_path)))
        return 0
    print(f"{'images':>8}{'cache':>8}{'decoded MiB':>13}{'peak RSS MiB':>14}{'epoch s':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            data = write_images(Path(tmp) / f"d{size}", size)
            command = [sys.executable, __file__, "--worker", str(data), "--budget-mib",
                       str(args.budget_mib)]
            if args.file_cache:
                command += ["--cache-path", str(Path(tmp) / f"cache{size}" / "train")]
            proc = subprocess.run(command, capture_output=True, text=True, check=True)
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{row['images']:>8}{row['cache']:>8}{row['estimate_mib']:>13.0f}"
                  f"{row['peak_rss_mib']:>14.0f}{row['seconds']:>9.1f}")
    print(f"Cache budget: {args.budget_mib} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
