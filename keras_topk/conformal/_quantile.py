"""The split-conformal quantile: which order statistic of the calibration scores is the
threshold, with ``alpha`` read as the decimal it prints as."""

import math

import numpy as np

from keras_topk._config import check_alpha
from keras_topk.conformal._validation import decimal


def min_calibration_size(alpha: float) -> int:
    """The fewest calibration examples for which a finite conformal threshold exists.

    The threshold is the :math:`\\lceil (m+1)(1-\\alpha) \\rceil`-th smallest of
    ``m`` calibration scores, which needs that index to be at most ``m``:
    :math:`m \\ge \\lceil (1-\\alpha)/\\alpha \\rceil`.

    >>> min_calibration_size(0.1), min_calibration_size(0.05), min_calibration_size(0.01)
    (9, 19, 99)
    """
    a = decimal(check_alpha(alpha))
    return math.ceil((1 - a) / a)


def quantile_index(m: int, alpha: float) -> int:
    """The 1-based order statistic ceil((m + 1)(1 - alpha)) used as the threshold."""
    return math.ceil((m + 1) * (1 - decimal(alpha)))


def threshold_of(label_scores: np.ndarray, alpha: float) -> float:
    """The ceil((m + 1)(1 - alpha))-th smallest of the m calibration scores, as a float."""
    return float(np.sort(label_scores)[quantile_index(len(label_scores), alpha) - 1])
