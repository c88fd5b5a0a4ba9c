import numpy as np
import pytest

from keras_topk.ops import DISTRIBUTIONS, comparator_weight
from keras_topk.ops.relaxations import comparator_slope
from tests.references import autodiff, numpy_topk


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
@pytest.mark.parametrize("beta", [0.3, 1.0, 4.0])
def test_matches_numpy_formula(distribution, beta):
    v = np.linspace(-5, 5, 101)
    ours = np.asarray(comparator_weight(v, distribution, beta, 0.5))
    np.testing.assert_allclose(
        ours, numpy_topk.cdf(v, distribution, beta, 0.5), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_is_a_symmetric_monotone_cdf(distribution):
    v = np.linspace(-3, 3, 61)
    f = np.asarray(comparator_weight(v, distribution, 1.0))
    g = np.asarray(comparator_weight(-v, distribution, 1.0))
    np.testing.assert_allclose(f + g, 1.0, atol=1e-12)
    assert np.all(np.diff(f) >= 0)
    assert np.all((f >= 0) & (f <= 1))


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_infinite_steepness_gives_the_hard_comparator(distribution):
    v = np.array([-2.0, -0.1, 0.1, 2.0])
    f = np.asarray(comparator_weight(v, distribution, 1e9))
    np.testing.assert_allclose(f, [0, 0, 1, 1], atol=1e-6)


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
@pytest.mark.parametrize("beta,art_lambda", [(0.7, 0.5), (2.0, 0.3)])
def test_slope_is_the_derivative_of_the_numpy_cdf(distribution, beta, art_lambda):
    # Central differences of the float64 NumPy formula, away from the kinks
    # ("optimal" at |beta v| = 1/4, "logistic_phi" at v = 0).
    v = np.concatenate([np.linspace(-4, -0.05, 40), np.linspace(0.05, 4, 40)])
    v = v[np.abs(np.abs(beta * v) - 0.25) > 1e-3]
    h = 1e-6
    numeric = (
        numpy_topk.cdf(v + h, distribution, beta, art_lambda)
        - numpy_topk.cdf(v - h, distribution, beta, art_lambda)
    ) / (2 * h)
    alpha = np.asarray(comparator_weight(v, distribution, beta, art_lambda))
    ours = np.asarray(comparator_slope(v, alpha, distribution, beta, art_lambda))
    np.testing.assert_allclose(ours, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("beta,art_lambda", [(1.0, 0.5), (0.7, 0.25), (2.0, 1.0)])
def test_logistic_phi_at_an_exact_tie_has_the_logistic_slope(beta, art_lambda):
    # The reference's slope there, beta / 4 * 1e10 ** art_lambda, is its guard's.
    v = np.array([0.0, -0.0])
    alpha = comparator_weight(v, "logistic_phi", beta, art_lambda)
    np.testing.assert_array_equal(np.asarray(alpha), 0.5)
    slope = np.asarray(comparator_slope(v, alpha, "logistic_phi", beta, art_lambda))
    np.testing.assert_allclose(slope, beta / 4, rtol=1e-15)
    # Autodiff through the forward (the dense-label path) agrees with the written-out slope.
    auto = autodiff.grad(lambda d: comparator_weight(d, "logistic_phi", beta, art_lambda), v)
    np.testing.assert_allclose(auto, beta / 4, rtol=1e-12)


@pytest.mark.parametrize("art_lambda", [0.5, 0.25])
def test_logistic_phi_off_the_tie_is_the_reference(art_lambda):
    # Down to differences the guard dominates: values equal the NumPy formula;
    # slopes its central differences (step 1e-4 |v|, float64).
    v = np.array([-3e-13, 4e-14, 1e-9, -1e-6, 1e-4, -0.3, 2.0])
    alpha = comparator_weight(v, "logistic_phi", 0.8, art_lambda)
    np.testing.assert_allclose(
        np.asarray(alpha), numpy_topk.cdf(v, "logistic_phi", 0.8, art_lambda), rtol=1e-15
    )
    far = np.abs(v) >= 1e-6
    h = 1e-4 * np.abs(v[far])
    numeric = (
        numpy_topk.cdf(v[far] + h, "logistic_phi", 0.8, art_lambda)
        - numpy_topk.cdf(v[far] - h, "logistic_phi", 0.8, art_lambda)
    ) / (2 * h)
    slope = comparator_slope(v, alpha, "logistic_phi", 0.8, art_lambda)
    np.testing.assert_allclose(np.asarray(slope)[far], numeric, rtol=1e-6)
    # In the guard's range the reference is linear, v / 1e-10 ** art_lambda: its slope is kept.
    guard = np.abs(v) < 1e-12
    np.testing.assert_allclose(np.asarray(slope)[guard], 0.8 / 4 * 1e10**art_lambda, rtol=1e-2)


def test_unknown_distribution():
    with pytest.raises(ValueError, match="Unknown `distribution` 'laplace'"):
        comparator_weight(np.zeros(2), "laplace", 1.0)
