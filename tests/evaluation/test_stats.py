"""Intervals, the paired test and calibration error, against reference computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from fruitclf.stats import (
    expected_calibration_error,
    mcnemar_p_value,
    paired_difference_interval,
    reliability,
    wilson_interval,
)


@pytest.mark.parametrize(("successes", "trials", "low", "high"), [
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I.
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
])
def test_wilson_interval_matches_published_values(successes: int, trials: int, low: float,
                                                  high: float) -> None:
    got = wilson_interval(successes, trials)
    assert got == pytest.approx((low, high), abs=6e-5)


def test_wilson_interval_matches_scipy_on_a_grid() -> None:
    for trials in (1, 2, 5, 13, 30, 100, 1000):
        for successes in sorted({0, 1, trials // 3, trials // 2, trials - 1, trials}):
            for confidence in (0.8, 0.95, 0.99):
                reference = scipy_stats.binomtest(successes, trials).proportion_ci(
                    confidence_level=confidence, method="wilson")
                got = wilson_interval(successes, trials, confidence=confidence)
                assert got == pytest.approx((reference.low, reference.high), abs=1e-12), (
                    successes, trials, confidence)


def test_wilson_interval_of_nothing_is_everything_and_bad_counts_are_named() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match=r"`successes` must be at most `trials`.*"
                       r"successes=4, trials=3"):
        wilson_interval(4, 3)
    with pytest.raises(ValueError, match=r"`confidence` must be a number strictly between 0.0 "
                       r"and 1.0.*confidence=1.5"):
        wilson_interval(1, 3, confidence=1.5)
    with pytest.raises(TypeError, match="`trials` must be an int"):
        wilson_interval(1, 3.0)  # type: ignore[arg-type]


def test_mcnemar_p_value_is_the_exact_binomial_test() -> None:
    for only_a in range(0, 13):
        for only_b in range(0, 13):
            if only_a + only_b == 0:
                assert mcnemar_p_value(only_a=0, only_b=0) == 1.0
                continue
            reference = scipy_stats.binomtest(only_a, only_a + only_b, 0.5).pvalue
            assert mcnemar_p_value(only_a=only_a, only_b=only_b) == pytest.approx(
                reference, rel=1e-12), (only_a, only_b)
    # Textbook values: 1 vs 9 discordant pairs, 0 vs 6.
    assert mcnemar_p_value(only_a=1, only_b=9) == pytest.approx(22 / 1024)
    assert mcnemar_p_value(only_a=0, only_b=6) == pytest.approx(2 / 64)


def _newcombe_reference(both: int, only_a: int, only_b: int, neither: int) -> tuple[float, float]:
    """Newcombe's method 10 for paired rates as Altman et al. work it, written out longhand
    (z for 95%, Wilson bounds from their closed form)."""
    z = 1.959963984540054
    n = both + only_a + only_b + neither

    def wilson(k: int) -> tuple[float, float]:
        p = k / n
        root = z * math.sqrt(z * z + 4 * n * p * (1 - p))
        return ((2 * n * p + z * z - root) / (2 * (n + z * z)),
                (2 * n * p + z * z + root) / (2 * (n + z * z)))

    p1, p2 = (both + only_b) / n, (both + only_a) / n
    (l1, u1), (l2, u2) = wilson(both + only_b), wilson(both + only_a)
    product = (both + only_b) * (only_a + neither) * (both + only_a) * (only_b + neither)
    cross = both * neither - only_a * only_b
    corrected = cross - n / 2 if cross > n / 2 else (cross if cross < 0 else 0)
    phi = corrected / math.sqrt(product) if product else 0.0
    d = p1 - p2
    return (d - math.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2),
            d + math.sqrt((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))


@pytest.mark.parametrize("cells", [(20, 1, 9, 0), (12, 3, 3, 12), (25, 0, 5, 0),
                                   (10, 2, 1, 17), (0, 0, 0, 30), (30, 0, 0, 0)])
def test_paired_difference_interval_matches_the_longhand_method(cells: tuple[int, ...]) -> None:
    both, only_a, only_b, neither = cells
    got = paired_difference_interval(both=both, only_a=only_a, only_b=only_b, neither=neither)
    low, high = _newcombe_reference(*cells)
    assert got == pytest.approx((max(-1.0, low), min(1.0, high)), abs=1e-9)
    assert got[0] <= (only_b - only_a) / sum(cells) <= got[1]


def test_paired_difference_interval_covers_the_true_difference_about_95_percent() -> None:
    """Simulated pairs of models on 30 photos: the interval holds the true difference in
    about 95% of the draws (Newcombe's method is known to be close to nominal)."""
    rng = np.random.default_rng(0)
    for cell_rates in ([0.6, 0.05, 0.2, 0.15], [0.7, 0.1, 0.1, 0.1], [0.4, 0.2, 0.1, 0.3]):
        truth = cell_rates[2] - cell_rates[1]
        hits = 0
        draws = 2000
        for counts in rng.multinomial(30, cell_rates, size=draws):
            low, high = paired_difference_interval(
                both=int(counts[0]), only_a=int(counts[1]), only_b=int(counts[2]),
                neither=int(counts[3]))
            hits += low <= truth <= high
        assert 0.92 <= hits / draws <= 0.985, (cell_rates, hits / draws)


def test_calibration_error_by_hand() -> None:
    probabilities = np.array([
        [0.95, 0.05],  # bin 9, right
        [0.92, 0.08],  # bin 9, wrong
        [0.35, 0.65],  # bin 6, right
        [0.62, 0.38],  # bin 6, right
        [1.0, 0.0],    # bin 9 (1.0 falls in the last bin), right
    ])
    y_true = np.array([0, 1, 1, 0, 0])
    # Bin 6: accuracy 1, confidence (0.65 + 0.62) / 2 = 0.635 -> gap 0.365, 2 images.
    # Bin 9: accuracy 2/3, confidence (0.95 + 0.92 + 1.0) / 3 = 0.95667 -> gap 0.29, 3 images.
    expected = (2 * 0.365 + 3 * abs(2 / 3 - 2.87 / 3)) / 5
    assert expected_calibration_error(probabilities, y_true) == pytest.approx(expected)
    bins = reliability(probabilities, y_true)
    assert bins.counts.tolist() == [0, 0, 0, 0, 0, 0, 2, 0, 0, 3]
    assert np.isnan(bins.accuracy[0]) and bins.accuracy[6] == 1.0
    assert expected_calibration_error(probabilities[:0], y_true[:0]) == 0.0
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(perfect, np.array([0, 1])) == 0.0
    with pytest.raises(ValueError, match="one row per label"):
        expected_calibration_error(probabilities, y_true[:3])


def test_the_fitted_temperature_minimises_the_loss() -> None:
    from fruitclf.stats import apply_temperature, fit_temperature

    rng = np.random.default_rng(1)
    logits = rng.normal(size=(200, 4)) * 4
    y_true = np.array([rng.choice(4, p=np.exp(r / 2) / np.exp(r / 2).sum()) for r in logits])
    over_confident = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    def loss(t: float) -> float:
        scaled = apply_temperature(over_confident, t)
        return float(-np.mean(np.log(scaled[np.arange(200), y_true])))

    fitted = fit_temperature(over_confident, y_true)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 2000))
    best = grid[np.argmin([loss(t) for t in grid])]
    assert fitted == pytest.approx(best, rel=0.01)
    assert 1.5 < fitted < 2.7  # the labels were drawn at temperature 2
    scaled = apply_temperature(over_confident, fitted)
    assert (scaled.argmax(axis=1) == over_confident.argmax(axis=1)).all()
    assert expected_calibration_error(scaled, y_true) < expected_calibration_error(
        over_confident, y_true)
