"""Would more photos help? The recipe trained on growing shares of each class.

:func:`learning_curve` trains the same recipe on 25, 50, 75 and 100% of the photos of each
class (several seeds: which photos, and the training's randomness), tests every model on the
same test folder, and fits a saturating curve ``accuracy = top - gap * photos^-rate`` through
the medians. Its reading of the curve at twice the photos is a guess, and the answer says so
when the points are too noisy to tell.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._validation import check_float, check_int

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .data import ImageFolderDataset

__all__ = ["LearningCurve", "learning_curve"]

logger = logging.getLogger("fruitclf")

#: The shares of each class's photos trained on, by default.
DEFAULT_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
#: The seeds, by default.
DEFAULT_SEEDS = (1, 2, 3)


@dataclasses.dataclass(frozen=True)
class LearningCurve:
    """Test accuracy against photos per class, from :func:`learning_curve`.

    Examples
    --------
    >>> print(curve.sentence)  # doctest: +SKIP
    The curve still rises: about 0.82 at 15 photos a class (median of the runs 0.82), and about
    0.87 expected at 30.
    """

    #: The shares of each class's photos trained on
    fractions: list[float]
    #: Mean photos per class at each share
    photos_per_class: list[float]
    #: Seeds of the runs
    seeds: list[int]
    #: Test accuracy per share (rows) and seed (columns)
    accuracy: list[list[float]]
    #: 95% Wilson interval of the median run at each share
    intervals: list[tuple[float, float]]
    #: Test images every run was measured on
    num_test_images: int
    #: The fitted ``(top, gap, rate)`` of ``top - gap * photos^-rate``, or None
    fit: tuple[float, float, float] | None
    #: The run folders, per share and seed
    runs: list[list[str]]
    #: Seconds all runs took
    seconds: float

    @property
    def medians(self) -> list[float]:
        return [float(np.median(row)) for row in self.accuracy]

    def predict(self, photos_per_class: float) -> float | None:
        """The fitted curve's accuracy at ``photos_per_class`` (None without a fit)."""
        if self.fit is None:
            return None
        top, gap, rate = self.fit
        return float(min(1.0, max(0.0, top - gap * photos_per_class ** -rate)))

    @property
    def sentence(self) -> str:
        """What the curve says about collecting more photos, with its caveat."""
        last, now = self.photos_per_class[-1], self.medians[-1]
        fitted, ahead = self.predict(last), self.predict(2 * last)
        if fitted is None or ahead is None:
            return (f"Median {now:.2f} at {last:.0f} photos a class; the points do not fit a "
                    "saturating curve, so there is no forecast.")
        middle = max(0, len(self.intervals) // 2 - 1)
        noisy = self.intervals[-1][0] <= self.intervals[middle][1]
        caveat = (f" The {self.num_test_images} test photos cannot tell these points apart "
                  f"(the intervals at {self.photos_per_class[middle]:.0f} and {last:.0f} "
                  "photos a class overlap): take the forecast as a rough guess, or test on "
                  "more photos." if noisy else "")
        if ahead - max(fitted, now) < 0.01:
            return (f"The curve is flat: about {fitted:.2f} at {last:.0f} photos a class "
                    f"(median of the runs {now:.2f}) and {ahead:.2f} expected at "
                    f"{2 * last:.0f}; more photos of the same kind are unlikely to help "
                    f"much.{caveat}")
        return (f"The curve still rises: about {fitted:.2f} at {last:.0f} photos a class "
                f"(median of the runs {now:.2f}), and about {ahead:.2f} expected at "
                f"{2 * last:.0f}.{caveat}")

    def to_dict(self) -> dict[str, Any]:
        payload = dataclasses.asdict(self)
        payload.update(medians=self.medians, sentence=self.sentence,
                       forecast_at_twice=self.predict(2 * self.photos_per_class[-1]))
        return payload

    def plot(self) -> Figure:
        """Accuracy against photos per class: every run, the medians with their 95% Wilson
        intervals, and the fitted curve up to twice the photos."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.0, 4.2), layout="constrained")
        ax = fig.add_subplot()
        x = np.asarray(self.photos_per_class)
        for column in range(len(self.seeds)):
            ax.scatter(x, [row[column] for row in self.accuracy], color="tab:blue", alpha=0.35,
                       s=14, label="one run" if column == 0 else None)
        low = np.array([i[0] for i in self.intervals])
        high = np.array([i[1] for i in self.intervals])
        medians = np.array(self.medians)
        ax.errorbar(x, medians, yerr=[medians - low, high - medians], fmt="o-",
                    color="tab:blue", capsize=3, label="median, 95% interval")
        if self.fit is not None:
            grid = np.linspace(x.min(), 2 * x.max(), 100)
            ax.plot(grid, [self.predict(v) or 0.0 for v in grid], "--", color="tab:orange",
                    label="fitted curve")
        ax.set_xlabel("Training photos per class")
        ax.set_ylabel(f"Test accuracy ({self.num_test_images} photos)")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        ax.set_title("Would more photos help?")
        return fig


def _subset(dataset: ImageFolderDataset, fraction: float, seed: int) -> ImageFolderDataset:
    """``fraction`` of each class's photos (at least one), chosen with ``seed``."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(dataset.labels)
    dropped: list[str] = []
    for label in range(dataset.num_classes):
        members = np.flatnonzero(labels == label)
        keep = max(1, round(fraction * len(members)))
        chosen = set(rng.choice(members, size=keep, replace=False).tolist())
        dropped += [dataset.paths[i] for i in members if i not in chosen]
    return dataset.exclude(dropped)


class _FirstOnly(logging.Filter):
    """Lets through the first record logged with ``template``, and no later one."""

    def __init__(self, template: str) -> None:
        super().__init__()
        self.template = template
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != self.template:
            return True
        if self.seen:
            return False
        self.seen = True
        return True


@contextlib.contextmanager
def _leakage_warned_once() -> Iterator[None]:
    """Every run of the curve tests on the same folder: its leakage warning is said once (each
    run's report lists its own pairs)."""
    from .job import LEAKAGE_WARNING

    once = _FirstOnly(LEAKAGE_WARNING)
    logger.addFilter(once)
    try:
        yield
    finally:
        logger.removeFilter(once)


def _train_shares(dataset: ImageFolderDataset, shares: list[float], seeds: list[int],
                  folder: Path, test_dir: str | os.PathLike[str], options: dict[str, Any]
                  ) -> tuple[list[list[float]], list[list[str]], int]:
    """One run per share and seed: the test accuracies, the run folders, the test images."""
    from .job import run

    accuracy: list[list[float]] = []
    runs: list[list[str]] = []
    tested, done, total = 0, 0, len(shares) * len(seeds)
    for share in shares:
        row: list[float] = []
        names: list[str] = []
        for seed in seeds:
            target = folder / "runs" / f"{share * 100:g}pct-seed{seed}"
            began = time.perf_counter()
            result = run(_subset(dataset, share, seed), out=target, test_dir=test_dir,
                         seed=seed, resume=True, training_index=False, **options)
            done += 1
            taken = time.perf_counter() - began
            logger.info("Run %d of %d (%g%% of the photos, seed %d): test accuracy %.3f "
                        "(%.0f s).", done, total, share * 100, seed,
                        result.metrics["test_accuracy"], taken)
            if done == 1:
                # The recipe shows about the same number of images whatever the share
                # (within its epoch bounds), so every run costs about the first one.
                logger.warning("First run: %.0f s; about %.0f min for the other %d.", taken,
                               taken * (total - 1) / 60, total - 1)
            row.append(float(result.metrics["test_accuracy"]))
            tested = int(result.metrics["num_test_images"])
            names.append(os.fspath(target))
        accuracy.append(row)
        runs.append(names)
    return accuracy, runs, tested


def fit_saturating(photos: Sequence[float], accuracy: Sequence[float]
                   ) -> tuple[float, float, float] | None:
    """Least-squares ``top - gap * photos^-rate`` (top <= 1, 0 <= gap <= 100,
    0.05 <= rate <= 3)
    through the points; None when it does not converge or there are fewer than 3 points."""
    from scipy.optimize import curve_fit

    if len(photos) < 3:
        return None

    def model(n: np.ndarray, top: float, gap: float, rate: float) -> np.ndarray:
        return np.asarray(top - gap * np.power(n, -rate))

    x, y = np.asarray(photos, float), np.asarray(accuracy, float)
    try:
        found, _ = curve_fit(model, x, y, p0=(min(1.0, y.max() + 0.05), 1.0, 0.5),
                             bounds=((0.0, 0.0, 0.05), (1.0, 100.0, 3.0)), maxfev=20000)
    except (RuntimeError, ValueError):
        return None
    return float(found[0]), float(found[1]), float(found[2])


def learning_curve(
    train_dir: str | os.PathLike[str],
    *,
    test_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    follow_links: bool = False,
    **run_options: Any,
) -> LearningCurve:
    """Train the recipe on growing shares of each class's photos; say whether more photos
    would help.

    Every share and seed is one :func:`fruitclf.run` into ``out/runs/<share>-seed<seed>``;
    an interrupted curve resumes where it stopped when called again with the same
    arguments (finished runs are read back, not trained again).

    Parameters
    ----------
    train_dir, test_dir : path-like
        The training folder and the test folder every model is measured on.
    out : path-like
        Folder for ``learning_curve.png``, ``learning_curve.json`` and the runs.
    fractions : sequence of float, default=(0.25, 0.5, 0.75, 1.0)
        Shares of each class's photos (each class keeps at least one photo).
    seeds : sequence of int, default=(1, 2, 3)
        One run per share and seed: the seed picks the photos and seeds the training.
    follow_links : bool, default=False
    **run_options
        Passed to every :func:`fruitclf.run` (``epochs``, ``recipe``, ``image_size``, ...).

    Returns
    -------
    LearningCurve

    Examples
    --------
    >>> curve = fruitclf.learning_curve("fruits/train", test_dir="fruits/test",
    ...                                 out="runs/curve")  # doctest: +SKIP
    >>> curve.sentence  # doctest: +SKIP
    """
    from . import _files
    from ._ownership import CURVE_FILES
    from ._runfolder import claim_output_folder
    from .data import ImageFolderDataset
    from .report import figure_png
    from .stats import wilson_interval

    shares = sorted({check_float(f, "fractions", min_value=0.0, max_value=1.0, exclusive=False)
                     for f in fractions})
    if not shares or shares[0] == 0.0:
        raise ValueError("`fractions` must be shares of the photos above 0, such as 0.25, "
                         f"0.5, 0.75, 1. Received: fractions={list(fractions)!r}")
    seed_list = [check_int(s, "seeds", min_value=0) for s in seeds]
    if not seed_list:
        raise ValueError("`seeds` must hold at least one seed, such as 1, 2, 3.")
    dataset = ImageFolderDataset(train_dir, follow_links=follow_links)
    dataset.require_trainable()
    dataset.warn_small_classes()
    folder = Path(out)
    claim_output_folder(folder, CURVE_FILES, {"train_dir": os.path.abspath(train_dir),
                                              "test_dir": os.path.abspath(test_dir)})
    total = len(shares) * len(seed_list)
    logger.warning("Learning curve: %d runs of the recipe (%d shares x %d seeds) on up to %d "
                   "photos; the time of the first run is printed, then an estimate of the "
                   "rest.", total, len(shares), len(seed_list), len(dataset))
    start = time.perf_counter()
    photos = [len(_subset(dataset, share, seed_list[0])) / dataset.num_classes
              for share in shares]  # every seed keeps as many photos of each class
    with _leakage_warned_once():
        accuracy, runs, tested = _train_shares(dataset, shares, seed_list, folder, test_dir,
                                               {"verbose": 0, **run_options,
                                                "follow_links": follow_links})
    intervals = [wilson_interval(round(float(np.median(r)) * tested), tested)
                 for r in accuracy]
    curve = LearningCurve(shares, photos, seed_list, accuracy, intervals, tested,
                          fit_saturating(photos, [float(np.median(r)) for r in accuracy]),
                          runs, time.perf_counter() - start)
    _files.write_json(folder / "learning_curve.json", curve.to_dict())
    with _files.atomic_path(folder / "learning_curve.png") as tmp:
        tmp.write_bytes(figure_png(curve.plot()))
    return curve
