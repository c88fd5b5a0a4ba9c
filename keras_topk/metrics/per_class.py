r"""Top-k accuracy per class, and its macro average over the classes present.

For a class :math:`c`, :math:`\mathrm{acc}_c(k)` is the (weighted) fraction
of the examples labelled :math:`c` whose label is a top-k hit (fewer than
:math:`k` other classes score at least as high: ties count against the
label). The macro average is the mean of :math:`\mathrm{acc}_c(k)` over the
classes that appear in the labels seen; a class with no example (or only
zero-weight ones) is excluded: counting it as 0 would drag the average down
(torchmetrics#2417: macro top-2 below top-1), counting it as 1 would inflate
it. The state, per-class hit and count sums (2 x n), merges by summation.
"""

from typing import Any

import keras
from keras import ops

from keras_topk import _config
from keras_topk._typing import Tensor
from keras_topk.metrics._common import ClassStateMetric, claim_log_keys, safe_divide

__all__ = ["PerClassTopKAccuracy"]


@keras.saving.register_keras_serializable(package="keras_topk")
class PerClassTopKAccuracy(ClassStateMetric):
    r"""Macro-averaged top-k accuracy over the classes present, with the per-class values.

    .. math::

        \mathrm{macro}_k = \frac{1}{|P|} \sum_{c \in P}
        \frac{\sum_{i : y_i = c} w_i\, [r_i < k]}{\sum_{i : y_i = c} w_i},
        \qquad P = \{ c : \textstyle\sum_{i : y_i = c} w_i > 0 \}

    with :math:`r_i` the label's rank (ties against the label, as in
    `TopKAccuracy`) and :math:`w_i` the sample weight (times the Keras mask).
    Classes absent from the labels seen are left out of the mean. ``result()``
    is the macro average (0 before any example); `per_class_result` gives the
    vector, NaN for the absent classes. Inputs as `TopKAccuracy`.

    Args:
        k: the number of top classes that count as correct, an integer >= 1.
        num_classes: the number of classes ``n``; by default read from the
            scores at the first update (the state is made then).
        name: the metric's name, by default ``f"macro_top{k}_accuracy"``.
        dtype: the dtype of the state and result.

    Example:

    >>> import numpy as np
    >>> import keras_topk
    >>> m = keras_topk.metrics.PerClassTopKAccuracy(k=1)
    >>> scores = np.array([[2.0, 1.0, 0.0]] * 4)
    >>> m.update_state([0, 0, 0, 1], scores)  # class 0: 3 of 3, class 1: 0 of 1, class 2: none
    >>> float(m.result())  # (1 + 0) / 2: class 2 has no example and is left out
    0.5
    >>> np.asarray(m.per_class_result()).tolist()
    [1.0, 0.0, nan]
    """

    def __init__(
        self,
        k: int = 5,
        num_classes: int | None = None,
        name: str | None = None,
        dtype: Any = None,
    ) -> None:
        k = _config.check_int("k", k, minimum=1)
        super().__init__(
            num_classes=num_classes, name=name or f"macro_top{k}_accuracy", dtype=dtype
        )
        self.k = k
        self._direction = "up"

    def _state_shapes(self, n: int) -> dict[str, tuple[int, ...]]:
        return {"hits": (n,), "counts": (n,)}

    def update_state(
        self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None
    ) -> None:
        claim_log_keys(self, [self.name], y_true, y_pred, renamed_by_keras=True)
        ranks, labels, weights, n = self._ranked_batch(y_true, y_pred, sample_weight)
        of_class = ops.one_hot(labels, n, dtype=self.dtype) * weights[:, None]
        hit = ops.cast(ops.less(ranks, self.k), self.dtype)
        self.hits.assign_add(ops.sum(of_class * hit[:, None], axis=0))
        self.counts.assign_add(ops.sum(of_class, axis=0))

    def per_class_result(self) -> Tensor:
        """Top-k accuracy of every class, shape ``(n,)``; NaN for classes not seen."""
        if not self._state_built:
            raise ValueError(
                f"{self.name!r} has seen no data yet: the number of classes is unknown."
            )
        counts = ops.convert_to_tensor(self.counts)
        nan = ops.full(ops.shape(counts), float("nan"), dtype=self.dtype)
        return ops.where(ops.greater(counts, 0), safe_divide(self.hits, counts), nan)

    def result(self) -> Tensor:
        if not self._state_built:
            return ops.convert_to_tensor(0.0, dtype=self.dtype)
        present = ops.cast(ops.greater(self.counts, 0), self.dtype)
        accuracies = safe_divide(self.hits, self.counts)
        return safe_divide(ops.sum(accuracies * present), ops.sum(present))

    def get_config(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "num_classes": self._num_classes_arg,
            "name": self.name,
            "dtype": self.dtype,
        }
