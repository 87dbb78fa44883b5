"""Cost against folder size: ``fruitclf scan`` and a one-epoch ``fruitclf train`` on generated
folders of thousands of photos, with the in-memory training limit measured in the same run.

Usage::

    python benchmarks/bench_scale.py                        # scan 2k and 20k, train 20k
    python benchmarks/bench_scale.py --scan 2000 20000 60000 100000 --train 20000
    python benchmarks/bench_scale.py --data /big/disk/scale   # keep the folders for reruns
    python benchmarks/bench_scale.py --timeout 1800           # stop any command after 30 min
    python benchmarks/bench_scale.py --scan --train --shared 20000 --workers 2

Each folder holds 320x240 JPEGs (quality 85) in 20 classes, every photo different (smooth
random shapes and noise, so that JPEG sizes and decode times are those of photos, and no two
are duplicates). Every command runs in its own process; the table gives its wall time, the
photos per second of the whole command, its peak resident memory, and the memory per photo
(the slope of peak memory between the smallest and each larger folder). "inner s" is the
time the command reports for its own work: ``seconds`` in ``scan --json``, ``train_seconds``
(the training loop) in a run's ``metrics.json``. For ``train`` the training loop's
throughput is compared with the *in-memory limit*: the same model, precision and batch size
fitted for one epoch on as many images already decoded in memory, in a fresh process, so the
ratio says how close the pipeline keeps the loop to what the model itself allows.

``--shared`` measures the check shared between the workers of a cluster: the folder's check
and split (``check(strategy=...)``, then ``split(0.2)``) in one process, then in
``--workers`` processes joined as a multi-worker cluster on 127.0.0.1, each checking its
share and exchanging the rest. It prints each one's check time, photos/s of the check, peak
memory of the largest worker, and whether every worker's split is the one process's. On one
machine the workers share its cores: the ratio is what processes gain over threads here, not
what separate machines would.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _images import free_ports

SIZE = (240, 320)  # height, width
CLASSES = 20


def _write_chunk(root: str, start: int, stop: int) -> None:
    import numpy as np
    from PIL import Image

    for i in range(start, stop):
        rng = np.random.default_rng(i)
        low = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        image = np.asarray(Image.fromarray(low).resize(SIZE[::-1], Image.BICUBIC), np.int16)
        image += rng.integers(-12, 13, image.shape, dtype=np.int16)
        folder = Path(root) / f"class_{i % CLASSES:02d}"
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
            folder / f"{i:07d}.jpg", quality=85)


def write_folder(root: Path, count: int) -> Path:
    """``count`` generated photos under ``root`` (kept when already complete)."""
    done = root / ".complete"
    if done.exists():
        return root
    for c in range(CLASSES):
        (root / f"class_{c:02d}").mkdir(parents=True, exist_ok=True)
    step = 2000
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(_write_chunk, [str(root)] * ((count + step - 1) // step),
                      range(0, count, step), [min(s + step, count) for s in range(0, count, step)]))
    done.write_text(str(count))
    return root


def measure(command: list[str], timeout: float | None) -> dict[str, Any]:
    """Run ``command`` in a child that reports the grandchild's wall time and peak RSS;
    ``timed_out`` when it ran past ``timeout`` seconds (then stopped)."""
    probe = (
        "import json, resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "limit = float(sys.argv[1]) or None\n"
        "try:\n"
        "    proc = subprocess.run(sys.argv[2:], capture_output=True, timeout=limit)\n"
        "    rc, out, err = proc.returncode, proc.stdout, proc.stderr\n"
        "except subprocess.TimeoutExpired:\n"
        "    rc, out, err = None, b'', b''\n"
        "wall = time.perf_counter() - start\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20\n"
        "print(json.dumps({'wall': wall, 'rss_gb': rss, 'rc': rc, 'timed_out': rc is None,\n"
        "                  'stdout': out.decode(errors='replace')[-200000:],\n"
        "                  'stderr': err.decode(errors='replace')[-2000:]}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(timeout or 0), *command],
                         capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout)
    if not result["timed_out"] and result["rc"] != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result['stderr']}")
    return result


def in_memory_limit(run: Path, count: int) -> float:
    """Images per second of one epoch of the run's model on decoded images in memory."""
    code = (
        "import json, sys, time\n"
        "import numpy as np, fruitclf\n"
        "identity = json.loads(open(sys.argv[1]).read())['identity']\n"
        "config = identity['config']\n"
        "model = fruitclf.build_cnn(fruitclf.CNNSpec.from_dict(identity['spec']), seed=0,\n"
        "                           precision=config['precision'])\n"
        "model.compile(optimizer=config['optimizer'], loss='sparse_categorical_crossentropy',\n"
        "              metrics=['accuracy'])\n"
        "n = int(sys.argv[2]); h, w = model.input_shape[1:3]\n"
        "x = np.random.default_rng(0).integers(0, 256, (n, h, w, 3)).astype(np.float32)\n"
        "y = np.arange(n) % model.output_shape[-1]\n"
        "batch = int(config['batch_size'])\n"
        "model.fit(x[:batch * 4], y[:batch * 4], batch_size=batch, epochs=1, verbose=0)\n"
        "start = time.perf_counter()\n"
        "model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)\n"
        "print(n / (time.perf_counter() - start))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(run / "fruitclf-run.json"),
                          str(count)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


SHARED_CHILD = """
import json, resource, sys, time
folder, workers, index = sys.argv[1], sys.argv[2], int(sys.argv[3])
import fruitclf
from fruitclf import distribute
strategy = None
if workers != "-":
    distribute.set_cluster(workers, index)
    strategy = distribute.make_strategy("multi_worker")
ds = fruitclf.ImageFolderDataset(folder)
start = time.perf_counter()
report = ds.check(progress=False, strategy=strategy)
checked = time.perf_counter() - start
split = ds.split(0.2, seed=1)
print(json.dumps({"check_s": checked, "split": distribute.digest(split.validation.paths),
                  "files": len(report.fingerprints) + len(report.problems),
                  "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def shared_check(folder: Path, workers: int) -> list[dict[str, Any]]:
    """The check and split of ``folder`` in one process, then shared by ``workers``."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    results = []
    for count in (1, workers):
        cluster = ",".join(f"127.0.0.1:{p}" for p in free_ports(count)) if count > 1 else "-"
        procs = [subprocess.Popen([sys.executable, "-c", SHARED_CHILD, str(folder), cluster,
                                   str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env) for i in range(count)]
        outs = [p.communicate() for p in procs]
        if any(p.returncode for p in procs):
            raise SystemExit("the shared check failed:\n" + "\n".join(e for _, e in outs))
        rows = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
        results.append({"workers": count, "check_s": max(r["check_s"] for r in rows),
                        "rss_gb": max(r["rss_gb"] for r in rows),
                        "files": rows[0]["files"], "splits": sorted({r["split"] for r in rows})})
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", type=int, nargs="*", default=[2000, 20000],
                        help="folder sizes to scan")
    parser.add_argument("--train", type=int, nargs="*", default=[20000],
                        help="folder sizes to train one epoch on")
    parser.add_argument("--data", type=Path, help="where to keep the generated folders")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--timeout", type=float, default=None,
                        help="stop a command after this many seconds (reported as stopped)")
    parser.add_argument("--shared", type=int, nargs="*", default=[],
                        help="folder sizes to check in one process and shared by --workers")
    parser.add_argument("--workers", type=int, default=2,
                        help="workers of the shared check (on this machine)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp)
        rows: list[dict[str, float | str | None]] = []
        table = _Table()
        for count in sorted(set(args.scan)):
            folder = write_folder(data / f"photos-{count}", count)
            result = measure([sys.executable, "-m", "fruitclf.cli", "scan", str(folder),
                              "--json"], args.timeout)
            report = {} if result["timed_out"] else json.loads(result["stdout"])
            rows.append({"work": "scan" + " (stopped)" * result["timed_out"], "photos": count,
                         "wall": result["wall"], "reported": report.get("seconds"),
                         "rss_gb": result["rss_gb"]})
            table.add(rows[-1])
        for count in sorted(set(args.train)):
            folder = write_folder(data / f"photos-{count}", count)
            out = Path(tmp) / f"run-{count}"
            result = measure([sys.executable, "-m", "fruitclf.cli", "train", str(folder),
                              "--out", str(out), "--epochs", "1", "--quiet"], args.timeout)
            if result["timed_out"]:
                rows.append({"work": "train (stopped)", "photos": count,
                             "wall": result["wall"], "reported": None,
                             "rss_gb": result["rss_gb"]})
                table.add(rows[-1])
                continue
            metrics = json.loads((out / "metrics.json").read_text())
            limit = in_memory_limit(out, count)
            rows.append({"work": "train --epochs 1", "photos": count, "wall": result["wall"],
                         "reported": metrics.get("train_seconds"), "rss_gb": result["rss_gb"],
                         "loop_rate": metrics.get("images_per_second"), "limit": limit})
            table.add(rows[-1])
        for count in sorted(set(args.shared)):
            folder = write_folder(data / f"photos-{count}", count)
            one, shared = shared_check(folder, args.workers)
            same = one["splits"] == shared["splits"]
            for row in (one, shared):
                print(f"check of {count} photos, {row['workers']} worker(s): "
                      f"{row['check_s']:.1f} s, {count / row['check_s']:.0f} photos/s, peak "
                      f"{row['rss_gb']:.2f} GB (largest worker)", flush=True)
            print(f"  shared/one check time: {shared['check_s'] / one['check_s']:.2f}; every "
                  f"worker's split is one process's: {'yes' if same else 'NO'}", flush=True)
            rows.append({"work": f"shared check x{args.workers}", "photos": count,
                         "one_s": one["check_s"], "shared_s": shared["check_s"],
                         "one_rss_gb": one["rss_gb"], "shared_rss_gb": shared["rss_gb"],
                         "same_split": same})
        print(f"Generated 320x240 JPEGs in {CLASSES} classes; {os.cpu_count()} CPUs; "
              "peak GB = peak resident memory of the command.")
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
    return 0


class _Table:
    """The rows, printed as each command finishes (a large folder takes minutes)."""

    def __init__(self) -> None:
        self.smallest: dict[str, tuple[float, float]] = {}
        print(f"{'work':<18}{'photos':>8}{'wall s':>9}{'inner s':>9}{'photos/s':>10}"
              f"{'peak GB':>9}{'KB/photo':>10}{'loop/limit':>12}", flush=True)

    def add(self, row: dict[str, float | str | None]) -> None:
        photos, rss = float(row["photos"] or 0), float(row["rss_gb"] or 0)
        base = self.smallest.setdefault(str(row["work"]), (photos, rss))
        slope = ((rss - base[1]) * 2**20 / (photos - base[0])) if photos > base[0] else None
        ratio = (f"{float(row['loop_rate'] or 0) / float(row['limit']):.2f}"
                 if row.get("limit") else "")
        reported = f"{float(row['reported']):.1f}" if row.get("reported") is not None else ""
        wall = float(row["wall"] or 0)
        print(f"{row['work']:<18}{int(photos):>8}{wall:>9.1f}{reported:>9}"
              f"{photos / wall:>10.0f}{rss:>9.2f}{'' if slope is None else f'{slope:.1f}':>10}"
              f"{ratio:>12}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
