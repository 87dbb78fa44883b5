"""Writers of real image files, valid and broken, for the tests."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def random_rgb(rng: np.random.Generator, size: tuple[int, int] = (24, 24)) -> np.ndarray:
    return rng.integers(0, 256, (*size, 3), dtype=np.uint8)


def class_pattern(label: int, rng: np.random.Generator, size: int = 24) -> np.ndarray:
    """An image whose class is easy to learn: a bright band at a class-specific place."""
    image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    band = size // 4
    start = (label * band) % (size - band)
    image[start : start + band, :, label % 3] = 230
    return image


def write_png_chunks(path: Path, width: int, height: int, rows: int = 4) -> None:
    """A small, valid-looking PNG whose header declares width x height (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    raw = b"".join(b"\x00" + b"\x00" * ((width + 7) // 8) for _ in range(rows))
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
    path.write_bytes(data + chunk(b"IEND", b""))


def write_zoo(folder: Path, rng: np.random.Generator) -> dict[str, str | None]:
    """Write every kind of valid and broken file; return relpath -> expected reason code."""
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str | None] = {}
    rgb = Image.fromarray(random_rgb(rng, (30, 40)))

    def add(name: str, reason: str | None) -> Path:
        expected[name] = reason
        return folder / name

    rgb.save(add("plain.jpg", None), "JPEG")
    rgb.save(add("UPPER.JPG", None), "JPEG")
    rgb.save(add("png_named.jpg", None), "PNG")
    rgb.convert("CMYK").save(add("cmyk.jpg", None), "JPEG")
    rgb.save(add("progressive.jpg", None), "JPEG", progressive=True)
    Image.fromarray((rng.integers(0, 65535, (20, 20))).astype(np.uint16)).save(
        add("sixteen_bit.png", None), "PNG")
    rgb.convert("P").save(add("palette.png", None), "PNG")
    rgb.convert("RGBA").save(add("rgba.png", None), "PNG")
    rgb.convert("L").save(add("gray.png", None), "PNG")
    frames = [Image.fromarray(random_rgb(rng, (16, 16))) for _ in range(3)]
    frames[0].save(add("animated.gif", None), "GIF", save_all=True, append_images=frames[1:])
    Image.fromarray(random_rgb(rng, (1, 1))).save(add("one_pixel.png", None), "PNG")
    rgb.save(add("bitmap.bmp", None), "BMP")

    add("zero.jpg", "empty_file").write_bytes(b"")
    add("text.jpg", "not_an_image").write_text("just some notes, not a photo\n")
    add("error_page.png", "not_an_image").write_text(
        "<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>")
    add("random_bytes.png", "not_an_image").write_bytes(bytes(rng.integers(0, 256, 300,
                                                                          dtype=np.uint8)))
    jpeg = (folder / "plain.jpg").read_bytes()
    add("truncated.jpg", "truncated").write_bytes(jpeg[: len(jpeg) // 2])
    png = (folder / "rgba.png").read_bytes()
    add("truncated.png", "truncated").write_bytes(png[: len(png) // 2])
    rgb.save(add("tiff_named.png", "unsupported_format"), "TIFF")
    write_png_chunks(add("bomb.png", "too_many_pixels"), 40000, 40000)
    os.symlink(folder / "does-not-exist.jpg", add("broken_link.jpg", "broken_link"))
    return expected


def write_ignored(folder: Path) -> list[str]:
    """Write files that are not images and must be ignored; return their relpaths."""
    (folder / ".ipynb_checkpoints").mkdir(parents=True, exist_ok=True)
    (folder / ".ipynb_checkpoints" / "copy.png").write_bytes(b"not read")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (folder / "notes.txt").write_text("labels were checked twice")
    return [".ipynb_checkpoints", ".DS_Store", "Thumbs.db", "notes.txt"]


def write_class_folder(root: Path, classes: int, per_class: int, *, size: int = 24,
                       seed: int = 0, fmt: str = "PNG") -> Path:
    rng = np.random.default_rng(seed)
    ext = ".png" if fmt == "PNG" else ".jpg"
    for label in range(classes):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(class_pattern(label, rng, size)).save(folder / f"img_{i:03d}{ext}",
                                                                  fmt)
    return root


def write_many_frame_gif(path: Path, frames: int, width: int, height: int) -> Path:
    """A small GIF of ``frames`` 1x1 frames on a ``width`` x ``height`` canvas.

    TensorFlow decodes every frame at the canvas size, so the decoded size is
    ``frames * width * height`` pixels although the file is a few bytes per frame.
    """
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0)
    palette = b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    path.write_bytes(header + palette + frame * frames + b"\x3b")
    return path


def photo_like(rng: np.random.Generator, label: int, size: int = 96) -> np.ndarray:
    """A smooth, photo-like picture: soft blobs in class colours over a gradient, with grain.

    Pictures of one class share a palette and differ in layout, as photos of one kind of
    fruit do; every call gives a distinct picture.
    """
    palette = np.array([[200, 40, 40], [40, 160, 60], [50, 70, 200], [220, 180, 40],
                        [150, 60, 170], [40, 170, 170]], np.float64)
    base = palette[label % len(palette)]
    yy, xx = np.mgrid[0:size, 0:size] / size
    angle = rng.uniform(0, 2 * np.pi)
    image = np.zeros((size, size, 3)) + (0.6 + 0.25 * (np.cos(angle) * xx + np.sin(angle) * yy)
                                         )[..., None] * base
    for _ in range(rng.integers(4, 8)):
        cy, cx = rng.uniform(0.1, 0.9, 2)
        radius = rng.uniform(0.06, 0.22)
        colour = np.clip(base * rng.uniform(0.4, 1.4) + rng.normal(0, 30, 3), 0, 255)
        weight = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))[..., None]
        image = image * (1 - weight) + colour * weight
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_photo_folder(root: Path, classes: int, per_class: int, *, size: int = 96,
                       seed: int = 0) -> Path:
    """``classes`` folders of distinct photo-like JPEGs (see :func:`photo_like`)."""
    rng = np.random.default_rng(seed)
    for label in range(classes):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(photo_like(rng, label, size)).save(folder / f"photo_{i:03d}.jpg",
                                                               "JPEG", quality=92)
    return root


def write_photo_split(root: Path, classes: int, counts: dict[str, int], *, size: int = 96,
                      seed: int = 0) -> tuple[Path, ...]:
    """``root/<part>/class_<i>/NNN.jpg`` photo-like JPEGs for each ``part: count`` (e.g.
    ``{"train": 40, "test": 20}``), one random stream over all parts; returns the part
    folders in order."""
    rng = np.random.default_rng(seed)
    for part, count in counts.items():
        for label in range(classes):
            folder = root / part / f"class_{label}"
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(photo_like(rng, label, size)).save(folder / f"{i:03d}.jpg")
    return tuple(root / part for part in counts)


def free_ports(count: int) -> list[int]:
    """``count`` TCP ports on 127.0.0.1 that were free a moment ago (for test clusters)."""
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def reencoded(image: Image.Image, fmt: str, **options: object) -> Image.Image:
    """``image`` saved as ``fmt`` in memory and read back (a lossy round trip for JPEG)."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def cropped(image: Image.Image, left: float, top: float, right: float, bottom: float
            ) -> Image.Image:
    """``image`` with the given shares of its width and height cut off each side."""
    w, h = image.size
    return image.crop((round(left * w), round(top * h), round(w * (1 - right)),
                       round(h * (1 - bottom))))


def rewrite_member(source: Path, target: Path, member: str, payload: bytes | None = None, *,
                   inflate_to: int = 0, extra: dict[str, bytes] | None = None) -> Path:
    """Copy a ``.keras`` (zip) archive, replacing ``member`` with ``payload``, or with
    ``inflate_to`` zero bytes written deflated (a small file that inflates to that size: a
    zip bomb), and adding the members ``extra``."""
    import zipfile

    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w",
                                                         zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            if info.filename != member:
                new.writestr(info, old.read(info.filename))
        if inflate_to:
            with new.open(member, "w", force_zip64=True) as fh:
                block = b"\0" * (1 << 20)
                for _ in range(inflate_to >> 20):
                    fh.write(block)
        elif payload is not None:
            new.writestr(member, payload)
        for name, data in (extra or {}).items():
            new.writestr(name, data)
    return target


def corner_shape(kind: int, side: int) -> np.ndarray:
    """A white shape of ``side`` pixels: a filled square (0) or a plus sign (1)."""
    mask = np.zeros((side, side), bool)
    if kind == 0:
        mask[:, :] = True
    else:
        middle, half = side // 2, max(1, side // 6)
        mask[middle - half:middle + half, :] = True
        mask[:, middle - half:middle + half] = True
    return mask


def write_corner_folder(root: Path, per_class: int, size: int, *, seed: int) -> Path:
    """Two classes decided by the shape in the top-left corner (square or plus), on noise,
    with a shape of either kind as a distractor in the bottom-right half."""
    rng = np.random.default_rng(seed)
    side = size // 3
    for label in (0, 1):
        folder = root / f"shape_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = rng.integers(0, 140, (size, size, 3), dtype=np.uint8)
            image[:side, :side][corner_shape(label, side)] = 255
            y, x = rng.integers(size // 2, size - side, 2)
            image[y:y + side, x:x + side][corner_shape(int(rng.integers(2)), side)] = 255
            Image.fromarray(image).save(folder / f"{i:03d}.png")
    return root
