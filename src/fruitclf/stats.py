"""How sure a number measured on a small test set is.

A test folder of 30 photos measures accuracy in steps of 3.3 points, and a "0.833" on it is,
with 95% confidence, anywhere from about 0.66 to 0.93. This module turns the counts behind a
rate into an interval, compares two models on the same photos, and measures how far predicted
probabilities are from the accuracy they promise:

- :func:`wilson_interval`: the Wilson score interval of a rate (right near 0 and 1 and on a
  handful of images, where the textbook "p ± 1.96·se" interval is not);
- :func:`paired_difference_interval` and :func:`mcnemar_p_value`: two models on the same
  images, from the photos only one of them got right (Newcombe's hybrid score interval for
  paired rates; McNemar's exact test);
- :func:`expected_calibration_error` and :func:`reliability`: confidence against accuracy;
  :func:`fit_temperature` and :func:`apply_temperature`: temperature scaling.

Examples
--------
>>> low, high = wilson_interval(25, 30)
>>> round(low, 3), round(high, 3)
(0.664, 0.927)
>>> round(mcnemar_p_value(only_a=1, only_b=9), 4)
0.0215
"""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist

import numpy as np

from ._validation import check_float, check_int

__all__ = [
    "CALIBRATION_BINS",
    "INTERVAL_CONFIDENCE",
    "TEMPERATURE_RANGE",
    "Reliability",
    "apply_temperature",
    "expected_calibration_error",
    "fit_temperature",
    "mcnemar_p_value",
    "paired_difference_interval",
    "reliability",
    "wilson_interval",
]

#: The confidence of every interval fruitclf reports.
INTERVAL_CONFIDENCE = 0.95

#: Equal-width confidence bins of the calibration error and the reliability diagram.
CALIBRATION_BINS = 10


def _z(confidence: float) -> float:
    level = check_float(confidence, "confidence", min_value=0.0, max_value=1.0, exclusive=True)
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def _counts(successes: int, trials: int) -> tuple[int, int]:
    trials = check_int(trials, "trials", min_value=0)
    successes = check_int(successes, "successes", min_value=0)
    if successes > trials:
        raise ValueError("`successes` must be at most `trials`. Received: "
                         f"successes={successes}, trials={trials}")
    return successes, trials


def wilson_interval(successes: int, trials: int, *,
                    confidence: float = INTERVAL_CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of the rate ``successes / trials``.

    Parameters
    ----------
    successes, trials : int
        Counts, e.g. correctly classified test images and test images.
    confidence : float, default=0.95
        Confidence of the interval.

    Returns
    -------
    (low, high) : tuple of float
        Bounds within [0, 1]; ``(0.0, 1.0)`` when ``trials`` is 0 (nothing was measured).

    Examples
    --------
    >>> [round(b, 4) for b in wilson_interval(81, 263)]
    [0.2553, 0.3662]
    >>> wilson_interval(0, 20)[0], round(wilson_interval(0, 20)[1], 4)
    (0.0, 0.1611)
    """
    successes, trials = _counts(successes, trials)
    z = _z(confidence)
    if trials == 0:
        return 0.0, 1.0
    rate = successes / trials
    scale = 1.0 + z * z / trials
    centre = (rate + z * z / (2 * trials)) / scale
    half = z * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials)) / scale
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def paired_difference_interval(*, both: int, only_a: int, only_b: int, neither: int,
                               confidence: float = INTERVAL_CONFIDENCE) -> tuple[float, float]:
    """Interval of ``accuracy_b - accuracy_a`` for two models tested on the same images.

    Newcombe's hybrid score interval for paired rates (method 10 of Newcombe, *Statistics in
    Medicine* 17, 1998, as worked in Altman et al., *Statistics with Confidence*): the Wilson
    intervals of both accuracies, joined with the correlation of the two models' hits.

    Parameters
    ----------
    both, only_a, only_b, neither : int
        Images both models got right, only A, only B, neither.
    confidence : float, default=0.95

    Examples
    --------
    >>> [round(b, 3) for b in paired_difference_interval(both=20, only_a=1, only_b=9,
    ...                                                   neither=0)]
    [0.067, 0.451]
    """
    counts = [check_int(v, name, min_value=0) for v, name in
              ((both, "both"), (only_a, "only_a"), (only_b, "only_b"), (neither, "neither"))]
    both, only_a, only_b, neither = counts
    total = sum(counts)
    if total == 0:
        return -1.0, 1.0
    rate_b, rate_a = (both + only_b) / total, (both + only_a) / total
    low_b, high_b = wilson_interval(both + only_b, total, confidence=confidence)
    low_a, high_a = wilson_interval(both + only_a, total, confidence=confidence)
    # The correlation of the two models' hits, with Newcombe's continuity correction.
    spread = (both + only_b) * (only_a + neither) * (both + only_a) * (only_b + neither)
    agreement = float(both * neither - only_a * only_b)
    if agreement > 0:
        agreement = max(agreement - total / 2.0, 0.0)
    phi = agreement / math.sqrt(spread) if spread else 0.0
    difference = rate_b - rate_a
    below = math.sqrt(max(0.0, (rate_b - low_b) ** 2 - 2 * phi * (rate_b - low_b)
                          * (high_a - rate_a) + (high_a - rate_a) ** 2))
    above = math.sqrt(max(0.0, (high_b - rate_b) ** 2 - 2 * phi * (high_b - rate_b)
                          * (rate_a - low_a) + (rate_a - low_a) ** 2))
    return max(-1.0, difference - below), min(1.0, difference + above)


def mcnemar_p_value(*, only_a: int, only_b: int) -> float:
    """Two-sided p-value of McNemar's exact test: could the photos only one model got right
    have split this unevenly if both models were equally good?

    Only the discordant photos count; under the null hypothesis each of them is equally
    likely to be A's or B's, so the p-value is a binomial tail with probability 1/2, doubled
    (at most 1).

    Examples
    --------
    >>> mcnemar_p_value(only_a=0, only_b=0)
    1.0
    >>> round(mcnemar_p_value(only_a=0, only_b=6), 4)
    0.0312
    """
    only_a = check_int(only_a, "only_a", min_value=0)
    only_b = check_int(only_b, "only_b", min_value=0)
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    smaller = min(only_a, only_b)
    tail = sum(math.comb(discordant, k) for k in range(smaller + 1))
    return min(1.0, 2.0 * tail / 2.0 ** discordant)


@dataclasses.dataclass(frozen=True)
class Reliability:
    """Confidence against accuracy in equal-width bins (a reliability diagram's bars).

    Empty bins have ``count`` 0 and NaN ``accuracy`` and ``confidence``.
    """

    #: Bin edges, ``bins + 1`` values from 0 to 1
    edges: np.ndarray
    #: Images per bin
    counts: np.ndarray
    #: Share of the bin's images the model got right
    accuracy: np.ndarray
    #: Mean predicted probability of the bin's images
    confidence: np.ndarray

    @property
    def calibration_error(self) -> float:
        """Expected calibration error: the images-weighted mean gap between accuracy and
        confidence over the bins (0: every confidence is the accuracy it promises)."""
        total = int(self.counts.sum())
        if total == 0:
            return 0.0
        filled = self.counts > 0
        gaps = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float(np.sum(self.counts[filled] * gaps) / total)


def reliability(probabilities: np.ndarray, y_true: np.ndarray, *,
                bins: int = CALIBRATION_BINS) -> Reliability:
    """Bin each image by the probability of its predicted class; per bin, the share right.

    Parameters
    ----------
    probabilities : array of shape (n, n_classes)
        Class probabilities per image.
    y_true : array of int, shape (n,)
        True class index per image.
    bins : int, default=10
        Equal-width bins over [0, 1]; a confidence on an edge goes to the bin above it
        (1.0 to the last).
    """
    bins = check_int(bins, "bins", min_value=1)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    y_true = np.asarray(y_true)
    if probabilities.ndim != 2 or len(probabilities) != len(y_true):
        raise ValueError("`probabilities` must have one row per label. Received: probabilities "
                         f"of shape {probabilities.shape} and {len(y_true)} labels")
    confidence = probabilities.max(axis=1) if len(y_true) else np.zeros(0)
    correct = (probabilities.argmax(axis=1) == y_true) if len(y_true) else np.zeros(0, bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(which, weights=correct.astype(np.float64), minlength=bins) / counts
        mean_confidence = np.bincount(which, weights=confidence, minlength=bins) / counts
    return Reliability(edges, counts, accuracy, mean_confidence)


def expected_calibration_error(probabilities: np.ndarray, y_true: np.ndarray, *,
                               bins: int = CALIBRATION_BINS) -> float:
    """Expected calibration error of ``probabilities`` (see :class:`Reliability`).

    Examples
    --------
    >>> probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
    >>> round(expected_calibration_error(probabilities, np.array([0, 1, 1])), 4)
    0.4
    """
    return reliability(probabilities, y_true, bins=bins).calibration_error


#: The temperatures :func:`fit_temperature` searches between.
TEMPERATURE_RANGE = (0.05, 20.0)


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``probabilities`` with their log-odds divided by ``temperature`` (above 1: less sure,
    below 1: surer); the predicted class never changes.

    Examples
    --------
    >>> apply_temperature(np.array([[0.8, 0.2]]), 2.0).round(3)
    array([[0.667, 0.333]])
    """
    temperature = check_float(temperature, "temperature", min_value=0.0, exclusive=True)
    logs = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1.0)) / temperature
    logs -= logs.max(axis=1, keepdims=True)
    scaled = np.exp(logs)
    return np.asarray(scaled / scaled.sum(axis=1, keepdims=True))


def fit_temperature(probabilities: np.ndarray, y_true: np.ndarray) -> float:
    """The temperature that makes ``probabilities`` most likely for ``y_true`` (temperature
    scaling, Guo et al., 2017): one number, fitted on images the model did not train on.

    Examples
    --------
    >>> over_confident = np.array([[0.99, 0.01]] * 6 + [[0.01, 0.99]] * 2)
    >>> labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    >>> round(fit_temperature(over_confident, labels), 2) > 1
    True
    """
    from scipy.optimize import minimize_scalar

    probabilities = np.asarray(probabilities, dtype=np.float64)
    y_true = np.asarray(y_true)
    if probabilities.ndim != 2 or len(probabilities) != len(y_true) or not len(y_true):
        raise ValueError("`probabilities` must have one row per label, and at least one. "
                         f"Received: probabilities of shape {probabilities.shape} and "
                         f"{len(y_true)} labels")
    rows = np.arange(len(y_true))

    def loss(log_temperature: float) -> float:
        scaled = apply_temperature(probabilities, float(np.exp(log_temperature)))
        return float(-np.mean(np.log(np.clip(scaled[rows, y_true], 1e-12, 1.0))))

    low, high = np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1])
    found = minimize_scalar(loss, bounds=(low, high), method="bounded",
                            options={"xatol": 1e-4})
    return float(np.exp(found.x))
