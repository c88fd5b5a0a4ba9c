"""Which comparator relaxations have a bounded slope, and what an unbounded one does to TopKCrossEntropy.

The table of docs/losses.md ("TopKCrossEntropy", choosing `distribution`) is printed by

    KERAS_BACKEND=tensorflow python -m tests.losses.test_comparator_slopes

The slope ``f'(v)`` of a comparator ``f`` bounds how fast the loss's gradient
can change with the logits. Every distribution but "logistic_phi" has its
steepest point at the tie ``v = 0``, with a finite slope proportional to
``beta``; "logistic_phi" (``sigmoid(beta v / |v|^lambda)``) has slope
``~ beta (1 - lambda) / (4 |v|^lambda)``, unbounded as two scores meet (only
the ``1e-10`` guard stops it; at an exact tie, ``v = 0``, keras-topk takes the
logistic's ``beta / 4``: tests/ops/test_relaxations.py).
"""

import math

import keras
import numpy as np
import pytest

import keras_topk
from keras_topk.ops import relaxations
from tests.references import autodiff

# f'(0) / beta in closed form: logistic 1/4, cauchy 1/pi, reciprocal 1/4,
# gaussian 1/sqrt(2 pi), optimal 1 (its linear middle piece).
BOUNDED = {
    "logistic": 0.25,
    "cauchy": 1.0 / math.pi,
    "reciprocal": 0.25,
    "gaussian": 1.0 / math.sqrt(2.0 * math.pi),
    "optimal": 1.0,
}
GAPS = np.array([1e-8, 1e-6, 1e-4, 1e-2, 1.0], "float64")


def slopes(distribution, beta=1.0, art_lambda=0.5, gaps=GAPS):
    """``f'(v)`` at ``v`` = each gap, in float64."""
    fn = lambda v: relaxations.comparator_weight(v, distribution, beta, art_lambda)  # noqa: E731
    return autodiff.grad(fn, gaps.copy())


def gradient_jump(distribution, gap=1e-6, trials=30, seed=1):
    """Largest change of TopKCrossEntropy's gradient (default p_k, float64) when the label's
    logit, tied with a rival's, is moved ``gap`` apart from it; over ``trials`` random rows."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(trials):
        s = rng.normal(size=(1, 10))
        label = int(rng.integers(10))
        rival = (label + 1 + int(rng.integers(9))) % 10
        s[0, rival] = s[0, label]
        moved = s.copy()
        moved[0, rival] += gap
        loss = lambda v: keras_topk.losses.topk_cross_entropy(  # noqa: E731
            np.array([label]), v, p_k=(0.2,) * 5, distribution=distribution
        )
        worst = max(
            worst, float(np.max(np.abs(autodiff.grad(loss, moved) - autodiff.grad(loss, s))))
        )
    return worst


@pytest.mark.parametrize("distribution", sorted(BOUNDED))
def test_bounded_comparators_are_steepest_at_the_tie(distribution):
    got = slopes(distribution, beta=2.0, gaps=np.concatenate([[0.0], GAPS]))
    assert got[0] == pytest.approx(2.0 * BOUNDED[distribution], rel=1e-6)
    assert np.all(got <= got[0] * (1 + 1e-9))


def test_logistic_phi_slope_grows_without_bound_as_scores_meet():
    got = slopes("logistic_phi", art_lambda=0.5)
    # ~ (1 - lambda) / (4 sqrt(v)) for small v: x10 for every 100x closer.
    ratios = got[:-2] / got[1:-1]
    np.testing.assert_allclose(ratios[:-1], 10.0, rtol=1e-2)
    assert got[0] > 1e3
    # lambda = 0 is the logistic: bounded.
    np.testing.assert_allclose(
        slopes("logistic_phi", art_lambda=0.0), slopes("logistic"), rtol=1e-12
    )


@pytest.mark.slow  # ~60 s: 30 rows, 8 gradients each through the network
def test_a_tiny_step_moves_the_default_gradient_far_and_the_bounded_ones_little():
    if keras.backend.backend() not in ("tensorflow", "jax"):
        pytest.skip("needs gradients")
    assert gradient_jump("logistic_phi") > 1.0
    for distribution in ("logistic", "cauchy", "gaussian"):
        assert gradient_jump(distribution, trials=10) < 1e-5


if __name__ == "__main__":
    print(f"backend {keras.backend.backend()}, float64, beta = 1, art_lambda = 0.5")
    print(
        "| distribution | f'(v) at v = "
        + " | ".join(f"{g:g}" for g in GAPS)
        + " | max change of the TopKCrossEntropy gradient, tie moved by 1e-6 |"
    )
    print("|---" * (len(GAPS) + 2) + "|")
    for name in relaxations.DISTRIBUTIONS:
        row = " | ".join(f"{v:.3g}" for v in slopes(name))
        print(f"| `{name}` | {row} | {gradient_jump(name):.2g} |")
