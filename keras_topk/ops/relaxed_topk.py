"""Relaxed top-k: the differentiable attribution of inputs to the top-k ranks.

``soft_topk(scores, k)`` returns ``A`` of shape ``(..., n, k)`` where
``A[..., i, j]`` is the relaxed probability that score ``i`` holds rank ``j``
(rank 0 is the largest). Each column sums to 1; each row sums to at most 1 (the
mass that lands below rank k is dropped). As the inverse temperature grows, ``A``
tends to the hard indicator ``[rank(s_i) == j]``.

Sorting networks (Petersen et al., ICML 2022): each layer is a doubly
stochastic matrix ``M`` made of 2x2 blocks ``[[alpha, 1 - alpha], [1 - alpha,
alpha]]``, so ``M`` is symmetric. The attribution of a label row ``e_y`` is
``e_y^T M_1^T ... M_L^T E = (M_L ... M_1 e_y)^T E``: pushing the one-hot label
*forward* through the network with the scores costs ``O(n)`` per layer instead
of the ``O(nk)`` of sweeping ``E`` backwards, which the full matrix needs.
"""

from keras import ops

from keras_topk import _config
from keras_topk import _inputs
from keras_topk.ops import relaxations
from keras_topk.ops import sorting_networks

METHODS = sorting_networks.NETWORKS + ("neuralsort", "softsort")

# Above this many classes NeuralSort's sum of |s_i - s_j| is taken from sorted
# prefix sums (O(n log n)) rather than an (n x n) matrix per sample.
_NEURALSORT_DENSE_MAX_N = 256


def soft_topk(
    scores,
    k,
    method="splitter_selection",
    inverse_temperature=1.0,
    distribution="logistic_phi",
    art_lambda=0.5,
):
    """Relaxed top-k attribution matrix of ``scores``.

    Args:
        scores: float tensor of shape ``(..., n)``. Half precision is computed
            in float32.
        k: number of top ranks, ``1 <= k <= n``.
        method: "splitter_selection" (selection network, fewest comparators),
            "bitonic", "odd_even" (sorting networks), "neuralsort" or "softsort"
            (relaxed permutation matrices with temperature ``1 / inverse_temperature``).
        inverse_temperature: steepness ``beta > 0``; larger is closer to the hard top-k.
        distribution: the comparator relaxation for the networks, one of
            ``keras_topk.ops.relaxations.DISTRIBUTIONS``.
        art_lambda: exponent of the "logistic_phi" relaxation.

    Returns:
        ``A`` of shape ``(..., n, k)``: ``A[..., i, j]`` is the relaxed
        probability that ``scores[..., i]`` has rank ``j`` (0 = largest).

    Example:

    >>> import numpy as np
    >>> a = soft_topk(np.array([[0.1, 3.0, 2.0, -1.0]]), k=2, inverse_temperature=100.0)
    >>> np.round(np.asarray(a)[0], 3).tolist()
    [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]
    """
    scores = _inputs.standardize_scores(scores)
    n = _inputs.num_classes_of(scores)
    k, method, beta, distribution, art_lambda = check_soft_topk_args(
        k, n, method, inverse_temperature, distribution, art_lambda
    )
    leading = ops.shape(scores)[:-1]
    flat = ops.reshape(scores, (-1, n))
    attribution = topk_attribution(flat, k, method, beta, distribution, art_lambda)
    if len(scores.shape) == 2:
        return attribution
    return ops.reshape(attribution, tuple(leading) + (n, k))


def check_soft_topk_args(k, n, method, inverse_temperature, distribution, art_lambda):
    """Validates the relaxation's arguments; ``n`` may be None when unknown."""
    k = _config.check_int("k", k, minimum=1)
    _config.check_k_fits_classes("k", k, n, strict=False)
    method = _config.check_choice("method", method, METHODS)
    beta = _config.check_float("inverse_temperature", inverse_temperature, minimum=0.0, min_inclusive=False)
    distribution = _config.check_choice("distribution", distribution, relaxations.DISTRIBUTIONS)
    art_lambda = _config.check_float("art_lambda", art_lambda, minimum=0.0)
    return k, method, beta, distribution, art_lambda


def topk_attribution(scores, k, method, inverse_temperature, distribution, art_lambda, rows=None):
    """Attribution of ``scores`` (b, n) to the top ``k`` ranks, arguments already checked.

    With ``rows`` (b, n) given, returns ``rows^T A`` of shape (b, k) (for a
    one-hot row, the label's attribution) without forming ``A``.
    """
    n = int(scores.shape[-1])
    if method == "neuralsort":
        attribution = _neuralsort_topk(scores, k, 1.0 / inverse_temperature)
    elif method == "softsort":
        attribution = _softsort_topk(scores, k, 1.0 / inverse_temperature)
    else:
        network = sorting_networks.build_network(method, n, k)
        return _network_topk(scores, network, k, inverse_temperature, distribution, art_lambda, rows)
    if rows is None:
        return attribution
    return ops.einsum("bn,bnk->bk", rows, attribution)


def _layer_weights(x, layer, distribution, beta, art_lambda):
    """Per-wire weights of a layer: out[w] = own[w] x[w] + other[w] x[partner[w]].

    ``x`` is wire-major, shape (n, b): gathering whole rows of a batch is far
    cheaper on XLA:CPU than gathering single elements along the class axis.
    """
    alpha = relaxations.comparator_weight(
        ops.take(x, layer.b, axis=0) - ops.take(x, layer.a, axis=0),
        distribution,
        beta,
        art_lambda,
    )
    ones = ops.ones_like(alpha[:1])
    table = ops.concatenate([alpha, 1.0 - alpha, ones, ops.zeros_like(ones)], axis=0)
    return ops.take(table, layer.own, axis=0), ops.take(table, layer.other, axis=0)


def _mix(v, own, other, partner):
    if len(v.shape) == 3:
        own, other = own[:, :, None], other[:, :, None]
    return own * v + other * ops.take(v, partner, axis=0)


def _network_topk(x, network, k, beta, distribution, art_lambda, rows):
    n = network.n
    x = ops.transpose(x)
    if rows is not None:
        rows = ops.transpose(rows)
    weights = []
    for layer in network.layers:
        if layer.num_comparators == 0:
            continue
        own, other = _layer_weights(x, layer, distribution, beta, art_lambda)
        x = _mix(x, own, other, layer.partner)
        if rows is not None:
            rows = _mix(rows, own, other, layer.partner)
        else:
            weights.append((own, other, layer.partner))
    top_wires = list(range(n - 1, n - 1 - k, -1))
    if rows is not None:
        return ops.transpose(ops.take(rows, top_wires, axis=0))
    # Columns of the identity for the top k output wires, in rank order, swept
    # back through the transposed (= same, symmetric) layers.
    eye = ops.cast(ops.eye(n, dtype="float32")[:, n - k :][:, ::-1], x.dtype)
    attribution = ops.broadcast_to(eye[:, None, :], (n, ops.shape(x)[1], k))
    for own, other, partner in reversed(weights):
        attribution = _mix(attribution, own, other, partner)
    return ops.transpose(attribution, (1, 0, 2))


def _neuralsort_topk(s, k, tau):
    # Grover et al. (2019): row r of the relaxed permutation (r counted from the
    # smallest) is softmax_i(((n + 1 - 2 (r + 1)) (-s_i) - sum_j |s_i - s_j|) / tau).
    # Rank j from the top is r = n - 1 - j.
    n = int(s.shape[-1])
    abs_sums = _sum_abs_differences(s)
    scaling = ops.cast(ops.convert_to_tensor([2 * j + 1 - n for j in range(k)]), s.dtype)
    logits = (ops.negative(s)[:, :, None] * scaling[None, None, :] - abs_sums[:, :, None]) / tau
    return ops.softmax(logits, axis=1)


def _sum_abs_differences(s):
    """``sum_j |s_i - s_j|`` for each i, shape (b, n)."""
    n = int(s.shape[-1])
    if n <= _NEURALSORT_DENSE_MAX_N:
        return ops.sum(ops.abs(s[:, :, None] - s[:, None, :]), axis=-1)
    # Centred so that the prefix sums stay small next to the differences.
    s = s - ops.mean(s, axis=-1, keepdims=True)
    order = ops.argsort(s, axis=-1)
    t = ops.take_along_axis(s, order, axis=-1)
    prefix = ops.cumsum(t, axis=-1)
    total = prefix[:, -1:]
    rank = ops.cast(ops.arange(n), s.dtype)[None, :]
    below = t * rank - (prefix - t)
    above = (total - prefix) - t * (n - 1 - rank)
    inverse = ops.argsort(order, axis=-1)
    return ops.take_along_axis(below + above, inverse, axis=-1)


def _softsort_topk(s, k, tau):
    # Prillo & Eisenschlos (2020): rank j's row is softmax_i(-|s_i - t_j| / tau),
    # t_j the j-th largest score.
    top = ops.top_k(s, k, sorted=True)[0]
    return ops.softmax(-ops.abs(s[:, :, None] - top[:, None, :]) / tau, axis=1)
