"""Differentiable top-k cross-entropy (Petersen et al., ICML 2022)."""

import keras
import numpy as np
from keras import ops

from keras_topk import _config
from keras_topk import _inputs
from keras_topk.losses._base import TopKLoss
from keras_topk.ops import relaxations
from keras_topk.ops import relaxed_topk

TOP1_MODES = ("sm", "sort", "smce")

# The reference's guard against log(0): -log(P (1 - 2e-7) + 1e-7).
_EPS = 1e-7


def check_topk_cross_entropy_args(
    p_k, method, inverse_temperature, distribution, art_lambda, m, top1_mode
):
    """Validates the configuration; returns it normalised (p_k as a tuple of floats)."""
    p_k = _config.check_k_distribution(p_k)
    k = len(p_k)
    _, method, beta, distribution, art_lambda = relaxed_topk.check_soft_topk_args(
        k, None, method, inverse_temperature, distribution, art_lambda
    )
    top1_mode = _config.check_choice("top1_mode", top1_mode, TOP1_MODES)
    if m is not None:
        m = _config.check_int("m", m)
        if m <= k:
            raise ValueError(
                f"`m`={m} must lie strictly between K = len(p_k) = {k} and the number of "
                f"classes: use m > {k}, or m=None to rank all classes."
            )
    return p_k, method, beta, distribution, art_lambda, m, top1_mode


def topk_cross_entropy(
    y_true,
    y_pred,
    p_k,
    method="splitter_selection",
    inverse_temperature=1.0,
    distribution="logistic_phi",
    art_lambda=0.5,
    m=None,
    top1_mode="sm",
):
    """Per-sample differentiable top-k cross-entropy.

    See `TopKCrossEntropy` for the formula and the arguments.

    Args:
        y_true: integer labels of shape ``(...,)`` or ``(..., 1)``, or one-hot
            or soft label rows of shape ``(..., n)``.
        y_pred: scores (logits) of shape ``(..., n)``.

    Returns:
        The loss of each sample, shape ``(...,)``, in float32 (float64 for
        float64 scores).
    """
    p_k, method, beta, distribution, art_lambda, m, top1_mode = check_topk_cross_entropy_args(
        p_k, method, inverse_temperature, distribution, art_lambda, m, top1_mode
    )
    scores = _inputs.standardize_scores(y_pred)
    n = _inputs.num_classes_of(scores)
    _config.check_k_fits_classes("K = len(p_k)", len(p_k), n, strict=False)
    if m is not None and m >= n:
        raise ValueError(
            f"`m`={m} must be smaller than the number of classes, which is {n}; use "
            f"m in ({len(p_k)}, {n}) or m=None to rank all classes."
        )
    labels, dense = _inputs.standardize_labels(y_true, scores)
    flat_scores, flat_labels = _inputs.flatten_batch(scores, labels, dense)
    losses = _topk_cross_entropy_2d(
        flat_scores, flat_labels, dense, p_k, method, beta, distribution, art_lambda, m, top1_mode
    )
    return _inputs.unflatten_batch(losses, scores)


def _topk_cross_entropy_2d(s, labels, dense, p_k, method, beta, distribution, art_lambda, m, top1_mode):
    k = len(p_k)
    # -inf (a masked class) would meet another -inf in the networks' differences.
    s = _inputs.floor_masked_scores(s, scale=beta)
    if m is not None:
        if dense:
            labels = ops.argmax(labels, axis=-1)
        s = _restrict_to_m(s, labels, m)
        labels = ops.zeros_like(labels)
        dense = False
    n = int(s.shape[-1])
    # One-hot rows: the label's attribution comes from pushing the row through
    # the network (O(n) a layer); soft rows need the whole attribution matrix.
    targets = labels if dense else ops.one_hot(labels, n, dtype=s.dtype)

    first = 0 if top1_mode == "sort" else 1
    weights = p_k[first:]
    topk_prob = None
    if any(w != 0.0 for w in weights):
        if dense:
            attribution = relaxed_topk.topk_attribution(s, k, method, beta, distribution, art_lambda)
        else:
            attribution = relaxed_topk.topk_attribution(
                s, k, method, beta, distribution, art_lambda, rows=targets
            )
        # q_k: the probability of landing among the top k ranks.
        in_topk = ops.cumsum(attribution, axis=-1)
        weight_vector = ops.convert_to_tensor([0.0] * first + list(weights), dtype=s.dtype)
        topk_prob = ops.sum(in_topk * weight_vector, axis=-1)

    if top1_mode == "smce":
        cross_entropy = -ops.sum(targets * ops.log_softmax(s, axis=-1), axis=-1)
        loss = p_k[0] * cross_entropy
        if topk_prob is not None:
            loss = loss + sum(weights) * _nll(topk_prob, targets, dense)
        return loss
    if top1_mode == "sm" and p_k[0] != 0.0:
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


def _restrict_to_m(s, labels, m):
    """The label's score first, then the m - 1 highest other scores in descending order."""
    n = int(s.shape[-1])
    is_label = ops.one_hot(labels, n, dtype="bool")
    true_score = ops.take_along_axis(s, labels[:, None], axis=1)
    # The lowest finite value rather than -inf keeps 0 * inf out of the gradient.
    lowest = ops.convert_to_tensor(np.finfo(keras.backend.standardize_dtype(s.dtype)).min, dtype=s.dtype)
    others = ops.where(is_label, lowest, s)
    top_others = ops.top_k(others, m - 1, sorted=True)[0]
    return ops.concatenate([true_score, top_others], axis=1)


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
            "neuralsort" or "softsort".
        inverse_temperature: steepness of the relaxation (> 0). Higher is
            closer to the hard top-k but gives sparser gradients; 1.0 for
            ImageNet heads, 0.5 for training from scratch in the paper.
        distribution: comparator relaxation for the networks: "logistic",
            "logistic_phi" (default), "cauchy", "reciprocal", "gaussian",
            "optimal". Ignored by neuralsort/softsort.
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
    >>> value = loss(np.array([1, 2]), scores)
    >>> round(float(value), 4) > 0
    True
    """

    def __init__(
        self,
        p_k=(0.2, 0.2, 0.2, 0.2, 0.2),
        method="splitter_selection",
        inverse_temperature=1.0,
        distribution="logistic_phi",
        art_lambda=0.5,
        m=None,
        top1_mode="sm",
        reduction="sum_over_batch_size",
        name="topk_cross_entropy",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        (
            self.p_k,
            self.method,
            self.inverse_temperature,
            self.distribution,
            self.art_lambda,
            self.m,
            self.top1_mode,
        ) = check_topk_cross_entropy_args(
            p_k, method, inverse_temperature, distribution, art_lambda, m, top1_mode
        )

    def call(self, y_true, y_pred):
        return topk_cross_entropy(
            y_true,
            y_pred,
            p_k=self.p_k,
            method=self.method,
            inverse_temperature=self.inverse_temperature,
            distribution=self.distribution,
            art_lambda=self.art_lambda,
            m=self.m,
            top1_mode=self.top1_mode,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            p_k=list(self.p_k),
            method=self.method,
            inverse_temperature=self.inverse_temperature,
            distribution=self.distribution,
            art_lambda=self.art_lambda,
            m=self.m,
            top1_mode=self.top1_mode,
        )
        return config
