"""Elementary symmetric polynomials in log space.

``log_elementary_symmetric(x, k)`` returns ``log e_i(exp(x))`` for i = 0..k
along the last axis, where ``e_i(z) = sum_{|S|=i} prod_{j in S} z_j``. These are
the coefficients of ``prod_j (1 + z_j X)``, truncated at degree k. The product is
taken as a balanced tree (Berrada et al., ICLR 2018): leaves ``1 + z_j X`` are
multiplied in pairs, level by level, so the depth is ``log2 n``. A node at level
l holds a polynomial of degree ``min(2^l, k)``; the product of two log-polynomials
is ``C_d = logsumexp_{i+j=d} (A_i + B_j)``, a masked ``(d+1) x (d+1)``
log-sum-exp. Work per level is ``(n / 2^l) min(2^l, k)^2``, ``O(kn)`` in all.

Gradients are plain autodiff. Every step is a log-sum-exp of sums, whose
derivative is a softmax: the backward pass multiplies and adds non-negative
weights only, with no cancellation, so float32 gradients are accurate to a few
ulps (the tests compare them with float64 and with the exact inclusion
probabilities ``d log e_i / d x_j = P(j in S)``, S an i-subset drawn with
probability proportional to ``prod_{j in S} z_j``). The reference's hand-written
backward uses an alternating series instead and loses digits to cancellation.
"""

import math
from typing import Any

import numpy as np
from keras import backend, ops

from keras_topk import _config, _inputs


def log_elementary_symmetric(x: Any, k: int) -> Any:
    r"""Log elementary symmetric polynomials of ``exp(x)``, degrees 0..k.

    .. math::

        \mathrm{out}[..., i] = \log \sum_{|S| = i} \exp\Bigl(\sum_{j \in S} x_{..., j}\Bigr),
        \qquad i = 0, \dots, k

    Args:
        x: float tensor of shape ``(..., n)`` (log of the roots ``z``). Half
            precision is computed in float32, float64 is kept. ``-inf``
            entries (zero roots) are allowed and contribute nothing.
        k: the highest degree, ``0 <= k <= n``.

    Returns:
        Tensor of shape ``(..., k + 1)``; entry 0 is 0 (``e_0 = 1``). Where a
        coefficient is exactly zero (only when entries of ``x`` are ``-inf``)
        its log is a large negative finite number instead of ``-inf``, so that
        values and gradients stay finite.

    Example:

    >>> import numpy as np
    >>> out = log_elementary_symmetric(np.log([[1.0, 2.0, 3.0]]), k=3)
    >>> np.round(np.exp(np.asarray(out)), 6).tolist()  # e_0..e_3 of (1, 2, 3)
    [[1.0, 6.0, 11.0, 6.0]]
    """
    x = _inputs.standardize_scores(x)
    n = _inputs.num_classes_of(x)
    k = _config.check_int("k", k, minimum=0)
    _config.check_k_fits_classes("k", k, n, strict=False)
    flat = ops.reshape(x, (-1, n))
    out = log_esp_2d(flat, k)
    if len(x.shape) == 2:
        return out
    return ops.reshape(out, tuple(ops.shape(x)[:-1]) + (k + 1,))


def lowest_log(dtype):
    """The stand-in for ``log 0``: finite, and twice it still does not overflow."""
    return float(np.finfo(backend.standardize_dtype(dtype)).min) / 8.0


def log_esp_2d(x, k):
    """``log e_0..e_k`` of ``exp(x)`` for ``x`` of shape (b, n), arguments checked."""
    n = int(x.shape[-1])
    dtype = x.dtype
    if k == 0:
        return ops.zeros_like(x[:, :1])
    neg = lowest_log(dtype)
    # -inf would make the backward of an all-zero log-sum-exp 0 * inf = NaN.
    x = _clamp_below(x, neg)
    size = 1 << max(n - 1, 0).bit_length()
    if size > n:
        x = ops.pad(x, ((0, 0), (0, size - n)), constant_values=neg)
    # Leaves: the polynomials 1 + z_j X, as log-coefficients (0, x_j).
    poly = ops.stack([ops.zeros_like(x), x], axis=-1)
    degree = 1
    nodes = size
    while nodes > 1:
        nodes //= 2
        pairs = ops.reshape(poly, (-1, nodes, 2, degree + 1))
        poly = _log_poly_mul(pairs[:, :, 0, :], pairs[:, :, 1, :], degree, min(2 * degree, k), neg)
        degree = min(2 * degree, k)
    return poly[:, 0, : k + 1]


def _log_poly_mul(a, b, degree, out_degree, neg):
    """Truncated product of log-polynomials of ``degree``: ``C_d = logsumexp_{i+j=d} a_i + b_j``."""
    d = np.arange(out_degree + 1)[:, None]
    i = np.arange(degree + 1)[None, :]
    j = d - i
    valid = (j >= 0) & (j <= degree)
    index = np.clip(j, 0, degree).reshape(-1).astype("int32")
    nodes = int(a.shape[1])
    b_j = ops.reshape(ops.take(b, index, axis=-1), (-1, nodes, out_degree + 1, degree + 1))
    terms = a[:, :, None, :] + b_j
    terms = ops.where(
        ops.convert_to_tensor(valid), terms, ops.convert_to_tensor(neg, dtype=terms.dtype)
    )
    out = logsumexp(terms)
    # Coefficients that are exactly zero (padding) would otherwise drift to
    # ever larger negative values, level after level.
    return _clamp_below(out, neg)


def _clamp_below(x, neg):
    # `where` rather than `maximum`: a value at the floor (a zero coefficient)
    # passes no gradient, also when it lands exactly on it.
    return ops.where(x > neg, x, ops.convert_to_tensor(neg, dtype=x.dtype))


def logsumexp(x):
    """``log sum exp`` over the last axis, finite for any finite ``x``.

    Under XLA the maximum and the exponentials are computed in separate fusions,
    and a producer such as ``a * b - c`` may be contracted to one FMA in one of
    them only: for entries of magnitude 1e23 the two then differ by ~1e16 and
    ``exp(x - max)`` overflows. The shifted values are therefore capped at 0 (a
    value cap that keeps the gradient of 1 an uncapped entry has).
    """
    top = ops.stop_gradient(ops.max(x, axis=-1, keepdims=True))
    shifted = x - top
    shifted = ops.where(shifted > 0, shifted - ops.stop_gradient(shifted), shifted)
    return top[..., 0] + ops.log(ops.sum(ops.exp(shifted), axis=-1))


def linear_fits(n, k, dtype, factor=1.0):
    """Whether ``elementary_symmetric_2d`` of ``n`` roots in ``[0, 1]`` stays finite.

    Every coefficient of degree ``d <= k`` of such roots is at most ``C(n, d)``;
    ``factor`` bounds what the caller multiplies them by. A margin of 2**10 is
    kept for the backward pass, whose adjoints are sums of the same products.
    """
    largest = max(math.comb(n, d) for d in range(min(k, n) + 1))
    return largest * factor * 2.0**10 < float(np.finfo(backend.standardize_dtype(dtype)).max)


def elementary_symmetric_2d(z, k):
    """``e_0..e_k`` (``k <= n``) of non-negative roots ``z`` of shape (b, n), in linear space: (b, k + 1).

    The fast path of the smooth top-k SVM, whose roots all lie in ``[0, 1]``:
    products and sums of non-negative numbers, with no exp or log, so nothing
    cancels and values and gradients are accurate to a few ulps. Terms that
    underflow are below the rounding of any sum that also holds a term near 1.
    The caller checks ``linear_fits`` (no overflow).

    The tree is cut for XLA:CPU, where every array that is written out costs
    a pass over memory and every kernel a dispatch: the columns are cut into
    8 contiguous blocks whose polynomials are multiplied in one expression
    (three tree levels, which XLA can fuse), and the same again on the ~n/8
    products, until one column is left. Each degree is its own (b, columns)
    array: a trailing degree axis or gathers would defeat vectorisation.
    """
    poly, degree = [None, z], 1
    width = int(z.shape[-1])
    while width > 1:
        if poly[1] is not z and width <= _BARRIER_WIDTH:
            poly = [None] + [_materialize(c) for c in poly[1:]]
        blocks = min(_BLOCKS, width)
        columns = -(-width // blocks)
        if columns * blocks > width:
            # Zero roots: the polynomial 1.
            poly = [None] + [ops.pad(c, ((0, 0), (0, columns * blocks - width))) for c in poly[1:]]
        pieces = [ops.split(c, blocks, axis=1) for c in poly[1:]]
        parts = [([None] + [piece[i] for piece in pieces], degree) for i in range(blocks)]
        while len(parts) > 1:
            merged = [_poly_mul(*parts[i], *parts[i + 1], k) for i in range(0, len(parts) - 1, 2)]
            parts = merged + parts[len(merged) * 2 :]
        poly, degree = parts[0]
        width = columns
    return ops.stack([ops.ones_like(z[:, 0])] + [c[:, 0] for c in poly[1 : k + 1]], axis=-1)


_BLOCKS = 8
# Narrower stages are cut apart by `_materialize`.
_BARRIER_WIDTH = 16


def _materialize(x):
    """``x``, exactly, through a reduction in both directions.

    Left alone, XLA fuses the last, narrow stages (and their gradients) into
    one loop that recomputes each block's product once per element it feeds:
    up to 20x slower at n = 100, k = 10. A reduction cannot be fused into
    its consumers, so it makes XLA write the array out; ``x + 0`` is exact.
    """

    def through(v):
        return ops.sum(ops.stack([v, ops.zeros_like(v)], axis=-1), axis=-1)

    @ops.custom_gradient
    def identity(v):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return through(upstream)

        return through(v), grad

    return identity(x)


def _poly_mul(left, left_degree, right, right_degree, k):
    """Product of two polynomials given as lists ``[None, c_1, ..., c_d]`` (``c_0 = 1``), truncated at k."""
    degree = min(left_degree + right_degree, k)
    out = [None]
    for d in range(1, degree + 1):
        total = None
        for i in range(max(0, d - right_degree), min(d, left_degree) + 1):
            j = d - i
            term = right[j] if i == 0 else left[i] if j == 0 else left[i] * right[j]
            total = term if total is None else total + term
        out.append(total)
    return out, degree
