import numpy as np
import pytest

from keras_topk.ops import DISTRIBUTIONS, comparator_weight
from keras_topk.ops.relaxations import comparator_slope
from tests.references import numpy_topk


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


def test_unknown_distribution():
    with pytest.raises(ValueError, match="Unknown distribution"):
        comparator_weight(np.zeros(2), "laplace", 1.0)
