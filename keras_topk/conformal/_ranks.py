"""The label's rank with ties counted against it, in NumPy, and the empirical top-k
coverage read off the ranks.

The tie rule is the metrics' (`keras_topk.ops.ranking.label_rank_2d`): a class
counts every class scoring at least as high as itself. That function works on
backend tensors for one label per row; here the rule is applied in float64
NumPy to every class at once, with the probability mass of the classes counted
(what APS needs), so it is computed rather than imported.
"""

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from keras_topk._config import check_coverages
from keras_topk.conformal._validation import (
    decimal,
    flatten_rows,
    labels_array,
    scores_array,
)


def pessimistic_positions(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every class: how many classes (itself included) have a value >= its value, and their sum.

    Returns ``(count, mass)`` of shape (b, n): ``count - 1`` is the class's
    0-based rank with ties against it; ``mass`` is the sum of the values of the
    classes counted (used with probabilities). Tied classes get the same pair.
    """
    b, n = values.shape
    order = np.argsort(-values, axis=1, kind="stable")
    ordered = np.take_along_axis(values, order, axis=1)
    # The last position of each run of equal values: a class counts its whole run.
    is_end = np.ones((b, n), dtype=bool)
    is_end[:, :-1] = ordered[:, :-1] != ordered[:, 1:]
    candidates = np.where(is_end, np.arange(n), n)
    end = np.minimum.accumulate(candidates[:, ::-1], axis=1)[:, ::-1]
    count = np.empty((b, n), dtype=np.int64)
    np.put_along_axis(count, order, end + 1, axis=1)
    mass = np.empty((b, n), dtype=np.float64)
    cumulative = np.cumsum(np.where(np.isfinite(ordered), ordered, 0.0), axis=1)
    np.put_along_axis(mass, order, np.take_along_axis(cumulative, end, axis=1), axis=1)
    return count, mass


def all_ranks(scores: np.ndarray) -> np.ndarray:
    count, _ = pessimistic_positions(scores)
    return count - 1


def label_ranks(scores: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """The label's 0-based rank in each row, ties counted against the label.

    :math:`r = \\#\\{ j \\ne y : s_j \\ge s_y \\}`: the label is a top-k hit
    when ``r < k``. The same rule and values as
    `keras_topk.metrics.label_rank`, computed in NumPy.

    Args:
        scores: array of shape ``(..., n)`` (logits or probabilities; only the
            order matters). NaN raises a ``ValueError``.
        labels: integer class indices of shape ``(...,)`` or ``(..., 1)``, or
            one-hot rows of shape ``(..., n)``.

    Returns:
        int64 array of shape ``(...,)``, values in ``[0, n - 1]``.

    Example:

    >>> label_ranks([[3.0, 1.0, 2.0], [1.0, 1.0, 0.0]], [2, 0]).tolist()
    [1, 1]
    """
    s = scores_array(scores)
    y = labels_array(labels, s)
    flat = flatten_rows(s)
    label_score = flat[np.arange(len(y)), y]
    ranks = np.sum(flat >= label_score[:, None], axis=-1) - 1
    return ranks.reshape(s.shape[:-1])


def candidates_for_coverage(
    scores: ArrayLike,
    labels: ArrayLike,
    coverages: Sequence[float] = (0.9, 0.95, 0.99),
    sample_weight: ArrayLike | None = None,
) -> dict[float, int]:
    """The smallest k whose top-k accuracy on these data reaches each coverage.

    :math:`k^*(c) = \\min \\{ k \\ge 1 : \\mathrm{acc}_k \\ge c \\}`, with
    :math:`\\mathrm{acc}_k` the (``sample_weight``-weighted) fraction of
    examples whose label rank (ties against the label) is below ``k``. This is
    an empirical quantile of the data given; for a guarantee on new data use
    `calibrate`. The same numbers as the
    `keras_topk.metrics.CandidatesForCoverage` metric.

    Args:
        scores: array of shape ``(..., n)``.
        labels: class indices of shape ``(...,)`` / ``(..., 1)`` or one-hot rows.
        coverages: the target coverages, each in ``(0, 1]``.
        sample_weight: optional non-negative weights of shape ``(...,)``.

    Returns:
        ``{coverage: k}`` in the order given, each ``k`` in ``[1, n]``.

    Example:

    >>> candidates_for_coverage([[3.0, 1.0, 2.0], [1.0, 1.0, 0.0]], [2, 0], coverages=(0.5, 1.0))
    {0.5: 2, 1.0: 2}
    """
    coverages = check_coverages(coverages, allow_scalar=True)
    ranks = np.asarray(label_ranks(scores, labels)).reshape(-1)
    n = np.shape(scores)[-1]
    if sample_weight is None:
        weights = np.ones_like(ranks, dtype=np.float64)
    else:
        weights = np.asarray(sample_weight, dtype=np.float64)
        if weights.size != ranks.size:
            raise ValueError(
                f"`sample_weight` must have one weight per example ({ranks.size}), got shape "
                f"{weights.shape}."
            )
        weights = weights.reshape(-1)
        if np.any(~np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError("`sample_weight` must be finite and non-negative.")
    total = float(np.sum(weights))
    if not total > 0:
        raise ValueError("No examples (or all weights zero): no coverage can be computed.")
    reached = np.cumsum(
        np.bincount(ranks, weights=weights, minlength=n)
    )  # reached[k-1] = acc_k * total
    result = {}
    for c in coverages:
        # Exact when the weights are counts: compare integers with the decimal coverage.
        if sample_weight is None:
            need = math.ceil(decimal(c) * len(ranks))
            k = int(np.searchsorted(reached, need - 0.5)) + 1
        else:
            k = int(np.searchsorted(reached, c * total * (1 - 1e-12))) + 1
        result[c] = min(k, n)
    return result
