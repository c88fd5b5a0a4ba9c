"""Differentiable top-k cross-entropy (Petersen et al., ICML 2022)."""

import dataclasses
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from keras_topk import _config
from keras_topk.losses._base import LossConfig, TopKLoss, per_sample_losses
from keras_topk.ops import ranking, relaxed_topk

__all__ = ["TopKCrossEntropy", "topk_cross_entropy"]

TOP1_MODES = ("sm", "sort", "smce")

# The reference's guard against log(0): -log(P (1 - 2e-7) + 1e-7).
_EPS = 1e-7


@dataclasses.dataclass(frozen=True)
class TopKCrossEntropyConfig(LossConfig):
    p_k: Sequence[float]
    method: str
    inverse_temperature: float
    distribution: str
    art_lambda: float
    m: int | None
    top1_mode: str

    def __post_init__(self):
        p_k = _config.check_k_distribution(self.p_k)
        k = len(p_k)
        _, method, beta, distribution, art_lambda = relaxed_topk.check_soft_topk_args(
            k, None, self.method, self.inverse_temperature, self.distribution, self.art_lambda
        )
        m = self.m
        if m is not None:
            m = _config.check_int("m", m)
            if m <= k:
                raise ValueError(
                    f"`m`={m} must lie strictly between K = len(p_k) = {k} and the number of "
                    f"classes: use m > {k}, or m=None to rank all classes."
                )
        normalised = dict(
            p_k=p_k,
            method=method,
            inverse_temperature=beta,
            distribution=distribution,
            art_lambda=art_lambda,
            m=m,
            top1_mode=_config.check_choice("top1_mode", self.top1_mode, TOP1_MODES),
        )
        for name, value in normalised.items():
            object.__setattr__(self, name, value)

    def check_classes(self, n):
        _config.check_k_fits_classes("K = len(p_k)", len(self.p_k), n, strict=False)
        if self.m is not None and self.m >= n:
            raise ValueError(
                f"`m`={self.m} must be smaller than the number of classes, which is {n}; use "
                f"m in ({len(self.p_k)}, {n}) or m=None to rank all classes."
            )

    @property
    def dense_rows(self):  # type: ignore[override]
        # With `m`, dense rows are reduced to their argmax.
        return self.m is None

    @property
    def floor_scale(self):
        return self.inverse_temperature

    def maths(self, s, labels, rows):
        return _topk_cross_entropy_2d(s, labels, rows, self)


def topk_cross_entropy(
    y_true: Any,
    y_pred: Any,
    *,
    p_k: Sequence[float] = (0.2, 0.2, 0.2, 0.2, 0.2),
    method: str = "splitter_selection",
    inverse_temperature: float = 1.0,
    distribution: str = "logistic_phi",
    art_lambda: float = 0.5,
    m: int | None = None,
    top1_mode: str = "sm",
) -> Any:
    """Per-sample differentiable top-k cross-entropy.

    See `TopKCrossEntropy` for the formula and the arguments.

    Args:
        y_true: integer labels of shape ``(...,)`` or ``(..., 1)``, or one-hot
            or soft label rows of shape ``(..., n)``.
        y_pred: scores (logits) of shape ``(..., n)``.

    Returns:
        The loss of each sample, shape ``(...,)``, in float32 (float64 for
        float64 scores).

    Example:

    >>> import numpy as np, keras_topk
    >>> scores = np.array([[2.0, 1.0, 0.5, -1.0], [0.1, 0.2, 3.0, 0.0]], "float32")
    >>> [round(float(v), 4) for v in keras_topk.losses.topk_cross_entropy([1, 2], scores, p_k=(0.5, 0.0, 0.5))]
    [0.622, 0.1019]
    """
    config = TopKCrossEntropyConfig(
        p_k, method, inverse_temperature, distribution, art_lambda, m, top1_mode
    )
    return per_sample_losses(y_true, y_pred, config)


def _topk_cross_entropy_2d(s, y, rows, config):
    p_k, k = config.p_k, len(config.p_k)
    # rows: soft or one-hot label rows (dense labels, no `m`), else None.
    dense = rows is not None
    if config.m is not None:
        s = ranking.label_and_top_others(s, y, config.m)
        y = ops.zeros_like(y)
    n = int(s.shape[-1])
    # LapSum needs only the label's index (no (b, n) one-hot row).
    by_index = config.method == "lapsum" and not dense
    # One-hot rows: the label's attribution comes from pushing the row through
    # the network (O(n) a layer); soft rows need the whole attribution matrix.
    targets = rows if dense else None if by_index else ops.one_hot(y, n, dtype=s.dtype)
    label = ops.reshape(ops.cast(y, "int32"), (-1, 1)) if by_index else None
    relaxation = (config.method, config.inverse_temperature, config.distribution, config.art_lambda)

    first = 0 if config.top1_mode == "sort" else 1
    weights = p_k[first:]
    topk_prob = None
    if any(w != 0.0 for w in weights):
        if dense:
            attribution = relaxed_topk.topk_attribution(s, k, *relaxation)
        elif by_index:
            attribution = relaxed_topk.topk_attribution(s, k, *relaxation, labels=y)
        else:
            attribution = relaxed_topk.topk_attribution(s, k, *relaxation, rows=targets)
        # q_k: the probability of landing among the top k ranks.
        in_topk = ops.cumsum(attribution, axis=-1)
        weight_vector = ops.convert_to_tensor([0.0] * first + list(weights), dtype=s.dtype)
        topk_prob = ops.sum(in_topk * weight_vector, axis=-1)

    if config.top1_mode == "smce":
        if by_index:
            cross_entropy = ops.logsumexp(s, axis=-1) - ops.take_along_axis(s, label, axis=1)[:, 0]
        else:
            cross_entropy = -ops.sum(targets * ops.log_softmax(s, axis=-1), axis=-1)
        loss = p_k[0] * cross_entropy
        if topk_prob is not None:
            loss = loss + sum(weights) * _nll(topk_prob, targets, dense)
        return loss
    if config.top1_mode == "sm" and p_k[0] != 0.0 and by_index:
        # softmax(s)_y without the (b, n) softmax: one log-sum-exp and a gather.
        log_softmax_y = ops.take_along_axis(s, label, axis=1)[:, 0] - ops.logsumexp(s, axis=-1)
        softmax_prob = p_k[0] * ops.exp(log_softmax_y)
        topk_prob = softmax_prob if topk_prob is None else topk_prob + softmax_prob
    elif config.top1_mode == "sm" and p_k[0] != 0.0:
        softmax_prob = p_k[0] * ops.softmax(s, axis=-1)
        if not dense:
            softmax_prob = ops.sum(softmax_prob * targets, axis=-1)
        topk_prob = softmax_prob if topk_prob is None else topk_prob + softmax_prob
    return _nll(topk_prob, targets, dense)


def _nll(prob, targets, dense):
    log_prob = ops.log(prob * (1.0 - 2.0 * _EPS) + _EPS)
    if dense:
        return -ops.sum(targets * log_prob, axis=-1)
    return -log_prob


@keras.saving.register_keras_serializable(package="keras_topk")
class TopKCrossEntropy(TopKLoss):
    r"""Differentiable top-k cross-entropy (Petersen et al., ICML 2022).

    Trains for several k at once: a distribution ``p_k`` over k = 1..K weights
    the probability that the label lands among the top k, where the ranking is
    relaxed by a differentiable sorting or selection network:

    .. math::

        P(y) = p_1\,\mathrm{softmax}(s)_y + \sum_{k=2}^{K} p_k\, q_k(y), \qquad
        q_k(y) = \sum_{j<k} A[y, j], \qquad
        \ell = -\log\bigl(P(y)(1 - 2\cdot10^{-7}) + 10^{-7}\bigr)

    with ``A = keras_topk.ops.soft_topk(s, K)`` the relaxed top-K attribution
    matrix (``top1_mode="sm"``). ``top1_mode="sort"`` uses ``q_1`` instead of the
    softmax; ``"smce"`` adds ``p_1`` times cross-entropy to ``(sum_{k>=2} p_k)``
    times the NLL of ``sum_{k>=2} p_k q_k`` (not renormalised, as the reference).
    Values and gradients match the reference implementation (``difftopk``).

    Args:
        p_k: weights of k = 1..K, non-negative, summing to 1; ``K = len(p_k)``.
            E.g. ``(0.2,) * 5`` (ImageNet), ``(0.5, 0, 0, 0, 0.5)`` for top-1 and top-5.
        method: "splitter_selection" (default; a selection network, the fewest
            comparators), "bitonic", "odd_even" (full sorting networks),
            "neuralsort", "softsort", or "lapsum" (LapSum's closed-form top-j
            memberships, O(n) a rank with no network: for ranking all classes;
            ``alpha = 1 / inverse_temperature``; docs, "Choosing a method").
        inverse_temperature: steepness of the relaxation (> 0). Higher is
            closer to the hard top-k but gives sparser gradients; 1.0 for
            ImageNet heads, 0.5 for training from scratch in the paper.
        distribution: comparator relaxation for the networks: "logistic",
            "logistic_phi" (default), "cauchy", "reciprocal", "gaussian",
            "optimal". Ignored by neuralsort/softsort. **Stability:**
            "logistic_phi" (the paper's and the reference's default) has a
            comparator slope ``~ beta (1 - art_lambda) / (4 |v|^art_lambda)``
            that is unbounded as two scores meet (``v -> 0``): where the label
            ties a rival, moving one logit by 1e-6 can change the gradient by
            thousands (README, "TopKCrossEntropy"). At an exact tie (``v = 0``)
            it has no derivative; the reference's, ``beta / 4 * 1e10 **
            art_lambda`` (2.5e4 ``beta``), comes from its ``1e-10`` guard and
            made gradients 1e4 times CE's on a zero-initialised head (every
            score tied), which then did not train. Here the slope at an exact
            tie is the logistic's, ``beta / 4``; values are the reference's
            everywhere, gradients wherever no comparator meets an exact tie
            (`keras_topk.ops.comparator_slope`). Every other distribution is
            steepest at the tie with a bounded slope (``beta / 4`` for
            "logistic" and "reciprocal", ``beta / pi`` "cauchy",
            ``beta / sqrt(2 pi)`` "gaussian", ``beta`` "optimal"); choose one of
            them (or ``art_lambda=0``, which is "logistic") if gradients spike
            or turn NaN with sharp relaxations, or near ties that are not
            exact (a head initialised at a tiny scale, e.g. ``1e-6``).
        art_lambda: exponent of "logistic_phi" (>= 0); 0.5 in the paper.
        m: if set (K < m < number of classes), rank only the label's score and
            the m - 1 highest other scores; the rest get zero gradient. Much
            faster for many classes (m = 16 for ImageNet-1K, 50 for 21K). With
            ``m``, dense label rows are reduced to their argmax.
        top1_mode: "sm" (default), "sort" or "smce", see above.
        reduction: Keras reduction, default "sum_over_batch_size".
        name: optional name.
        dtype: ignored for the computation, which runs in float32 (float64 for
            float64 scores); accepted for Keras compatibility.

    Labels are integer class indices of shape ``(batch,)`` or ``(batch, 1)``,
    or one-hot/soft rows of shape ``(batch, n)``; ``n`` comes from the scores.

    Example:

    >>> import numpy as np, keras_topk
    >>> loss = keras_topk.losses.TopKCrossEntropy(p_k=(0.5, 0.0, 0.5), m=None)
    >>> scores = np.array([[2.0, 1.0, 0.5, -1.0], [0.1, 0.2, 3.0, 0.0]], "float32")
    >>> round(float(loss(np.array([1, 2]), scores)), 4)
    0.3619
    """

    def __init__(
        self,
        p_k: Sequence[float] = (0.2, 0.2, 0.2, 0.2, 0.2),
        method: str = "splitter_selection",
        inverse_temperature: float = 1.0,
        distribution: str = "logistic_phi",
        art_lambda: float = 0.5,
        m: int | None = None,
        top1_mode: str = "sm",
        reduction: str | None = "sum_over_batch_size",
        name: str = "topk_cross_entropy",
        dtype: Any = None,
    ) -> None:
        config = TopKCrossEntropyConfig(
            p_k, method, inverse_temperature, distribution, art_lambda, m, top1_mode
        )
        super().__init__(config, name=name, reduction=reduction, dtype=dtype)
