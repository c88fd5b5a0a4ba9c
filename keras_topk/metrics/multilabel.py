r"""Precision and recall at k for multi-label (k-hot) targets, several k in one pass.

With targets :math:`Y \subseteq \{1..n\}` (the entries of ``y_true`` above
0.5) and :math:`T_k` the classes retrieved in the top k,

.. math::

    \mathrm{precision@}k = \frac{|T_k \cap Y|}{k}, \qquad
    \mathrm{recall@}k = \frac{|T_k \cap Y|}{|Y|},

averaged over the examples (weighted by ``sample_weight``); examples with no
relevant class (:math:`|Y| = 0`) are left out of both averages and counted
(`PrecisionRecallAtK.examples_without_labels`).

**Ties, the conservative way** (the rule of the single-label metrics): a class
is retrieved in the top k only if fewer than k *other* classes score at least
as high as it does. Classes tied across the k-th place are all left out, so
ties never raise either value: constant scores retrieve nothing for k < n.
Equivalently, class j is retrieved iff :math:`s_j` is strictly above the
(k+1)-th largest score, so one ``top_k`` of width ``max(ks) + 1`` serves every
k. :math:`T_k` may hold fewer than k classes; precision still divides by k.
A NaN score is never retrieved and counts as scoring above every other class.
For ``k >= n`` every class is retrieved.
"""

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from keras_topk import _backend, _config, _inputs
from keras_topk._typing import Tensor
from keras_topk.metrics._common import (
    claim_log_keys,
    flat_weights,
    format_keys,
    ks_config,
    safe_divide,
)
from keras_topk.ops import ranking

__all__ = ["PrecisionRecallAtK", "multilabel_topk_hits"]


def _standardize(y_true: Tensor, y_pred: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    scores = _inputs.standardize_scores(y_pred)
    targets = ops.convert_to_tensor(y_true)
    if tuple(targets.shape) != tuple(scores.shape):
        raise ValueError(
            f"Multi-label targets (y_true) must be k-hot rows of the scores' shape "
            f"{tuple(scores.shape)}, got shape {tuple(targets.shape)}. For one label per example "
            "use TopKAccuracy."
        )
    dtype = keras.backend.standardize_dtype(targets.dtype)
    if not dtype.startswith(("int", "uint", "float", "bfloat16", "bool")):
        raise ValueError(f"Multi-label targets (y_true) must be numbers, got dtype {dtype}.")
    relevant = ops.greater(ops.cast(targets, "float32"), 0.5)
    n = _inputs.num_classes_of(scores)
    return scores, ops.reshape(scores, (-1, n)), ops.reshape(relevant, (-1, n))


def _hits_2d(s: Tensor, relevant: Tensor, ks: Sequence[int]) -> Tensor:
    """``(b, len(ks))`` counts of relevant classes retrieved in the top k (conservative ties)."""
    n = int(s.shape[-1])
    relevant = ops.cast(relevant, s.dtype)
    below = [k for k in ks if k < n]
    thresholds: dict[int, Tensor] = {}
    if below:
        # NaN ranks first (as +inf) in the threshold; a NaN s_j itself fails s_j > t.
        ranked = ops.where(ops.isnan(s), ops.full_like(s, float("inf")), s)
        values, _ = ops.top_k(ranked, max(below) + 1, sorted=True)
        thresholds = {k: ranking.column(values, k) for k in below}
    columns = []
    for k in ks:
        if k >= n:
            columns.append(ops.sum(relevant, axis=-1))
        else:
            retrieved = ops.cast(ops.greater(s, thresholds[k][:, None]), s.dtype)
            columns.append(ops.sum(retrieved * relevant, axis=-1))
    return ops.stack(columns, axis=-1)


def multilabel_topk_hits(y_true: Tensor, y_pred: Tensor, ks: Sequence[int] = (1, 5)) -> Tensor:
    """``|T_k ∩ Y|`` for every k: relevant classes retrieved in the top k, ties conservative.

    Args:
        y_true: k-hot targets of shape ``(..., n)``; entries above 0.5 are relevant.
        y_pred: scores of shape ``(..., n)``.
        ks: the k, distinct integers >= 1.

    Returns:
        float tensor of shape ``(..., len(ks))``.

    Example:

    >>> import keras
    >>> hits = multilabel_topk_hits([[1, 0, 1, 0]], [[0.9, 0.8, 0.8, 0.1]], ks=(1, 2, 3))
    >>> keras.ops.convert_to_numpy(hits).tolist()  # classes 1 and 2 tie for 2nd place
    [[1.0, 1.0, 2.0]]
    """
    ks = _config.check_ks(ks)
    scores, s, relevant = _standardize(y_true, y_pred)
    hits = _hits_2d(s, relevant, ks)
    return ops.reshape(hits, tuple(ops.shape(scores)[:-1]) + (len(ks),))


@keras.saving.register_keras_serializable(package="keras_topk")
class PrecisionRecallAtK(keras.metrics.Metric):
    r"""Precision@k and recall@k of multi-label (k-hot) targets, for several k in one pass.

    For each ``k`` in ``ks``, the (``sample_weight``-weighted) means over the
    examples with at least one relevant class of

    .. math::

        \mathrm{precision@}k = \frac{|T_k \cap Y|}{k}, \qquad
        \mathrm{recall@}k = \frac{|T_k \cap Y|}{|Y|},

    with :math:`Y` the classes whose target is above 0.5 and :math:`T_k` the
    classes with fewer than k other classes scoring at least as high (ties
    across the k-th place retrieve none of the tied classes, so they cannot
    inflate either value; see the module docstring). One ``top_k`` of width
    ``max(ks) + 1`` a batch for all k.

    ``result()`` is a dict with ``key_format.format(metric=..., k=k)`` for
    ``precision`` then ``recall``: ``precision_at_1``, ``precision_at_5``,
    ``recall_at_1``, ``recall_at_5``. Scores and targets ``(..., n)`` with any
    leading axes; ``sample_weight`` of the leading shape (or a prefix of it);
    Keras masks honoured.

    Args:
        ks: the k, distinct integers >= 1.
        key_format: the log key, a format string with ``{metric}`` and ``{k}``.
        name: the metric's name (not logged: the keys are).
        dtype: the dtype of the state and results.

    Example:

    >>> import numpy as np
    >>> import keras_topk
    >>> m = keras_topk.metrics.PrecisionRecallAtK(ks=(1, 2))
    >>> y = np.array([[1, 0, 1, 0], [0, 1, 0, 0]])
    >>> s = np.array([[0.9, 0.1, 0.8, 0.2], [0.1, 0.3, 0.9, 0.2]])
    >>> m.update_state(y, s)
    >>> {key: float(v) for key, v in m.result().items()}
    {'precision_at_1': 0.5, 'precision_at_2': 0.75, 'recall_at_1': 0.25, 'recall_at_2': 1.0}
    """

    def __init__(
        self,
        ks: Sequence[int] = (1, 5),
        key_format: str = "{metric}_at_{k}",
        name: str = "precision_recall_at_k",
        dtype: Any = None,
    ) -> None:
        ks = _config.check_ks(ks)
        fields = [{"metric": m, "k": k} for m in ("precision", "recall") for k in ks]
        keys = format_keys(key_format, fields, "{metric}_at_{k}")
        super().__init__(name=name, dtype=dtype)
        self.ks = ks
        self.key_format = key_format
        self._keys = keys
        self._direction = "up"
        m = len(ks)
        self.precision_sum = self.add_variable(
            shape=(m,), initializer="zeros", dtype=self.dtype, name="precision_sum"
        )
        self.recall_sum = self.add_variable(
            shape=(m,), initializer="zeros", dtype=self.dtype, name="recall_sum"
        )
        self.count = self.add_variable(
            shape=(), initializer="zeros", dtype=self.dtype, name="count"
        )
        self.without_labels = self.add_variable(
            shape=(), initializer="zeros", dtype=self.dtype, name="without_labels"
        )

    def update_state(
        self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None
    ) -> None:
        claim_log_keys(self, self._keys, y_true, y_pred)
        mask = _backend.get_keras_mask(y_pred)
        scores, s, relevant = _standardize(y_true, y_pred)
        hits = ops.cast(_hits_2d(s, relevant, self.ks), self.dtype)
        num_relevant = ops.sum(ops.cast(relevant, self.dtype), axis=-1)
        per_sample = ops.zeros(ops.shape(scores)[:-1], dtype=self.dtype)
        weights = flat_weights(sample_weight, mask, per_sample, self.dtype)
        has_labels = ops.cast(ops.greater(num_relevant, 0), self.dtype)
        counted = weights * has_labels
        ks = ops.convert_to_tensor(self.ks, dtype=self.dtype)
        self.precision_sum.assign_add(ops.sum(counted[:, None] * hits / ks[None, :], axis=0))
        recall = safe_divide(hits, num_relevant[:, None])
        self.recall_sum.assign_add(ops.sum(counted[:, None] * recall, axis=0))
        self.count.assign_add(ops.sum(counted))
        self.without_labels.assign_add(ops.sum(weights * (1.0 - has_labels)))

    def reset_state(self) -> None:
        m = len(self.ks)
        self.precision_sum.assign(ops.zeros((m,), dtype=self.dtype))
        self.recall_sum.assign(ops.zeros((m,), dtype=self.dtype))
        self.count.assign(0)
        self.without_labels.assign(0)

    def result(self) -> dict[str, Tensor]:
        precision = safe_divide(self.precision_sum, self.count)
        recall = safe_divide(self.recall_sum, self.count)
        values = [precision[i] for i in range(len(self.ks))] + [
            recall[i] for i in range(len(self.ks))
        ]
        return dict(zip(self._keys, values))

    def examples_without_labels(self) -> Tensor:
        """The (weighted) number of examples seen with no relevant class, left out of the means."""
        return self.without_labels.value

    def get_config(self) -> dict[str, Any]:
        return ks_config(self)
