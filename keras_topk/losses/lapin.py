r"""The top-k baselines of Lapin, Hein and Schiele (NeurIPS 2015, CVPR 2016).

With ``a = s + margin (1 - e_y)`` (every other class's score plus the margin,
the label's unchanged) and ``a_[j]`` its j-th largest entry:

- `TopKHingeAlpha`: ``max(0, (1/k) sum_{j<=k} a_[j] - s_y)``;
- `TopKHingeBeta`: ``(1/k) sum_{j<=k} max(0, a_[j] - s_y)``;
- `TruncatedTopKEntropy`: ``log(1 + sum_{j in J} exp(s_j - s_y))``, J the other
  classes minus the k-1 highest-scoring ones (non-convex; k = 1 is cross-entropy).

Yang & Koyejo (ICML 2020) show that neither hinge is top-k calibrated (their
psi_2 and psi_3); `TopKCalibratedHinge` is.
"""

import dataclasses
from typing import Any

import keras
from keras import ops

from keras_topk import _config
from keras_topk.losses._base import LossConfig, TopKLoss, per_sample_losses
from keras_topk.ops import ranking

__all__ = [
    "TopKHingeAlpha",
    "TopKHingeBeta",
    "TruncatedTopKEntropy",
    "topk_hinge_alpha",
    "topk_hinge_beta",
    "truncated_topk_entropy",
]


def _shifted_top_k(s, labels, k, margin):
    """``(a, in_top)``: ``a = s + margin (1 - e_y)`` and the mask (b, n) of its k largest entries."""
    n = int(s.shape[-1])
    is_label = ops.one_hot(labels, n, dtype="bool")
    a = ops.where(is_label, s, s + ops.convert_to_tensor(margin, dtype=s.dtype))
    _, indices = ops.top_k(ops.stop_gradient(a), k, sorted=False)
    # One class per index: exactly k classes even where scores tie.
    in_top = ops.any(
        ops.equal(ops.cast(indices, "int32")[:, :, None], ops.arange(n, dtype="int32")), axis=1
    )
    return a, in_top


@dataclasses.dataclass(frozen=True)
class HingeConfig(LossConfig):
    k: int
    margin: float

    def __post_init__(self):
        object.__setattr__(self, "k", _config.check_int("k", self.k, minimum=1))
        object.__setattr__(self, "margin", _config.check_float("margin", self.margin, minimum=0.0))

    def check_classes(self, n):
        _config.check_k_fits_classes("k", self.k, n, strict=True)


@dataclasses.dataclass(frozen=True)
class AlphaConfig(HingeConfig):
    def maths(self, s, labels, rows):
        a, in_top = _shifted_top_k(s, labels, self.k, self.margin)
        mean_top = ops.sum(ops.where(in_top, a, ops.zeros_like(a)), axis=-1) / self.k
        return ops.relu(mean_top - ranking.label_score(s, labels))


@dataclasses.dataclass(frozen=True)
class BetaConfig(HingeConfig):
    def maths(self, s, labels, rows):
        a, in_top = _shifted_top_k(s, labels, self.k, self.margin)
        excess = ops.relu(a - ranking.label_score(s, labels)[:, None])
        return ops.sum(ops.where(in_top, excess, ops.zeros_like(excess)), axis=-1) / self.k


@dataclasses.dataclass(frozen=True)
class EntropyConfig(LossConfig):
    k: int

    def __post_init__(self):
        object.__setattr__(self, "k", _config.check_int("k", self.k, minimum=1))

    def check_classes(self, n):
        _config.check_k_fits_classes("k", self.k, n, strict=True)

    def maths(self, s, labels, rows):
        n = int(s.shape[-1])
        excluded = ops.one_hot(labels, n, dtype="bool")
        if self.k > 1:
            _, strongest = ranking.top_others(s, labels, self.k - 1)
            hit = ops.equal(strongest[:, :, None], ops.arange(n, dtype="int32"))
            excluded = ops.logical_or(excluded, ops.any(hit, axis=1))
        differences = s - ranking.label_score(s, labels)[:, None]
        sentinel = ops.full_like(s, ranking.lowest(s.dtype))
        terms = ops.where(excluded, sentinel, differences)
        # log(1 + sum exp): the 1 is the label's own term, exp(0).
        return ops.logsumexp(ops.concatenate([ops.zeros_like(s[:, :1]), terms], axis=1), axis=-1)


def topk_hinge_alpha(y_true: Any, y_pred: Any, *, k: int = 5, margin: float = 1.0) -> Any:
    """Per-sample top-k hinge alpha ``max(0, (1/k) sum_{j<=k} (s + margin (1 - e_y))_[j] - s_y)``.

    See `TopKHingeAlpha`.

    Example: ``a = [3, 1, 1.5, 0]``, whose top 2 average to 2.25, 1.25 above the label:

    >>> import keras_topk
    >>> float(keras_topk.losses.topk_hinge_alpha([1], [[2.0, 1.0, 0.5, -1.0]], k=2)[0])
    1.25
    """
    return per_sample_losses(y_true, y_pred, AlphaConfig(k=k, margin=margin))


def topk_hinge_beta(y_true: Any, y_pred: Any, *, k: int = 5, margin: float = 1.0) -> Any:
    """Per-sample top-k hinge beta ``(1/k) sum_{j<=k} max(0, (s + margin (1 - e_y))_[j] - s_y)``.

    See `TopKHingeBeta`.

    Example: the top 2 of ``a = [3, 1, 1.5, 0]`` exceed the label by 2 and 0.5:

    >>> import keras_topk
    >>> float(keras_topk.losses.topk_hinge_beta([1], [[2.0, 1.0, 0.5, -1.0]], k=2)[0])
    1.25
    """
    return per_sample_losses(y_true, y_pred, BetaConfig(k=k, margin=margin))


def truncated_topk_entropy(y_true: Any, y_pred: Any, *, k: int = 5) -> Any:
    """Per-sample truncated top-k entropy ``log(1 + sum_{j in J} exp(s_j - s_y))``.

    See `TruncatedTopKEntropy`.

    Example: with k = 2 the strongest rival (class 0) is ignored, leaving
    ``log(1 + e^-0.5 + e^-2)``:

    >>> import keras_topk
    >>> round(float(keras_topk.losses.truncated_topk_entropy([1], [[2.0, 1.0, 0.5, -1.0]], k=2)[0]), 6)
    0.554957
    """
    return per_sample_losses(y_true, y_pred, EntropyConfig(k=k))


@keras.saving.register_keras_serializable(package="keras_topk")
class TopKHingeAlpha(TopKLoss):
    r"""Top-k hinge alpha (Lapin, Hein, Schiele, NeurIPS 2015; psi_2 of Yang & Koyejo).

    .. math::

        l_k(s, y) = \max\Bigl(0,\ \frac{1}{k}\sum_{j=1}^{k} \bigl(s + \mathrm{margin}\,(1 - e_y)\bigr)_{[j]} - s_y\Bigr)

    The average of the k largest margin-shifted scores (the label's own, not
    shifted, may be among them) must stay below the label's. Convex; not top-k
    calibrated. Subgradient: ``(1/k)`` on each of the k classes, ``-1`` on
    the label, when positive.

    Args:
        k: the k of top-k, ``1 <= k <`` number of classes.
        margin: ``>= 0``, default 1 (the paper's).
        reduction: Keras reduction, default "sum_over_batch_size".
        name: default "topk_hinge_alpha".
        dtype: ignored for the computation.

    Example:

    >>> import numpy as np, keras_topk
    >>> loss = keras_topk.losses.TopKHingeAlpha(k=2, reduction=None)
    >>> np.asarray(loss(np.array([1, 2]), np.array([[2.0, 1.0, 0.5, -1.0], [0.1, 0.2, 3.0, 0.0]], "float32"))).tolist()
    [1.25, 0.0]
    """

    def __init__(
        self,
        k: int = 5,
        margin: float = 1.0,
        reduction: str | None = "sum_over_batch_size",
        name: str = "topk_hinge_alpha",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            AlphaConfig(k=k, margin=margin), name=name, reduction=reduction, dtype=dtype
        )


@keras.saving.register_keras_serializable(package="keras_topk")
class TopKHingeBeta(TopKLoss):
    r"""Top-k hinge beta (Lapin, Hein, Schiele, NeurIPS 2015; psi_3 of Yang & Koyejo).

    .. math::

        l_k(s, y) = \frac{1}{k}\sum_{j=1}^{k} \max\Bigl(0,\ \bigl(s + \mathrm{margin}\,(1 - e_y)\bigr)_{[j]} - s_y\Bigr)

    Each of the k largest margin-shifted scores is hinged on its own (the
    label's own entry contributes 0). Convex; an upper bound of alpha; not top-k
    calibrated.

    Args:
        k: the k of top-k, ``1 <= k <`` number of classes.
        margin: ``>= 0``, default 1.
        reduction: Keras reduction, default "sum_over_batch_size".
        name: default "topk_hinge_beta".
        dtype: ignored for the computation.

    Example:

    >>> import numpy as np, keras_topk
    >>> loss = keras_topk.losses.TopKHingeBeta(k=2, reduction=None)
    >>> np.asarray(loss(np.array([1, 2]), np.array([[2.0, 1.0, 0.5, -1.0], [0.1, 0.2, 3.0, 0.0]], "float32"))).tolist()
    [1.25, 0.0]
    """

    def __init__(
        self,
        k: int = 5,
        margin: float = 1.0,
        reduction: str | None = "sum_over_batch_size",
        name: str = "topk_hinge_beta",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            BetaConfig(k=k, margin=margin), name=name, reduction=reduction, dtype=dtype
        )


@keras.saving.register_keras_serializable(package="keras_topk")
class TruncatedTopKEntropy(TopKLoss):
    r"""Truncated top-k entropy (Lapin, Hein, Schiele, CVPR 2016).

    .. math::

        l_k(s, y) = \log\Bigl(1 + \sum_{j \in J_y} \exp(s_j - s_y)\Bigr)

    with ``J_y`` the classes other than ``y`` minus the ``k - 1`` highest-scoring
    of them: cross-entropy that ignores the label's k-1 strongest rivals
    (``k = 1`` is cross-entropy). Non-convex; the choice of ``J_y`` carries no
    gradient.

    Args:
        k: the k of top-k, ``1 <= k <`` number of classes.
        reduction: Keras reduction, default "sum_over_batch_size".
        name: default "truncated_topk_entropy".
        dtype: ignored for the computation.

    Example:

    >>> import numpy as np, keras_topk
    >>> loss = keras_topk.losses.TruncatedTopKEntropy(k=2, reduction=None)
    >>> [round(v, 6) for v in np.asarray(loss(np.array([1]), np.array([[2.0, 1.0, 0.5, -1.0]], "float32"))).tolist()]
    [0.554957]
    """

    def __init__(
        self,
        k: int = 5,
        reduction: str | None = "sum_over_batch_size",
        name: str = "truncated_topk_entropy",
        dtype: Any = None,
    ) -> None:
        super().__init__(EntropyConfig(k=k), name=name, reduction=reduction, dtype=dtype)
