import itertools

import keras
import numpy as np
import pytest
from scipy.special import logsumexp

from keras_topk.ops import log_elementary_symmetric
from keras_topk.ops.symmetric_polynomials import lowest_log
from tests.references import autodiff


def enumerated(x, k):
    """log e_0..e_k of exp(x) (1-D, float64) by summing over every i-subset."""
    n = len(x)
    return np.array(
        [
            logsumexp([x[list(s)].sum() for s in itertools.combinations(range(n), i)])
            for i in range(k + 1)
        ]
    )


def enumerated_gradient(x, i):
    """d log e_i / d x_j = P(j in S), S an i-subset drawn with probability prop. to exp(sum x_S)."""
    subsets = [list(s) for s in itertools.combinations(range(len(x)), i)]
    weights = np.array([x[s].sum() for s in subsets])
    p = np.exp(weights - logsumexp(weights))
    g = np.zeros_like(x)
    for s, w in zip(subsets, p):
        g[s] += w
    return g


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9])
def test_values_match_enumeration_over_subsets(n, rng):
    # n = 3, 5, 7, 9 are padded to a power of two inside.
    x = rng.normal(size=(3, n)) * 3
    for k in range(n + 1):
        out = np.asarray(log_elementary_symmetric(x, k))
        assert out.shape == (3, k + 1)
        np.testing.assert_allclose(out, [enumerated(row, k) for row in x], rtol=1e-10, atol=1e-10)


def test_docstring_example_and_shift_identity(rng):
    out = np.exp(np.asarray(log_elementary_symmetric(np.log([[1.0, 2.0, 3.0]]), 3)))
    np.testing.assert_allclose(out, [[1.0, 6.0, 11.0, 6.0]], rtol=1e-12)
    # e_i(c z) = c^i e_i(z), so log e_i(x + c) = log e_i(x) + i c, also for large c.
    x = rng.normal(size=(2, 50))
    base = np.asarray(log_elementary_symmetric(x, 6))
    shifted = np.asarray(log_elementary_symmetric(x + 1e3, 6))
    np.testing.assert_allclose(shifted, base + 1e3 * np.arange(7), rtol=1e-12)


@pytest.mark.parametrize("n,k", [(5, 2), (6, 6), (7, 3), (9, 4)])
def test_float64_gradients_equal_inclusion_probabilities(n, k, rng):
    x = rng.normal(size=(2, n)) * 2
    for i in range(1, k + 1):
        _, g = autodiff.value_and_grad(
            lambda v: keras.ops.sum(log_elementary_symmetric(v, k)[:, i]), x
        )
        np.testing.assert_allclose(
            g, [enumerated_gradient(row, i) for row in x], rtol=1e-10, atol=1e-12
        )


def test_float64_gradient_matches_finite_differences_of_the_enumeration(rng):
    x = rng.normal(size=7)
    weights = rng.normal(size=5)  # a random combination of log e_0..e_4
    _, g = autodiff.value_and_grad(
        lambda v: keras.ops.sum(log_elementary_symmetric(v, 4) * weights), x
    )
    fd = autodiff.finite_differences(lambda v: enumerated(v, 4) @ weights, x, h=1e-5)
    np.testing.assert_allclose(g, fd, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("n,k", [(10, 3), (100, 5), (1000, 10), (37, 7)])
def test_float32_autodiff_is_as_accurate_as_float64(n, k, rng):
    """Evidence that no custom gradient is needed.

    The backward of a log-sum-exp tree multiplies and adds softmax weights, all
    non-negative, so nothing cancels: float32 gradients agree with float64 to a
    few ulps, entry by entry. They also satisfy sum_j d log e_i / d x_j = i (the
    inclusion probabilities of an i-subset add up to i) to float32 precision.
    """
    x = rng.normal(size=(4, n)).astype("float32")
    weights = np.zeros(k + 1)
    weights[k] = 1.0

    def f(v):
        return keras.ops.sum(log_elementary_symmetric(v, k) * keras.ops.cast(weights, v.dtype))

    v32, g32 = autodiff.value_and_grad(f, x)
    v64, g64 = autodiff.value_and_grad(f, x.astype("float64"))
    np.testing.assert_allclose(v32, v64, rtol=1e-6)
    assert np.all(g32 >= 0)
    big = g64 > 1e-3 * g64.max()
    np.testing.assert_allclose(g32[big], g64[big], rtol=2e-5)
    np.testing.assert_allclose(g32, g64, atol=1e-6)
    np.testing.assert_allclose(g32.sum(axis=1), k, rtol=1e-5)


def test_large_and_minus_infinite_inputs_stay_finite(rng):
    # -inf entries are zero roots: the result is the enumeration over the finite
    # ones, and coefficients that are exactly zero come out as a large negative
    # finite number with zero gradient.
    x = np.array([[0.5, -np.inf, 1.0, 2.0, -np.inf], [-np.inf] * 5])
    for k in (2, 4):
        value, g = autodiff.value_and_grad(
            lambda v: keras.ops.sum(log_elementary_symmetric(v, k)), x
        )
        out = np.asarray(log_elementary_symmetric(x, k))
        assert np.all(np.isfinite(out)) and np.all(np.isfinite(g))
        finite = enumerated(np.array([0.5, 1.0, 2.0]), min(k, 3))
        np.testing.assert_allclose(out[0, : len(finite)], finite, rtol=1e-12)
        assert np.all(out[0, len(finite) :] <= lowest_log("float64"))
        assert np.all(out[1, 1:] <= lowest_log("float64")) and out[1, 0] == 0
        assert np.all(g[:, [1, 4]] == 0) and np.all(g[1] == 0)
    big = (rng.normal(size=(3, 300)) * 1e4).astype("float32")
    value, g = autodiff.value_and_grad(lambda v: keras.ops.sum(log_elementary_symmetric(v, 8)), big)
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(g))
    top = np.sort(big.astype("float64"), axis=1)[:, ::-1]
    # With spread-out roots, log e_i is the sum of the top i to float32 precision.
    np.testing.assert_allclose(
        np.asarray(log_elementary_symmetric(big, 8))[:, 8], top[:, :8].sum(1), rtol=1e-6
    )


def test_leading_axes_and_dtypes(rng):
    x = rng.normal(size=(2, 3, 6))
    out = np.asarray(log_elementary_symmetric(x, 4))
    assert out.shape == (2, 3, 5)
    np.testing.assert_allclose(
        out.reshape(6, 5), np.asarray(log_elementary_symmetric(x.reshape(6, 6), 4))
    )
    assert keras.backend.standardize_dtype(log_elementary_symmetric(x, 2).dtype) == "float64"
    for half in ("float16", "bfloat16"):
        y = log_elementary_symmetric(keras.ops.cast(x, half), 2)
        assert keras.backend.standardize_dtype(y.dtype) == "float32"


def test_bad_arguments_raise():
    x = np.zeros((2, 4), "float32")
    with pytest.raises(ValueError, match="`k`=5 must be at most the number of classes, which is 4"):
        log_elementary_symmetric(x, 5)
    with pytest.raises(ValueError, match="`k` must be >= 0"):
        log_elementary_symmetric(x, -1)
    with pytest.raises(ValueError, match="`k` must be an integer"):
        log_elementary_symmetric(x, 1.5)
    with pytest.raises(ValueError, match="floating-point"):
        log_elementary_symmetric(np.zeros((2, 4), "int32"), 2)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.function / XLA")
def test_xla_matches_eager(rng):
    import tensorflow as tf

    x = tf.constant(rng.normal(size=(5, 40)).astype("float32"))

    def value_and_grad(v):
        with tf.GradientTape() as tape:
            tape.watch(v)
            out = tf.reduce_sum(log_elementary_symmetric(v, 6)[:, 3:])
        return log_elementary_symmetric(v, 6), tape.gradient(out, v)

    v0, g0 = value_and_grad(x)
    v1, g1 = tf.function(value_and_grad, jit_compile=True)(x)
    np.testing.assert_allclose(v1.numpy(), v0.numpy(), rtol=1e-6)
    np.testing.assert_allclose(g1.numpy(), g0.numpy(), rtol=1e-5, atol=1e-7)
