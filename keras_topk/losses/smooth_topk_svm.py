"""Smooth top-k SVM (Berrada, Zisserman and Kumar, ICLR 2018); the hard one is in `topk_svm`.

With scores ``s`` over ``n`` classes, label ``y``, the k-subsets ``S`` of the
classes, margin ``alpha`` and temperature ``tau``:

    hard:    l_k(s, y)     = max_S (alpha [y not in S] + mean(s_S)) - max_{S contains y} mean(s_S)
                           = max(0, alpha + (t_k - s_y) / k)
    smooth:  L_k,tau(s, y) = tau log sum_S exp((alpha [y not in S] + mean(s_S)) / tau)
                             - tau log sum_{S contains y} exp(mean(s_S) / tau)

where ``t_k`` is the k-th largest score among the classes other than ``y``.
With ``w_j = exp(s_j / (k tau))`` over ``j != y`` and ``e_i`` the elementary
symmetric polynomials, ``L = tau softplus(D / tau)``,
``D = alpha - s_y / k + tau log(e_k(w) / e_{k-1}(w))``.

Evaluating the ratio in float32 as the difference of two log-polynomials loses
``eps * (s_(1) - s_(k)) / k`` to cancellation: both carry the product of the
top k - 1 roots. Splitting the other classes into ``A`` (the top k - 1, chosen
by a hard top-k that needs no gradient) and the rest ``B``, and measuring every
score from ``t_k``,

    e_d(A u B) = e_{k-1}(w_A) sum_j e_j(1 / w_A) e_{d-k+1+j}(B),

so that ``D = alpha + (t_k - s_y) / k + tau (R_k - R_{k-1})`` with
``R_d = log sum_j e_j(1 / w_A) e_{d-k+1+j}(w_B)``. Every root in ``1 / w_A`` and
``w_B`` is at most 1, every log is at most ``k log n``, and the common factor
cancels exactly instead of numerically. The identity holds for any split, so
autodiff through it is the exact gradient.
"""

import dataclasses
import math
from typing import Any

import keras
from keras import ops

from keras_topk import _config
from keras_topk.losses._base import LossConfig, TopKLoss, per_sample_losses
from keras_topk.ops import ranking, symmetric_polynomials

__all__ = ["SmoothTopKSVM", "smooth_topk_svm"]

# The reference's switch: a sample uses the hard loss when
# s_(k) - s_(k+1) >= k tau log(HARD_SWITCH_RATIO), i.e. when the (k+1)-th root is
# 1000 times smaller than the k-th and the smooth loss is numerically flat.
HARD_SWITCH_RATIO = 1000.0


@dataclasses.dataclass(frozen=True)
class SmoothTopKSVMConfig(LossConfig):
    k: int
    tau: float
    alpha: float

    def __post_init__(self):
        object.__setattr__(self, "k", _config.check_int("k", self.k, minimum=1))
        object.__setattr__(
            self, "tau", _config.check_float("tau", self.tau, minimum=0.0, min_inclusive=False)
        )
        object.__setattr__(self, "alpha", _config.check_float("alpha", self.alpha, minimum=0.0))

    def check_classes(self, n):
        _config.check_k_fits_classes("k", self.k, n, strict=True)

    def maths(self, s, labels, rows):
        return _smooth_topk_svm_2d(s, labels, self.k, self.tau, self.alpha)


def smooth_topk_svm(
    y_true: Any, y_pred: Any, *, k: int = 5, tau: float = 1.0, alpha: float = 1.0
) -> Any:
    """Per-sample smooth top-k SVM loss.

    See `SmoothTopKSVM` for the formula and the arguments.

    Args:
        y_true: integer labels of shape ``(...,)`` or ``(..., 1)``, or one-hot
            rows of shape ``(..., n)`` (for dense rows the class is their argmax).
        y_pred: scores (logits) of shape ``(..., n)``.
        k: the k of top-k, ``1 <= k < n``.
        tau: temperature, ``> 0``.
        alpha: margin, ``>= 0``.

    Returns:
        The loss of each sample, shape ``(...,)``, in float32 (float64 for
        float64 scores).

    Example: above the hard loss of the same sample (0.75, see `topk_svm`), as
    a log-sum-exp is above the maximum it smooths:

    >>> import keras_topk
    >>> round(float(keras_topk.losses.smooth_topk_svm([1], [[2.0, 1.0, 0.5, -1.0]], k=2, tau=1.0)[0]), 4)
    1.1369
    """
    return per_sample_losses(y_true, y_pred, SmoothTopKSVMConfig(k=k, tau=tau, alpha=alpha))


def _smooth_topk_svm_2d(s, y, k, tau, alpha):
    n = int(s.shape[-1])
    # One top_k (the slowest op here on CPU) serves the split, t_k and the switch.
    top_values, hits, ranked = ranking.ranked_others(s, y, k + 1, ranks=range(k))
    s_y = ranking.label_score(s, y)
    t_k = ranked[k - 1]
    margin = alpha + (t_k - s_y) / k
    hard = ops.relu(margin)

    if k == 1:
        # tau logsumexp_j((s_j + alpha [j != y] - s_y) / tau), the multiclass SVM of
        # Crammer and Singer smoothed; softmax cross-entropy for alpha = 0, tau = 1.
        not_label = 1.0 - ops.one_hot(y, n, dtype=s.dtype)
        v = s - s_y[:, None] + alpha * not_label
        # The maximum comes off in score units, before dividing by tau: at
        # scores / tau of 1e7 and more, a scaled value and the scaled maximum can
        # be rounded differently under XLA (FMA contraction), by whole units.
        top = ops.stop_gradient(ops.max(v, axis=-1, keepdims=True))
        smooth = top[:, 0] + tau * symmetric_polynomials.logsumexp((v - top) / tau)
    else:
        neg = symmetric_polynomials.lowest_log(s.dtype)
        scale = k * tau
        excluded = ops.one_hot(y, n, dtype="bool")
        for r in range(k - 1):
            excluded = ops.logical_or(excluded, hits[r])
        log_w_b = ops.where(
            excluded, ops.convert_to_tensor(neg, dtype=s.dtype), (s - t_k[:, None]) / scale
        )
        log_inv_w_a = (t_k[:, None] - ops.stack([ranked[r] for r in range(k - 1)], axis=1)) / scale
        if symmetric_polynomials.linear_fits(n, k, s.dtype, factor=2.0 ** (k - 1)):
            # The roots w_B and 1 / w_A all lie in [0, 1], and both sums below hold
            # a term 1 (j = 0): in linear space nothing overflows, terms that
            # underflow are below the sums' rounding, and there is no exp or log
            # per tree node (several times faster than log space on CPU).
            e_b = symmetric_polynomials.elementary_symmetric_2d(ops.exp(log_w_b), k)
            e_a = symmetric_polynomials.elementary_symmetric_2d(ops.exp(log_inv_w_a), k - 1)
            r_k = ops.log(ops.sum(e_a * e_b[:, 1:], axis=-1))
            r_k_minus_1 = ops.log(ops.sum(e_a * e_b[:, :k], axis=-1))
        else:
            e_b = symmetric_polynomials.log_esp_2d(log_w_b, k)  # degrees 0..k
            e_a = symmetric_polynomials.log_esp_2d(log_inv_w_a, k - 1)  # degrees 0..k-1
            r_k = symmetric_polynomials.logsumexp(e_a + e_b[:, 1:])
            r_k_minus_1 = symmetric_polynomials.logsumexp(e_a + e_b[:, :k])
        d = margin + tau * (r_k - r_k_minus_1)
        smooth = tau * ops.softplus(d / tau)

    kth, next_after_kth = _kth_and_next_of_all(
        ops.stop_gradient(top_values), ops.stop_gradient(s_y), k, n
    )
    use_hard = (kth - next_after_kth) >= k * tau * math.log(HARD_SWITCH_RATIO)
    # Both branches are finite everywhere, so the unused one passes a zero
    # gradient rather than NaN.
    return ops.where(use_hard, hard, smooth)


def _kth_and_next_of_all(top_others, s_y, k, n):
    """The k-th and (k+1)-th largest of all n scores, from s_y and the top k + 1 others.

    With ``o_1 >= o_2 >= ...`` the other classes' scores and ``o_0 = +inf``, the
    j-th largest of all is ``max(o_j, min(s_y, o_{j-1}))``.
    """

    def nth_largest(j):  # 1-based
        previous = s_y if j == 1 else ops.minimum(s_y, ranking.column(top_others, j - 2))
        if j > n - 1:  # only n - 1 other classes: s_y or an other is the smallest
            return previous
        return ops.maximum(ranking.column(top_others, j - 1), previous)

    return nth_largest(k), nth_largest(k + 1)


@keras.saving.register_keras_serializable(package="keras_topk")
class SmoothTopKSVM(TopKLoss):
    r"""Smooth top-k SVM loss (Berrada, Zisserman and Kumar, ICLR 2018).

    The hard top-k SVM with each maximum over k-subsets ``S`` of the classes
    replaced by a log-sum-exp at temperature ``tau``:

    .. math::

        L_{k,\tau}(s, y) = \tau \log \sum_{|S| = k}
            \exp\Bigl(\tfrac{1}{\tau}\bigl(\alpha [y \notin S] + \tfrac{1}{k}\textstyle\sum_{j \in S} s_j\bigr)\Bigr)
          - \tau \log \sum_{|S| = k,\, y \in S}
            \exp\Bigl(\tfrac{1}{k\tau}\textstyle\sum_{j \in S} s_j\Bigr)

    computed exactly in ``O(kn)`` from elementary symmetric polynomials in log
    space (``keras_topk.ops.log_elementary_symmetric``), with a balanced tree
    of depth ``log2 n``. As in the reference, a sample whose scores satisfy
    ``s_(k) - s_(k+1) >= k tau log(1000)`` (sorted scores of all classes) uses the
    hard loss ``max(0, alpha + (t_k - s_y) / k)`` instead, ``t_k`` the k-th
    largest score of the other classes: there the smooth loss is numerically
    flat. For ``k = 1`` the loss is
    ``tau * logsumexp_j((s_j + alpha [j != y] - s_y) / tau)``, softmax
    cross-entropy for ``alpha = 0, tau = 1``.

    Gradients are exact (autodiff of an exact, cancellation-free forward pass),
    unlike the reference's hand-written backward, which is off by up to 1.6e-5
    in float64 and wrong for ``k = 1``.

    Args:
        k: the k of top-k, ``1 <= k <`` number of classes. 5 in the paper.
        tau: temperature ``> 0``: the smoothing. Smaller is closer to the hard
            loss (sparser gradients); 1 on CIFAR-100, 0.1 on ImageNet in the paper.
        alpha: margin ``>= 0`` by which the label should beat the k-th other
            class (1 in the paper).
        reduction: Keras reduction, default "sum_over_batch_size".
        name: the loss's name.
        dtype: ignored for the computation, which runs in float32 (float64 for
            float64 scores); accepted for Keras compatibility.

    Labels are integer class indices of shape ``(batch,)`` or ``(batch, 1)``,
    or one-hot rows of shape ``(batch, n)``, whose argmax is taken as the class
    (soft rows are reduced to their argmax too). Any leading batch axes are
    allowed.

    Example:

    >>> import numpy as np, keras_topk
    >>> loss = keras_topk.losses.SmoothTopKSVM(k=2, tau=1.0)
    >>> scores = np.array([[2.0, 1.0, 0.5, -1.0], [0.1, 0.2, 3.0, 0.0]], "float32")
    >>> round(float(loss(np.array([1, 2]), scores)), 4)
    0.8151
    """

    def __init__(
        self,
        k: int = 5,
        tau: float = 1.0,
        alpha: float = 1.0,
        reduction: str | None = "sum_over_batch_size",
        name: str = "smooth_topk_svm",
        dtype: Any = None,
    ) -> None:
        config = SmoothTopKSVMConfig(k=k, tau=tau, alpha=alpha)
        super().__init__(config, name=name, reduction=reduction, dtype=dtype)
