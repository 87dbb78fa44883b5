"""Small numeric helpers shared by modules that must not import each other."""

from __future__ import annotations

import numpy as np


def row_shares(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (a row of zeros stays zeros): a confusion matrix's counts
    as shares of each true class.

    Examples
    --------
    >>> row_shares(np.array([[3, 1], [0, 0]])).tolist()
    [[0.75, 0.25], [0.0, 0.0]]
    """
    values = np.asarray(matrix, dtype=np.float64)
    totals = values.sum(axis=1, keepdims=True)
    return np.asarray(np.divide(values, totals, out=np.zeros_like(values), where=totals > 0))
