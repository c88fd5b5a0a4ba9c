"""LapSum soft top-k (keras_topk.ops.lapsum): against a float64 root finder, finite
differences, autodiff of the root-finding definition, and brute force."""

import keras
import numpy as np
import pytest
from keras import backend, ops

from keras_topk.losses import TopKCrossEntropy
from keras_topk.ops import lapsum, lapsum_topk, log_lapsum_topk, soft_topk
from tests.references import autodiff


def _float64_is_kept():
    return backend.standardize_dtype(ops.convert_to_tensor(np.float64(1.0)).dtype) == "float64"


needs_float64 = pytest.mark.skipif(
    not _float64_is_kept(), reason="this backend computes float64 as float32 (JAX without x64)"
)


# ------------------------------------------------------------- references


def laplace_cdf(x):
    return np.where(x > 0, 1.0 - 0.5 * np.exp(-np.abs(x)), 0.5 * np.exp(-np.abs(x)))


def root(s, k, alpha):
    """b with sum_i F((s_i - b) / alpha) = k, by bisection in float64 to the last bit.

    For a row shifted by its maximum (the function is shift invariant), so that
    b's rounding is relative to the row's spread, not to its offset.
    """
    s = np.asarray(s, dtype=np.float64) - np.max(s)
    lo, hi = s.min() - 60.0 * alpha - 1.0, 60.0 * alpha + 1.0
    for _ in range(2000):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        x = (s - mid) / alpha
        # sum F - k with the count of classes above b taken out exactly: where k is
        # an integer and the gaps are wide, sum F rounds to k over a wide range of b.
        above = x > 0
        excess = (np.sum(above) - k) + 0.5 * (np.sum(np.exp(x[~above])) - np.sum(np.exp(-x[above])))
        if excess > 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def membership(s, k, alpha):
    s = np.asarray(s, dtype=np.float64)
    s = s - s.max(axis=-1, keepdims=True)
    k = np.broadcast_to(np.asarray(k, dtype=np.float64), s.shape[:-1])
    return np.stack([laplace_cdf((row - root(row, kk, alpha)) / alpha) for row, kk in zip(s, k)])


def rows_of(kind, rng, n=9):
    if kind == "random":
        return rng.normal(size=(3, n)) * 2.0
    if kind == "ties":
        return np.round(rng.normal(size=(3, n)))
    if kind == "all_equal":
        return np.full((3, n), 0.7)
    if kind == "one_huge":
        x = rng.normal(size=(3, n))
        x[:, 2] = 1e3
        return x
    if kind == "n2":
        return rng.normal(size=(3, 2))
    raise ValueError(kind)


KINDS = ("random", "ties", "all_equal", "one_huge", "n2")


def sizes_for(n):
    """k near 0, real, integer, n / 2, above n / 2 and near n."""
    return sorted({1e-3, 0.4, 1.0, min(2.5, n - 0.6), n / 2, n - 0.6, n - 1e-3})


# ------------------------------------------------------------- values


@needs_float64
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("alpha", [0.05, 0.6, 4.0])
def test_membership_matches_the_root_finder(kind, alpha, rng):
    x = rows_of(kind, rng)
    n = x.shape[-1]
    for k in sizes_for(n):
        expected = membership(x, k, alpha)
        p = np.asarray(lapsum_topk(x, k, alpha))
        # Rounding of (s - b) / alpha: 1e-16 of the row's scaled spread (2e4 at most here).
        spread = np.max(np.ptp(x, axis=-1)) / alpha
        np.testing.assert_allclose(p, expected, rtol=0, atol=1e-12 + 1e-15 * spread)
        np.testing.assert_allclose(p.sum(-1), k, rtol=1e-12)
        # log p in log space: finite where p underflows, equal to log of the root finder's p.
        log_p = np.asarray(log_lapsum_topk(x, k, alpha))
        assert np.all(np.isfinite(log_p))
        shown = expected > 1e-300
        np.testing.assert_allclose(
            log_p[shown], np.log(expected[shown]), rtol=1e-9, atol=1e-12 + 1e-15 * spread
        )


@needs_float64
def test_the_root_is_recovered_from_p_and_is_affine_in_the_scores(rng):
    # F^-1(p_i) = (s_i - b) / alpha: one b per row, equal to the bisection's.
    x, alpha = rng.normal(size=(4, 12)), 0.8
    k = np.array([0.5, 3.0, 6.0, 10.2])
    p = np.asarray(lapsum_topk(x, k, alpha))
    inverse = np.where(p > 0.5, -np.log(2.0 * (1.0 - p)), np.log(2.0 * p))
    b = x - alpha * inverse
    np.testing.assert_allclose(b, b[:, :1] * np.ones_like(b), atol=1e-10)
    expected = [root(r, kk, alpha) + r.max() for r, kk in zip(x, k)]
    np.testing.assert_allclose(b[:, 0], expected, atol=1e-12)


@needs_float64
def test_per_row_real_k(rng):
    x = rng.normal(size=(5, 11))
    k = np.array([0.01, 1.7, 5.5, 8.25, 10.99])
    p = np.asarray(lapsum_topk(x, k, 0.5))
    np.testing.assert_allclose(p, membership(x, k, 0.5), atol=1e-12)
    np.testing.assert_allclose(p.sum(-1), k, rtol=1e-12)
    # Leading axes: k has the rows' shape.
    p3 = np.asarray(lapsum_topk(x[None], k[None], 0.5))
    np.testing.assert_allclose(p3[0], p, atol=1e-15)


def test_traced_k_sorts_the_row_and_agrees():
    # A k known only at run time takes the full-sort path (m = n); the values agree.
    if keras.backend.backend() != "jax":
        pytest.skip("traces with jax.jit")
    import jax

    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 10)).astype("float32")
    k = np.array([0.5, 3.0, 7.0, 9.5], "float32")
    traced = jax.jit(lambda s, kk: lapsum_topk(s, kk, 0.5))(x, k)
    np.testing.assert_allclose(np.asarray(traced), np.asarray(lapsum_topk(x, k, 0.5)), atol=2e-6)


@needs_float64
@pytest.mark.parametrize("kind", KINDS)
def test_soft_topk_columns_are_rank_probabilities(kind, rng):
    x = rows_of(kind, rng)
    n = x.shape[-1]
    for num_ranks in sorted({1, 2, min(5, n), n}):
        a = np.asarray(soft_topk(x, num_ranks, method="lapsum", inverse_temperature=2.0))
        assert a.shape == x.shape + (num_ranks,)
        # cumsum over columns = top-j membership, for j < n by the root finder, 1 for j = n.
        expected = np.stack(
            [membership(x, j, 0.5) if j < n else np.ones_like(x) for j in range(1, num_ranks + 1)],
            axis=-1,
        )
        np.testing.assert_allclose(np.cumsum(a, -1), expected, atol=1e-12)
        np.testing.assert_allclose(a.sum(1), np.ones((3, num_ranks)), atol=1e-12)


def test_small_alpha_is_the_hard_top_k_mask():
    x = np.array([[0.3, 2.0, -1.0, 1.1, 0.9]], "float32")
    a = np.asarray(soft_topk(x, 3, method="lapsum", inverse_temperature=1e3))
    hard = np.zeros((1, 5, 3), "float32")
    hard[0, 1, 0] = hard[0, 3, 1] = hard[0, 4, 2] = 1.0
    np.testing.assert_allclose(a, hard, atol=1e-6)
    # All equal scores: every class holds k / n of the top k.
    np.testing.assert_allclose(np.asarray(lapsum_topk(np.zeros((2, 8)), 3.0, 0.1)), 3.0 / 8, 1e-6)


def test_float32_is_stable_on_extreme_rows(rng):
    """Scaled scores up to 5e6: no overflow, rows sum to k, gradients finite.

    Against float64 on the same (float32) inputs, p is held to its float32 rounding:
    x_i = (s_i - b) / alpha near the root is of the size of c = (b - max s) / alpha,
    so its float32 error is a few ulps of |c|.
    """
    x = (rng.normal(size=(4, 40)) * 100.0).astype("float32")
    x[0, 5], x[1] = 5e3, 0.25
    for alpha in (1e-3, 0.1, 10.0):
        for k in (1e-3, 1.0, 3.5, 20.0, 39.9):
            p32 = np.asarray(lapsum_topk(x, k, alpha))
            assert np.all(np.isfinite(p32))
            rows64 = x.astype(np.float64)
            # The root relative to the score it is computed from (the max, or the
            # min for k > n / 2).
            c = np.array(
                [root(r, k, alpha) if k <= 20 else root(r, k, alpha) + np.ptp(r) for r in rows64]
            )
            tolerance = 1e-5 + 4 * 6e-8 * np.abs(c / alpha)[:, None]
            assert np.all(np.abs(p32 - membership(rows64, k, alpha)) <= tolerance)
            assert np.all(np.abs(p32.sum(-1) - k) <= 1e-5 * k + np.sum(tolerance, axis=-1))
            lp32 = np.asarray(log_lapsum_topk(x, k, alpha))
            assert np.all(np.isfinite(lp32)) and np.all(lp32 <= 0)
            v = ops.convert_to_tensor(rng.normal(size=x.shape).astype("float32"))
            g = autodiff.grad(lambda s: lapsum_topk(s, k, alpha) * v, x)
            g_log = autodiff.grad(lambda s: log_lapsum_topk(s, k, alpha) * v, x)
            assert np.all(np.isfinite(g)) and np.all(np.isfinite(g_log))


def test_masked_classes_get_nothing():
    x = np.array([[1.0, -np.inf, 0.5, -np.inf, 0.0]], "float32")
    p = np.asarray(lapsum_topk(x, 1.5, 0.5))
    assert p[0, 1] == 0 and p[0, 3] == 0
    np.testing.assert_allclose(p[0, [0, 2, 4]], membership(x[:, [0, 2, 4]], 1.5, 0.5)[0], atol=1e-6)
    g = autodiff.grad(lambda s: lapsum_topk(s, 1.5, 0.5) * np.arange(5.0, dtype="float32"), x)
    assert np.all(np.isfinite(g)) and g[0, 1] == 0 and g[0, 3] == 0


# ------------------------------------------------------------- gradients


def central_differences(fn, x, h=1e-6):
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += h
        down[index] -= h
        out[index] = (np.sum(fn(up)) - np.sum(fn(down))) / (2 * h)
    return out


def directional_check(g, fn, x, rng, atol_scale=3e-6, directions=3, h=1e-6):
    """<g, w> against the central difference of sum(fn) along random directions w."""
    x = np.asarray(x, dtype=np.float64)
    for _ in range(directions):
        w = rng.normal(size=x.shape)
        fd = (np.sum(fn(x + h * w)) - np.sum(fn(x - h * w))) / (2 * h)
        assert abs(np.sum(g * w) - fd) <= atol_scale * max(1.0, abs(fd), np.abs(g).sum())


def newton_definition(s, k, alpha, b_star):
    """p from the root-finding definition, written for autodiff.

    ``b_star`` is the bisection's root (a constant); one Newton step from it,
    ``b = b* - (sum F - k) / (d sum F / d b)``, equals b* and carries the
    derivatives of the implicit root. Nothing of keras_topk is used.
    """
    b_star = ops.convert_to_tensor(b_star[:, None], dtype=s.dtype)
    x = (s - b_star) / alpha
    half = 0.5 * ops.exp(-ops.abs(x))
    cdf = ops.where(x > 0, 1.0 - half, half)
    residual = ops.sum(cdf, axis=-1, keepdims=True) - k
    slope = -ops.sum(half, axis=-1, keepdims=True) / alpha
    b = b_star - residual / slope
    x = (s - b) / alpha
    half = 0.5 * ops.exp(-ops.abs(x))
    return ops.where(x > 0, 1.0 - half, half)


@needs_float64
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("log", [False, True])
def test_gradients_match_finite_differences_and_implicit_autodiff(kind, log, rng):
    x = rows_of(kind, rng, n=6)[:2]
    if kind == "one_huge":
        x[:, 2] = 8.0  # finite differences need p away from 0 and 1 at this alpha
    n = x.shape[-1]
    alpha = 0.7
    v = rng.normal(size=x.shape)
    vt = ops.convert_to_tensor(v)
    fn = log_lapsum_topk if log else lapsum_topk
    # Central differences: O(h^2) = 1e-12 where F is smooth, O(h) = 1e-6 at a tie
    # (f has a kink at x = 0); the autodiff of the definition is held to 1e-10.
    for k in (1e-3, 1.0, n / 2 + 0.3, n - 1e-3):
        if log and k < 0.01:
            continue  # log p ~ -1e3 / alpha: central differences lose every digit
        k_rows = np.full(x.shape[0], k)
        g = autodiff.grad(lambda s: fn(s, k_rows, alpha) * vt, x)
        directional_check(g, lambda s: np.asarray(fn(s, k_rows, alpha)) * v, x, rng)
        g_k = autodiff.grad(lambda kk: fn(x, kk, alpha) * vt, k_rows)
        fd_k = central_differences(lambda kk: np.asarray(fn(x, kk, alpha)) * v, k_rows)
        np.testing.assert_allclose(g_k, fd_k, rtol=0, atol=3e-6 * max(1.0, np.abs(fd_k).max()))
        g_a = autodiff.grad(lambda a: fn(x, k_rows, a) * vt, np.float64(alpha))
        fd_a = central_differences(
            lambda a: np.asarray(fn(x, k_rows, float(a))) * v, np.float64(alpha)
        )
        np.testing.assert_allclose(g_a, fd_a, rtol=3e-6, atol=1e-7)
        # Autodiff of the definition (bisection root + one Newton step).
        b_star = np.array([root(r, k, alpha) + r.max() for r in x])

        def defined(s):
            p = newton_definition(s, k, alpha, b_star)
            return (ops.log(p) if log else p) * vt

        np.testing.assert_allclose(g, autodiff.grad(defined, x), rtol=0, atol=1e-10)


@needs_float64
@pytest.mark.parametrize("kind", KINDS)
def test_rank_matrix_and_label_rows_gradients(kind, rng):
    x = rows_of(kind, rng, n=6)
    if kind == "one_huge":
        x[:, 2] = 8.0
    n = x.shape[-1]
    num_ranks = min(4, n)
    w = rng.normal(size=x.shape + (num_ranks,))
    wt = ops.convert_to_tensor(w)

    def matrix(s):
        return soft_topk(s, num_ranks, method="lapsum", inverse_temperature=1.5)

    g = autodiff.grad(lambda s: matrix(s) * wt, x)
    directional_check(g, lambda s: np.asarray(matrix(s)) * w, x, rng)
    # The label path (rows^T A without A) equals the dense matrix, values and gradients.
    rows = np.eye(n)[rng.integers(0, n, size=x.shape[0])]
    rows[0] = rng.dirichlet(np.ones(n))  # a soft row too
    u = ops.convert_to_tensor(rng.normal(size=(x.shape[0], num_ranks)))

    def via_rows(s):
        return lapsum.label_rank_attribution(s, rows, num_ranks, 1.0 / 1.5) * u

    def via_matrix(s):
        return ops.einsum("bn,bnk->bk", ops.convert_to_tensor(rows), matrix(s)) * u

    value, g_rows = autodiff.value_and_grad(via_rows, x)
    value_m, g_matrix = autodiff.value_and_grad(via_matrix, x)
    np.testing.assert_allclose(value, value_m, atol=1e-13)
    np.testing.assert_allclose(g_rows, g_matrix, atol=1e-12)


# ------------------------------------------------------------- a learnable alpha


def test_alpha_may_be_a_keras_variable_in_a_model():
    # A layer whose weight is alpha: model.fit recovers the alpha that made the
    # targets, through the closed-form gradient for alpha.
    class SoftTop(keras.layers.Layer):
        def build(self, input_shape):
            self.alpha = self.add_weight(shape=(), initializer=keras.initializers.Constant(2.0))

        def call(self, s):
            return lapsum_topk(s, 2.0, self.alpha)

    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = np.asarray(lapsum_topk(x, 2.0, 0.5))
    model = keras.Sequential([keras.Input((6,)), SoftTop()])
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    model.fit(x, y, epochs=40, batch_size=64, verbose=0)
    assert abs(float(model.layers[0].alpha.numpy()) - 0.5) < 0.05


# ------------------------------------------------------------- validation and the loss


def test_bad_arguments_name_the_argument():
    x = np.zeros((2, 4), "float32")
    for k in (0.0, 4.0, -1.0, [1.0, 4.5]):
        with pytest.raises(ValueError, match="`k`"):
            lapsum_topk(x, k, 1.0)
    for alpha in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="`alpha`"):
            lapsum_topk(x, 1.0, alpha)
    with pytest.raises(ValueError, match="`k`"):
        lapsum_topk(x, np.ones(3), 1.0)
    with pytest.raises(ValueError, match="`method`"):
        soft_topk(x, 2, method="lapsun")


def _loss_reference(x, y, p_k, beta):
    """P(y) = p_1 softmax_y + sum_{j>=2} p_j q_j(y), q_j the top-j membership by bisection."""
    out = []
    for row, label in zip(np.asarray(x, np.float64), y):
        softmax = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
        prob = p_k[0] * softmax[label]
        for j, weight in enumerate(p_k[1:], start=2):
            q = 1.0 if j >= len(row) else membership(row[None], j, 1.0 / beta)[0, label]
            prob += weight * q
        out.append(-np.log(prob * (1 - 2e-7) + 1e-7))
    return np.array(out)


@pytest.mark.parametrize("n", [2, 5, 12])
def test_topk_cross_entropy_lapsum_matches_the_definition(n, rng):
    x = rng.normal(size=(6, n)).astype("float32") * 2
    y = rng.integers(0, n, size=6)
    p_k = (0.2, 0.2, 0.2, 0.2, 0.2) if n >= 5 else (0.5, 0.5)
    loss = TopKCrossEntropy(p_k=p_k, method="lapsum", inverse_temperature=2.0, reduction=None)
    expected = _loss_reference(x, y, p_k, 2.0)
    np.testing.assert_allclose(np.asarray(loss(y, x)), expected, rtol=2e-5)
    # Dense one-hot rows take the (b, n, K) path: the same values and gradients.
    onehot = np.eye(n, dtype="float32")[y]
    np.testing.assert_allclose(np.asarray(loss(onehot, x)), expected, rtol=2e-5)
    g_sparse = autodiff.grad(lambda s: loss(y, s), x)
    g_dense = autodiff.grad(lambda s: loss(onehot, s), x)
    np.testing.assert_allclose(g_sparse, g_dense, atol=1e-6)
    directional_check(g_sparse, lambda s: _loss_reference(s, y, p_k, 2.0), x, rng, 1e-4, h=1e-4)


# ------------------------------------------------------------- integer labels


@needs_float64
@pytest.mark.parametrize("kind", KINDS + ("wide_gaps",))
def test_label_index_path_matches_rank_matrix(kind, rng):
    # A[y] from integer labels (O(n + K^2) gradient, no (b, n, K) tensor) equals
    # the dense matrix's label row, values and gradients for scores and alpha;
    # the alpha gradient also against central differences.
    x = rng.normal(size=(3, 12)) * 40.0 if kind == "wide_gaps" else rows_of(kind, rng, n=8)
    n = x.shape[-1]
    num_ranks = min(4, n)
    labels = rng.integers(0, n, size=x.shape[0])
    labels[0] = int(np.argmax(x[0]))  # a label above every root too
    u = rng.normal(size=(x.shape[0], num_ranks))
    alpha = 1.0 / 1.5

    def via_labels(s, a=alpha):
        return lapsum.label_index_rank_attribution(s, labels, num_ranks, a) * u

    def via_matrix(s):
        matrix = soft_topk(s, num_ranks, method="lapsum", inverse_temperature=1.5)
        return ops.einsum("bn,bnk->bk", ops.convert_to_tensor(np.eye(n)[labels]), matrix) * u

    value, g = autodiff.value_and_grad(via_labels, x)
    value_m, g_matrix = autodiff.value_and_grad(via_matrix, x)
    np.testing.assert_allclose(value, value_m, atol=1e-13)
    np.testing.assert_allclose(g, g_matrix, atol=1e-12)
    x_t = ops.convert_to_tensor(x)
    g_alpha = autodiff.grad(lambda a: via_labels(x_t, a), np.float64(alpha))
    h = 1e-6
    # NumPy float64 alphas: a Python float would be converted in float32 (keras' floatx).
    plus, minus = np.float64(alpha + h), np.float64(alpha - h)
    fd = (np.sum(via_labels(x, plus)) - np.sum(via_labels(x, minus))) / (plus - minus)
    np.testing.assert_allclose(g_alpha, fd, rtol=1e-6, atol=1e-8)


def test_label_index_path_float32_wide_gaps_is_finite_and_matches_rows(rng):
    # Gaps of hundreds of alpha: S_j underflows float32; the region sums keep
    # every factor f_i / S_j <= 1, so the gradient stays finite and equals the
    # one-hot-row path's wherever that one is finite.
    x = (rng.normal(size=(4, 30)) * 300.0).astype("float32")
    labels = rng.integers(0, 30, size=4)
    u = rng.normal(size=(4, 5)).astype("float32")
    g = autodiff.grad(lambda s: lapsum.label_index_rank_attribution(s, labels, 5, 1.0) * u, x)
    g_rows = autodiff.grad(
        lambda s: lapsum.label_rank_attribution(s, np.eye(30, dtype="float32")[labels], 5, 1.0) * u,
        x,
    )
    assert np.all(np.isfinite(g))
    finite = np.isfinite(g_rows)
    np.testing.assert_allclose(g[finite], g_rows[finite], atol=1e-6)


def test_label_index_path_single_class():
    out = lapsum.label_index_rank_attribution(np.array([[0.3], [-2.0]]), np.array([0, 0]), 3, 1.0)
    np.testing.assert_allclose(np.asarray(out), [[1.0], [1.0]])
