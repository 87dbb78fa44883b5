"""The run report (report.md and report.html) and the console of a run that is not a terminal."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SECTIONS = ["Results", "Data", "Settings", "Model", "Training curves", "Test set",
            "Train/test leakage", "Possible label errors", "Files", "Versions"]
EPOCHS = 3


@pytest.fixture(scope="module")
def piped_run(tmp_path_factory, image_folder, test_folder) -> dict[str, object]:
    """`fruitclf train` with stdout and stderr going to a pipe, as in a CI log or `> log`."""
    out = tmp_path_factory.mktemp("report") / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "fruitclf.cli", "train", str(image_folder), "--test",
         str(test_folder), "--out", str(out), "--image-size", "24", "--epochs", str(EPOCHS),
         "--batch-size", "8", "--precision", "float32"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, check=False)
    return {"out": out, "code": proc.returncode, "log": proc.stdout.decode()}


def test_output_without_a_terminal_is_one_plain_line_per_epoch(piped_run):
    """Check that a run whose output is not a terminal writes no ANSI codes or carriage
    returns, one line per epoch, and names the device and precision before training."""
    log = piped_run["log"]
    assert piped_run["code"] == 0, log
    assert "\x1b[" not in log and "\r" not in log
    epochs = re.findall(rf"^Epoch (\d+)/{EPOCHS} - [\d.]+s - .*loss: [\d.]+", log, re.M)
    assert epochs == [str(i) for i in range(1, EPOCHS + 1)], log
    training = next(line for line in log.splitlines() if line.startswith("Training "))
    assert re.search(r"on CPU \(\d+ cores\), float32 precision", training), training
    assert training in log.split("Epoch 1/")[0]
    assert f"Report: {piped_run['out']}/report.html" in log


def test_quiet_prints_the_results_only(tmp_path, image_folder, capsys):
    """Check that --quiet leaves out progress lines and notes but prints the results."""
    from fruitclf.cli import main

    assert main(["train", str(image_folder), "--out", str(tmp_path / "run"), "--image-size",
                 "24", "--epochs", "2", "--batch-size", "8", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "Epoch" not in out + err and "Training " not in err and "MiB" not in out + err
    assert "best_epoch: 2" in out and "Report:" in out


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []
        self.headings: list[str] = []
        self.tags: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs))
        self._in_h2 = tag == "h2"

    def handle_endtag(self, tag):  # type: ignore[no-untyped-def]
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):  # type: ignore[no-untyped-def]
        if self._in_h2:
            self.headings.append(data)


def test_report_html_is_one_self_contained_page(piped_run):
    """Check that report.html has every section, and every image is an embedded PNG that
    decodes; nothing is loaded from elsewhere."""
    out = piped_run["out"]
    text = (out / "report.html").read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    assert page.headings == SECTIONS
    assert "script" not in page.tags and "link" not in page.tags
    assert 'name="viewport"' in text
    shown = {img["title"] for img in page.images}
    always = {"samples.png", "history.png", "confusion_matrix.png", "misclassified.png",
              "calibration.png", "attention.png"}
    assert always <= shown <= always | {"label_errors.png"}  # the last one when there are any
    for img in page.images:
        src = img["src"] or ""
        assert src.startswith("data:image/png;base64,"), src[:40]
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as decoded:
            assert decoded.format == "PNG" and min(decoded.size) > 100
        assert (out / str(img["title"])).is_file()
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert [line[3:] for line in markdown.splitlines() if line.startswith("## ")] == SECTIONS


def test_report_files_section_says_what_each_file_is(piped_run):
    """Check that the Files section describes each file instead of repeating its name."""
    markdown = (piped_run["out"] / "report.md").read_text(encoding="utf-8")
    files = markdown.split("## Files\n\n")[1].split("\n\n")[0].splitlines()
    names = {"model.keras", "model.h5", "split.json", "last_checkpoint.keras", "report.html",
             "history.json", "metrics.json"}
    listed = {}
    for line in files:
        name, description = re.fullmatch(r"- `([^`]+)`: (.+)", line).groups()
        listed[name] = description
        assert Path(name).stem not in description.split()[0], line
    assert names <= set(listed)


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def test_report_html_renders_in_a_browser(piped_run, tmp_path):
    """Check that headless Chromium renders report.html at phone width to a page that is
    not blank and is taller than one screen."""
    browser = _browser()
    if browser is None:
        if os.environ.get("FRUITCLF_REQUIRE_BROWSER"):
            pytest.fail("FRUITCLF_REQUIRE_BROWSER is set but no Chromium was found")
        pytest.skip("no headless Chromium installed (Debian: apt-get install chromium)")
    shot = tmp_path / "report.png"
    width, screen = 412, 915  # a phone held upright, in CSS pixels
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={width},{screen * 8}",
         f"--screenshot={shot}", (piped_run["out"] / "report.html").as_uri()],
        check=True, capture_output=True, timeout=120)
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    inked = np.flatnonzero((pixels < 200).any(axis=1))
    assert inked.size and (pixels < 200).mean() > 0.01, "blank page"
    assert inked[-1] > screen, f"page ends at {inked[-1]} px, within one screen"
    assert (pixels[:, -8:] > 240).all(), "content runs past the right edge at phone width"
