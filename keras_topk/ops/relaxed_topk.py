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

from typing import Any

import numpy as np
from keras import ops

from keras_topk import _config, _inputs
from keras_topk.ops import lapsum, relaxations, sorting_networks

METHODS = sorting_networks.NETWORKS + ("neuralsort", "softsort", "lapsum")

# Above this many classes NeuralSort's sum of |s_i - s_j| is taken from sorted
# prefix sums (O(n log n)) rather than an (n x n) matrix per sample.
_NEURALSORT_DENSE_MAX_N = 256


def soft_topk(
    scores: Any,
    k: int,
    method: str = "splitter_selection",
    inverse_temperature: float = 1.0,
    distribution: str = "logistic_phi",
    art_lambda: float = 0.5,
) -> Any:
    """Relaxed top-k attribution matrix of ``scores``.

    Args:
        scores: float tensor of shape ``(..., n)``. Half precision is computed
            in float32.
        k: number of top ranks, ``1 <= k <= n``.
        method: "splitter_selection" (selection network, fewest comparators),
            "bitonic", "odd_even" (sorting networks), "neuralsort" or "softsort"
            (relaxed permutation matrices with temperature ``1 / inverse_temperature``),
            or "lapsum" (closed-form top-j memberships with Laplace scale
            ``alpha = 1 / inverse_temperature``, `keras_topk.ops.lapsum_topk`;
            column j is the top-(j+1) minus the top-j membership).
        inverse_temperature: steepness ``beta > 0``; larger is closer to the hard top-k.
        distribution: the comparator relaxation for the networks, one of
            ``keras_topk.ops.relaxations.DISTRIBUTIONS``.
        art_lambda: exponent of the "logistic_phi" relaxation.

    Returns:
        ``A`` of shape ``(..., n, k)``: ``A[..., i, j]`` is the relaxed
        probability that ``scores[..., i]`` has rank ``j`` (0 = largest).
        Scores of ``-inf`` (masked classes) are raised to a large negative
        floor first, so ``A`` stays finite even for a row of ``-inf``.

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
    # A masked class (-inf) would meet another -inf in the comparators' differences (NaN).
    flat = _inputs.floor_masked_scores(ops.reshape(scores, (-1, n)), scale=beta)
    attribution = topk_attribution(flat, k, method, beta, distribution, art_lambda)
    if len(scores.shape) == 2:
        return attribution
    return ops.reshape(attribution, tuple(leading) + (n, k))


def check_soft_topk_args(k, n, method, inverse_temperature, distribution, art_lambda):
    """Validates the relaxation's arguments; ``n`` may be None when unknown."""
    k = _config.check_int("k", k, minimum=1)
    _config.check_k_fits_classes("k", k, n, strict=False)
    method = _config.check_choice("method", method, METHODS)
    beta = _config.check_float(
        "inverse_temperature", inverse_temperature, minimum=0.0, min_inclusive=False
    )
    distribution = _config.check_choice("distribution", distribution, relaxations.DISTRIBUTIONS)
    art_lambda = _config.check_float("art_lambda", art_lambda, minimum=0.0)
    return k, method, beta, distribution, art_lambda


def topk_attribution(
    scores, k, method, inverse_temperature, distribution, art_lambda, rows=None, labels=None
):
    """Attribution of ``scores`` (b, n) to the top ``k`` ranks, arguments already checked.

    With ``rows`` (b, n) given, returns ``rows^T A`` of shape (b, k) (for a
    one-hot row, the label's attribution) without forming ``A``; integer
    ``labels`` (b,) instead of ``rows`` give the same as their one-hot rows.
    """
    n = int(scores.shape[-1])
    if labels is not None and (method != "lapsum" or rows is not None):
        rows = ops.one_hot(labels, n, dtype=scores.dtype) if rows is None else rows
        labels = None
    if method == "lapsum":
        alpha = 1.0 / inverse_temperature
        if labels is not None:
            return lapsum.label_index_rank_attribution(scores, labels, k, alpha)
        if rows is None:
            return lapsum.rank_attribution(scores, k, alpha)
        return lapsum.label_rank_attribution(scores, rows, k, alpha)
    if method == "neuralsort":
        attribution = _neuralsort_topk(scores, k, 1.0 / inverse_temperature)
    elif method == "softsort":
        attribution = _softsort_topk(scores, k, 1.0 / inverse_temperature)
    else:
        network = sorting_networks.build_network(method, n, k)
        return _network_topk(
            scores, network, k, inverse_temperature, distribution, art_lambda, rows
        )
    if rows is None:
        return attribution
    return ops.einsum("bn,bnk->bk", rows, attribution)


def _comparator(lo, hi, distribution, beta, art_lambda, keep=None, descending=None):
    """Weights ``(p, q)`` of a comparator column: ``out_lo = p lo + q hi``, ``out_hi = q lo + p hi``.

    Also returns the difference ``hi - lo`` it read (1 where masked) and ``alpha``.

    ``alpha = f(hi - lo)``; a comparator that writes the minimum to ``lo`` has
    ``p = alpha``, one that writes it to ``hi`` has ``p = 1 - alpha``; a masked
    one (``keep`` False) is the identity.
    """
    diff = hi - lo
    if keep is not None:
        # Masked comparators may read padding; a fixed difference keeps their gradient finite.
        diff = ops.where(keep, diff, ops.ones_like(diff))
    alpha = relaxations.comparator_weight(diff, distribution, beta, art_lambda)
    p, q = alpha, 1.0 - alpha
    if descending is not None:
        p, q = ops.where(descending, q, p), ops.where(descending, p, q)
    if keep is not None:
        p, q = ops.where(keep, p, ops.ones_like(p)), ops.where(keep, q, ops.zeros_like(q))
    return p, q, diff, alpha


def _expand(w, v):
    """Broadcasts per-(wire, batch) weights over the trailing rank axis of an attribution state."""
    return w[..., None] if len(v.shape) > len(w.shape) else w


def _stride_split(v, step):
    """State rows of the step's region as ``(lo, hi)`` of shape (blocks, span, ...), and the rows around it."""
    end = step.offset + step.blocks * 2 * step.span
    region = v[step.offset : end]
    region = ops.reshape(region, (step.blocks, 2, step.span) + _trailing_shape(v.shape[1:]))
    return region[:, 0], region[:, 1], v[: step.offset], v[end:]


def _stride_join(out_lo, out_hi, before, after, step):
    region = ops.stack([out_lo, out_hi], axis=1)
    region = ops.reshape(region, (step.blocks * 2 * step.span,) + _trailing_shape(out_lo.shape[2:]))
    parts = [t for t in (before, region, after) if t.shape[0]]
    return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=0)


def _trailing_shape(shape):
    # The batch axis is unknown when a model is traced with a dynamic batch
    # (SavedModel export); reshape takes one -1 for it.
    return tuple(-1 if d is None else d for d in shape)


def _mix(lo: Any, hi: Any, p: Any, q: Any) -> tuple[Any, Any]:
    p, q = _expand(p, lo), _expand(q, lo)
    return p * lo + q * hi, q * lo + p * hi


def _stride_masks(step):
    shape = (step.blocks, step.span, 1)
    keep = None if step.keep.all() else ops.convert_to_tensor(step.keep.reshape(shape))
    descending = (
        None if not step.descending.any() else ops.convert_to_tensor(step.descending.reshape(shape))
    )
    return keep, descending


def _permute(v, index):
    """``v[index]`` along the first axis: one gather of whole wire rows (contiguous batch vectors).

    (Static slices plus a concatenation instead measured slower on XLA:CPU, under TensorFlow and JAX.)
    """
    return ops.take(v, ops.convert_to_tensor(np.asarray(index, dtype=np.int32)), axis=0)


def _network_topk(x, network, k, beta, distribution, art_lambda, rows):
    """Runs the network's execution plan on wire-major state (wires, batch): reshapes, no element gathers.

    With ``rows`` the rows are pushed forward with the scores (`_pushed_rows`);
    otherwise the top-k columns of the identity are swept back through the
    layers' saved weights (each layer is symmetric, so its transpose is itself).
    """
    plan = sorting_networks.execution_plan(network.kind, network.n, k)
    relaxation = (distribution, beta, art_lambda)
    if rows is not None:
        return _pushed_rows(x, rows, plan, relaxation)
    state = _padded(ops.transpose(x), plan)
    saved: list[Any] = []
    for step in plan.steps:
        if _is_permutation(step):
            state = _permute(state, _forward_index(step))
            saved.append(None)
            continue
        lo, hi, around = _split(state, step)
        p, q = _comparator(lo, hi, *relaxation, *_step_masks(step))[:2]
        state = _join(*_mix(lo, hi, p, q), around, step)
        saved.append((p, q))
    # Columns of the identity for the rank-ordered top wires, in the final row order.
    eye = np.zeros((plan.wires, k), dtype=np.float32)
    eye[plan.top, np.arange(k)] = 1.0
    state = ops.broadcast_to(ops.cast(eye, x.dtype)[:, None, :], (plan.wires, ops.shape(x)[0], k))
    for step, weights in zip(reversed(plan.steps), reversed(saved)):
        if _is_permutation(step):
            state = _permute_back(state, step)
            continue
        lo, hi, around = _split(state, step)
        state = _join(*_mix(lo, hi, *weights), around, step)
    return ops.transpose(state[plan.pad :], (1, 0, 2))


def _pushed_rows(x, rows, plan, relaxation):
    """``rows^T A`` (b, k): the rows pushed forward through the network with the scores ``x``.

    The backward pass is written out (a custom gradient): each layer's adjoint
    is one expression in the weights, slopes and differences its forward pass
    saved, where autodiff would take the comparator apart op by op. ``rows``
    are labels and get no gradient.
    """
    distribution, beta, art_lambda = relaxation
    rows = ops.stop_gradient(ops.cast(rows, x.dtype))

    @ops.custom_gradient
    def push(scores):
        state_x = _padded(ops.transpose(scores), plan)
        state_r = _padded(ops.transpose(rows), plan)
        saved: list[Any] = []
        for step in plan.steps:
            if _is_permutation(step):
                index = _forward_index(step)
                state_x, state_r = _permute(state_x, index), _permute(state_r, index)
                saved.append(None)
                continue
            keep, descending = _step_masks(step)
            lo_x, hi_x, around_x = _split(state_x, step)
            lo_r, hi_r, around_r = _split(state_r, step)
            p, q, diff, alpha = _comparator(
                lo_x, hi_x, distribution, beta, art_lambda, keep=keep, descending=descending
            )
            # d p / d diff: the slope, negated where the comparator is flipped, 0 where masked.
            slope = relaxations.comparator_slope(diff, alpha, distribution, beta, art_lambda)
            if descending is not None:
                slope = ops.where(descending, -slope, slope)
            if keep is not None:
                slope = ops.where(keep, slope, ops.zeros_like(slope))
            saved.append((p, q, slope, lo_x - hi_x, lo_r - hi_r))
            state_x = _join(*_mix(lo_x, hi_x, p, q), around_x, step)
            state_r = _join(*_mix(lo_r, hi_r, p, q), around_r, step)
        out = ops.transpose(_permute(state_r, plan.top))

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            # The output reads rows `plan.top` of the row state; the score state's final value is unused.
            into = np.full(plan.wires, len(plan.top), dtype=np.int32)
            into[plan.top] = np.arange(len(plan.top), dtype=np.int32)
            g_upstream = ops.concatenate(
                [ops.transpose(upstream), ops.zeros_like(ops.transpose(upstream)[:1])], axis=0
            )
            g_r = _permute(g_upstream, into)
            g_x = ops.zeros_like(g_r)
            for step, weights in zip(reversed(plan.steps), reversed(saved)):
                if _is_permutation(step):
                    g_x, g_r = _permute_back(g_x, step), _permute_back(g_r, step)
                    continue
                p, q, slope, delta_x, delta_r = weights
                glo_x, ghi_x, around_x = _split(g_x, step)
                glo_r, ghi_r, around_r = _split(g_r, step)
                # out_lo = p lo + q hi, out_hi = q lo + p hi, q = 1 - p: the layer's matrix is
                # symmetric, and d out / d p = +-(lo - hi) for both state rows.
                d_p = (glo_x - ghi_x) * delta_x + (glo_r - ghi_r) * delta_r
                d_diff = d_p * slope  # diff = hi - lo
                new_lo_x, new_hi_x = _mix(glo_x, ghi_x, p, q)
                g_x = _join(new_lo_x - d_diff, new_hi_x + d_diff, around_x, step)
                g_r = _join(*_mix(glo_r, ghi_r, p, q), around_r, step)
            return ops.transpose(g_x[plan.pad :])

        return out, grad

    return push(x)


def _padded(state, plan):
    return ops.pad(state, [[plan.pad, 0], [0, 0]]) if plan.pad else state


def _is_permutation(step):
    return isinstance(step, (sorting_networks.PermStep, sorting_networks.Compact))


def _forward_index(step):
    return step.index if isinstance(step, sorting_networks.PermStep) else step.rows


def _permute_back(state, step):
    """The transpose of a permutation step: a PermStep's inverse, or a Compact's expansion among zero rows."""
    if isinstance(step, sorting_networks.PermStep):
        return _permute(state, step.inverse)
    # Back among the dropped rows, whose adjoint is zero.
    return _permute(ops.concatenate([state, ops.zeros_like(state[:1])], axis=0), step.expand)


def _step_masks(step):
    if isinstance(step, sorting_networks.StrideStep):
        return _stride_masks(step)
    return None, None


def _split(state, step):
    """``(lo, hi, around)`` of a comparator step: the rows it reads, and the untouched rest."""
    if isinstance(step, sorting_networks.StrideStep):
        lo, hi, before, after = _stride_split(state, step)
        return lo, hi, (before, after)
    c = step.count
    return state[:c], state[c : 2 * c], state[2 * c :]


def _join(lo, hi, around, step):
    if isinstance(step, sorting_networks.StrideStep):
        before, after = around
        return _stride_join(lo, hi, before, after, step)
    return ops.concatenate([lo, hi, around], axis=0)


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
