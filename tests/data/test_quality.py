"""Duplicates, train/test leakage and image-quality flags, on real files the tests write."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

import fruitclf
from _images import cropped, photo_like, reencoded, write_photo_folder
from _paths import DATASETS
from fruitclf.data.quality import VECTOR_SIZE, FingerprintIndex, QualityThresholds, fingerprint


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three classes of 20 distinct photo-like JPEGs, 96 x 96 (read-only by convention)."""
    return write_photo_folder(tmp_path_factory.mktemp("photos") / "train", 3, 20, seed=0)


def _copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _letterboxed(im: Image.Image) -> Image.Image:
    out = Image.new("RGB", (im.width, round(im.height * 1.25)))
    out.paste(im, (0, round(im.height * 0.125)))
    return out


def _hue_shifted(im: Image.Image) -> Image.Image:
    h, s, v = im.convert("HSV").split()
    h = h.point(lambda x: (x + 14) % 256)
    return Image.merge("HSV", (h, s, v)).convert("RGB")


def _watermarked(im: Image.Image) -> Image.Image:
    out = im.copy()
    ImageDraw.Draw(out).text((50, 82), "(c) 2026", fill=(255, 255, 255))
    return out


# name -> (how the copy is made, file extension, file format, the kind reported)
TRANSFORMS: dict[str, tuple[Callable[[Image.Image], Image.Image], str, str, str]] = {
    "resized_half": (lambda im: im.resize((48, 48), Image.Resampling.LANCZOS), ".jpg", "JPEG",
                     "resized"),
    "resized_double": (lambda im: im.resize((192, 192), Image.Resampling.BICUBIC), ".png",
                       "PNG", "resized"),
    "recompressed_q40": (lambda im: reencoded(im, "JPEG", quality=40), ".jpg", "JPEG", "near"),
    "converted_to_png": (lambda im: im, ".png", "PNG", "near"),
    "converted_to_gif": (lambda im: im.convert("P", palette=Image.Palette.ADAPTIVE), ".gif",
                         "GIF", "near"),
    "cropped_4pct_each_side": (lambda im: cropped(im, 0.04, 0.04, 0.04, 0.04), ".jpg", "JPEG",
                               "cropped"),
    "cropped_15pct_each_side": (lambda im: cropped(im, 0.15, 0.15, 0.15, 0.15), ".jpg", "JPEG",
                                "cropped"),
    "cropped_10pct_corner": (lambda im: cropped(im, 0.1, 0.1, 0, 0), ".jpg", "JPEG", "cropped"),
    "cropped_7pct_one_side": (lambda im: cropped(im, 0, 0, 0.07, 0), ".jpg", "JPEG", "cropped"),
    "brightened_20pct": (lambda im: ImageEnhance.Brightness(im).enhance(1.2), ".jpg", "JPEG",
                         "near"),
    "darkened_30pct": (lambda im: ImageEnhance.Brightness(im).enhance(0.7), ".jpg", "JPEG",
                       "near"),
    "more_contrast": (lambda im: ImageEnhance.Contrast(im).enhance(1.3), ".jpg", "JPEG", "near"),
    "hue_plus_20_degrees": (_hue_shifted, ".jpg", "JPEG", "near"),
    "watermark": (_watermarked, ".jpg", "JPEG", "near"),
    "mirrored": (ImageOps.mirror, ".jpg", "JPEG", "mirrored"),
    "flipped_upside_down": (ImageOps.flip, ".jpg", "JPEG", "mirrored"),
    "turned_90_degrees": (lambda im: im.rotate(90, expand=True), ".jpg", "JPEG", "rotated"),
    "turned_180_degrees": (lambda im: im.rotate(180), ".png", "PNG", "rotated"),
    "turned_4_degrees_and_cropped": (
        lambda im: cropped(im.rotate(4, Image.Resampling.BICUBIC), 0.07, 0.07, 0.07, 0.07),
        ".jpg", "JPEG", "rotated"),
    "grayscale": (lambda im: im.convert("L"), ".jpg", "JPEG", "grayscale"),
    "mirrored_grayscale": (lambda im: ImageOps.mirror(im).convert("L"), ".png", "PNG",
                           "grayscale"),
    "letterboxed": (_letterboxed, ".jpg", "JPEG", "bordered"),
}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_each_transformation_is_found_as_a_near_duplicate(tmp_path, photos, name):
    """Check that each kind of copy is grouped with its original, and only with it, and
    that the group names what was done to it."""
    root = _copy_tree(photos, tmp_path / "train")
    make, ext, fmt, kind = TRANSFORMS[name]
    original = root / "class_1" / "photo_005.jpg"
    copy = root / "class_1" / f"copy{ext}"
    make(Image.open(original).convert("RGB")).save(copy, fmt)

    groups = fruitclf.ImageFolderDataset(root).find_duplicates(progress=False)

    assert [g.relpaths for g in groups] == [[f"class_1/copy{ext}", "class_1/photo_005.jpg"]]
    assert groups[0].kind == kind
    assert groups[0].classes == ["class_1", "class_1"]
    assert not groups[0].conflicting


def test_distinct_photos_of_one_class_are_not_duplicates(photos):
    ds = fruitclf.ImageFolderDataset(photos)
    assert ds.find_duplicates(progress=False) == []


def test_exact_duplicates_same_bytes_and_same_pixels(tmp_path, photos):
    root = _copy_tree(photos, tmp_path / "train")
    shutil.copyfile(root / "class_0" / "photo_001.jpg", root / "class_0" / "again.jpg")
    # A lossless re-save with other bytes but the same pixels (PNG -> BMP).
    picture = Image.fromarray(photo_like(np.random.default_rng(7), 2))
    picture.save(root / "class_2" / "lossless.png", "PNG", compress_level=1)
    picture.save(root / "class_2" / "lossless.bmp", "BMP")
    # The same photo filed under two classes: a label conflict.
    shutil.copyfile(root / "class_0" / "photo_002.jpg", root / "class_1" / "which.jpg")

    groups = fruitclf.ImageFolderDataset(root).find_duplicates(progress=False)

    found = {tuple(g.relpaths): (g.kind, g.conflicting) for g in groups}
    assert found == {
        ("class_0/again.jpg", "class_0/photo_001.jpg"): ("exact", False),
        ("class_0/photo_002.jpg", "class_1/which.jpg"): ("exact", True),
        ("class_2/lossless.bmp", "class_2/lossless.png"): ("exact", False),
    }
    assert all(g.distance == 0.0 for g in groups)


def test_leakage_lists_pairs_relative_to_each_folder(tmp_path, photos):
    train = _copy_tree(photos, tmp_path / "train")
    test = write_photo_folder(tmp_path / "test", 3, 5, seed=99)
    Image.open(train / "class_2" / "photo_010.jpg").resize((64, 64)).save(
        test / "class_2" / "leaked.png")
    shutil.copyfile(train / "class_0" / "photo_003.jpg", test / "class_0" / "same.jpg")

    ds = fruitclf.ImageFolderDataset(train)
    pairs = ds.find_leakage(fruitclf.ImageFolderDataset(test), progress=False)

    assert [(p.relpath, p.test_relpath, p.kind) for p in pairs] == [
        ("class_0/photo_003.jpg", "class_0/same.jpg", "exact"),
        ("class_2/photo_010.jpg", "class_2/leaked.png", "resized"),
    ]
    assert pairs[1].test_path == str(test / "class_2" / "leaked.png")
    assert pairs[1].to_dict() == {"path": "class_2/photo_010.jpg",
                                  "test_path": "class_2/leaked.png", "kind": "resized",
                                  "distance": round(pairs[1].distance, 4)}


def test_mirrored_and_grayscale_copies_of_test_photos_in_train_are_leakage(tmp_path, photos):
    """Check that a test photo whose mirror image, grey copy, quarter turn or 15% crop is in
    the training folder is reported, with the kind of copy; distinct photos are not."""
    train = _copy_tree(photos, tmp_path / "train")
    test = write_photo_folder(tmp_path / "test", 3, 4, seed=6)
    shots = {name: Image.open(test / "class_0" / f"photo_{i:03d}.jpg").convert("RGB")
             for i, name in enumerate(["mirrored", "grayscale", "rotated", "cropped"])}
    ImageOps.mirror(shots["mirrored"]).save(train / "class_0" / "a.jpg")
    shots["grayscale"].convert("L").save(train / "class_0" / "b.png")
    shots["rotated"].rotate(90, expand=True).save(train / "class_0" / "c.jpg")
    cropped(shots["cropped"], 0.15, 0.15, 0.15, 0.15).save(train / "class_0" / "d.jpg")

    pairs = fruitclf.ImageFolderDataset(train).find_leakage(
        fruitclf.ImageFolderDataset(test), progress=False)

    assert [(p.relpath, p.test_relpath, p.kind) for p in pairs] == [
        ("class_0/a.jpg", "class_0/photo_000.jpg", "mirrored"),
        ("class_0/b.png", "class_0/photo_001.jpg", "grayscale"),
        ("class_0/c.jpg", "class_0/photo_002.jpg", "rotated"),
        ("class_0/d.jpg", "class_0/photo_003.jpg", "cropped"),
    ]


def test_fingerprint_index_is_compact_and_finds_what_the_folders_find(tmp_path, photos):
    """Check the index a model keeps: 99 bytes an image, a JSON round trip, numbers close to
    the fingerprints', and the same leaked test images as the folder comparison (exact,
    resized, mirrored, grey, a crop of the test photo), none of the distinct ones."""
    from fruitclf.data.quality import (
        _PARTS_COMPARED,
        INDEX_RECORD_BYTES,
        FingerprintIndex,
    )

    train = _copy_tree(photos, tmp_path / "train")
    test = write_photo_folder(tmp_path / "test", 3, 6, seed=8)
    source = {i: Image.open(train / "class_1" / f"photo_{i:03d}.jpg").convert("RGB")
              for i in range(5)}
    shutil.copyfile(train / "class_1" / "photo_000.jpg", test / "class_1" / "exact.jpg")
    source[1].resize((64, 64)).save(test / "class_1" / "resized.png")
    ImageOps.mirror(source[2]).save(test / "class_1" / "mirrored.jpg")
    source[3].convert("L").save(test / "class_1" / "grayscale.png")
    # The test photo is the wider one: the training photo is its crop.
    wide = Image.new("RGB", (112, 112), (30, 30, 30))
    wide.paste(source[4], (8, 8))
    Image.fromarray(photo_like(np.random.default_rng(1), 1, 112)).save(test / "class_0" / "x.jpg")
    wide.save(test / "class_1" / "cropped.jpg")

    ds = fruitclf.ImageFolderDataset(train)
    index = ds.fingerprint_index(progress=False)
    assert len(index) == len(ds) and len(index.records) == INDEX_RECORD_BYTES * len(ds) == 99 * 60
    again = FingerprintIndex.from_dict(json.loads(json.dumps(index.to_dict())))
    assert again.records == index.records
    originals = np.stack([ds._decoded.prints[p].vectors[0] for p in ds.paths])
    stored = np.stack([fp.vectors[0] for fp in index.prints()])
    compared = _PARTS_COMPARED["value and colour"]
    distance = 1 - (compared(originals) * compared(stored)).sum(axis=1)
    assert np.median(distance) < 0.004 and distance.max() < 0.01
    with pytest.raises(ValueError, match="not base64"):
        FingerprintIndex.from_dict({**index.to_dict(), "data": "%%%"})
    with pytest.raises(ValueError, match="version 1, 99 bytes"):
        FingerprintIndex.from_dict({**index.to_dict(), "version": 2})

    testset = fruitclf.ImageFolderDataset(test)
    pairs = testset.find_in_index(index, progress=False)
    assert {(p.test_relpath, p.kind) for p in pairs} == {
        ("class_1/exact.jpg", "exact"), ("class_1/resized.png", "near"),
        ("class_1/mirrored.jpg", "mirrored"), ("class_1/grayscale.png", "grayscale"),
        ("class_1/cropped.jpg", "cropped")}
    assert all(p.path == p.relpath == "" for p in pairs)
    folders = {p.test_relpath for p in ds.find_leakage(testset, progress=False)}
    assert folders == {p.test_relpath for p in pairs}


def test_each_file_is_decoded_once_for_all_checks(tmp_path, photos):
    from fruitclf.data.check import decode_count

    ds = fruitclf.ImageFolderDataset(photos)
    before = decode_count()
    ds.check(progress=False)
    ds.find_duplicates()
    ds.quality_issues()
    ds.find_leakage(ds)
    assert decode_count() - before == len(ds)


def test_fingerprints_in_a_batch_equal_one_at_a_time_to_their_rounding(photos):
    """Check that fingerprints made together (as the check makes them, 64 at a time) equal
    fingerprints made one by one to float16 rounding, wherever an image sits in the batch, so
    that the same pixels in two batches are still exact duplicates."""
    from fruitclf.data.quality import _exact_key, fingerprints, sketch

    images = [np.asarray(Image.open(p).convert("RGB"))
              for p in sorted(photos.rglob("*.jpg"))[:12]]
    images.append(np.repeat(images[0][..., :1], 3, axis=2))  # a grey one
    alone = [fingerprint(b"x", image) for image in images]
    for batch in (images, images[::-1], images[3:] + images[:3]):
        together = fingerprints([sketch(b"x", image) for image in batch])
        for image, made in zip(batch, together):
            one = alone[next(i for i, im in enumerate(images) if im is image)]
            assert np.abs(made.vectors.astype(np.float32)
                          - one.vectors.astype(np.float32)).max() <= 2e-3
            assert made.measures == one.measures and made.border == one.border
            assert _exact_key(made, one)
    assert not _exact_key(alone[0], dataclasses.replace(alone[1], digest=alone[0].digest))
    assert fingerprints([]) == []


def test_the_check_keeps_vectors_in_one_array_that_the_search_reads_in_place(tmp_path,
                                                                             photos):
    """Check that the check writes the readable files' vectors, in file order, into one
    array (a refused file takes no row), that the duplicate search reads them, and the
    whole-image vectors, as views of it, and that other sequences of vectors are stacked
    as numpy would."""
    from fruitclf.data.quality import _stacked, _whole_vectors

    folder = _copy_tree(photos, tmp_path / "photos")
    (folder / "class_0" / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 40)
    ds = fruitclf.ImageFolderDataset(folder)
    report = ds.check(progress=False)
    assert [p.relpath for p in report.problems] == ["class_0/broken.jpg"]
    vectors = [report.fingerprints[path].vectors for path in ds.paths
               if path in report.fingerprints]
    together = _stacked(vectors)
    assert together.base is vectors[0].base and np.shares_memory(together, vectors[-1])
    assert np.array_equal(together, np.stack(vectors))
    prints = [report.fingerprints[path] for path in ds.paths if path in report.fingerprints]
    whole = _whole_vectors(prints)
    assert np.shares_memory(whole, vectors[0]) and whole.shape == (len(prints), VECTOR_SIZE)
    assert np.array_equal(whole, np.stack([v[0] for v in vectors]))
    for picked in (vectors[::2], vectors[::-1], [v.copy() for v in vectors[:3]]):
        stacked = _stacked(picked)
        assert np.array_equal(stacked, np.stack(picked))
        assert not np.shares_memory(stacked, vectors[0])
    for chosen in (prints[::-1], prints[:1]):
        assert np.array_equal(_whole_vectors(chosen), np.stack([fp.vectors[0] for fp in chosen]))
    assert _whole_vectors([]).shape == (0, VECTOR_SIZE)


def test_a_check_that_keeps_its_vectors_in_a_file_finds_the_same_groups(tmp_path, photos,
                                                                      monkeypatch):
    """Check that the vectors of a folder too large for memory go to a temporary file, and
    that the duplicate groups, the leaked test photos and a training part's index made
    from it are the ones made from memory."""
    from fruitclf.data import _mapped

    folder = _copy_tree(photos, tmp_path / "photos")
    for name, make in (("copy.png", lambda im: im), ("small.jpg", lambda im: im.resize((60, 60))),
                       ("mirror.jpg", ImageOps.mirror)):
        make(Image.open(folder / "class_2" / "photo_003.jpg").convert("RGB")).save(
            folder / "class_0" / name)
    test = write_photo_folder(tmp_path / "test", 3, 4, seed=99)
    shutil.copyfile(folder / "class_1" / "photo_007.jpg", test / "class_1" / "same.jpg")

    def found() -> tuple[list[object], list[object], bytes]:
        ds = fruitclf.ImageFolderDataset(folder)
        training, _ = ds.split(0.25, seed=0)  # rows of the check's array, in another order
        prints = [ds.check(progress=False).fingerprints[p] for p in training.paths]
        index = FingerprintIndex.from_prints(prints)
        return (ds.find_duplicates(progress=False),
                ds.find_leakage(fruitclf.ImageFolderDataset(test), progress=False),
                index.records)

    expected = found()
    assert len(expected[0]) == 1 and len(expected[0][0].paths) == 4 and len(expected[1]) == 1
    monkeypatch.setattr(_mapped, "IN_MEMORY_BYTES", 0)
    monkeypatch.setattr(_mapped, "RESIDENT_BYTES", 1 << 16)
    ds = fruitclf.ImageFolderDataset(folder)
    vectors = next(iter(ds.check(progress=False).fingerprints.values())).vectors
    assert isinstance(vectors.base, np.memmap)
    assert found() == expected


def test_the_check_compiles_its_decoder_once_per_preprocessing(tmp_path, photos):
    """Check that checking a folder twice with the same preprocessing reuses the compiled
    decoder (a small run pays its tracing once), and that the kept arrays equal what the
    pipeline's own decoder makes of the files."""
    import tensorflow as tf

    from fruitclf.data import check
    from fruitclf.data.pipeline import finish_image

    preprocessing = fruitclf.Preprocessing(image_size=(24, 24))
    ds = fruitclf.ImageFolderDataset(photos)
    first = ds.check(progress=False, preprocessing=preprocessing)
    compiled = check._compiled_decoder.cache_info().currsize
    second = ds.check(progress=False, preprocessing=fruitclf.Preprocessing(image_size=(24, 24)))
    assert check._compiled_decoder.cache_info().currsize == compiled
    assert first.images.keys() == second.images.keys() and len(first.images) == len(ds)
    for path in list(first.images)[:5]:
        data = Path(path).read_bytes()
        ratio = check.jpeg_ratio(check.read_image_size(path), (24, 24))
        eager = finish_image(check.decode_image(tf.constant(data), ratio), preprocessing)
        assert np.array_equal(first.images[path], eager.numpy())
        assert np.array_equal(second.images[path], first.images[path])


def test_near_duplicate_threshold_is_adjustable_and_checked(tmp_path, photos):
    root = _copy_tree(photos, tmp_path / "train")
    original = root / "class_0" / "photo_000.jpg"
    TRANSFORMS["cropped_7pct_one_side"][0](Image.open(original)).save(root / "class_0" / "c.jpg")
    ds = fruitclf.ImageFolderDataset(root)
    assert len(ds.find_duplicates(progress=False)) == 1
    assert ds.find_duplicates(threshold=0.0) == []
    with pytest.raises(ValueError, match=r"`threshold` must be .*Received: threshold=2"):
        ds.find_duplicates(threshold=2)


def test_the_default_duplicate_threshold_is_one_value(capsys):
    """Check that the code, ``scan --help`` and the docs all take the default threshold
    from one constant: the help prints it, the how-to quotes it through a substitution that
    docs/conf.py builds from it, and no page or docstring writes a number of its own."""
    import re
    import runpy

    from _paths import ROOT
    from fruitclf.cli import main
    from fruitclf.data import quality
    from fruitclf.settings import NEAR_DUPLICATE_THRESHOLD

    assert quality.NEAR_DUPLICATE_THRESHOLD == NEAR_DUPLICATE_THRESHOLD
    photos_like = np.eye(8, dtype=np.float32)  # unrelated pictures: the whole default
    assert quality.resolve_threshold(None, photos_like) == NEAR_DUPLICATE_THRESHOLD
    with pytest.raises(SystemExit):
        main(["scan", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    stated = re.search(r"--duplicate-threshold D fingerprint distance for near duplicates "
                       r"\(default ([0-9.]+)", help_text)
    assert stated is not None and float(stated.group(1)) == NEAR_DUPLICATE_THRESHOLD
    conf = runpy.run_path(str(ROOT / "docs" / "conf.py"))
    assert f"|near_duplicate_threshold| replace:: {NEAR_DUPLICATE_THRESHOLD}\n" in (
        conf["rst_epilog"])
    howto = (ROOT / "docs" / "howto" / "data-quality.rst").read_text()
    assert "|near_duplicate_threshold|" in howto
    written = [ROOT / "README.md", *(ROOT / "docs").rglob("*.rst"),
               *(ROOT / "src" / "fruitclf").rglob("*.py")]
    for path in written:
        text = path.read_text(encoding="utf-8")
        own = re.findall(r"(?:cosine distance|threshold)[^.\n]{0,20}? of (0\.0\d+)", text)
        assert not own, (path, own)


# ------------------------------------------------------------------------- quality flags


def _constructed(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    root = write_photo_folder(tmp_path / "train", 2, 6, seed=5)
    folder = root / "class_0"
    Image.new("RGB", (96, 96), (0, 0, 0)).save(folder / "black.png")
    Image.new("RGB", (96, 96), (255, 255, 255)).save(folder / "white.png")
    sharp = Image.fromarray(photo_like(rng, 0, 192))
    sharp.filter(ImageFilter.GaussianBlur(6)).save(folder / "blurred.jpg")
    Image.fromarray(photo_like(rng, 0)).convert("L").convert("RGB").save(folder / "grey.jpg")
    Image.fromarray(photo_like(rng, 0, 200)).resize((1000, 50)).save(folder / "strip.jpg")
    Image.fromarray(photo_like(rng, 0, 96)).resize((16, 16)).save(folder / "tiny.png")
    return root


def test_quality_flags_on_constructed_images(tmp_path):
    ds = fruitclf.ImageFolderDataset(_constructed(tmp_path))

    issues = ds.quality_issues(image_size=64, progress=False)

    found = {(q.relpath, q.issue) for q in issues}
    assert found == {
        ("class_0/black.png", "dark"),
        ("class_0/black.png", "low_information"),
        ("class_0/white.png", "light"),
        ("class_0/white.png", "low_information"),
        ("class_0/blurred.jpg", "blurry"),
        ("class_0/grey.jpg", "grayscale"),
        ("class_0/strip.jpg", "odd_aspect_ratio"),
        ("class_0/tiny.png", "too_small"),
    }
    strip = next(q for q in issues if q.issue == "odd_aspect_ratio")
    assert strip.score == pytest.approx(20.0)
    assert strip.threshold == 3.0
    assert strip.to_dict() == {"path": "class_0/strip.jpg", "issue": "odd_aspect_ratio",
                               "score": 20.0, "threshold": 3.0}


def test_quality_thresholds_can_be_changed_or_turned_off(tmp_path):
    ds = fruitclf.ImageFolderDataset(_constructed(tmp_path))
    relaxed = QualityThresholds(aspect_ratio=25.0, too_small=None, grayscale=None,
                                blurry=0.0)
    found = {q.issue for q in ds.quality_issues(thresholds=relaxed, image_size=64)}
    assert found == {"dark", "light", "low_information"}
    # Without the model input there is no too_small flag.
    assert "too_small" not in {q.issue for q in ds.quality_issues()}


def test_grayscale_is_only_flagged_in_a_colour_dataset():
    grey = np.repeat(photo_like(np.random.default_rng(0), 1)[..., :1], 3, axis=2)
    prints = [fingerprint(b"a", grey), fingerprint(b"b", grey.copy())]
    from fruitclf.data.quality import quality_issues

    items = [("a.png", "a.png"), ("b.png", "b.png")]
    assert quality_issues(items, prints) == []


@pytest.mark.parametrize(
    ("items", "error", "match"),
    [
        (["dark"], ValueError, r"NAME=VALUE with NAME one of dark, light"),
        (["shiny=1"], ValueError, r"Received: 'shiny=1'"),
        (["dark=much"], ValueError, r"threshold 'dark' must be a number or none"),
        (["dark=2"], ValueError, r"`dark` must be .*Received: dark=2"),
        (["aspect_ratio=0.5"], ValueError, r"`aspect_ratio` must be at least 1"),
    ],
)
def test_bad_thresholds_name_the_value(items, error, match):
    with pytest.raises(error, match=match):
        QualityThresholds.from_strings(items)


def test_quality_thresholds_from_strings():
    thresholds = QualityThresholds.from_strings(["dark=0.1", "too-small=none"])
    assert thresholds == QualityThresholds(dark=0.1, too_small=None)


# ------------------------------------------------------------------ removing duplicates


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_remove_duplicates_then_restore_is_byte_identical(tmp_path, photos):
    root = _copy_tree(photos, tmp_path / "train")
    source = root / "class_0" / "photo_004.jpg"
    Image.open(source).resize((48, 48)).save(root / "class_0" / "small.jpg")
    Image.open(source).resize((192, 192)).save(root / "class_0" / "large.png")
    shutil.copyfile(root / "class_1" / "photo_001.jpg", root / "class_2" / "conflict.jpg")
    before = _tree_bytes(root)
    ds = fruitclf.ImageFolderDataset(root)

    planned = ds.remove_duplicates(dry_run=True)
    assert _tree_bytes(root) == before
    result = ds.remove_duplicates(quarantine=tmp_path / "q")

    # The copy with the most pixels stays; the label conflict is left alone.
    assert sorted(p.relpath for p in result.removed) == ["class_0/photo_004.jpg",
                                                         "class_0/small.jpg"]
    assert [p.path for p in planned.removed] == [p.path for p in result.removed]
    assert (root / "class_0" / "large.png").exists()
    assert (root / "class_2" / "conflict.jpg").exists()
    assert result.lines()[0] == (f"Moved {root / 'class_0' / 'photo_004.jpg'}: resized "
                                 "duplicate of class_0/large.png")
    assert len(ds) == len(before) - 2
    manifest = json.loads((tmp_path / "q" / "fruitclf-quarantine.json").read_text())
    assert {e["code"] for e in manifest["entries"]} == {"duplicate"}

    fruitclf.restore_quarantine(tmp_path / "q")
    assert _tree_bytes(root) == before


def test_remove_duplicates_skips_a_file_changed_since_the_check(tmp_path, photos):
    root = _copy_tree(photos, tmp_path / "train")
    shutil.copyfile(root / "class_0" / "photo_001.jpg", root / "class_0" / "again.jpg")
    ds = fruitclf.ImageFolderDataset(root)
    groups = ds.find_duplicates(progress=False)
    # Same pixels and size: the first path (again.jpg) is kept, photo_001.jpg would go.
    Image.open(root / "class_0" / "photo_002.jpg").save(root / "class_0" / "photo_001.jpg")
    result = ds.remove_duplicates(groups, quarantine=tmp_path / "q")
    assert result.removed == []
    assert result.skipped == [str(root / "class_0" / "photo_001.jpg")]


def test_remove_duplicates_leaves_a_group_whose_kept_copy_changed(tmp_path, photos, caplog):
    root = _copy_tree(photos, tmp_path / "train")
    shutil.copyfile(root / "class_0" / "photo_001.jpg", root / "class_0" / "again.jpg")
    ds = fruitclf.ImageFolderDataset(root)
    groups = ds.find_duplicates(progress=False)
    Image.open(root / "class_0" / "photo_002.jpg").save(root / "class_0" / "again.jpg")
    before = _tree_bytes(root)
    result = ds.remove_duplicates(groups, quarantine=tmp_path / "q")
    assert result.removed == []
    assert _tree_bytes(root) == before
    assert "the copy to keep changed since the check" in caplog.text


def test_remove_duplicates_refuses_groups_of_another_dataset(tmp_path, photos):
    other = _copy_tree(photos, tmp_path / "other")
    shutil.copyfile(other / "class_0" / "photo_001.jpg", other / "class_0" / "again.jpg")
    groups = fruitclf.ImageFolderDataset(other).find_duplicates(progress=False)
    with pytest.raises(ValueError, match="not in this dataset"):
        fruitclf.ImageFolderDataset(photos).remove_duplicates(groups, dry_run=True)


# ---------------------------------------------------------------------------------- CLI


@pytest.fixture
def leaky(tmp_path, photos) -> tuple[Path, Path]:
    """A training folder with a duplicate pair and a test folder with two leaked images."""
    train = _copy_tree(photos, tmp_path / "train")
    Image.open(train / "class_0" / "photo_000.jpg").resize((64, 64)).save(
        train / "class_0" / "small copy.png")
    test = write_photo_folder(tmp_path / "test", 3, 4, seed=42)
    shutil.copyfile(train / "class_1" / "photo_007.jpg", test / "class_1" / "seen.jpg")
    cropped(Image.open(train / "class_2" / "photo_011.jpg"), 0.05, 0.05, 0, 0).save(
        test / "class_2" / "seen cropped.jpg")
    return train, test


def _cli(capsys, *argv: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    from fruitclf.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.cli
def test_scan_json_has_duplicates_quality_and_leakage(capsys, leaky):
    train, test = leaky
    Image.new("RGB", (96, 96)).save(train / "class_1" / "black.png")

    code, out, _ = _cli(capsys, "scan", str(train), "--test", str(test), "--json")

    assert code == 0
    payload = json.loads(out)
    assert payload["duplicates"] == [{
        "paths": ["class_0/photo_000.jpg", "class_0/small copy.png"], "kind": "resized",
        "distance": payload["duplicates"][0]["distance"], "classes": ["class_0", "class_0"]}]
    assert {(q["path"], q["issue"]) for q in payload["quality"]} == {
        ("class_1/black.png", "dark"), ("class_1/black.png", "low_information")}
    assert all(set(q) == {"path", "issue", "score", "threshold"} for q in payload["quality"])
    assert [(p["path"], p["test_path"], p["kind"]) for p in payload["leakage"]] == [
        ("class_1/photo_007.jpg", "class_1/seen.jpg", "exact"),
        ("class_2/photo_011.jpg", "class_2/seen cropped.jpg", "cropped"),
    ]
    assert payload["test"]["num_images"] == 14
    steps = payload["steps"]
    assert list(steps) == ["check", "duplicates", "quality", "test_check", "leakage"]
    assert all(seconds >= 0 for seconds in steps.values())
    assert payload["seconds"] >= sum(steps.values())  # the whole command, not the check


@pytest.mark.cli
def test_scan_text_and_flag_option(capsys, leaky):
    train, test = leaky
    code, out, _ = _cli(capsys, "scan", str(train), "--test", str(test))
    assert code == 0
    assert "Duplicates: 1 groups (1 files beyond one copy each):" in out
    assert "Leakage: 2 of 14 test images have a twin in the training folder:" in out
    assert "class_1/seen.jpg ~ class_1/photo_007.jpg (exact)" in out
    code, _, err = _cli(capsys, "scan", str(train), "--flag", "sharpness=1")
    assert code == 1 and "NAME=VALUE with NAME one of dark" in err


@pytest.mark.cli
def test_clean_duplicates_then_restore_round_trip(capsys, leaky, tmp_path):
    train, _ = leaky
    before = _tree_bytes(train)
    code, out, _ = _cli(capsys, "clean", str(train), "--duplicates", "--dry-run")
    assert code == 0 and "duplicate of" in out and "Would move " in out
    assert _tree_bytes(train) == before
    code, out, _ = _cli(capsys, "clean", str(train), "--duplicates", "--quarantine",
                        str(tmp_path / "q"))
    assert code == 0
    assert f"Moved {train / 'class_0' / 'small copy.png'}: " in out
    assert not (train / "class_0" / "small copy.png").exists()
    code, out, _ = _cli(capsys, "clean", str(train), "--duplicates")
    assert "No duplicates to remove." in out
    code, _, _ = _cli(capsys, "restore", str(tmp_path / "q"))
    assert code == 0 and _tree_bytes(train) == before


@pytest.mark.slow
@pytest.mark.cli
def test_train_warns_about_leakage_and_drop_leaked_changes_the_count(capsys, leaky, tmp_path):
    train, test = leaky
    options = ["--image-size", "16", "--epochs", "1", "--batch-size", "16", "--tta", "1",
               "--quiet"]
    code, out, err = _cli(capsys, "train", str(train), "--test", str(test), "--out",
                          str(tmp_path / "run"), *options)
    assert code == 0
    assert "2 of 14 test images have a twin in the training folder" in err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["num_test_images"] == 14
    assert metrics["num_leaked_test_images"] == 2
    assert 0.0 <= metrics["test_accuracy_without_leaked"] <= 1.0
    assert "test_accuracy_without_leaked" in out
    summary = [line for line in out.split("\n\n")[-2].splitlines() if line]  # the metrics
    assert len(summary) >= 5 and len({line.index(": ") for line in summary}) == 1, summary
    leakage = json.loads((tmp_path / "run" / "leakage.json").read_text())
    assert {p["test_path"] for p in leakage} == {"class_1/seen.jpg", "class_2/seen cropped.jpg"}
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Train/test leakage" in report and "| class_1/seen.jpg |" in report
    assert "## Possible label errors" in report
    assert (tmp_path / "run" / "label_errors.png").stat().st_size > 0

    # evaluate finds them from the model alone: a mirrored and a grey copy of training
    # photos and an exact one, in a test folder of its own; distinct photos are not named.
    later = write_photo_folder(tmp_path / "later", 3, 3, seed=77)
    ImageOps.mirror(Image.open(train / "class_0" / "photo_004.jpg")).save(
        later / "class_0" / "flipped.jpg")
    Image.open(train / "class_1" / "photo_009.jpg").convert("L").save(
        later / "class_1" / "grey.png")
    shutil.copyfile(train / "class_2" / "photo_012.jpg", later / "class_2" / "same.jpg")
    model = tmp_path / "run" / "model.keras"
    code, out, err = _cli(capsys, "evaluate", str(model), str(later), "--json",
                          "--out", str(tmp_path / "eval"))
    assert code == 0
    payload = json.loads(out)
    assert payload["leakage_checked"] is True
    assert {(p["test_path"], p["kind"]) for p in payload["leakage"]} == {
        ("class_0/flipped.jpg", "mirrored"), ("class_1/grey.png", "grayscale"),
        ("class_2/same.jpg", "exact")}
    assert payload["num_leaked_test_images"] == 3
    loaded = fruitclf.load_model(model)
    result = fruitclf.Evaluator(loaded.model, loaded.class_names,
                                preprocessing=loaded.preprocessing).evaluate(
        fruitclf.ImageFolderDataset(later, class_names=loaded.class_names))
    leaked = [p.test_path for p in loaded.find_leakage(
        fruitclf.ImageFolderDataset(later, class_names=loaded.class_names))]
    assert payload["accuracy_without_leaked"] == pytest.approx(result.without(leaked).accuracy)
    assert "3 of 12 test images are copies of images the model was trained on" in err
    written = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert written["num_leaked_test_images"] == 3
    assert len(loaded.training_index) == len(fruitclf.ImageFolderDataset(train))
    code, out, _ = _cli(capsys, "evaluate", str(model), str(later))
    assert code == 0 and "accuracy without the 3 test images the model was trained on" in out

    code, _, err = _cli(capsys, "train", str(train), "--test", str(test), "--out",
                        str(tmp_path / "dropped"), "--drop-leaked", "--no-training-index",
                        *options)
    assert code == 0 and "is measured without them" in err
    metrics = json.loads((tmp_path / "dropped" / "metrics.json").read_text())
    assert metrics["num_test_images"] == 12
    assert metrics["leaked_test_images_dropped"] is True
    assert "They were left out of the evaluation" in (tmp_path / "dropped" / "report.md"
                                                      ).read_text()
    unindexed = tmp_path / "dropped" / "model.keras"
    assert fruitclf.load_model(unindexed).training_index is None
    code, out, _ = _cli(capsys, "evaluate", str(unindexed), str(later), "--json")
    assert code == 0 and json.loads(out)["leakage_checked"] is False
    with pytest.raises(fruitclf.ModelFileError, match="keeps no fingerprints"):
        fruitclf.load_model(unindexed).find_leakage(fruitclf.ImageFolderDataset(later))
    assert (model.stat().st_size - unindexed.stat().st_size
            < 1.4 * 99 * len(fruitclf.ImageFolderDataset(train)) + 4096)


@pytest.mark.cli
def test_drop_leaked_refuses_a_test_folder_that_is_all_leaked(capsys, photos, tmp_path):
    code, _, err = _cli(capsys, "train", str(photos), "--test", str(photos), "--out",
                        str(tmp_path / "run"), "--drop-leaked", "--epochs", "1")
    assert code == 1
    assert "All 60 test images have a twin in the training folder" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_run_lists_a_mislabelled_image_as_a_possible_label_error(tmp_path, photos):
    """Check that a photo filed under the wrong class tops the possible label errors."""
    train = _copy_tree(photos, tmp_path / "train")
    wrong = train / "class_2" / "from class 0.jpg"
    shutil.move(train / "class_0" / "photo_019.jpg", wrong)

    result = fruitclf.run(train, out=tmp_path / "run", image_size=32, epochs=12,
                          batch_size=16, tta=1, precision="float32", verbose=0)

    assert result.label_errors, "the model agrees with every label"
    top = result.label_errors[0]
    assert (top.path, top.true_label, top.predicted_label) == (str(wrong), "class_2",
                                                              "class_0")
    assert "label_errors" in result.figures
    titles = [ax.get_title() for ax in result.figures["label_errors"].axes]
    assert titles[0].startswith("class_2 -> class_0")


FLOWERS = DATASETS / "flowers12"


@pytest.mark.slow
@pytest.mark.skipif(not FLOWERS.is_dir(), reason="../shared/datasets/flowers12 is absent")
def test_flowers12_duplicates_and_leakage_are_found():
    """Check known copies in the real flowers12 folders: an exact pair in train/, and test
    photos that are re-encoded training photos."""
    train = fruitclf.ImageFolderDataset(FLOWERS / "train")
    test = fruitclf.ImageFolderDataset(FLOWERS / "test", class_names=train.class_names)

    groups = train.find_duplicates(progress=False)
    leaks = train.find_leakage(test, progress=False)

    pairs = {tuple(g.relpaths): g.kind for g in groups}
    assert pairs[("iris/image_0422.jpg", "iris/image_0469.jpg")] == "exact"
    assert pairs[("daisy/image_0811.jpg", "daisy/image_0856.jpg")] == "near"
    assert not any(g.conflicting for g in groups)
    leaked = {(p.relpath, p.test_relpath) for p in leaks}
    assert ("buttercup/image_1177.jpg", "buttercup/image_1123.jpg") in leaked
    assert ("sunflower/image_0764.jpg", "sunflower/image_0746.jpg") in leaked
    assert all(p.relpath.split("/")[0] == p.test_relpath.split("/")[0] for p in leaks)
    assert 20 <= len({p.test_path for p in leaks}) <= 35
