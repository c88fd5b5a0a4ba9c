"""The hard top-k SVM: ``max(0, alpha + (t_k - s_y) / k)``, ``t_k`` the k-th largest other score."""

import dataclasses
from typing import Any

import keras
from keras import ops

from keras_topk import _config
from keras_topk.losses._base import LossConfig, TopKLoss, per_sample_losses
from keras_topk.ops import ranking

__all__ = ["TopKSVM", "topk_svm"]


@dataclasses.dataclass(frozen=True)
class TopKSVMConfig(LossConfig):
    k: int
    alpha: float

    def __post_init__(self):
        object.__setattr__(self, "k", _config.check_int("k", self.k, minimum=1))
        object.__setattr__(self, "alpha", _config.check_float("alpha", self.alpha, minimum=0.0))

    def check_classes(self, n):
        _config.check_k_fits_classes("k", self.k, n, strict=True)

    def maths(self, s, labels, rows):
        k = self.k
        _, _, ranked = ranking.ranked_others(s, labels, k, ranks=(k - 1,))
        return ops.relu(self.alpha + (ranked[k - 1] - ranking.label_score(s, labels)) / k)


def topk_svm(y_true: Any, y_pred: Any, *, k: int = 5, alpha: float = 1.0) -> Any:
    """Per-sample hard top-k SVM loss ``max(0, alpha + (t_k - s_y) / k)``.

    See `TopKSVM`; arguments as for `smooth_topk_svm`.

    Example: the label (class 1) trails the 2nd other class (0.5) by 0.5 and the
    margin is 1, so the loss is ``(1 + (0.5 - 1.0) / 2) = 0.75``:

    >>> import keras_topk
    >>> float(keras_topk.losses.topk_svm([1], [[2.0, 1.0, 0.5, -1.0]], k=2)[0])
    0.75
    """
    return per_sample_losses(y_true, y_pred, TopKSVMConfig(k=k, alpha=alpha))


@keras.saving.register_keras_serializable(package="keras_topk")
class TopKSVM(TopKLoss):
    r"""Hard top-k SVM loss (Berrada et al., ICLR 2018; Lapin et al., 2015).

    .. math::

        l_k(s, y) = \max\Bigl(0,\ \alpha + \tfrac{1}{k}\textstyle\sum \mathrm{top}_k(s_{\setminus y})
            - \tfrac{1}{k}\bigl(\textstyle\sum \mathrm{top}_{k-1}(s_{\setminus y}) + s_y\bigr)\Bigr)
          = \max\bigl(0,\ \alpha + (t_k - s_y) / k\bigr)

    with ``t_k`` the k-th largest score among the classes other than ``y``:
    zero once the label beats the k-th other class by ``alpha``. Its gradient
    is sparse (``1/k`` on the k-th other class, ``-1/k`` on the label); see
    `SmoothTopKSVM` for the smoothed version.

    Args:
        k: the k of top-k, ``1 <= k <`` number of classes.
        alpha: margin ``>= 0``.
        reduction: Keras reduction, default "sum_over_batch_size".
        name: the loss's name.
        dtype: ignored for the computation (as in `SmoothTopKSVM`).

    Labels as for `SmoothTopKSVM`.

    Example:

    >>> import numpy as np, keras_topk
    >>> loss = keras_topk.losses.TopKSVM(k=2, reduction=None)
    >>> scores = np.array([[2.0, 1.0, 0.5, -1.0], [0.1, 0.2, 3.0, 0.0]], "float32")
    >>> np.asarray(loss(np.array([1, 2]), scores)).tolist()
    [0.75, 0.0]
    """

    def __init__(
        self,
        k: int = 5,
        alpha: float = 1.0,
        reduction: str | None = "sum_over_batch_size",
        name: str = "topk_svm",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            TopKSVMConfig(k=k, alpha=alpha), name=name, reduction=reduction, dtype=dtype
        )
