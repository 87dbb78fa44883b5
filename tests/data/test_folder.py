"""ImageFolderDataset: discovery, errors, summary, splits, pipelines, sample grid."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageOps

from _images import random_rgb, write_class_folder, write_photo_folder
from fruitclf import DatasetError, ImageFolderDataset, Preprocessing, plan_cache


def test_classes_are_sorted_and_counted(image_folder):
    """Check that classes come sorted, with counts, paths and labels aligned."""
    ds = ImageFolderDataset(image_folder)
    assert ds.class_names == ["class_0", "class_1", "class_2"]
    assert ds.class_counts == {"class_0": 12, "class_1": 12, "class_2": 12}
    assert len(ds.paths) == len(ds.labels) == ds.num_images == 36
    assert all(Path(p).parent.name == ds.class_names[label]
               for p, label in zip(ds.paths, ds.labels))


def test_explicit_class_names_fix_the_label_order(image_folder):
    """Check that class_names sets the label order and may list a class without a folder."""
    names = ["class_2", "class_1", "class_0", "extra"]
    ds = ImageFolderDataset(image_folder, class_names=names)
    assert ds.class_names == names
    assert ds.class_counts["extra"] == 0
    assert ds.empty_classes == ["extra"]
    assert {int(label) for p, label in zip(ds.paths, ds.labels) if "class_2" in p} == {0}


def test_unknown_class_in_test_folder_is_an_error(image_folder):
    """Check that a folder with a class the training set lacks names the class."""
    with pytest.raises(DatasetError, match="'class_2'.*Known classes: class_0, class_1"):
        ImageFolderDataset(image_folder, class_names=["class_0", "class_1"])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: p / "missing", "Image folder not found"),
        (lambda p: p, "No class folders found"),
        (lambda p: (p / "a").mkdir() or p, "No images found in .*Allowed extensions: .avif"),
    ],
)
def test_bad_roots_give_clear_errors(tmp_path, make, match):
    """Check that missing, empty and imageless roots raise DatasetError naming the folder."""
    with pytest.raises(DatasetError, match=match):
        ImageFolderDataset(make(tmp_path))


def test_a_file_as_root_is_an_error(tmp_path):
    """Check that passing a file instead of a folder is an error."""
    (tmp_path / "x.jpg").write_bytes(b"x")
    with pytest.raises(DatasetError, match="got a file"):
        ImageFolderDataset(tmp_path / "x.jpg")


def test_training_needs_two_classes_and_no_empty_class(tmp_path):
    """Check that split() refuses a single class and an empty class folder, naming it."""
    root = write_class_folder(tmp_path / "one", 1, 4)
    with pytest.raises(DatasetError, match="at least 2 classes"):
        ImageFolderDataset(root).split()
    root = write_class_folder(tmp_path / "two", 2, 4)
    (root / "class_9").mkdir()
    ds = ImageFolderDataset(root)
    assert ds.summary().empty_classes == ["class_9"]  # scanning only warns
    with pytest.raises(DatasetError, match="class_9"):
        ds.split()


def test_uppercase_extensions_and_nested_folders_count(tmp_path):
    """Check that .JPG counts and images in nested folders belong to the class."""
    rng = np.random.default_rng(0)
    (tmp_path / "a" / "sub").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    Image.fromarray(random_rgb(rng)).save(tmp_path / "a" / "X.JPG", "JPEG")
    Image.fromarray(random_rgb(rng)).save(tmp_path / "a" / "sub" / "y.png")
    Image.fromarray(random_rgb(rng)).save(tmp_path / "b" / "z.Png")
    ds = ImageFolderDataset(tmp_path)
    assert ds.relpaths == ["a/X.JPG", "a/sub/y.png", "b/z.Png"]


def test_symlinked_folders_are_followed_only_when_asked(tmp_path):
    """Check that a linked class folder is ignored by default and read with follow_links."""
    real = write_class_folder(tmp_path / "real", 2, 2)
    root = write_class_folder(tmp_path / "root", 2, 2)
    os.symlink(real / "class_0", root / "linked")
    assert "linked" not in ImageFolderDataset(root).class_names
    assert "linked" in {i.path for i in ImageFolderDataset(root).ignored}
    followed = ImageFolderDataset(root, follow_links=True)
    assert followed.class_counts["linked"] == 2


def test_summary_reports_sizes_and_imbalance(tmp_path):
    """Check that summary() gives size statistics and the imbalance ratio."""
    rng = np.random.default_rng(0)
    for name, count, size in (("a", 4, (20, 30)), ("b", 2, (40, 50))):
        (tmp_path / name).mkdir()
        for i in range(count):
            Image.fromarray(random_rgb(rng, size)).save(tmp_path / name / f"{i}.png")
    summary = ImageFolderDataset(tmp_path).summary()
    assert summary.class_counts == {"a": 4, "b": 2}
    assert summary.width["min"] == 30 and summary.width["max"] == 50
    assert summary.height["median"] == 20
    assert summary.imbalance_ratio == 2.0
    assert "2 classes, 6 images" in str(summary)


def test_split_is_stratified_reproducible_and_disjoint(image_folder):
    """Check that split() keeps class shares, repeats exactly, and covers every file once.
    (The folder's pictures are one band over noise per class, which the duplicate finder
    groups: shares are exact without grouping, and grouping keeps the other properties.)"""
    ds = ImageFolderDataset(image_folder)
    train, val = ds.split(0.25, seed=5, group_duplicates=False)
    assert val.class_counts == {"class_0": 3, "class_1": 3, "class_2": 3}
    for together in (False, True):
        train, val = ds.split(0.25, seed=5, group_duplicates=together)
        assert set(train.paths).isdisjoint(val.paths)
        assert sorted(train.paths + val.paths) == sorted(ds.paths)
        again = ds.split(0.25, seed=5, group_duplicates=together)
        assert again.validation.paths == val.paths
        assert again.counts() == {"training": train.class_counts,
                                  "validation": val.class_counts}
        assert ds.split(0.25, seed=6, group_duplicates=together).validation.paths != val.paths


def test_split_is_stable_when_files_are_added(tmp_path):
    """Check that adding a file moves at most one existing file per class (the ranks by
    name alone: without duplicate groups, which a new copy may join)."""
    root = write_class_folder(tmp_path / "d", 2, 20)

    def validation(**options: Any) -> set[str]:
        split = ImageFolderDataset(root).split(0.2, seed=1, group_duplicates=False, **options)
        return set(split.validation.relpaths)

    before = validation()
    Image.fromarray(random_rgb(np.random.default_rng(1))).save(root / "class_0" / "new.png")
    after = validation()
    assert len(before - after) <= 1
    unstratified = validation(stratify=False)
    (root / "class_1" / "another.png").write_bytes((root / "class_0" / "new.png").read_bytes())
    grown = validation(stratify=False)
    assert unstratified <= grown


def test_split_keeps_copies_of_a_photo_on_one_side(tmp_path):
    """Check that each photo and its copies (resized, mirrored, grey, cropped) go to the
    same side of the split, that a class still keeps a training image, and that the choice
    is saved with the split while an older split file still loads."""
    root = write_photo_folder(tmp_path / "d", 2, 12, seed=3)
    for i in range(6):
        photo = Image.open(root / "class_0" / f"photo_{i:03d}.jpg")
        ImageOps.mirror(photo).save(root / "class_0" / f"photo_{i:03d} mirrored.jpg")
        photo.convert("L").resize((60, 60)).save(root / "class_0" / f"photo_{i:03d} grey.png")
    pair = root / "class_1" / "photo_000.jpg"
    only = tmp_path / "two"
    (only / "a").mkdir(parents=True)
    (only / "b").mkdir()
    shutil.copyfile(pair, only / "a" / "one.jpg")
    ImageOps.mirror(Image.open(pair)).save(only / "a" / "one mirrored.jpg")
    shutil.copyfile(root / "class_1" / "photo_001.jpg", only / "b" / "other.jpg")
    shutil.copyfile(root / "class_1" / "photo_002.jpg", only / "b" / "third.jpg")

    ds = ImageFolderDataset(root)
    for seed in range(8):
        split = ds.split(0.5, seed=seed)
        held = set(split.validation.relpaths)
        for i in range(6):
            copies = {f"class_0/photo_{i:03d}{s}" for s in (".jpg", " mirrored.jpg",
                                                              " grey.png")}
            assert copies <= held or not copies & held, (seed, i)
        assert split.group_duplicates and len(held) > 0
        plain = set(ds.split(0.5, seed=seed, group_duplicates=False).validation.relpaths)
        if plain != held:
            break
    else:
        pytest.fail("no seed split a photo from its copies without grouping")
    for seed in range(8):  # a class of one photo and its copy still trains
        part = ImageFolderDataset(only).split(0.5, seed=seed)
        assert set(part.training.relpaths) >= {"a/one.jpg", "a/one mirrored.jpg"}

    split.save(tmp_path / "split.json")
    payload = json.loads((tmp_path / "split.json").read_text())
    assert payload["group_duplicates"] is True
    del payload["group_duplicates"]  # a split file from before the option
    (tmp_path / "old.json").write_text(json.dumps(payload))
    old = ds.load_split(tmp_path / "old.json")
    assert old.validation.relpaths == split.validation.relpaths
    assert old.group_duplicates is False


def test_split_round_trips_through_a_file(image_folder, tmp_path):
    """Check that a saved split loads back to the same subsets."""
    ds = ImageFolderDataset(image_folder)
    split = ds.split(0.3, seed=2)
    split.save(tmp_path / "split.json")
    loaded = ds.load_split(tmp_path / "split.json")
    assert loaded.training.paths == split.training.paths
    assert loaded.validation.paths == split.validation.paths


@pytest.mark.parametrize("fraction", [1, -0.1, 1.5])
def test_split_fraction_must_be_inside_zero_one(image_folder, fraction):
    """Check that a validation fraction outside [0, 1) is rejected with the value."""
    with pytest.raises(ValueError, match=f"validation_split={float(fraction)!r}"):
        ImageFolderDataset(image_folder).split(fraction)


def test_one_name_for_the_validation_share(image_folder, tmp_path, capsys):
    """Check that the old spellings still work and warn: the keyword, the attribute, the
    split file key and the --val-split option."""
    import json

    from fruitclf.cli import build_parser

    ds = ImageFolderDataset(image_folder)
    with pytest.warns(DeprecationWarning, match="validation_fraction"):
        old = ds.split(validation_fraction=0.25, seed=1)
    new = ds.split(validation_split=0.25, seed=1)
    assert old.validation.paths == new.validation.paths
    with pytest.warns(DeprecationWarning, match="validation_split"):
        assert new.validation_fraction == 0.25
    payload = new.to_dict()
    assert payload["validation_split"] == 0.25 and "validation_fraction" not in payload
    payload["validation_fraction"] = payload.pop("validation_split")  # a file from 0.1
    (tmp_path / "old.json").write_text(json.dumps(payload))
    assert ds.load_split(tmp_path / "old.json").validation_split == 0.25
    args = build_parser().parse_args(["train", "d", "--out", "o", "--val-split", "0.3"])
    assert args.validation_split == 0.3
    assert "--val-split is deprecated; use --validation-split" in capsys.readouterr().err


def test_split_fraction_zero_keeps_every_image_for_training(image_folder):
    """Check that a validation fraction of 0 gives an empty validation part."""
    ds = ImageFolderDataset(image_folder)
    train, val = ds.split(0.0)
    assert train.paths == ds.paths and len(val) == 0


def test_pipeline_yields_float_batches_in_path_order(image_folder):
    """Check shapes, dtypes, the 0-255 range and that unshuffled order follows paths."""
    ds = ImageFolderDataset(image_folder)
    batches = list(ds.to_tf_dataset(image_size=(16, 12), batch_size=10))
    images = np.concatenate([b[0].numpy() for b in batches])
    labels = np.concatenate([b[1].numpy() for b in batches])
    assert images.shape == (36, 16, 12, 3)
    assert images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 255 and images.max() > 1
    np.testing.assert_array_equal(labels, ds.labels)


def test_cache_does_not_change_pixels(image_folder, tmp_path):
    """Check that memory, file and no cache give identical pixels."""
    ds = ImageFolderDataset(image_folder)

    def pixels(cache):  # type: ignore[no-untyped-def]
        return np.concatenate([x.numpy() for x, _ in ds.to_tf_dataset(
            image_size=20, batch_size=8, cache=cache)])

    reference = pixels(None)
    np.testing.assert_array_equal(pixels("memory"), reference)
    np.testing.assert_array_equal(pixels(str(tmp_path / "cache" / "train")), reference)


@pytest.mark.parametrize("cache", ["memory", None, "file"])
def test_shuffle_with_seed_is_reproducible(image_folder, tmp_path, cache):
    """Check that a seed fixes the order, epochs reshuffle, and every image comes once."""
    ds = ImageFolderDataset(image_folder)
    where = str(tmp_path / "cache" / "c") if cache == "file" else cache

    def epochs(seed, n=2):  # type: ignore[no-untyped-def]
        pipeline = ds.to_tf_dataset(image_size=8, batch_size=36, shuffle=True, seed=seed,
                                    cache=where, cache_budget=1)
        return [next(iter(pipeline))[1].numpy().tolist() for _ in range(n)]

    first, second = epochs(3)
    assert sorted(first) == sorted(ds.labels.tolist())
    assert first != second  # reshuffled every epoch
    if cache != "file":  # a file cache is written once; a second pipeline would reuse it
        assert epochs(3, 1)[0] == first


def test_reduced_scale_decode_matches_full_decode_closely(tmp_path):
    """Check that a large JPEG decoded at reduced scale resizes to nearly the same pixels."""
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (8, 12, 3)), np.ones((100, 100, 1))).astype(np.uint8)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(smooth).save(tmp_path / name / "big.jpg", quality=95)
    ds = ImageFolderDataset(tmp_path)
    fast = next(iter(ds.to_tf_dataset(image_size=64, batch_size=2)))[0].numpy()
    full = next(iter(ds.to_tf_dataset(image_size=64, batch_size=2, fast_decode=False)))[0]
    assert np.abs(fast - full.numpy()).mean() < 3.0


def test_grayscale_and_nearest(image_folder):
    """Check the grayscale color mode and nearest interpolation without antialiasing."""
    ds = ImageFolderDataset(image_folder)
    gray = next(iter(ds.to_tf_dataset(image_size=24, batch_size=4, color_mode="grayscale")))[0]
    assert gray.shape == (4, 24, 24, 1)
    nearest = next(iter(ds.to_tf_dataset(image_size=12, batch_size=4,
                                         interpolation="nearest")))[0].numpy()
    original = np.asarray(Image.open(ds.paths[0]))
    assert set(np.unique(nearest[0])) <= set(np.unique(original))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"image_size": 0}, ValueError, r"image_size=0"),
        ({"image_size": (0, 128)}, ValueError, r"image_size=\(0, 128\)"),
        ({"batch_size": 0}, ValueError, "batch_size=0"),
        ({"batch_size": 2.5}, TypeError, "batch_size=2.5"),
        ({"interpolation": "cubic"}, ValueError, "'bilinear'.*interpolation='cubic'"),
        ({"color_mode": "rgba"}, ValueError, "color_mode='rgba'"),
    ],
)
def test_pipeline_arguments_are_validated(image_folder, kwargs, error, match):
    """Check that bad pipeline options name the argument and the value."""
    with pytest.raises(error, match=match):
        ImageFolderDataset(image_folder).to_tf_dataset(**kwargs)


def test_cache_plan_follows_the_budget():
    """Check the in-memory / file / none cache decision against the budget."""
    assert plan_cache(1000, (128, 128), budget=1 << 30).kind == "memory"
    assert plan_cache(1000, (128, 128), budget=1 << 20).kind == "none"
    plan = plan_cache(1000, (128, 128), budget=1 << 20, cache="/tmp/c")
    assert (plan.kind, plan.path) == ("file", "/tmp/c")
    assert plan_cache(10, (8, 8), cache=None).kind == "none"
    assert plan_cache(10**6, (128, 128), budget=1, cache="memory").kind == "memory"
    assert plan_cache(2, (4, 5), 3).nbytes == 2 * 4 * 5 * 3


def test_preprocessing_round_trip():
    """Check that Preprocessing survives to_dict/from_dict."""
    prep = Preprocessing(image_size=(32, 48), interpolation="nearest", color_mode="grayscale")
    assert Preprocessing.from_dict(prep.to_dict()) == prep


def test_plot_samples_shows_one_image_per_class(image_folder):
    """Check that the sample grid has one titled image per class in two rows."""
    fig = ImageFolderDataset(image_folder).plot_samples(rows=2, seed=0)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["class_0", "class_1", "class_2"]
    assert len(fig.axes) == 4  # 2 rows x 2 columns, the last one empty
    again = ImageFolderDataset(image_folder).plot_samples(rows=2, seed=0)
    first = [ax.images[0].get_array().tolist() for ax in fig.axes if ax.images]
    second = [ax.images[0].get_array().tolist() for ax in again.axes if ax.images]
    assert first == second
