"""Test accuracy of the default recipe against the worksheet, with an ablation per ingredient.

Every row trains from scratch through ``fruitclf.run`` (the same code as ``fruitclf train``)
on several seeds and reports the median test accuracy, its range and the wall time per run.
Folders:

- ``flowers12``: ``../shared/datasets/flowers12`` (12 classes, 60 train / 20 test photos
  each), skipped with a message when absent; also its first 15 training files of each class
  (sorted by name, the same test folder). Test images with a twin (an exact or near
  duplicate) in the training folder are counted apart: "w/o twins" is the accuracy on the
  others, as ``test_accuracy_without_leaked`` in a run's metrics.
- ``food10``: ``../shared/datasets/food10`` (10 dishes, 40 train / 15 test restaurant phone
  photos each; research use only: read in place, never copied), skipped when absent, and its
  subsets as for flowers12 (``food10-15``); twins counted apart the same way.
- ``flowers12-15u`` (and ``food10-15u``): the first 15 training files of each class
  labelled, the other training files given as unlabelled photos (``run(unlabeled=...)``,
  one folder, no class names), against the same 15 without them. Twins are counted against
  the whole training folder in every row, so that "w/o twins" scores every row on the same
  test images; the share of the kept photos whose class is right, and the temperature fitted
  on the held-out labelled photos, are shown.
- ``digits``: scikit-learn's handwritten digits as written by ``fruitclf demo``.
- ``shapes``: a generated folder of five shapes in random colours, sizes and places.

Run ``python benchmarks/bench_accuracy.py`` (about an hour on 2 cores), or
``--quick`` for one seed of the main rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
#: The real folders of ../shared/datasets, read in place.
REAL = ("flowers12", "food10")


def _subset(train: Path, per_class: int, where: Path) -> Path:
    """Links to the first ``per_class`` files of each class (sorted by name)."""
    out = where / f"{train.parent.name}-{per_class}"
    for class_dir in sorted(p for p in train.iterdir() if p.is_dir()):
        (out / class_dir.name).mkdir(parents=True, exist_ok=True)
        for file in sorted(class_dir.iterdir())[:per_class]:
            (out / class_dir.name / file.name).symlink_to(file)
    return out


def _rest(train: Path, per_class: int, where: Path) -> tuple[Path, dict[str, str]]:
    """Links to every file after the first ``per_class`` of each class, in one folder under
    neutral names; and each link's true class."""
    out = where / f"{train.parent.name}-after-{per_class}"
    out.mkdir(parents=True, exist_ok=True)
    truth: dict[str, str] = {}
    for class_dir in sorted(p for p in train.iterdir() if p.is_dir()):
        for file in sorted(class_dir.iterdir())[per_class:]:
            link = out / f"u{len(truth):05d}{file.suffix.lower()}"
            link.symlink_to(file)
            truth[str(link)] = class_dir.name
    return out, truth


def real_folder(name: str, where: Path
                ) -> tuple[Path, Path, tuple[Path, dict[str, str]] | None] | None:
    """The training and test folders of a real folder's ``name`` (``flowers12``,
    ``flowers12-15``, ``flowers12-15u``: subsets linked under ``where``), and for a ``u`` name
    the unlabelled rest with each file's class; None, with a message, when it is absent."""
    real = name.split("-", 1)[0]
    source = DATASETS / real
    if not source.exists():
        print(f"{name}: skipped, {source} is absent", flush=True)
        return None
    train, rest = source / "train", None
    if name != real:
        per_class = int(name.rsplit("-", 1)[1].rstrip("u"))
        if name.endswith("u"):
            rest = _rest(train, per_class, where)
        train = _subset(train, per_class, where)
    return train, source / "test", rest


def _shapes(where: Path, seed: int = 0, per_class: int = 20, size: int = 64) -> Path:
    """Five shape classes in random colours, sizes and positions on noisy backgrounds."""
    rng = np.random.default_rng(seed)
    for part, count in (("train", per_class), ("test", per_class)):
        for shape in ("circle", "square", "triangle", "cross", "ring"):
            folder = where / "shapes" / part / shape
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                noise = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
                image = Image.fromarray(noise)
                draw = ImageDraw.Draw(image)
                r = int(rng.integers(size // 8, size // 3))
                cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
                colour = tuple(int(v) for v in rng.integers(100, 256, 3))
                box = (cx - r, cy - r, cx + r, cy + r)
                if shape == "circle":
                    draw.ellipse(box, fill=colour)
                elif shape == "square":
                    draw.rectangle(box, fill=colour)
                elif shape == "triangle":
                    draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
                elif shape == "cross":
                    w = max(r // 3, 2)
                    draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=colour)
                    draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=colour)
                else:
                    draw.ellipse(box, outline=colour, width=max(r // 3, 2))
                image.save(folder / f"{i:03d}.png")
    return where / "shapes"


def twins(train_dir: Path, test_dir: Path) -> set[str]:
    """Test files with an exact or near duplicate in the training folder, as ``fruitclf``
    finds them (:meth:`ImageFolderDataset.find_leakage`, the check ``fruitclf train`` runs)."""
    import fruitclf

    train = fruitclf.ImageFolderDataset(train_dir)
    test = fruitclf.ImageFolderDataset(test_dir, class_names=train.class_names)
    return {pair.test_path for pair in train.find_leakage(test, progress=False)}


@dataclasses.dataclass
class Row:
    name: str
    kwargs: dict
    tta: int = 0  # also evaluate the same models with this many TTA views (-1: the first
    # model of a run with unlabelled photos)


def unlabeled_rows(ablations: bool) -> list[Row]:
    """The default on the labelled photos alone, then with the unlabelled photos (its first
    model, on 80% of the labelled photos, is scored too), and with every one of them
    (threshold 0) as an ablation; ``unlabeled`` is filled in by main."""
    from fruitclf import Recipe

    default = Recipe.preset("small-data").pseudo_label_threshold
    rows = [Row("default, labelled photos only", {}),
            Row(f"**default + unlabelled photos (threshold {default:g})**",
                {"unlabeled": None}, tta=-1)]
    if ablations:
        rows.append(Row("default + unlabelled photos, every one (threshold 0)",
                        {"unlabeled": None, "pseudo_label_threshold": 0.0}, tta=-1))
    return rows


def rows_for(dataset: str, ablations: bool) -> list[Row]:
    """The worksheet, the default, and (with ``ablations``) one row per ingredient."""
    from fruitclf import Recipe
    from fruitclf.demo import DEMO_AUGMENTATION

    if dataset.endswith("u"):
        return unlabeled_rows(ablations)
    small = Recipe.preset("small-data")
    extra: dict = {}
    if dataset == "digits":  # as `fruitclf demo`: 32x32, no flips, float32
        extra = {"image_size": 32, "augment": DEMO_AUGMENTATION, "precision": "float32"}
    elif dataset == "shapes":
        extra = {"image_size": 64}
    worksheet_size = {"image_size": extra.get("image_size", 128)}
    out = [Row("worksheet preset (worksheet recipe)", {"spec": "worksheet", **extra,
                                                       **worksheet_size}),
           Row("default, one view (- TTA)", {**extra, "tta": 1}, tta=4)]
    if ablations:
        out += [
            Row("- batch norm CNN (worksheet CNN, small-data recipe)",
                {"spec": "worksheet", "recipe": small, **extra}),
            Row("- augmentation", {**extra, "augment": False}),
            Row("- AdamW + cosine (Adam 0.001, constant)",
                {**extra, "recipe": dataclasses.replace(small, optimizer="adam",
                                                        learning_rate=1e-3, weight_decay=0.0,
                                                        schedule="constant")}),
            Row("- label smoothing", {**extra, "recipe": dataclasses.replace(
                small, label_smoothing=0.0)}),
            Row("- all images (20% validation, early stopping 20, best epoch)",
                {**extra, "recipe": dataclasses.replace(
                    small, validation_split=0.2, patience=20, keep="best")}),
        ]
    return out


def measure(row: Row, train: Path, test: Path, seed: int, twin_set: set[str],
            unlabeled: tuple[Path, dict[str, str]] | None = None) -> dict:
    import keras

    import fruitclf

    keras.backend.clear_session()
    kwargs = dict(row.kwargs)
    if "unlabeled" in kwargs and unlabeled is not None:
        kwargs["unlabeled"] = unlabeled[0]
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = fruitclf.run(train, test_dir=test, out=Path(out) / "run", seed=seed,
                              verbose=0, **kwargs)
        seconds = time.perf_counter() - start
        scores = _scores(result.evaluation, twin_set)
        scores.update(seconds=seconds, epochs=result.history.epochs_run)
        if "pseudo_labels" in result.files and unlabeled is not None:
            from fruitclf.data.unlabeled import PseudoLabels

            labels = PseudoLabels.load(result.files["pseudo_labels"])
            kept = labels.kept
            scores.update(first_seconds=labels.first_model["train_seconds"],
                          final_seconds=result.metrics["train_seconds"])
            scores.update(kept=len(kept), unlabeled=len(labels.images),
                          temperature=labels.temperature,
                          kept_right=sum(unlabeled[1][p.path] == p.predicted for p in kept))
            first = fruitclf.load_model(result.files["teacher"])
            test_ds = fruitclf.ImageFolderDataset(test, class_names=first.class_names)
            evaluator = fruitclf.Evaluator(first.model, first.class_names,
                                           preprocessing=first.preprocessing)
            views = kwargs.get("tta", fruitclf.Recipe.preset("small-data").tta)
            scores["first"] = _scores(evaluator.evaluate(test_ds, tta=views), twin_set)
        if row.tta > 0:  # the saved model, with its preprocessing, on the same test folder
            loaded = fruitclf.load_model(result.files["model.keras"])
            test_ds = fruitclf.ImageFolderDataset(test, class_names=loaded.class_names)
            evaluator = fruitclf.Evaluator(loaded.model, loaded.class_names,
                                           preprocessing=loaded.preprocessing)
            scores["tta"] = _scores(evaluator.evaluate(test_ds, tta=row.tta), twin_set)
    return scores


def _scores(ev, twin_set: set[str]) -> dict:  # type: ignore[no-untyped-def]
    keep = np.array([p not in twin_set for p in ev.paths])
    correct = ev.y_true == ev.y_pred
    return {"accuracy": float(correct.mean()), "tested": len(correct),
            "accuracy_no_twins": float(correct[keep].mean()) if keep.any() else None,
            "tested_no_twins": int(keep.sum()), "correct": correct.tolist(),
            "kept_mask": keep.tolist()}


def _print_row(name: str, scores: list[dict], results: list[dict], with_twins: bool) -> None:
    no_twins = [s["accuracy_no_twins"] for s in scores if s["accuracy_no_twins"] is not None]
    labels = ""
    if results and all("kept" in r for r in results):  # kept photos, and how many of them are right
        kept = statistics.median(r["kept"] for r in results)
        right = statistics.median(r["kept_right"] / max(r["kept"], 1) for r in results)
        ratio = statistics.median((r["first_seconds"] + r["final_seconds"])
                                  / r["first_seconds"] for r in results)
        temperature = statistics.median(r["temperature"] for r in results)
        labels = (f" {kept:.0f} of {results[0]['unlabeled']} photos kept, {right:.0%} right; "
                  f"temperature {temperature:.2f}; training {ratio:.2f}x the first model's;")
    apart = (_summary(no_twins, scores[0]["tested_no_twins"]) if with_twins and no_twins
             else "–")
    epochs = f"{statistics.median(r['epochs'] for r in results):.0f}" if results else "–"
    seconds = f"{statistics.median(r['seconds'] for r in results):.0f}" if results else "–"
    print(f"| {name} | {_summary([s['accuracy'] for s in scores], scores[0]['tested'])} | "
          f"{apart} | {epochs} | {seconds} |{labels}", flush=True)


def _summary(values: list[float], tested: int) -> str:
    """Median (range) [95% interval]: the Wilson interval of the median run's accuracy on
    the ``tested`` images (how far the test folder's size lets it vary)."""
    from fruitclf.stats import wilson_interval

    middle = statistics.median(values)
    low, high = wilson_interval(round(middle * tested), tested)
    return f"{middle:.3f} ({min(values):.3f}–{max(values):.3f}) [{low:.3f}–{high:.3f}]"


def paired_gain(base: list[dict], other: list[dict], seeds: list[int]) -> str:
    """The change of ``other`` over ``base`` on the test images without twins, seed by seed
    (same seed, same images), with Newcombe's paired 95% interval."""
    from fruitclf.stats import paired_difference_interval

    parts = []
    for seed, a, b in zip(seeds, base, other):
        keep = np.array(a["kept_mask"])
        ra, rb = np.array(a["correct"])[keep], np.array(b["correct"])[keep]
        low, high = paired_difference_interval(
            both=int((ra & rb).sum()), only_a=int((ra & ~rb).sum()),
            only_b=int((~ra & rb).sum()), neither=int((~ra & ~rb).sum()))
        parts.append(f"seed {seed}: {100 * (rb.mean() - ra.mean()):+.1f} points "
                     f"[{100 * low:+.1f} to {100 * high:+.1f}]")
    return "; ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--datasets", nargs="+",
                        default=["flowers12-15", "flowers12", "food10", "digits", "shapes"])
    parser.add_argument("--ablations", nargs="+", default=["flowers12-15"],
                        help="datasets that get the ablation rows")
    parser.add_argument("--quick", action="store_true", help="one seed, no ablations")
    parser.add_argument("--json", type=Path, help="also write every run here")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.ablations = args.seeds[:1], []

    import keras
    import tensorflow as tf

    import fruitclf

    print(f"Machine: {platform.machine()}, {os.cpu_count()} CPUs; Python "
          f"{platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"fruitclf {fruitclf.__version__}; seeds {args.seeds}", flush=True)
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        folders: dict[str, tuple[Path, Path]] = {}
        unlabeled: dict[str, tuple[Path, dict[str, str]]] = {}
        for name in args.datasets:
            real = name.split("-", 1)[0]
            if real in REAL:
                found = real_folder(name, where)
                if found is None:
                    continue
                train, test, rest = found
                if rest is not None:
                    unlabeled[name] = rest
                folders[name] = (train, test)
            elif name == "digits":
                demo = fruitclf.write_demo_dataset(where / "digits")
                folders[name] = (demo.train_dir, demo.test_dir)
            elif name == "shapes":
                shapes = _shapes(where)
                folders[name] = (shapes / "train", shapes / "test")
            else:
                parser.error(f"unknown dataset {name!r}")
        for name, (train, test) in folders.items():
            real = name.split("-", 1)[0]
            whole = DATASETS / real / "train" if name in unlabeled else train
            twin_set = twins(whole, test) if real in REAL else set()
            total = len(fruitclf.ImageFolderDataset(test).paths)
            print(f"\n### {name}: {len(fruitclf.ImageFolderDataset(train).paths)} training, "
                  f"{total} test images ({len(twin_set)} with a twin in training)\n", flush=True)
            print("| configuration | test accuracy, median (range) [95% interval] | w/o twins | "
                  "epochs | s / run |\n|---|---|---|---:|---:|", flush=True)
            alone: list[dict] = []  # the labelled photos alone, to compare with
            for row in rows_for(name, name in args.ablations):
                results = [measure(row, train, test, seed, twin_set, unlabeled.get(name))
                           for seed in args.seeds]
                for seed, r in zip(args.seeds, results):
                    runs.append({"dataset": name, "row": row.name, "seed": seed, **r})
                if row.tta < 0:  # the first model of the same runs
                    _print_row("first model of the runs below (80% of the labelled photos)",
                               [r["first"] for r in results], [], bool(twin_set))
                _print_row(row.name, results, results, bool(twin_set))
                if row.tta < 0:
                    print(f"|  | w/o twins, against labelled only: "
                          f"{paired_gain(alone, results, args.seeds)} | | | |", flush=True)
                elif name in unlabeled:
                    alone = results
                if row.tta > 0:
                    _print_row(f"**default (small-data recipe, TTA {row.tta})**, same models",
                               [r["tta"] for r in results], results, bool(twin_set))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
