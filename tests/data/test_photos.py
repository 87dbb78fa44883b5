"""Photos as phones and editors leave them: EXIF orientation and transparency, seen the same
way by the check, the pipelines, predictions and figures."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

import fruitclf
from fruitclf.data import check as _check
from fruitclf.data import load_checked
from fruitclf.data.orientation import exif_orientation

UPRIGHT_SIZE = (24, 40)  # height, width: not square, so a wrong turn changes the shape
# The stored pixels of a photo whose tag turns them into the upright photo (the inverse of
# what the tag asks a viewer to do).
STORED = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _upright() -> np.ndarray:
    """A smooth photo-like picture with a distinct top-left corner (JPEG keeps it well)."""
    height, width = UPRIGHT_SIZE
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([x / width * 255, y / height * 255, 128 + 0 * x], axis=-1)
    image[:8, :8] = (250, 30, 30)
    return image.astype(np.uint8)


def _write_tagged(path: Path, orientation: int, fmt: str) -> np.ndarray:
    upright = Image.fromarray(_upright())
    method = STORED[orientation]
    stored = upright if method is None else upright.transpose(method)
    exif = Image.Exif()
    exif[0x0112] = orientation
    options = {"quality": 95} if fmt == "JPEG" else {}
    stored.save(path, fmt, exif=exif.tobytes(), **options)
    with Image.open(path) as written:  # what every viewer shows: the upright photo
        shown = np.asarray(ImageOps.exif_transpose(written).convert("RGB"))
    assert shown.shape[:2] == UPRIGHT_SIZE
    return shown


@pytest.fixture(scope="module")
def phone_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """One class folder per orientation value, each with a JPEG and a PNG carrying the tag."""
    root = tmp_path_factory.mktemp("phone")
    shown: dict[str, np.ndarray] = {}
    for orientation in range(1, 9):
        folder = root / f"o{orientation}"
        folder.mkdir()
        for fmt, ext in (("JPEG", "jpg"), ("PNG", "png")):
            path = folder / f"IMG_{orientation}.{ext}"
            shown[str(path)] = _write_tagged(path, orientation, fmt)
    return root, shown


def _close(decoded: np.ndarray, shown: np.ndarray, path: str, jpeg: float = 2.0) -> None:
    """The same photo: PNG is lossless (the same pixels), JPEG within ``jpeg`` on 0-255 (two
    libjpeg builds, or the JPEG against its source). A wrong turn differs by ~50."""
    assert decoded.shape == shown.shape, path
    difference = np.abs(decoded.astype(np.float32) - shown.astype(np.float32)).mean()
    assert difference <= (0.0 if path.endswith(".png") else jpeg), (path, difference)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_decoded_upright_everywhere(
        phone_folder: tuple[Path, dict[str, np.ndarray]], orientation: int) -> None:
    root, shown = phone_folder
    paths = sorted(str(p) for p in (root / f"o{orientation}").iterdir())
    for path in paths:
        assert exif_orientation(Path(path).read_bytes(), _check.sniff_format(
            Path(path).read_bytes()[:16])) == orientation
        assert _check.read_image_header(path).size == UPRIGHT_SIZE[::-1]
    prep = fruitclf.Preprocessing(image_size=UPRIGHT_SIZE)
    dataset = fruitclf.ImageFolderDataset(root)
    position = {p: i for i, p in enumerate(dataset.paths)}

    # The pipeline that streams from files, and the one built from the check's decodes.
    streamed = np.concatenate([np.asarray(x) for x, _ in dataset.to_tf_dataset(
        preprocessing=prep, cache=False)])
    report = dataset.check(progress=False, preprocessing=prep)
    assert report.ok
    cached = np.concatenate([np.asarray(x) for x, _ in dataset.to_tf_dataset(
        preprocessing=prep)])
    predicted = load_checked(paths, prep).arrays()  # what predict, evaluate and export read
    for index, path in enumerate(paths):
        _close(streamed[position[path]], shown[path], path)
        _close(cached[position[path]], shown[path], path)
        _close(predicted[index], shown[path], path)
        assert report.image_sizes[path] == UPRIGHT_SIZE[::-1]


def test_sample_grid_shows_photos_upright(phone_folder: tuple[Path, dict[str, np.ndarray]]
                                          ) -> None:
    root, _ = phone_folder
    figure = fruitclf.ImageFolderDataset(root).plot_samples(rows=2, seed=0)
    panels = {ax.get_title(): np.asarray(ax.images[0].get_array())
              for ax in figure.axes if ax.images}
    for orientation in range(1, 9):
        _close(panels[f"o{orientation}"], _upright(), "either.jpg", jpeg=5.0)


def test_orientation_can_be_turned_off_and_is_kept_with_the_model(
        phone_folder: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = phone_folder
    path = str(root / "o6" / "IMG_6.png")
    as_stored = fruitclf.Preprocessing(image_size=UPRIGHT_SIZE[::-1], exif_orientation=False)
    assert load_checked([path], as_stored).arrays().shape == (1, 40, 24, 3)
    restored = fruitclf.Preprocessing.from_dict(as_stored.to_dict())
    assert restored == as_stored
    # A model saved before these settings existed: upright photos, white background.
    assert fruitclf.Preprocessing.from_dict({"image_size": [8, 8]}).exif_orientation is True


def _rgba_png(path: Path, fmt: str = "PNG") -> None:
    """Left half opaque red, right half fully transparent (stored black), a half-alpha row."""
    image = np.zeros((16, 16, 4), np.uint8)
    image[:, :8] = (200, 20, 20, 255)
    image[:, 8:] = (0, 0, 0, 0)
    image[0, :8] = (200, 20, 20, 128)
    options = {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(image, "RGBA").save(path, fmt, **options)


@pytest.mark.parametrize(("background", "expected"), [
    ("white", 255), ("black", 0), ("#808080", 128)])
def test_transparency_is_composited_on_the_background(tmp_path: Path, background: str,
                                                      expected: int) -> None:
    formats = ["PNG"] + (["WEBP"] if "WEBP" in _check.tensorflow_formats() else [])
    for fmt in formats:
        folder = tmp_path / fmt / "cutout"
        folder.mkdir(parents=True)
        _rgba_png(folder / f"item.{fmt.lower()}", fmt)
        prep = fruitclf.Preprocessing(image_size=(16, 16), background=background)
        dataset = fruitclf.ImageFolderDataset(tmp_path / fmt)
        for pipeline in (dataset.to_tf_dataset(preprocessing=prep, cache=False),
                         (dataset.check(progress=False, preprocessing=prep),
                          dataset.to_tf_dataset(preprocessing=prep))[1]):
            image = np.asarray(next(iter(pipeline))[0][0])
            assert np.all(image[1:, 10:] == expected), (fmt, background)
            assert np.allclose(image[1:, :6], (200, 20, 20)), fmt  # opaque: unchanged
            half = (200 * 128 + expected * 127) / 255
            assert abs(float(image[0, 2, 0]) - half) <= 1.0, fmt


def test_sample_grid_shows_transparency_on_the_background(tmp_path: Path) -> None:
    _rgba_png((tmp_path / "cutout").mkdir() or tmp_path / "cutout" / "item.png")
    (tmp_path / "other").mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "other" / "a.png")
    dataset = fruitclf.ImageFolderDataset(tmp_path)
    for background, expected in (("white", 255), ("black", 0)):
        figure = dataset.plot_samples(rows=1, seed=0, background=background)
        panel = next(np.asarray(ax.images[0].get_array()) for ax in figure.axes
                     if ax.get_title() == "cutout")
        assert np.all(panel[:, 10:] == expected)


def test_a_background_that_is_not_a_colour_is_refused() -> None:
    with pytest.raises(ValueError, match=r"`background` must be white, black, gray or a "
                       r"colour as #RRGGBB.*Received: background='transparent'"):
        fruitclf.Preprocessing(background="transparent")


def test_formats_tensorflow_cannot_decode_are_reported_without_its_log_lines(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "scan.tif", "TIFF")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "ok.png", "PNG")
    photo = io.BytesIO()
    Image.fromarray(_upright()).save(photo, "JPEG", quality=95)
    (folder / "cut.jpg").write_bytes(photo.getvalue()[: len(photo.getvalue()) // 2])
    noise = io.BytesIO()  # cut inside its scan lines: TensorFlow's own note on it
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
        noise, "JPEG", quality=95)
    (folder / "head.jpg").write_bytes(noise.getvalue()[:2000])
    capfd.readouterr()
    report = fruitclf.ImageFolderDataset(tmp_path).check(progress=False)
    assert [(p.relpath, p.reason) for p in report.problems] == [
        ("scans/cut.jpg", "truncated"), ("scans/head.jpg", "truncated"),
        ("scans/scan.tif", "unsupported_format")]
    assert "unsupported format (TIFF)" in report.problems[2].message
    err = capfd.readouterr().err
    assert "rendezvous" not in err.lower() and "JPEG" not in err, err


def test_the_orientation_reader_survives_damaged_metadata() -> None:
    good = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_upright()).save(good, "JPEG", exif=exif.tobytes())
    data = good.getvalue()
    assert exif_orientation(data, "JPEG") == 6
    start = data.index(b"Exif")
    for cut in (start + 8, start + 14, start + 20):  # the EXIF block cut short, then garbage
        damaged = data[:cut] + b"\xff" * 4 + data[cut + 4:]
        assert exif_orientation(damaged, "JPEG") in range(1, 9)
    assert exif_orientation(data[:start + 10], "JPEG") == 1
    assert exif_orientation(b"\x89PNG\r\n\x1a\n", "PNG") == 1
    assert exif_orientation(b"RIFF\x00\x00\x00\x00WEBPVP8X", "WEBP") == 1
