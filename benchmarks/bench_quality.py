"""Duplicate finding: recall and precision on planted copies, the cost inside ``scan``, scale.

Usage::

    python benchmarks/bench_quality.py            # about 6 minutes
    python benchmarks/bench_quality.py --quick    # smaller, for a smoke test

1. Planted duplicates. Base photos (generated photo-like pictures, and real photos from
   ``../shared/datasets/flowers12/train`` when present) get copies made by every
   transformation at several strengths: resized, re-compressed, converted to PNG, BMP and
   GIF, cropped (centred, at a corner, at one side), brightened and darkened. Copies go into
   the base's class folder, among the distinct photos of that class. A planted pair is found
   when the base and the copy end up in one group; precision counts every pair the groups
   imply (a group that merges two bases makes all its cross pairs wrong). Byte-identical
   copies must also be recognised as exact (in a group with near copies, the group's kind
   is ``near``; the pair itself is checked). The real-photo set first
   drops photos that already have a look-alike in the folder (cosine distance under 0.05),
   so that the count is about the planted copies only.
2. Cost: ``check()`` plus ``find_duplicates()`` and ``quality_issues()`` on the large-photo
   set of ``bench_pipeline.py`` (240 JPEGs of 2000-4000 px), against the same check with the
   fingerprint switched off; and the whole ``fruitclf scan --json`` command in a fresh
   process, with and without. Measured alternately in this run (median of 5).
3. Scale: ``find_duplicates`` over 100,000 fingerprints of distinct pictures, 1% of them
   with a brightened copy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from PIL import Image, ImageEnhance

ROOT = Path(__file__).resolve().parents[1]
FLOWERS = ROOT.parent / "shared" / "datasets" / "flowers12"
sys.path.insert(0, str(ROOT / "tests"))  # the tests' writers of photo-like pictures

from _images import cropped, reencoded  # noqa: E402
from _images import photo_like as photo  # noqa: E402


def _resize(s: float) -> Callable[[Image.Image], Image.Image]:
    return lambda im: im.resize((max(8, round(im.width * s)), max(8, round(im.height * s))),
                                Image.Resampling.LANCZOS)


def _brightness(f: float) -> Callable[[Image.Image], Image.Image]:
    return lambda im: ImageEnhance.Brightness(im).enhance(f)


def _centre(f: float) -> Callable[[Image.Image], Image.Image]:
    return lambda im: cropped(im, f, f, f, f)


def _corner(f: float) -> Callable[[Image.Image], Image.Image]:
    return lambda im: cropped(im, f, f, 0, 0)


def _side(f: float) -> Callable[[Image.Image], Image.Image]:
    return lambda im: cropped(im, 0, 0, f, 0)


def _jpeg(q: int) -> Callable[[Image.Image], Image.Image]:
    return lambda im: reencoded(im, "JPEG", quality=q)


def _same(im: Image.Image) -> Image.Image:
    return im


def _palette(im: Image.Image) -> Image.Image:
    return im.convert("P", palette=Image.Palette.ADAPTIVE)


#: name -> (transformation, format of the copy; COPY: the same bytes)
TRANSFORMS: dict[str, tuple[Callable[[Image.Image], Image.Image], str]] = {
    "resize x0.5": (_resize(0.5), "JPEG"),
    "resize x0.25": (_resize(0.25), "JPEG"),
    "resize x2": (_resize(2.0), "JPEG"),
    "JPEG q90": (_jpeg(90), "JPEG"),
    "JPEG q60": (_jpeg(60), "JPEG"),
    "JPEG q30": (_jpeg(30), "JPEG"),
    "to PNG": (_same, "PNG"),
    "to GIF (256 colours)": (_palette, "GIF"),
    "crop 2% each side": (_centre(0.02), "JPEG"),
    "crop 4% each side": (_centre(0.04), "JPEG"),
    "crop 6% each side": (_centre(0.06), "JPEG"),
    "crop 5% at a corner": (_corner(0.05), "JPEG"),
    "crop 10% at a corner": (_corner(0.10), "JPEG"),
    "crop 5% one side": (_side(0.05), "JPEG"),
    "crop 10% one side": (_side(0.10), "JPEG"),
    "brighten x1.1": (_brightness(1.1), "JPEG"),
    "brighten x1.2": (_brightness(1.2), "JPEG"),
    "brighten x1.3": (_brightness(1.3), "JPEG"),
    "darken x0.9": (_brightness(0.9), "JPEG"),
    "darken x0.8": (_brightness(0.8), "JPEG"),
    "darken x0.7": (_brightness(0.7), "JPEG"),
    "same bytes": (_same, "COPY"),
}
_EXT = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp"}


def plant(root: Path, bases: list[Path]) -> dict[str, tuple[str, str]]:
    """Write every transformation of each base beside it; return copy -> (base, name)."""
    planted: dict[str, tuple[str, str]] = {}
    for b, base in enumerate(bases):
        image = Image.open(base).convert("RGB")
        for t, (name, (make, fmt)) in enumerate(TRANSFORMS.items()):
            if fmt == "COPY":
                target = base.with_name(f"planted_{b:03d}_{t:02d}{base.suffix}")
                shutil.copyfile(base, target)
            else:
                target = base.with_name(f"planted_{b:03d}_{t:02d}{_EXT[fmt]}")
                make(image).save(target, fmt)
            planted[str(target)] = (str(base), name)
    return planted


def _exact_key(a: Any, b: Any) -> bool:
    from fruitclf.data.quality import _exact_key

    return _exact_key(a, b)


def score(groups: list[Any], planted: dict[str, tuple[str, str]], prints: dict[str, Any]
          ) -> dict[str, Any]:
    origin = {copy: base for copy, (base, _) in planted.items()}
    origin.update({base: base for base, _ in planted.values()})
    group_of = {path: i for i, g in enumerate(groups) for path in g.paths}
    per: dict[str, list[bool]] = {}
    for copy, (base, name) in planted.items():
        per.setdefault(name, []).append(copy in group_of and group_of.get(base) == group_of[copy])
    right = wrong = 0
    for g in groups:
        for i, a in enumerate(g.paths):
            for b in g.paths[i + 1:]:
                same = a in origin and b in origin and origin[a] == origin[b]
                right, wrong = right + same, wrong + (not same)
    exact_ok = [group_of.get(copy) == group_of.get(base) and copy in group_of
                and _exact_key(prints[copy], prints[base])
                for copy, (base, name) in planted.items() if name == "same bytes"]
    found = [ok for oks in per.values() for ok in oks]
    return {"recall": sum(found) / len(found), "precision": right / max(1, right + wrong),
            "pairs": len(found), "wrong_pairs": wrong, "exact": sum(exact_ok) / len(exact_ok),
            "per": {name: sum(v) / len(v) for name, v in per.items()}}


def generated_set(root: Path, classes: int, per_class: int, bases: int) -> list[Path]:
    rng = np.random.default_rng(0)
    chosen: list[Path] = []
    for label in range(classes):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            path = folder / f"photo_{i:03d}.jpg"
            Image.fromarray(photo(rng, label, 256)).save(path, "JPEG", quality=90)
            if i < bases // classes:
                chosen.append(path)
    return chosen


def real_set(root: Path, per_class: int, bases: int) -> list[Path] | None:
    import fruitclf

    source = FLOWERS / "train"
    if not source.is_dir():
        return None
    ds = fruitclf.ImageFolderDataset(source)
    look_alikes = {p for g in ds.find_duplicates(threshold=0.05, progress=False)
                   for p in g.paths}
    chosen: list[Path] = []
    per_base = max(1, bases // ds.num_classes)
    for name in ds.class_names:
        kept = [p for p in ds.paths if Path(p).parent.name == name and p not in look_alikes]
        (root / name).mkdir(parents=True)
        for i, path in enumerate(kept[:per_class]):
            target = root / name / Path(path).name
            shutil.copyfile(path, target)
            if i < per_base:
                chosen.append(target)
    return chosen


def bench_planted(tmp: Path, quick: bool) -> None:
    import fruitclf

    sets: dict[str, list[Path] | None] = {
        "generated (256 px)": generated_set(tmp / "generated", 4, 15 if quick else 40,
                                            8 if quick else 40),
        "flowers12 photos": real_set(tmp / "flowers", 15 if quick else 40, 12 if quick else 36),
    }
    print("\n== Planted duplicates (default threshold) ==")
    for name, bases in sets.items():
        if bases is None:
            print(f"{name}: skipped ({FLOWERS} not found)")
            continue
        root = bases[0].parent.parent
        planted = plant(root, bases)
        ds = fruitclf.ImageFolderDataset(root)
        start = time.perf_counter()
        groups = ds.find_duplicates(progress=False)
        seconds = time.perf_counter() - start
        result = score(groups, planted, ds._decoded.prints)
        print(f"{name}: {len(ds)} images, {len(bases)} bases x {len(TRANSFORMS)} copies; "
              f"recall {result['recall']:.3f}, precision {result['precision']:.3f} "
              f"({result['wrong_pairs']} wrong pairs), byte copies found as exact "
              f"{result['exact']:.0%}, {seconds:.1f} s (check included)")
        for transform, recall in result["per"].items():
            print(f"    {transform:<22} recall {recall:.2f}")


def bench_cost(tmp: Path, quick: bool) -> None:
    from bench_pipeline import write_photos  # the large-photo set of the pipeline benchmark

    import fruitclf
    from fruitclf.data import check as check_module

    root = write_photos(tmp / "large", 6 if quick else 60, (2000, 4000), seed=1)
    fingerprint = check_module.fingerprint

    def with_prints() -> float:
        start = time.perf_counter()
        ds = fruitclf.ImageFolderDataset(root)
        ds.check(progress=False)
        ds.find_duplicates()
        ds.quality_issues(image_size=64)
        return time.perf_counter() - start

    def without() -> float:
        check_module.fingerprint = lambda *a, **k: None  # type: ignore[assignment]
        try:
            start = time.perf_counter()
            fruitclf.ImageFolderDataset(root).check(progress=False)
            return time.perf_counter() - start
        finally:
            check_module.fingerprint = fingerprint

    def command(fingerprints: bool) -> float:
        """``fruitclf scan ROOT --json`` in a fresh process; without fingerprints it is the
        scan as it was before the duplicate and quality pass."""
        off = "" if fingerprints else (
            "import fruitclf.data.check as c; c.fingerprint = lambda *a, **k: None; "
            "from fruitclf import ImageFolderDataset as D; "
            "D.find_duplicates = D.quality_issues = lambda *a, **k: []; ")
        code = f"{off}import sys; from fruitclf.cli import main; sys.exit(main(sys.argv[1:]))"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code, "scan", str(root), "--json"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start

    with_prints()  # warm up TensorFlow and the decoders
    timings: dict[str, list[float]] = {
        "check only": [], "check + duplicates + quality": [],
        "`fruitclf scan`, check only": [], "`fruitclf scan` (all of it)": []}
    for _ in range(5):
        timings["check only"].append(without())
        timings["check + duplicates + quality"].append(with_prints())
        timings["`fruitclf scan`, check only"].append(command(False))
        timings["`fruitclf scan` (all of it)"].append(command(True))
    count = len(fruitclf.ImageFolderDataset(root))
    print(f"\n== Cost inside scan: {count} large photos (2000-4000 px JPEG, the set of "
          "bench_pipeline.py), median of 5 ==")
    names = list(timings)
    for i, name in enumerate(names):
        value = statistics.median(timings[name])
        base = statistics.median(timings[names[i - i % 2]])
        print(f"{name:<32} {value:6.2f} s   {value / base:.3f}x")


def bench_scale(quick: bool) -> None:
    """Distinct 64 x 64 pictures, 1% of them with a brightened copy: time and copies found."""
    from fruitclf.data.quality import find_duplicates, fingerprint

    total = 20_000 if quick else 100_000
    rng = np.random.default_rng(2)
    start = time.perf_counter()
    prints, images = [], []
    for i in range(total - total // 100):
        image = photo(rng, i % 4, 64)
        prints.append(fingerprint(i.to_bytes(8, "little"), image))
        if i % 99 == 0:
            images.append((i, image))
    for i, image in images[: total - len(prints)]:
        brighter = np.clip(image.astype(np.int16) * 6 // 5, 0, 255).astype(np.uint8)
        prints.append(fingerprint(b"copy" + i.to_bytes(8, "little"), brighter))
    made = time.perf_counter() - start
    items = [(str(i), str(i), str(i % 4)) for i in range(len(prints))]
    start = time.perf_counter()
    groups = find_duplicates(items, prints)
    seconds = time.perf_counter() - start
    planted = len(prints) - (total - total // 100)
    print(f"\n== Scale: {len(prints)} fingerprints, {planted} of them brightened copies "
          f"({made:.0f} s to make) ==")
    print(f"find_duplicates: {seconds:.1f} s, {len(groups)} groups")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_planted(Path(tmp), args.quick)
        bench_cost(Path(tmp), args.quick)
    bench_scale(args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
