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
import collections
import io
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
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

ROOT = Path(__file__).resolve().parents[1]
FLOWERS = ROOT.parent / "shared" / "datasets" / "flowers12"
FOOD = ROOT.parent / "shared" / "datasets" / "food10"
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


def _mirror(im: Image.Image) -> Image.Image:
    return ImageOps.mirror(im)


def _turn(degrees: int) -> Callable[[Image.Image], Image.Image]:
    return lambda im: im.rotate(degrees, expand=True)


def _small_turn(im: Image.Image) -> Image.Image:
    """4 degrees, then cropped to leave out the corners the turn uncovered (7% a side)."""
    return cropped(im.rotate(4, resample=Image.Resampling.BICUBIC), 0.07, 0.07, 0.07, 0.07)


def _grey(im: Image.Image) -> Image.Image:
    return im.convert("L")


def _hue(degrees: float) -> Callable[[Image.Image], Image.Image]:
    def shift(im: Image.Image) -> Image.Image:
        h, s, v = (np.asarray(band) for band in im.convert("HSV").split())
        h = ((h.astype(np.int16) + round(degrees / 360 * 256)) % 256).astype(np.uint8)
        return Image.merge("HSV", [Image.fromarray(c) for c in (h, s, v)]).convert("RGB")
    return shift


def _saturation(f: float) -> Callable[[Image.Image], Image.Image]:
    return lambda im: ImageEnhance.Color(im).enhance(f)


def _blur(share: float) -> Callable[[Image.Image], Image.Image]:
    return lambda im: im.filter(ImageFilter.GaussianBlur(share * im.width))


def _noise(sigma: float) -> Callable[[Image.Image], Image.Image]:
    def add(im: Image.Image) -> Image.Image:
        rng = np.random.default_rng(im.width * 7919 + im.height)
        pixels = np.asarray(im, np.float32) + rng.normal(0, sigma, (im.height, im.width, 3))
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return add


def _watermark(im: Image.Image) -> Image.Image:
    """A line of white text, a twelfth of the height, at the lower right."""
    out = im.copy()
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=max(8, im.height // 12))
    text = "(c) fruitclf 2026"
    box = draw.textbbox((0, 0), text, font=font)
    x = im.width - (box[2] - box[0]) - im.width // 30
    y = im.height - (box[3] - box[1]) - im.height // 20
    draw.text((x, y), text, fill=(255, 255, 255), font=font, stroke_width=1,
              stroke_fill=(0, 0, 0))
    return out


def _letterbox(share: float) -> Callable[[Image.Image], Image.Image]:
    """Black bars above and below, each ``share`` of the new height."""
    def pad(im: Image.Image) -> Image.Image:
        bar = round(im.height * share / (1 - 2 * share))
        out = Image.new("RGB", (im.width, im.height + 2 * bar))
        out.paste(im, (0, bar))
        return out
    return pad


def _random_crop(im: Image.Image) -> Image.Image:
    """0-20% off each side, drawn per image."""
    rng = np.random.default_rng(im.width * 31 + im.height)
    return cropped(im, *rng.uniform(0.0, 0.2, 4))


#: name -> (transformation, format of the copy; COPY: the same bytes). The first twelve are
#: the transformations on which fruitclf was compared with its peers; then the older set.
TRANSFORMS: dict[str, tuple[Callable[[Image.Image], Image.Image], str]] = {
    "horizontal mirror": (_mirror, "JPEG"),
    "90 degree turn": (_turn(90), "JPEG"),
    "4 degree turn + crop": (_small_turn, "JPEG"),
    "grayscale": (_grey, "JPEG"),
    "hue +20 degrees": (_hue(20), "JPEG"),
    "watermark text": (_watermark, "JPEG"),
    "letterbox (bars 10%)": (_letterbox(0.10), "JPEG"),
    "crop 15% each side": (_centre(0.15), "JPEG"),
    "saturation x1.5": (_saturation(1.5), "JPEG"),
    "blur (1% of width)": (_blur(0.01), "JPEG"),
    "to WebP": (_same, "WEBP"),
    "noise (sigma 8)": (_noise(8), "JPEG"),
    "180 degree turn": (_turn(180), "JPEG"),
    "mirror + grayscale": (lambda im: _grey(_mirror(im)), "JPEG"),
    "crop 20% each side": (_centre(0.20), "JPEG"),
    "crop 10% at a corner": (_corner(0.10), "JPEG"),
    "crop 15% one side": (_side(0.15), "JPEG"),
    "crop 0-20% a side, random": (_random_crop, "JPEG"),
    "resize x0.5": (_resize(0.5), "JPEG"),
    "JPEG q30": (_jpeg(30), "JPEG"),
    "to GIF (256 colours)": (lambda im: im.convert("P", palette=Image.Palette.ADAPTIVE),
                             "GIF"),
    "brighten x1.3": (_brightness(1.3), "JPEG"),
    "darken x0.7": (_brightness(0.7), "JPEG"),
    "same bytes": (_same, "COPY"),
}
#: The transformations of the comparison with the peers (the table of the issue that asked
#: for them); the others were in the benchmark before.
COMPARED = list(TRANSFORMS)[:12]
_EXT = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp"}


def plant(bases: list[Path], transforms: list[str]) -> dict[str, tuple[str, str]]:
    """Write each transformation of each base beside it; return copy -> (base, name)."""
    planted: dict[str, tuple[str, str]] = {}
    for b, base in enumerate(bases):
        image = ImageOps.exif_transpose(Image.open(base)).convert("RGB")
        for t, name in enumerate(transforms):
            make, fmt = TRANSFORMS[name]
            if fmt == "COPY":
                target = base.with_name(f"planted_{b:03d}_{t:02d}{base.suffix}")
                shutil.copyfile(base, target)
            else:
                target = base.with_name(f"planted_{b:03d}_{t:02d}{_EXT[fmt]}")
                make(image).save(target, fmt)
            planted[str(target)] = (str(base), name)
    return planted


# --------------------------------------------------------------------------------------------
# The tools, each in a fresh process (time and peak memory of the whole job)
# --------------------------------------------------------------------------------------------


def _image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in
                  (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"))


def _groups_fruitclf(root: Path) -> list[list[str]]:
    import fruitclf

    return [g.paths for g in fruitclf.ImageFolderDataset(root).find_duplicates(progress=False)]


def _groups_phash(root: Path, distance: int = 8) -> list[list[str]]:
    """imagehash's 64-bit DCT hash; pairs within ``distance`` bits, joined into groups."""
    import imagehash

    paths = _image_files(root)
    hashes = np.array([imagehash.phash(Image.open(p)).hash.ravel() for p in paths])
    parent = list(range(len(paths)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(paths)):
        close = np.flatnonzero((hashes[i + 1:] != hashes[i]).sum(axis=1) <= distance) + i + 1
        for j in close:
            parent[find(int(j))] = find(i)
    groups: dict[int, list[str]] = {}
    for i, p in enumerate(paths):
        groups.setdefault(find(i), []).append(str(p))
    return [g for g in groups.values() if len(g) > 1]


def _groups_cleanvision(root: Path) -> list[list[str]]:
    from cleanvision import Imagelab

    lab = Imagelab(data_path=str(root))
    lab.find_issues({"exact_duplicates": {}, "near_duplicates": {}}, verbose=False)
    sets = (lab.info["exact_duplicates"]["sets"] + lab.info["near_duplicates"]["sets"])
    return [[str(p) for p in s] for s in sets]


TOOLS: dict[str, tuple[Callable[[Path], list[list[str]]], str | None]] = {
    "fruitclf": (_groups_fruitclf, None),
    "phash <= 8": (_groups_phash, "imagehash"),
    "cleanvision": (_groups_cleanvision, "cleanvision"),
}


def run_tool(tool: str, root: Path) -> tuple[list[list[str]], float, float] | None:
    """The tool's groups, its wall time and its peak memory (MiB), in a fresh process; None
    when the tool is not installed (``pip install -e ".[bench]"``)."""
    import importlib.util
    import json

    module = TOOLS[tool][1]
    if module is not None and importlib.util.find_spec(module) is None:
        return None
    out = root.parent / f"{root.name}.{tool.split()[0]}.json"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--tool", tool, str(root), str(out)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{tool} failed on {root}:\n{done.stderr}")
    result = json.loads(out.read_text())
    return result["groups"], seconds, result["peak_mib"]


def _peak_mib() -> float:
    """This process's peak resident memory since it started (``VmHWM``; the rusage of a
    child would also count the parent's memory it was forked with)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def score(groups: list[list[str]], planted: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """Recall per transformation and the pairs of distinct photos the groups imply."""
    origin = {copy: base for copy, (base, _) in planted.items()}
    origin.update({base: base for base, _ in planted.values()})
    group_of = {path: i for i, g in enumerate(groups) for path in g}
    per: dict[str, list[bool]] = {}
    for copy, (base, name) in planted.items():
        per.setdefault(name, []).append(copy in group_of and group_of.get(base) == group_of[copy])
    wrong = 0
    for g in groups:
        for i, a in enumerate(g):
            for b in g[i + 1:]:
                wrong += not (a in origin and b in origin and origin[a] == origin[b])
    found = [ok for oks in per.values() for ok in oks]
    return {"recall": sum(found) / len(found), "found": sum(found), "pairs": len(found),
            "wrong_pairs": wrong, "per": {name: (sum(v), len(v)) for name, v in per.items()}}


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


def real_set(root: Path, sources: dict[Path, tuple[int, int]]) -> list[Path] | None:
    """Photos of each ``source: (photos, bases)`` folder (spread over its classes) copied
    under ``root``, leaving out any photo with a look-alike already in its folder (by
    fruitclf at 3x its default threshold, or by phash within 10 bits), so that the pairs
    counted are the planted ones; returns the bases."""
    import fruitclf
    from fruitclf.settings import NEAR_DUPLICATE_THRESHOLD

    chosen: list[Path] = []
    for source, (count, bases) in sources.items():
        if not source.is_dir():
            return None
        ds = fruitclf.ImageFolderDataset(source)
        look_alikes = {p for g in ds.find_duplicates(threshold=3 * NEAR_DUPLICATE_THRESHOLD,
                                                     progress=False) for p in g.paths}
        look_alikes |= {p for g in _groups_phash(source, 10) for p in g}
        per_class = count // ds.num_classes
        for c, name in enumerate(ds.class_names):
            per_base = bases // ds.num_classes + (c < bases % ds.num_classes)
            kept = [p for p in ds.paths if Path(p).parent.name == name and p not in look_alikes]
            (root / name).mkdir(parents=True)
            for i, path in enumerate(kept[:per_class]):
                target = root / name / Path(path).name
                shutil.copyfile(path, target)
                if i < per_base:
                    chosen.append(target)
    return chosen


def bench_planted(tmp: Path, quick: bool) -> None:
    sets: dict[str, list[Path] | None] = {
        "real photos (flowers12, food10)": real_set(tmp / "real", {
            FLOWERS / "train": (96 if quick else 204, 12 if quick else 30),
            FOOD / "train": (30 if quick else 40, 10)}),
        "generated (256 px)": generated_set(tmp / "generated", 4, 20 if quick else 60,
                                            8 if quick else 40),
    }
    for name, bases in sets.items():
        if bases is None:
            print(f"\n{name}: skipped ({FLOWERS} or {FOOD} not found)")
            continue
        root = bases[0].parent.parent
        planted = plant(bases, list(TRANSFORMS))
        results = {tool: run_tool(tool, root) for tool in TOOLS}
        print(f"\n== Planted duplicates, {name}: {len(_image_files(root))} images, "
              f"{len(bases)} bases x {len(TRANSFORMS)} copies ==")
        shown = {tool: r for tool, r in results.items() if r is not None}
        scores = {tool: score(r[0], planted) for tool, r in shown.items()}
        print(f"{'copy':<28}" + "".join(f"{tool:>14}" for tool in shown))
        for transform in TRANSFORMS:
            print(f"{transform:<28}" + "".join(
                f"{scores[t]['per'][transform][0]:>10} /{scores[t]['per'][transform][1]:>2}"
                for t in shown))
        for label, subset in (("the twelve compared", COMPARED), ("all", list(TRANSFORMS))):
            row = []
            for t in shown:
                found = sum(scores[t]["per"][x][0] for x in subset)
                total = sum(scores[t]["per"][x][1] for x in subset)
                row.append(f"{found / total:>14.3f}")
            print(f"{'recall, ' + label:<28}" + "".join(row))
        print(f"{'pairs of distinct photos':<28}" + "".join(
            f"{scores[t]['wrong_pairs']:>14}" for t in shown))
        print(f"{'seconds (fresh process)':<28}" + "".join(
            f"{shown[t][1]:>14.1f}" for t in shown))
        print(f"{'peak memory (MiB)':<28}" + "".join(f"{shown[t][2]:>14.0f}" for t in shown))
        missing = [t for t, r in results.items() if r is None]
        if missing:
            print(f"not installed: {', '.join(missing)} (pip install -e \".[bench]\")")


def bench_cost(tmp: Path, quick: bool, baseline: str | None = None) -> None:
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

    def command(fingerprints: bool, folder: Path = root, src: str | None = None) -> float:
        """``fruitclf scan FOLDER --json`` in a fresh process; without fingerprints it is the
        scan as it was before the duplicate and quality pass; ``src``: another fruitclf
        source tree (the baseline)."""
        off = "" if fingerprints else (
            "import fruitclf.data.check as c; c.fingerprint = lambda *a, **k: None; "
            "from fruitclf import ImageFolderDataset as D; "
            "D.find_duplicates = D.quality_issues = lambda *a, **k: []; ")
        code = f"{off}import sys; from fruitclf.cli import main; sys.exit(main(sys.argv[1:]))"
        env = {**os.environ, "PYTHONPATH": src} if src else None
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code, "scan", str(folder), "--json"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=env)
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
    if baseline is None:
        return
    folders = {"large photos": root}
    if (FLOWERS / "train").is_dir():
        folders["flowers12/train"] = FLOWERS / "train"
    print(f"\n== `fruitclf scan --json`, this tree against {baseline}, alternately, "
          "median of 5 ==")
    for label, folder in folders.items():
        pair: dict[str, list[float]] = {"baseline": [], "this": []}
        for _ in range(5):
            pair["baseline"].append(command(True, folder, baseline))
            pair["this"].append(command(True, folder))
        images = len(fruitclf.ImageFolderDataset(folder))
        old, new = (statistics.median(pair[k]) for k in ("baseline", "this"))
        print(f"{label:<18} {images:>5} images: baseline {old:6.2f} s "
              f"({1000 * old / images:.1f} ms a photo), this {new:6.2f} s "
              f"({1000 * new / images:.1f} ms a photo), {new / old:.3f}x")


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


def _pillow_accepts(path: Path) -> bool:
    """What a check by Pillow alone would say: the file opens, decodes whole, converts."""
    try:
        with Image.open(path) as image:
            image.load()
            image.convert("RGB")
        return True
    except Exception:  # every way Pillow refuses a file
        return False


def hostile_corpus(root: Path, photos: list[Path], seed: int = 0) -> None:
    """Broken files the way disks, downloads and editors break them: bytes flipped inside
    the compressed data, files cut short, garbage appended, and the zoo of the tests."""
    from _images import write_zoo

    rng = np.random.default_rng(seed)
    write_zoo(root / "zoo", rng)
    out = root / "mutated"
    out.mkdir(parents=True)
    for i, path in enumerate(photos):
        image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        image.thumbnail((320, 320))
        for fmt, ext in (("JPEG", ".jpg"), ("PNG", ".png"), ("GIF", ".gif"),
                         ("WEBP", ".webp"), ("BMP", ".bmp")):
            buffer = io.BytesIO()
            image.save(buffer, fmt)
            data = bytearray(buffer.getvalue())
            for n in (1, 4, 16):  # bytes flipped in the middle third
                flipped = bytearray(data)
                for at in rng.integers(len(data) // 3, 2 * len(data) // 3, n):
                    flipped[at] ^= int(rng.integers(1, 256))
                (out / f"{i:03d}_flip{n}{ext}").write_bytes(bytes(flipped))
            for share in (0.6, 0.9, 0.99):  # cut short
                (out / f"{i:03d}_cut{int(share * 100)}{ext}").write_bytes(
                    bytes(data[:int(len(data) * share)]))
            (out / f"{i:03d}_tail{ext}").write_bytes(bytes(data) + b"\x00garbage" * 50)


def bench_pillow_first(tmp: Path, quick: bool) -> None:
    """Would a check by Pillow first, TensorFlow only where needed, lose anything?"""
    import fruitclf

    source = FLOWERS / "train"
    photos = (sorted(source.rglob("*.jpg"))[:: 60 if quick else 12] if source.is_dir()
              else generated_set(tmp / "pillow-photos", 2, 10, 0) or
              sorted((tmp / "pillow-photos").rglob("*.jpg")))
    root = tmp / "hostile"
    hostile_corpus(root, photos)
    files = sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())
    ds = fruitclf.ImageFolderDataset(root)
    report = ds.check(progress=False)
    refused_by_tf = {p.path for p in report.problems}
    counts = {"both accept": 0, "both refuse": 0, "Pillow accepts, TensorFlow refuses": 0,
              "Pillow refuses, TensorFlow accepts": 0}
    missed = []
    for path in files:
        pil, tf_ok = _pillow_accepts(path), str(path) not in refused_by_tf
        key = ("both accept" if pil and tf_ok else "both refuse" if not (pil or tf_ok) else
               "Pillow accepts, TensorFlow refuses" if pil else
               "Pillow refuses, TensorFlow accepts")
        counts[key] += 1
        if pil and not tf_ok:
            missed.append(path.name)
    print(f"\n== A check by Pillow alone, on {len(files)} hostile files "
          f"({len(photos)} photos broken 7 ways in 5 formats, and the tests' zoo) ==")
    for key, n in counts.items():
        print(f"{key:<38} {n:>5}")
    kinds = collections.Counter(name.split("_", 1)[-1] for name in missed)
    print("Pillow accepts, TensorFlow refuses, by how the file was broken: "
          + ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items())))
    if source.is_dir():
        code = ("import sys; from pathlib import Path; sys.path.insert(0, {bench!r}); "
                "import bench_quality as b; "
                "ok = [b._pillow_accepts(p) for p in sorted(Path({src!r}).rglob('*.jpg'))]; "
                "print(b._peak_mib())").format(bench=str(ROOT / "benchmarks"), src=str(source))
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True)
        pil_seconds, pil_peak = time.perf_counter() - start, float(done.stdout.split()[-1])
        scan = run_tool("fruitclf", source)
        assert scan is not None
        print(f"flowers12/train ({len(fruitclf.ImageFolderDataset(source))} photos), fresh "
              f"process: Pillow alone {pil_seconds:.1f} s, {pil_peak:.0f} MiB peak; "
              f"`find_duplicates` with the TensorFlow check {scan[1]:.1f} s, "
              f"{scan[2]:.0f} MiB peak")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["planted", "cost", "scale", "pillow"],
                        action="append",
                        help="run only these parts (repeatable)")
    parser.add_argument("--baseline", metavar="SRC",
                        help="another fruitclf source tree (e.g. a worktree of an earlier "
                        "commit's src/): the whole scan is timed against it")
    parser.add_argument("--tool", nargs=3, metavar=("TOOL", "ROOT", "OUT"),
                        help=argparse.SUPPRESS)  # one tool's groups, in its own process
    args = parser.parse_args()
    if args.tool:
        import json

        tool, root, out = args.tool
        groups = TOOLS[tool][0](Path(root))
        Path(out).write_text(json.dumps({"groups": groups, "peak_mib": _peak_mib()}))
        return 0
    parts = args.only or ["planted", "cost", "scale", "pillow"]
    with tempfile.TemporaryDirectory() as tmp:
        if "planted" in parts:
            bench_planted(Path(tmp), args.quick)
        if "cost" in parts:
            bench_cost(Path(tmp), args.quick, args.baseline)
        if "pillow" in parts:
            bench_pillow_first(Path(tmp), args.quick)
    if "scale" in parts:
        bench_scale(args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
