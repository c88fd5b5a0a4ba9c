r"""How many candidates a model must show to be right a given fraction of the time.

With the label's rank :math:`r = \#\{ j \ne y : s_j \ge s_y \}` (ties counted
against the label, as in `TopKAccuracy`), top-k accuracy is
:math:`\mathrm{acc}_k = \Pr(r < k)` and the candidates needed for a coverage
:math:`c` are

.. math::

    k^*(c) = \min \{ k \ge 1 : \mathrm{acc}_k \ge c \}.

The histogram of :math:`r` (``n`` bins, weighted by ``sample_weight``) gives
every :math:`\mathrm{acc}_k` at once as its cumulative sum, and it is a plain
sum over examples: exact over an epoch, merged across batches and replicas.
:math:`k^*` is an empirical quantile of the data seen, with no guarantee for
new data: `keras_topk.conformal.calibrate` adds one.
"""

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from keras_topk import _config, _inputs
from keras_topk._typing import Tensor
from keras_topk.metrics._common import (
    ClassStateMetric,
    claim_log_keys,
    flat_ranks_and_labels,
    flat_weights,
    format_keys,
    safe_divide,
)

__all__ = ["CandidatesForCoverage", "rank_histogram", "candidates_from_histogram"]

# acc_k >= c is decided as acc_k >= c (1 - _RELATIVE): float32 has ~7 digits,
# and float32(0.99) * 100 > 99 would otherwise make 99 hits of 100 miss 99%.
_RELATIVE = 1e-6


def rank_histogram(y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> Tensor:
    """The (weighted) histogram of the label's rank, ties counted against the label.

    Args:
        y_true: class indices ``(...,)`` / ``(..., 1)`` or one-hot rows ``(..., n)``.
        y_pred: scores ``(..., n)``.
        sample_weight: optional weights broadcastable to ``(...,)``.

    Returns:
        float tensor of shape ``(n,)``: entry ``r`` is the weight of the
        examples whose label has ``r`` other classes scoring at least as high.

    Example:

    >>> import keras
    >>> h = rank_histogram([0, 1, 2], [[3.0, 1.0, 2.0]] * 3)
    >>> keras.ops.convert_to_numpy(h).tolist()
    [1.0, 1.0, 1.0]
    """
    scores, ranks, _ = flat_ranks_and_labels(y_true, y_pred)
    n = _inputs.num_classes_of(scores)
    dtype = keras.backend.floatx()
    weights = flat_weights(sample_weight, None, ops.zeros(ops.shape(scores)[:-1]), dtype)
    return ops.sum(ops.one_hot(ranks, n, dtype=dtype) * weights[:, None], axis=0)


def candidates_from_histogram(histogram: Tensor, coverages: Sequence[float]) -> Tensor:
    """``k*(c)`` for each coverage from a rank histogram; 0 where the histogram is empty.

    Returns a float tensor of shape ``(len(coverages),)``.

    >>> import keras
    >>> k = candidates_from_histogram([6.0, 3.0, 1.0], (0.5, 0.9, 1.0))
    >>> keras.ops.convert_to_numpy(k).tolist()
    [1.0, 2.0, 3.0]
    """
    histogram = ops.convert_to_tensor(histogram)
    cumulative = ops.cumsum(histogram)
    total = cumulative[-1]
    targets = ops.convert_to_tensor(
        [c * (1.0 - _RELATIVE) for c in coverages], dtype=histogram.dtype
    )
    # acc is non-decreasing in k: k* - 1 is the number of k with acc_k short of c.
    short = ops.less(cumulative[None, :], targets[:, None] * total)
    k = 1.0 + ops.sum(ops.cast(short, histogram.dtype), axis=-1)
    return ops.where(ops.greater(total, 0), k, ops.zeros_like(k))


@keras.saving.register_keras_serializable(package="keras_topk")
class CandidatesForCoverage(ClassStateMetric):
    r"""The smallest k whose top-k accuracy reaches each coverage, over the data seen.

    For each coverage :math:`c`, logs
    :math:`k^*(c) = \min\{ k \ge 1 : \mathrm{acc}_k \ge c \}`, where
    :math:`\mathrm{acc}_k` is the top-k accuracy with ties counted against the
    label (`TopKAccuracy`'s rule): "how many candidates must be shown to
    contain the label 99% of the time" (Sawada et al. report 25 for
    ResNet-18 on CIFAR-100 with their loss, 33 with cross-entropy).

    The state is the weighted histogram of the label's rank, ``n`` bins, so
    the value is exact over an epoch (not an average of per-batch values) and
    merges across replicas. ``acc_k >= c`` is decided to a relative
    :math:`10^{-6}` (float32 state). Before any example is seen the result
    is 0. Lower is better (``EarlyStopping`` needs ``mode="min"``).

    ``result()`` is a dict, ``{key_format.format(percent=100 c): k*(c)}``:
    ``candidates_for_90``, ``candidates_for_99``, ... (``val_`` prefixed in
    validation). Inputs as `TopKAccuracy`: scores ``(..., n)`` with any
    leading axes, integer or one-hot labels, ``sample_weight`` and Keras masks.

    Args:
        coverages: the coverages, distinct numbers in (0, 1].
        num_classes: the number of classes ``n``; by default read from the
            scores at the first update (the state is made then).
        key_format: the log key of each coverage, a format string with
            ``{percent}`` (``99``, ``99.9``) or ``{coverage}`` (``0.99``).
        name: the metric's name (not logged: the keys are).
        dtype: the dtype of the state and results.

    Example:

    >>> import numpy as np
    >>> import keras_topk
    >>> m = keras_topk.metrics.CandidatesForCoverage(coverages=(0.5, 0.75, 1.0))
    >>> scores = np.array([[3.0, 2.0, 1.0, 0.0]] * 4)
    >>> m.update_state([0, 0, 1, 3], scores)  # label ranks 0, 0, 1, 3
    >>> {key: float(v) for key, v in m.result().items()}
    {'candidates_for_50': 1.0, 'candidates_for_75': 2.0, 'candidates_for_100': 4.0}
    """

    def __init__(
        self,
        coverages: Sequence[float] = (0.9, 0.95, 0.99),
        num_classes: int | None = None,
        key_format: str = "candidates_for_{percent}",
        name: str = "candidates_for_coverage",
        dtype: Any = None,
    ) -> None:
        coverages = _config.check_coverages(coverages)
        fields = [{"percent": f"{100 * c:.10g}", "coverage": f"{c:.10g}"} for c in coverages]
        keys = format_keys(key_format, fields, "candidates_for_{percent}", needs="any")
        super().__init__(num_classes=num_classes, name=name, dtype=dtype)
        self.coverages = coverages
        self.key_format = key_format
        self._keys = keys
        self._direction = "down"

    def _state_shapes(self, n: int) -> dict[str, tuple[int, ...]]:
        return {"histogram": (n,)}

    def update_state(
        self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None
    ) -> None:
        quantities = [("candidates_for_coverage", c) for c in self.coverages]
        claim_log_keys(self, self._keys, y_true, y_pred, quantities=quantities)
        ranks, _, weights, n = self._ranked_batch(y_true, y_pred, sample_weight)
        self.histogram.assign_add(
            ops.sum(ops.one_hot(ranks, n, dtype=self.dtype) * weights[:, None], axis=0)
        )

    def result(self) -> dict[str, Tensor]:
        if not self._state_built:
            return {key: ops.convert_to_tensor(0.0, dtype=self.dtype) for key in self._keys}
        k = candidates_from_histogram(self.histogram, self.coverages)
        return {key: k[i] for i, key in enumerate(self._keys)}

    def topk_accuracies(self) -> Tensor:
        """Top-k accuracy for every k = 1..n from the histogram, shape ``(n,)``."""
        if not self._state_built:
            raise ValueError(f"{self.name!r} has seen no data yet.")
        cumulative = ops.cumsum(self.histogram)
        return safe_divide(cumulative, cumulative[-1])

    def get_config(self) -> dict[str, Any]:
        return {
            "coverages": list(self.coverages),
            "num_classes": self._num_classes_arg,
            "key_format": self.key_format,
            "name": self.name,
            "dtype": self.dtype,
        }
