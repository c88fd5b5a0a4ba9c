import keras
import numpy as np
import pytest

from keras_topk.ops import DISTRIBUTIONS, METHODS, soft_topk
from tests.references import autodiff, difftopk_reference, numpy_topk

NETWORKS = ("splitter_selection", "bitonic", "odd_even")


def distinct_scores(rng, b, n, scale=1.0):
    # Well-separated, distinct scores so the hard ranking is unambiguous.
    return np.stack([rng.permutation(n) for _ in range(b)]).astype(
        np.float64
    ) * scale + rng.uniform(0, 0.1, (b, n))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n,k", [(7, 3), (16, 5), (12, 12)])
def test_infinite_steepness_gives_the_hard_topk(method, n, k, rng):
    x = distinct_scores(rng, 6, n)
    a = np.asarray(soft_topk(x, k, method=method, inverse_temperature=1e6, distribution="logistic"))
    expected = np.stack([numpy_topk.hard_topk(row, k) for row in x])
    np.testing.assert_allclose(a, expected, atol=1e-6)


@pytest.mark.parametrize("method", NETWORKS)
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
@pytest.mark.parametrize("n,k", [(6, 2), (13, 5)])
def test_networks_match_dense_float64_layer_products(method, distribution, n, k, rng):
    x = rng.normal(size=(3, n)) * 2
    a = np.asarray(
        soft_topk(
            x, k, method=method, inverse_temperature=0.7, distribution=distribution, art_lambda=0.3
        )
    )
    ref = np.stack([numpy_topk.attribution(row, k, method, 0.7, distribution, 0.3) for row in x])
    np.testing.assert_allclose(a, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n", [9, 300])  # 300 takes the sorted prefix-sum path
def test_neuralsort_matches_numpy_formula(n, rng):
    x = rng.normal(size=(2, n))
    a = np.asarray(soft_topk(x, 4, method="neuralsort", inverse_temperature=2.0))
    ref = np.stack([numpy_topk.neuralsort_attribution(row, 4, 0.5) for row in x])
    np.testing.assert_allclose(a, ref, rtol=1e-9, atol=1e-12)


def test_softsort_matches_numpy_formula(rng):
    x = rng.normal(size=(3, 11))
    a = np.asarray(soft_topk(x, 5, method="softsort", inverse_temperature=2.0))
    ref = np.stack([numpy_topk.softsort_attribution(row, 5, 0.5) for row in x])
    np.testing.assert_allclose(a, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_rows_and_columns_behave_as_promised(method, rng):
    # Each rank is a distribution over inputs (columns sum to 1); each input
    # spreads at most its unit mass over the top k ranks (rows sum to <= 1).
    x = rng.normal(size=(5, 20))
    a = np.asarray(soft_topk(x, 5, method=method, inverse_temperature=0.5))
    assert np.all(a >= -1e-12) and np.all(a <= 1 + 1e-12)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-10)
    assert np.all(a.sum(axis=2) <= 1 + 1e-10)


@pytest.mark.parametrize("method", NETWORKS)
def test_full_sorting_networks_are_doubly_stochastic(method, rng):
    x = rng.normal(size=(4, 10))
    a = np.asarray(soft_topk(x, 10, method=method, inverse_temperature=0.5))
    np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(a.sum(axis=2), 1.0, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_float64_gradients_match_finite_differences(method, rng):
    x = rng.normal(size=(2, 9))
    weights = rng.normal(size=(2, 9, 3))

    def objective(v):
        return keras.ops.sum(soft_topk(v, 3, method=method, inverse_temperature=0.8) * weights)

    grad = autodiff.grad(objective, x)
    numeric = autodiff.finite_differences(objective, x)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def test_dtypes(rng):
    x = rng.normal(size=(2, 8))
    assert keras.backend.standardize_dtype(soft_topk(x.astype("float16"), 2).dtype) == "float32"
    assert keras.backend.standardize_dtype(soft_topk(x, 2).dtype) == "float64"


def test_leading_batch_axes(rng):
    x = rng.normal(size=(2, 3, 8)).astype("float32")
    a = np.asarray(soft_topk(x, 2))
    assert a.shape == (2, 3, 8, 2)
    np.testing.assert_allclose(a[1, 2], np.asarray(soft_topk(x[1, 2:3], 2))[0], rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(k=0), "`k` must be >= 1"),
        (dict(k=9), "must be at most the number of classes"),
        (dict(k=2, method="heapsort"), "Unknown `method`"),
        (dict(k=2, distribution="laplace"), "Unknown `distribution`"),
        (dict(k=2, inverse_temperature=0.0), "inverse_temperature"),
        (dict(k=2, inverse_temperature=float("nan")), "must be finite"),
        (dict(k=2, art_lambda=-1.0), "art_lambda"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        soft_topk(np.zeros((2, 8), "float32"), **kwargs)


def test_integer_scores_are_rejected():
    with pytest.raises(ValueError, match="floating-point"):
        soft_topk(np.zeros((2, 8), "int32"), 2)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="XLA through tf.function")
@pytest.mark.parametrize("method", METHODS)
def test_xla_matches_eager(method, rng):
    import tensorflow as tf

    x = rng.normal(size=(4, 16)).astype("float32")
    fn = tf.function(lambda v: soft_topk(v, 5, method=method), jit_compile=True)
    np.testing.assert_allclose(
        fn(x).numpy(), np.asarray(soft_topk(x, 5, method=method)), rtol=1e-5, atol=1e-6
    )


@pytest.mark.reference
@pytest.mark.skipif(not difftopk_reference.available(), reason="difftopk and torch not installed")
@pytest.mark.parametrize("method", NETWORKS)
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_attribution_matches_the_reference(method, distribution, rng):
    import torch

    n, k = 13, 5
    x = rng.normal(size=(4, n)).astype("float32")
    loss = difftopk_reference.reference_loss(
        n, (0.2,) * 5, method, 0.7, distribution, 0.5, None, "sm"
    )
    _, ref = loss.top_k_net(torch.tensor(x))
    ours = np.asarray(
        soft_topk(x, k, method=method, inverse_temperature=0.7, distribution=distribution)
    )
    np.testing.assert_allclose(ours, ref.numpy()[:, :, ::-1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_a_row_of_minus_inf_gives_a_finite_attribution(method):
    x = np.full((2, 9), -np.inf)
    x[1, 3] = 0.5  # one live class among masked ones: it takes rank 0
    a = np.asarray(soft_topk(x, 3, method=method, inverse_temperature=2.0))
    assert np.all(np.isfinite(a))
    np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-6)
    if method != "softsort":  # softsort spreads rank 0 over the tied floor too
        assert a[1, 3, 0] > 0.99


def test_soft_topk_runs_under_the_torch_backend_for_every_method():
    pytest.importorskip("torch")
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np, json; from keras_topk.ops import soft_topk, METHODS; "
        "x = np.random.default_rng(0).normal(size=(3, 13)); "
        "out = {m: np.asarray(soft_topk(x, 4, method=m, inverse_temperature=0.7).cpu().numpy()).tolist() "
        "for m in METHODS}; "
        "out['inf'] = bool(np.isfinite(soft_topk(np.full((2, 13), -np.inf), 4).cpu().numpy()).all()); "
        "print('RESULT', json.dumps(out))"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    out = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert out.pop("inf") is True
    x = np.random.default_rng(0).normal(size=(3, 13))
    for method in NETWORKS:
        ref = np.stack(
            [numpy_topk.attribution(row, 4, method, 0.7, "logistic_phi", 0.5) for row in x]
        )
        np.testing.assert_allclose(np.array(out[method]), ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        np.array(out["neuralsort"]),
        np.stack([numpy_topk.neuralsort_attribution(r, 4, 1 / 0.7) for r in x]),
        rtol=1e-9,
        atol=1e-12,
    )
