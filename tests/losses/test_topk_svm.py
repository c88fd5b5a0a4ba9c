"""The hard top-k SVM (keras_topk/losses/topk_svm.py) against its definition by enumeration.

Checks it shares with the smooth SVM (reductions, sample weights, half precision, bad input)
run over both classes in test_smooth_topk_svm.py, which also holds the enumeration helpers.
"""

import contextlib
import io

import keras
import numpy as np
import pytest

from keras_topk.losses import TopKSVM, topk_svm
from tests.references import autodiff
from tests.references.svm_enumeration import (
    CASES,
    hard_by_enumeration,
    reference_available,
    scores_near_a_tie,
)


@pytest.mark.parametrize("n,k", CASES)
def test_hard_loss_equals_brute_force(n, k, rng):
    x = rng.normal(size=(6, n))
    y = rng.integers(0, n, 6)
    for alpha in (0.0, 1.0, 2.0):
        value, grad = autodiff.value_and_grad(lambda v: topk_svm(y, v, k=k, alpha=alpha), x)
        expected = [hard_by_enumeration(x[i], y[i], k, alpha) for i in range(6)]
        np.testing.assert_allclose(value, [e[0] for e in expected], atol=1e-12)
        # Where the hinge is active, the subgradient of the max; else zero.
        active = np.array([e[0] > 0 for e in expected])[:, None]
        np.testing.assert_allclose(
            grad, np.where(active, [e[1] for e in expected], 0.0), atol=1e-12
        )


def test_one_hot_labels_give_the_index_values(rng):
    x = rng.normal(size=(2, 3, 10))
    y = rng.integers(0, 10, (2, 3))
    np.testing.assert_allclose(
        np.asarray(topk_svm(np.eye(10)[y], x, k=3)), np.asarray(topk_svm(y, x, k=3)), rtol=1e-12
    )


def test_docstring_example():
    scores = np.array([[2.0, 1.0, 0.5, -1.0], [0.1, 0.2, 3.0, 0.0]], "float32")
    # Sample 0: t_2 = 0.5 (second-largest other score), max(0, 1 + (0.5 - 1) / 2) = 0.75.
    assert np.asarray(TopKSVM(k=2, reduction=None)(np.array([1, 2]), scores)).tolist() == [
        0.75,
        0.0,
    ]


def test_config_round_trip():
    hard = TopKSVM(k=2, alpha=2.0)
    assert hard.get_config()["k"] == 2 and hard.get_config()["alpha"] == 2.0
    clone = keras.losses.deserialize(keras.losses.serialize(hard))
    assert isinstance(clone, TopKSVM) and clone.get_config() == hard.get_config()
    assert TopKSVM().name == "topk_svm"


def reference_hard(x, y, k, alpha):
    import torch

    with contextlib.redirect_stdout(io.StringIO()):
        from difftopk import smooth_topk

    fn = smooth_topk.Topk_Hard_SVM(torch.arange(x.shape[1]), k, alpha)
    with torch.no_grad():
        return fn(torch.tensor(x, dtype=torch.float64), torch.tensor(y)).numpy()


@pytest.mark.reference
@pytest.mark.skipif(not reference_available(), reason="difftopk and torch not installed")
@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize(
    "scale,near_tie", [(1.0, False), (10.0, False), (1e3, False), (3.0, True), (1e3, True)]
)
def test_values_match_the_reference(k, scale, near_tie, rng):
    if near_tie:
        x = scores_near_a_tie(rng, 16, 20, k, 0.01, scale)
    else:
        x = rng.normal(size=(16, 20)) * scale
    y = rng.integers(0, 20, 16)
    for alpha in (1.0, 0.3):
        np.testing.assert_allclose(
            np.asarray(topk_svm(y, x, k=k, alpha=alpha)),
            reference_hard(x, y, k, alpha),
            rtol=1e-12,
            atol=1e-9,
        )
