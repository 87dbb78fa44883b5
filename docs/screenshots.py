"""Regenerate the docs' images from a fresh ``fruitclf demo`` run.

Run ``nox -s screenshots`` (or ``python docs/screenshots.py``): the demo trains in a temporary
folder, its ``history.png``, ``confusion_matrix.png``, ``calibration.png`` and
``attention.png`` are copied into ``docs/_static``, and headless Chromium photographs the top
of its ``report.html`` at a phone's width. The worksheet preset is then trained on the same
digits, and ``fruitclf compare`` draws the photos where the two runs disagree.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

STATIC = Path(__file__).parent / "_static"
#: A phone's CSS width and height in pixels, drawn at twice the density.
PHONE = (412, 900)


def main() -> int:
    browser = next((b for b in ("chromium", "chromium-browser", "google-chrome")
                    if shutil.which(b)), None)
    if browser is None:
        print("Chromium is needed for the report screenshot.", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "fruitclf.cli", "demo", "--out", tmp], check=True)
        run = Path(tmp) / "run"
        shutil.copy(run / "history.png", STATIC / "demo-history.png")
        shutil.copy(run / "confusion_matrix.png", STATIC / "demo-confusion-matrix.png")
        shutil.copy(run / "calibration.png", STATIC / "demo-calibration.png")
        shutil.copy(run / "attention.png", STATIC / "demo-attention.png")
        data = Path(tmp) / "data"
        worksheet = Path(tmp) / "worksheet"
        subprocess.run([sys.executable, "-m", "fruitclf.cli", "train", str(data / "train"),
                        "--test", str(data / "test"), "--preset", "worksheet",
                        "--image-size", "32", "--out", str(worksheet), "--quiet"], check=True)
        subprocess.run([sys.executable, "-m", "fruitclf.cli", "compare", str(worksheet),
                        str(run), "--figure", str(STATIC / "demo-compare.png")], check=True)
        subprocess.run([browser, "--headless", "--no-sandbox", "--hide-scrollbars",
                        "--force-device-scale-factor=2", f"--window-size={PHONE[0]},{PHONE[1]}",
                        f"--screenshot={STATIC / 'demo-report.png'}",
                        (run / "report.html").as_uri()], check=True, capture_output=True)
    print(f"Wrote {', '.join(p.name for p in sorted(STATIC.glob('demo-*.png')))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
