r"""LapSum: a closed-form soft top-k (Struski, Bednarczyk, Podolak, Tabor, ICML 2025).

The soft membership of class ``i`` in the top ``k`` is

.. math::

    p_i = F\Bigl(\frac{s_i - b}{\alpha}\Bigr), \qquad
    F(x) = \begin{cases} \tfrac12 e^{x} & x \le 0 \\ 1 - \tfrac12 e^{-x} & x > 0 \end{cases},
    \qquad \sum_i p_i = k,

F the Laplace CDF and ``b`` the unique root of the constraint. Smaller
``alpha`` is closer to the hard top-k mask; ``k`` may be real and differ per
row. Between two consecutive sorted scores the constraint is a quadratic in
``e^{b / alpha}`` whose coefficients are a prefix sum of ``e^{-s_i / alpha}``
and a suffix sum of ``e^{s_i / alpha}``: ``b`` has a closed form (the paper's).

Ours: no full sort. If ``b`` lay below the ``M``-th largest score, those ``M``
classes would each have ``p > 1/2`` and the sum would exceed ``M / 2``; so for
``k <= M / 2`` the root lies above the ``M``-th largest score. The top ``2k``
scores (one ``top_k``) and one log-sum-exp of the rest (each below the root)
therefore give ``b`` exactly. A row with ``k > n / 2`` is solved on its
negated scores with ``n - k`` (``1 - F(x) = F(-x)``). Only where ``k`` is not
known when the function is traced does it sort the whole row. The prefix and
suffix sums are log-sum-exp scans over those ``M`` scores, so nothing
overflows in float32.

The gradient is written out: with ``x_i = (s_i - b) / alpha``,
``f_i = e^{-|x_i|} / 2`` the Laplace density and ``S = sum_l f_l``, implicit
differentiation of the constraint gives

.. math::

    \frac{\partial p_i}{\partial s_j} = \frac{f_i}{\alpha}\Bigl(\delta_{ij} - \frac{f_j}{S}\Bigr),
    \qquad \frac{\partial p_i}{\partial k} = \frac{f_i}{S}, \qquad
    \frac{\partial p_i}{\partial \alpha} = -\frac{f_i}{\alpha}\Bigl(x_i - \sum_l \frac{f_l}{S} x_l\Bigr),

so a vector-Jacobian product costs ``O(n)`` and no ``(n, n)`` matrix is formed.
"""

import math
from typing import Any

import numpy as np
from keras import backend, ops

from keras_topk import _backend, _inputs

__all__ = ["lapsum_topk", "log_lapsum_topk"]

_LOG_HALF = -math.log(2.0)
# Scans over at most this many top scores are one masked (m, m) log-sum-exp.
_DENSE_SCAN_MAX = 64
# Scaled scores below this come from masked (floored) classes.
_MASKED = -1e30


def lapsum_topk(scores: Any, k: Any, alpha: Any = 1.0) -> Any:
    r"""LapSum soft top-k membership ``p_i = F((s_i - b) / alpha)`` with ``sum_i p_i = k``.

    .. math::

        p_i = F\Bigl(\frac{s_i - b}{\alpha}\Bigr), \qquad \sum_i p_i = k, \qquad
        F(x) = \tfrac12 e^{x}\ (x \le 0), \quad 1 - \tfrac12 e^{-x}\ (x > 0)

    Args:
        scores: float tensor of shape ``(..., n)``; half precision is computed in float32.
        k: the soft size of the top set, ``0 < k < n``: a number, or a tensor of
            shape ``scores.shape[:-1]`` (one real ``k`` per row). Values known when
            traced are checked; a ``k`` known only at run time makes every row
            sort its scores (O(n log n)) instead of selecting its top ``2 min(k, n - k)``.
        alpha: the Laplace scale, ``> 0``; smaller is closer to the hard top-k
            mask. A number, or a scalar tensor or ``keras.Variable`` to learn it.

    Returns:
        ``p`` of the shape of ``scores``, each row summing to its ``k``, with a
        closed-form gradient for ``scores``, ``k`` and ``alpha``.

    Example:

    >>> import numpy as np
    >>> p = lapsum_topk(np.array([[3.0, 1.0, 0.0, -2.0]]), k=2, alpha=0.5)
    >>> np.round(np.asarray(p), 4).tolist()
    [[0.9966, 0.8161, 0.1839, 0.0034]]
    """
    return _membership(scores, k, alpha, log=False)


def log_lapsum_topk(scores: Any, k: Any, alpha: Any = 1.0) -> Any:
    r"""``log p`` of `lapsum_topk`, computed in log space (for log-likelihood losses).

    .. math::

        \log p_i = x_i - \log 2\ (x_i \le 0), \qquad
        \log p_i = \operatorname{log1p}\bigl(-\tfrac12 e^{-x_i}\bigr)\ (x_i > 0), \qquad
        x_i = \frac{s_i - b}{\alpha}

    Args:
        scores: float tensor of shape ``(..., n)``.
        k: as for `lapsum_topk`.
        alpha: as for `lapsum_topk`.

    Returns:
        ``log p`` of the shape of ``scores``: finite where ``p`` underflows, and
        its gradient ``(1 / p) dp`` is formed from bounded factors
        ``f_i / p_i <= 1``.

    Example:

    >>> import numpy as np
    >>> lp = log_lapsum_topk(np.array([[30.0, 0.0, -30.0]]), k=1, alpha=0.5)
    >>> np.round(np.asarray(lp), 2).tolist()
    [[-0.0, -30.69, -90.69]]
    """
    return _membership(scores, k, alpha, log=True)


# ---------------------------------------------------------------- validation


def _is_constant(x):
    """A Python or NumPy value (a tensor, even an eager one, may carry a gradient)."""
    return isinstance(x, (int, float, list, tuple, np.ndarray, np.generic))


def _check_alpha(alpha, dtype):
    value = _backend.concrete_value(alpha) if not hasattr(alpha, "assign") else None
    if value is not None:
        value = np.asarray(value, dtype=np.float64)
        if value.shape != ():
            raise ValueError(f"`alpha` must be a scalar, got shape {value.shape}.")
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"`alpha` must be a finite number > 0, got {float(value)}.")
    # A Python alpha is converted in the scores' dtype (0.7 in float32 is not 0.7).
    alpha = ops.convert_to_tensor(value if _is_constant(alpha) else alpha)
    if len(alpha.shape) != 0:
        raise ValueError(f"`alpha` must be a scalar, got shape {tuple(alpha.shape)}.")
    return ops.cast(alpha, dtype)


def _k_sizes(k, n):
    """The concrete values of ``k`` (checked in ``(0, n)``), or None when traced."""
    value = _backend.concrete_value(k)
    if value is None:
        return None
    value = np.asarray(value, dtype=np.float64)
    bad = ~((value > 0) & (value < n))
    if np.any(bad):
        raise ValueError(
            f"`k` must lie strictly between 0 and the number of classes, {n}; got "
            f"{value[bad].reshape(-1)[:5].tolist()}."
        )
    return value


def _membership(scores, k, alpha, log):
    scores = _inputs.standardize_scores(scores)
    n = _inputs.num_classes_of(scores)
    dtype = scores.dtype
    alpha = _check_alpha(alpha, dtype)
    sizes = _k_sizes(k, n)
    leading = tuple(ops.shape(scores)[:-1])
    # A Python or NumPy k is converted in the scores' dtype (0.3 in float32 is not 0.3).
    k = ops.cast(ops.convert_to_tensor(sizes if _is_constant(k) else k), dtype)
    if len(k.shape) and tuple(k.shape) != tuple(scores.shape[:-1]):
        raise ValueError(
            f"`k` must be a number or have the shape of the scores' rows, {tuple(scores.shape[:-1])}; "
            f"got shape {tuple(k.shape)}."
        )
    flat = ops.reshape(scores, (-1, n))
    k = ops.reshape(ops.broadcast_to(k, leading), (-1,))
    # The floor must stay finite after scaling by 1 / alpha; alpha is not known here.
    flat = _inputs.floor_masked_scores(flat, scale=1.0e4)
    if sizes is None:
        m, flip = n, False
    else:
        smaller = np.minimum(sizes, n - sizes)
        m = min(n, 2 * int(math.ceil(float(np.max(smaller)))))
        flip = m < n and bool(np.any(sizes > n / 2))
    out = _row_membership(flat, k, alpha, m, flip, log)
    return ops.reshape(out, leading + (n,))


# ---------------------------------------------------------------- the root


def lowest_log(dtype):
    """Stands in for ``log 0``: finite, and twice it does not overflow."""
    return float(np.finfo(backend.standardize_dtype(dtype)).min) / 8.0


def _scaled(s, alpha, center=None):
    # Shifting a row changes neither p nor its gradient; the max keeps exp bounded.
    if center is None:
        center = ops.stop_gradient(ops.max(s, axis=-1, keepdims=True))
    return _lift_masked((s - center) / alpha)


def _lift_masked(t):
    """Raises masked classes (floored far below any logit) to 1000 below the row's lowest live one.

    At the floor (about -1e35) the root's offset from it would round away, and
    with it the ties among masked classes; 1000 scaled units below every live
    class, their share of the top k is still e^-1000 unless k exceeds the live
    classes, and then it is exact.
    """
    live = t > _MASKED
    lowest = ops.min(ops.where(live, t, 0.0), axis=-1, keepdims=True)
    return ops.where(live, t, lowest - 1000.0)


def _top_sums(t, m):
    """From scaled scores ``t`` (b, n): the ``m`` largest and the log-sums the root needs.

    Returns ``(u, la, lb)`` of shape (b, m + 1) for ``j = 0..m``, relative to
    ``u_j`` (``u_0 = u_1``) so that no large magnitudes cancel:
    ``la[:, j] = log sum_{i <= j} e^{u_j - u_i}`` (``log 0`` for j = 0) and
    ``lb[:, j] = log sum_{i > j} e^{t_i - u_j}`` over all classes.
    """
    n = int(t.shape[-1])
    dtype = t.dtype
    low = lowest_log(dtype)
    u = ops.top_k(t, m, sorted=True)[0] if m < n else ops.flip(ops.sort(t, axis=-1), axis=-1)
    # The min, not u[:, -1:]: XLA:CPU turns a top_k whose last column is sliced
    # into a full sort (100 ms instead of 2 ms at b = 512, n = 1000).
    last = ops.min(u, axis=-1, keepdims=True)
    if m < n:
        # The classes outside the top m, each below the root: one masked log-sum-exp,
        # relative to the m-th score. Classes tied with it that top_k left out are
        # added back by count.
        rest = ops.logsumexp(ops.where(t < last, t - last, low), axis=-1, keepdims=True)
        left_out = ops.sum(ops.cast(t == last, dtype), axis=-1, keepdims=True) - ops.sum(
            ops.cast(u == last, dtype), axis=-1, keepdims=True
        )
        tied = ops.where(left_out > 0, ops.log(ops.maximum(left_out, 1.0)), low)
        rest = ops.logaddexp(rest, tied)
    else:
        rest = ops.full_like(last, low)
    first = ops.max(u, axis=-1, keepdims=True)
    if m <= _DENSE_SCAN_MAX:
        # Masked (m, m) log-sum-exps of differences (exact for ties, even at the
        # floor of masked classes); no slice of u, which XLA:CPU would turn, with
        # the top_k that made u, into a sort of the whole row.
        index = np.arange(m)
        diff = u[:, None, :] - u[:, :, None]  # [j, i] = u_i - u_j
        up = ops.convert_to_tensor(index[None, :] <= index[:, None])[None]
        la = ops.logsumexp(ops.where(up, -diff, low), axis=-1)
        lb = ops.logsumexp(ops.where(up, low, diff), axis=-1)
        lb0 = ops.logsumexp(u - first, axis=-1, keepdims=True)
    else:
        la = _log_cumsum_exp(-u, low) + u
        lb = _log_cumsum_exp(u, low, reverse=True) - u
        lb0 = lb[:, :1] + u[:, :1] - first
        lb = ops.concatenate([lb[:, 1:] + u[:, 1:] - u[:, :-1], ops.full_like(last, low)], 1)
    lb = ops.logaddexp(lb, rest + (last - u))
    lb0 = ops.logaddexp(lb0, rest + (last - first))
    la = ops.concatenate([ops.full_like(last, low), la], axis=1)
    lb = ops.concatenate([lb0, lb], axis=1)
    return ops.concatenate([first, u], axis=1), la, lb


def _log_cumsum_exp(v, low, reverse=False):
    """``log cumsum exp`` along axis 1 of (b, m) (from the end if ``reverse``).

    Hillis-Steele: ceil(log2 m) shifted log-add-exp steps, O(m log m) work in
    whole-array ops. (``keras.ops.associative_scan`` along axis 1 fails to
    compile under TensorFlow's XLA; flipping a ``top_k`` result makes XLA:CPU
    sort the whole row instead.)
    """
    m = int(v.shape[1])
    if m <= _DENSE_SCAN_MAX:
        # A masked (m, m) log-sum-exp: no slice of v, which XLA:CPU would turn,
        # with the top_k that made v, into a sort of the whole row.
        index = np.arange(m)
        keep = index[None, :] >= index[:, None] if reverse else index[None, :] <= index[:, None]
        terms = ops.where(ops.convert_to_tensor(keep)[None], v[:, None, :], low)
        return ops.logsumexp(terms, axis=-1)
    shift = 1
    while shift < m:
        fill = ops.full_like(v[:, :shift], low)
        if reverse:
            padded = ops.concatenate([v[:, shift:], fill], axis=1)
        else:
            padded = ops.concatenate([fill, v[:, : m - shift]], axis=1)
        v = ops.logaddexp(v, padded)
        shift *= 2
    return v


def _roots(t, k, m):
    """Roots ``c`` (b, J) of ``sum_i F(t_i - c) = k`` for sizes ``k`` (b, J), and ``log S``.

    ``S = sum_i f(t_i - c)``, the Laplace density summed over the row, comes
    from the same log-sums: ``S = (e^{c} A_j + e^{-c} B_j) / 2``.
    """
    u, la, lb = _top_sums(t, m)
    dtype = t.dtype
    j = ops.cast(ops.arange(1, m + 1), dtype)[None, :]
    # G(u_j) = sum_i F(t_i - u_j) = j - a_j / 2 + b_j / 2, increasing in j; the
    # root lies in [u_{j+1}, u_j] for j the number of G(u_j) <= k.
    g = (
        j
        - 0.5 * ops.exp(ops.minimum(la[:, 1:], 80.0))
        + 0.5 * ops.exp(ops.minimum(lb[:, 1:], 80.0))
    )
    count = ops.sum(ops.cast(g[:, None, :] <= k[:, :, None], "int32"), axis=-1)
    la = ops.take_along_axis(la, count, axis=1)
    lb = ops.take_along_axis(lb, count, axis=1)
    uj = ops.take_along_axis(u, count, axis=1)
    # With A = e^{la - u_j}, B = e^{lb + u_j} and e = j - k, the constraint is the
    # quadratic A z^2 - 2 e z - B = 0 in z = e^c:
    # z = (e + sqrt(e^2 + AB)) / A = B / (-e + sqrt(e^2 + AB)), AB = e^{la + lb}.
    # log(|e| + sqrt(e^2 + AB)) is taken in log space: AB underflows in float32
    # when the row's gaps are wide, and e may be 0.
    e = ops.cast(count, dtype) - k
    log_e = ops.log(ops.abs(e))
    log_ab = la + lb
    top = ops.maximum(log_e, 0.5 * log_ab)
    log_q = top + ops.log(
        ops.exp(log_e - top) + ops.sqrt(ops.exp(2.0 * (log_e - top)) + ops.exp(log_ab - 2.0 * top))
    )
    offset = ops.where(e > 0, log_q - la, lb - log_q)  # c - u_j
    c = uj + offset
    log_s = _LOG_HALF + ops.logaddexp(offset + la, lb - offset)
    return c, log_s


def _laplace_cdf(x, log):
    if log:
        return ops.where(
            x > 0, ops.log1p(-0.5 * ops.exp(-ops.maximum(x, 0.0))), ops.minimum(x, 0.0) + _LOG_HALF
        )
    half = 0.5 * ops.exp(-ops.abs(x))
    return ops.where(x > 0, 1.0 - half, half)


def _row_factor(x, log):
    """``f_i`` (for p) or ``f_i / p_i`` (for log p, at most 1) of ``x`` (b, ...)."""
    if log:
        return ops.where(x > 0, 1.0 / (2.0 * ops.exp(ops.minimum(x, 80.0)) - 1.0), 1.0)
    return 0.5 * ops.exp(-ops.abs(x))


def _row_membership(s, k, alpha, m, flip, log):
    """``p`` or ``log p`` (b, n) for per-row sizes ``k`` (b,), ``m`` top scores per row."""
    n = int(s.shape[-1])

    @ops.custom_gradient
    def membership(scores, sizes, scale):
        if flip:
            # 1 - F(x) = F(-x): the top-(n - k) of the negated row has the negated root.
            # Such a row is shifted by its minimum, near which its root lies.
            flipped = sizes > n / 2
            high = ops.stop_gradient(ops.max(scores, axis=-1, keepdims=True))
            live = (scores - high) / scale > _MASKED
            low = ops.stop_gradient(ops.min(ops.where(live, scores, high), axis=-1, keepdims=True))
            t = _scaled(scores, scale, ops.where(flipped[:, None], low, high))
            c, _ = _roots(
                ops.where(flipped[:, None], -t, t),
                ops.where(flipped, n - sizes, sizes)[:, None],
                m,
            )
            c = ops.where(flipped[:, None], -c, c)
        else:
            t = _scaled(scores, scale)
            c, _ = _roots(t, sizes[:, None], m)
        x = t - c
        out = _laplace_cdf(x, log)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            q = ops.softmax(-ops.abs(x), axis=-1)
            log_s = _LOG_HALF + ops.logsumexp(-ops.abs(x), axis=-1)
            w = upstream * _row_factor(x, log)
            total = ops.sum(w, axis=-1, keepdims=True)
            g_scores = (w - q * total) / scale
            if log:
                # d log p_i / dk = f_i / (p_i S): 1 / S for the classes below the root,
                # which overflows only where the true value does (S < 1e-38 in float32).
                g_sizes = total[:, 0] * ops.exp(-log_s)
            else:
                g_sizes = ops.sum(upstream * q, axis=-1)
            # t - q.t = x - q.x (per row), and x is small near the root: fewer digits lost.
            g_scale = -ops.sum(w * (x - ops.sum(q * x, axis=-1, keepdims=True))) / scale
            return g_scores, g_sizes, g_scale

        return out, grad

    return membership(s, k, alpha)


# ---------------------------------------------------------------- ranks 1..K


def _rank_sizes(s, num_ranks):
    """The sizes 1..J (J = min(K, n - 1)) broadcast over rows, and the top scores they need."""
    n = int(s.shape[-1])
    sizes = min(num_ranks, n - 1)
    k = ops.broadcast_to(
        ops.cast(ops.arange(1, sizes + 1), s.dtype)[None, :], (ops.shape(s)[0], sizes)
    )
    return k, min(n, 2 * sizes)


def _columns_to_ranks(memberships, num_ranks, n):
    """Rank probabilities from top-j memberships (last axis j = 1..J); top-n membership is 1."""
    if num_ranks == n:
        ones = ops.ones_like(memberships[..., :1])
        memberships = ops.concatenate([memberships, ones], axis=-1)
    previous = ops.concatenate(
        [ops.zeros_like(memberships[..., :1]), memberships[..., :-1]], axis=-1
    )
    return memberships - previous


def rank_attribution(s, num_ranks, alpha):
    """``A`` (b, n, K): ``A[:, i, r]`` = p(top-(r+1)) - p(top-r) of class i, for checked arguments.

    One ``top_k`` of ``min(n, 2K)`` scores gives the K roots.
    """
    n = int(s.shape[-1])
    if n == 1:
        return ops.ones_like(s)[:, :, None]
    k, m = _rank_sizes(s, num_ranks)
    alpha = ops.cast(alpha, s.dtype)

    @ops.custom_gradient
    def memberships(scores, scale):
        t = _scaled(scores, scale)
        c, _ = _roots(t, k, m)
        x = t[:, :, None] - c[:, None, :]
        out = _laplace_cdf(x, False)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            q = ops.softmax(-ops.abs(x), axis=1)
            w = upstream * _row_factor(x, False)
            total = ops.sum(w, axis=1, keepdims=True)
            g_scores = ops.sum(w - q * total, axis=-1) / scale
            mean_x = ops.sum(q * x, axis=1, keepdims=True)
            g_scale = -ops.sum(w * (x - mean_x)) / scale
            return g_scores, g_scale

        return out, grad

    return _columns_to_ranks(memberships(s, alpha), num_ranks, n)


def label_rank_attribution(s, rows, num_ranks, alpha):
    """``rows^T A`` (b, K) without forming ``A``: one (b, n) pass per rank.

    ``rows`` (b, n) are label rows (one-hot or soft) and get no gradient.
    """
    n = int(s.shape[-1])
    rows = ops.stop_gradient(ops.cast(rows, s.dtype))
    if n == 1:
        return ops.sum(rows, axis=-1, keepdims=True)
    k, m = _rank_sizes(s, num_ranks)
    sizes = int(k.shape[-1])
    alpha = ops.cast(alpha, s.dtype)

    @ops.custom_gradient
    def memberships(scores, scale):
        t = _scaled(scores, scale)
        c, log_s = _roots(t, k, m)
        columns = [
            ops.sum(rows * _laplace_cdf(t - c[:, j : j + 1], False), axis=-1) for j in range(sizes)
        ]
        out = ops.stack(columns, axis=-1)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            g_scores = ops.zeros_like(t)
            g_scale = ops.zeros_like(scale)
            for j in range(sizes):
                x = t - c[:, j : j + 1]
                f = 0.5 * ops.exp(-ops.abs(x))
                # q = f / S, with 1 / S finite where S underflows (log S is closed form).
                q = ops.minimum(f * ops.exp(-log_s[:, j : j + 1]), 1.0)
                w = upstream[:, j : j + 1] * rows * f
                total = ops.sum(w, axis=-1, keepdims=True)
                g_scores = g_scores + w - q * total
                mean_x = ops.sum(q * x, axis=-1, keepdims=True)
                g_scale = g_scale - ops.sum(w * (x - mean_x))
            return g_scores / scale, g_scale / scale

        return out, grad

    return _columns_to_ranks(memberships(s, alpha), num_ranks, n)


def _region_sums(values, log_terms, lower):
    """Per region ``r = 0..J``: ``(L_r, V_r)`` with ``sum_{j in r} v_j e^{l_j} = V_r e^{L_r}``.

    ``values``, ``log_terms`` are (b, J); ``lower`` picks ``j < r`` (else
    ``j >= r``). ``L_r`` is the largest ``l_j`` of the region (log-sum-exp
    style), so every ``e^{l_j - L_r} <= 1``; an empty region has ``V_r = 0``.
    """
    sizes = int(values.shape[-1])
    low = lowest_log(values.dtype)
    index = np.arange(sizes)
    region = np.arange(sizes + 1)
    keep = index[None, :] < region[:, None] if lower else index[None, :] >= region[:, None]
    keep = ops.convert_to_tensor(keep)[None]  # (1, J + 1, J)
    terms = ops.where(keep, log_terms[:, None, :], low)
    top = ops.max(terms, axis=-1)
    scaled = ops.where(keep, ops.exp(terms - top[:, :, None]), 0.0)
    return top, ops.sum(values[:, None, :] * scaled, axis=-1)


def label_index_rank_attribution(s, labels, num_ranks, alpha):
    """``A[y]`` (b, K) for integer labels ``y`` (b,): `label_rank_attribution` of one-hot rows.

    Forward and backward cost ``O(n + K^2)`` a row beyond the roots: with
    ``r_i`` the number of roots ``c_j >= t_i`` (roots fall with ``j``), the
    density is one-sided in each region, ``f_i(j) = e^{t_i - c_j} / 2`` for
    ``j <= r_i`` and ``e^{c_j - t_i} / 2`` otherwise, so
    ``sum_j a_j f_i(j) / S_j = (A_r e^{t_i} + B_r e^{-t_i}) / 2`` with (J + 1)
    per-row coefficients ``A_r, B_r``, kept in log-sum-exp form.
    """
    n = int(s.shape[-1])
    labels = ops.reshape(ops.cast(labels, "int32"), (-1, 1))
    if n == 1:
        return ops.ones_like(s)
    k, m = _rank_sizes(s, num_ranks)
    sizes = int(k.shape[-1])
    alpha = ops.cast(alpha, s.dtype)

    @ops.custom_gradient
    def memberships(scores, scale):
        t = _scaled(scores, scale)
        c, log_s = _roots(t, k, m)
        t_label = ops.take_along_axis(t, labels, axis=1)
        x_label = t_label - c
        out = _laplace_cdf(x_label, False)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            # d out_j / d t_i = f_y(j) delta_iy - f_y(j) f_i(j) / S_j.
            total = upstream * (0.5 * ops.exp(-ops.abs(x_label)))  # (b, J)
            # Each f_i(j) / S_j <= 1, so e^{t_i + la_r} and e^{lb_r - t_i} stay below 2.
            la, a = _region_sums(total, -c - log_s, lower=True)
            lb, bb = _region_sums(total, c - log_s, lower=False)
            # The region's coefficients, picked by where (fused, no gather): region
            # J (below every root) holds all but the top few classes.
            pick_la, pick_a = la[:, sizes : sizes + 1], a[:, sizes : sizes + 1]
            pick_lb, pick_b = lb[:, sizes : sizes + 1], bb[:, sizes : sizes + 1]
            for r in range(sizes - 1, -1, -1):
                above = t > c[:, r : r + 1]
                pick_la = ops.where(above, la[:, r : r + 1], pick_la)
                pick_a = ops.where(above, a[:, r : r + 1], pick_a)
                pick_lb = ops.where(above, lb[:, r : r + 1], pick_lb)
                pick_b = ops.where(above, bb[:, r : r + 1], pick_b)
            spread = 0.5 * (
                pick_a * ops.exp(ops.minimum(t + pick_la, 80.0))
                + pick_b * ops.exp(ops.minimum(pick_lb - t, 80.0))
            )
            is_label = ops.arange(n, dtype="int32")[None, :] == labels
            g_scores = ops.where(is_label, ops.sum(total, axis=-1, keepdims=True), 0.0) - spread
            g_scale = ops.zeros_like(scale)
            for j in range(sizes):
                x = t - c[:, j : j + 1]
                # q = f / S in log space: e^{-log S} overflows where S underflows.
                q = ops.exp(ops.minimum(_LOG_HALF - ops.abs(x) - log_s[:, j : j + 1], 0.0))
                mean_x = ops.sum(q * x, axis=-1, keepdims=True)
                g_scale = g_scale - ops.sum(total[:, j : j + 1] * (x_label[:, j : j + 1] - mean_x))
            return g_scores / scale, g_scale / scale

        return out, grad

    return _columns_to_ranks(memberships(s, alpha), num_ranks, n)
