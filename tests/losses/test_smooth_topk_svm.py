import contextlib
import io
import itertools
import math

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp, softmax

from keras_topk.losses import SmoothTopKSVM, TopKSVM, smooth_topk_svm, topk_svm
from tests.references import autodiff
from tests.references.svm_enumeration import (
    CASES,
    THRESHOLD,
    definition,
    hard_by_enumeration,
    mixed_scores,
    reference_available,
    scores_near_a_tie,
    scores_with_a_gap,
    smooth_by_enumeration,
    uses_hard,
)


@pytest.mark.parametrize("n,k", CASES)
@pytest.mark.parametrize("tau,alpha", [(1.0, 1.0), (0.2, 0.0), (3.0, 2.5)])
def test_values_and_gradients_equal_the_definition(n, k, tau, alpha, rng):
    x = mixed_scores(rng, n, k, tau)
    y = rng.integers(0, n, 12)
    per_sample, grad = autodiff.value_and_grad(
        lambda v: smooth_topk_svm(y, v, k=k, tau=tau, alpha=alpha), x
    )
    expected = [definition(x[i], y[i], k, tau, alpha) for i in range(12)]
    np.testing.assert_allclose(per_sample, [e[0] for e in expected], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(grad, [e[1] for e in expected], rtol=1e-10, atol=1e-10)


def test_the_cases_above_cover_both_branches():
    rng = np.random.default_rng(0)
    hard = smooth = 0
    for (n, k), tau in itertools.product(CASES, (1.0, 0.2, 3.0)):
        flags = [uses_hard(row, k, tau) for row in mixed_scores(rng, n, k, tau)]
        hard, smooth = hard + sum(flags), smooth + len(flags) - sum(flags)
    assert hard >= 4 * len(CASES) * 3 and smooth >= 4 * len(CASES) * 3


def test_gradient_matches_finite_differences_of_the_enumeration(rng):
    n, k, tau, alpha = 7, 3, 0.5, 1.0
    x = scores_near_a_tie(rng, 1, n, k, tau, 2.0)[0]
    y = 2
    _, grad = autodiff.value_and_grad(
        lambda v: keras.ops.sum(smooth_topk_svm(np.array([y]), v[None], k=k, tau=tau, alpha=alpha)),
        x,
    )
    fd = autodiff.finite_differences(
        lambda v: smooth_by_enumeration(v, y, k, tau, alpha)[0], x, h=1e-5
    )
    np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("tau", [1e-3, 0.3])
def test_switches_to_the_hard_loss_exactly_at_the_reference_threshold(k, tau, rng):
    n = 9
    rows, labels = [], []
    for factor in (1.0 - 1e-6, 1.0 + 1e-6):
        s = np.sort(rng.normal(size=n) * tau)[::-1].copy()
        s[k:] = s[k:] - s[k] + s[k - 1] - factor * k * tau * THRESHOLD
        for y in (0, k - 1, k, n - 1):
            rows.append(s)
            labels.append(y)
    x, y = np.array(rows), np.array(labels)
    ours = np.asarray(smooth_topk_svm(y, x, k=k, tau=tau, alpha=1.0))
    smooth = np.array([smooth_by_enumeration(x[i], y[i], k, tau, 1.0)[0] for i in range(len(y))])
    hard = np.array([hard_by_enumeration(x[i], y[i], k, 1.0)[0] for i in range(len(y))])
    np.testing.assert_allclose(ours[:4], smooth[:4], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours[4:], hard[4:], rtol=1e-10, atol=1e-12)
    # The two sides differ, so the test would notice a switch in the wrong place.
    assert np.max(np.abs(smooth - hard)) > 1e-6 * tau


def test_k1_is_the_closed_form_and_cross_entropy(rng):
    x = rng.normal(size=(6, 10)) * 3
    y = rng.integers(0, 10, 6)
    for tau, alpha in [(1.0, 0.0), (0.5, 1.0), (2.0, 0.3)]:
        not_y = 1.0 - np.eye(10)[y]
        closed = tau * logsumexp((x + alpha * not_y - x[np.arange(6), y][:, None]) / tau, axis=1)
        ours = np.asarray(smooth_topk_svm(y, x, k=1, tau=tau, alpha=alpha))
        smooth = ~np.array([uses_hard(row, 1, tau) for row in x])
        np.testing.assert_allclose(ours[smooth], closed[smooth], rtol=1e-12)
    x_smooth = x / 10  # well inside the smooth regime
    np.testing.assert_allclose(
        np.asarray(smooth_topk_svm(y, x_smooth, k=1, tau=1.0, alpha=0.0)),
        -np.log(softmax(x_smooth, axis=1)[np.arange(6), y]),
        rtol=1e-12,
    )


def test_extreme_scores_give_finite_values_and_gradients(rng):
    # The unused branch of the switch must not leak inf or NaN into the gradient
    # (test_xla_matches_eager runs such scores under XLA too).
    n = 50
    x = (rng.normal(size=(8, n)) * 1e20).astype("float32")
    x[:4, :] = x[:4, :1]  # all tied: the smooth branch at huge scores
    y = rng.integers(0, n, 8)
    for k, tau in [(1, 1e-3), (5, 1e-3), (10, 10.0)]:
        value, grad = autodiff.value_and_grad(
            lambda v: smooth_topk_svm(y, v, k=k, tau=tau, alpha=1.0), x
        )
        assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad))
        # Tied scores: L = tau log(1 + C(n-1, k) / C(n-1, k-1) exp(alpha / tau)).
        tied = tau * np.logaddexp(
            0.0, np.log(math.comb(n - 1, k) / math.comb(n - 1, k - 1)) + 1.0 / tau
        )
        np.testing.assert_allclose(value[:4], tied, rtol=1e-5)
        # The rest use the hard loss: max(0, alpha + (t_k - s_y) / k) in float64.
        others = [
            np.sort(np.delete(x[i], y[i]).astype("float64"))[::-1][k - 1] for i in range(4, 8)
        ]
        expected = np.maximum(0.0, 1.0 + (np.array(others) - x[4:][np.arange(4), y[4:]]) / k)
        np.testing.assert_allclose(value[4:], expected, rtol=1e-6)


def _stability_check(n, k, scale, tau, alpha, near_tie, seed):
    rng = np.random.default_rng(seed)
    if near_tie:
        x = scores_near_a_tie(rng, 3, n, k, tau, scale)
    else:
        x = rng.normal(size=(3, n)) * scale
    x32 = x.astype("float32")
    y = rng.integers(0, n, 3)

    def f(v):
        return smooth_topk_svm(y, v, k=k, tau=tau, alpha=alpha)

    v32, g32 = autodiff.value_and_grad(f, x32)
    v64, g64 = autodiff.value_and_grad(f, x32.astype("float64"))
    assert np.all(np.isfinite(v32)) and np.all(np.isfinite(g32))
    # 1e-37: below float32's smallest normal number a loss can only underflow.
    np.testing.assert_allclose(v32, v64, rtol=1e-3, atol=1e-37)
    scale_g = np.abs(g64).max(axis=1, keepdims=True)
    assert np.all(np.abs(g32 - g64) <= 1e-3 * scale_g + 1e-37)


@st.composite
def stability_cases(draw, max_n):
    n = draw(st.integers(2, max_n))
    k = draw(st.integers(1, min(10, n - 1)))
    scale = 10.0 ** draw(st.floats(-2.0, 4.0))
    tau = 10.0 ** draw(st.floats(-3.0, 1.0))
    alpha = draw(st.sampled_from([0.0, 0.5, 1.0, 2.0]))
    return n, k, scale, tau, alpha, draw(st.booleans()), draw(st.integers(0, 2**31))


@settings(max_examples=15, deadline=None, derandomize=True, database=None)
@given(stability_cases(max_n=1000))
def test_float32_is_finite_and_close_to_float64(case):
    """Scores scaled up to 1e4, tau down to 1e-3, n up to 1000, k up to 10.

    Half of the cases put the k-th and (k+1)-th scores within the switch so the
    smooth branch runs with widely spread top scores, where a direct
    log e_k - log e_{k-1} loses eps * (s_(1) - s_(k)) / k to cancellation.
    """
    _stability_check(*case)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, database=None)
@given(stability_cases(max_n=1000))
def test_float32_is_finite_and_close_to_float64_many_cases(case):
    _stability_check(*case)


def test_label_formats_and_leading_axes_agree(rng):
    x = rng.normal(size=(2, 3, 10))
    y = rng.integers(0, 10, (2, 3))
    per = np.asarray(smooth_topk_svm(y, x, k=3, tau=0.5, alpha=1.0))
    assert per.shape == (2, 3)
    flat = np.asarray(smooth_topk_svm(y.reshape(-1), x.reshape(6, 10), k=3, tau=0.5, alpha=1.0))
    np.testing.assert_allclose(per.reshape(-1), flat, rtol=1e-12)
    np.testing.assert_allclose(
        np.asarray(smooth_topk_svm(y[..., None], x, k=3, tau=0.5, alpha=1.0)), per, rtol=1e-12
    )
    np.testing.assert_allclose(
        np.asarray(smooth_topk_svm(np.eye(10)[y], x, k=3, tau=0.5, alpha=1.0)), per, rtol=1e-12
    )
    # Dense rows are reduced to their argmax.
    soft = 0.5 * np.eye(10)[y] + 0.05
    np.testing.assert_allclose(
        np.asarray(smooth_topk_svm(soft, x, k=3, tau=0.5, alpha=1.0)), per, rtol=1e-12
    )


def test_loss_classes_reduce_and_honour_sample_weight(rng):
    x = rng.normal(size=(6, 12)).astype("float32")
    y = rng.integers(0, 12, 6)
    w = rng.uniform(size=6).astype("float32")
    for loss, per_sample in [
        (
            SmoothTopKSVM(k=3, tau=0.5, alpha=1.0),
            np.asarray(smooth_topk_svm(y, x, k=3, tau=0.5, alpha=1.0)),
        ),
        (TopKSVM(k=3, alpha=1.0), np.asarray(topk_svm(y, x, k=3, alpha=1.0))),
    ]:
        np.testing.assert_allclose(float(loss(y, x)), per_sample.mean(), rtol=1e-6)
        np.testing.assert_allclose(
            float(loss(y, x, sample_weight=w)), (per_sample * w).mean(), rtol=1e-6
        )
        none = type(loss).from_config({**loss.get_config(), "reduction": None})
        np.testing.assert_allclose(np.asarray(none(y, x)), per_sample, rtol=1e-6)


def test_docstring_examples():
    scores = np.array([[2.0, 1.0, 0.5, -1.0], [0.1, 0.2, 3.0, 0.0]], "float32")
    labels = np.array([1, 2])
    expected = np.mean(
        [
            smooth_by_enumeration(scores[i].astype("float64"), labels[i], 2, 1.0, 1.0)[0]
            for i in range(2)
        ]
    )
    value = float(SmoothTopKSVM(k=2, tau=1.0)(labels, scores))
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    assert round(value, 4) == 0.8151


def test_half_precision_is_computed_in_float32_and_float64_kept(rng):
    x = rng.normal(size=(4, 10))
    y = rng.integers(0, 10, 4)
    for loss in (SmoothTopKSVM(k=3), TopKSVM(k=3)):
        for half in ("float16", "bfloat16"):
            out = loss(y, keras.ops.cast(x, half))
            assert keras.backend.standardize_dtype(out.dtype) == "float32"
            np.testing.assert_allclose(float(out), float(loss(y, x.astype("float32"))), rtol=2e-2)
        assert keras.backend.standardize_dtype(loss(y, x).dtype) == "float64"


def test_config_round_trip():
    loss = SmoothTopKSVM(k=3, tau=0.1, alpha=0.5, reduction="sum", name="svm")
    config = loss.get_config()
    assert {config[a] for a in ("k", "tau", "alpha", "reduction", "name")} == {
        3,
        0.1,
        0.5,
        "sum",
        "svm",
    }
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(clone, SmoothTopKSVM) and clone.get_config() == config
    assert SmoothTopKSVM().name == "smooth_topk_svm"


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(k=0), "`k` must be >= 1"),
        (dict(k=2.5), "`k` must be an integer"),
        (dict(tau=0.0), "`tau` must be > 0"),
        (dict(tau=-1.0), "`tau` must be > 0"),
        (dict(tau=float("nan")), "`tau` must be finite"),
        (dict(alpha=-0.5), "`alpha` must be >= 0"),
        (dict(alpha=float("nan")), "`alpha` must be finite"),
        (dict(alpha=float("inf")), "`alpha` must be finite"),
    ],
)
def test_bad_configuration_raises_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SmoothTopKSVM(**kwargs)
    with pytest.raises(ValueError, match=match):
        smooth_topk_svm(np.zeros(2, "int32"), np.zeros((2, 10)), **kwargs)
    hard_kwargs = {key: value for key, value in kwargs.items() if key != "tau"}
    if hard_kwargs:
        with pytest.raises(ValueError, match=match):
            TopKSVM(**hard_kwargs)


def test_bad_inputs_raise_at_call(rng):
    x = rng.normal(size=(4, 5)).astype("float32")
    for loss in (SmoothTopKSVM(k=5), TopKSVM(k=5)):
        with pytest.raises(
            ValueError, match="`k`=5 must be smaller than the number of classes, which is 5"
        ):
            loss(np.zeros(4, "int32"), x)
    with pytest.raises(ValueError, match="out-of-range labels \\[7\\]"):
        SmoothTopKSVM(k=2)(np.array([0, 1, 7, 2]), x)
    with pytest.raises(ValueError, match="do not match scores"):
        SmoothTopKSVM(k=2)(np.zeros((4, 3)), x)
    with pytest.raises(ValueError, match="floating-point"):
        SmoothTopKSVM(k=2)(np.zeros(4, "int32"), np.zeros((4, 5), "int32"))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.function / XLA")
@pytest.mark.parametrize("k,tau", [(1, 1e-3), (4, 0.05)])
def test_xla_matches_eager(k, tau, rng):
    # Ordinary scores, scores near a tie at rank k (smooth branch), and scores of
    # 1e20, tied and not: under XLA a value and the maximum taken off it may be
    # rounded differently (FMA contraction), which must not overflow.
    import tensorflow as tf

    huge = rng.normal(size=(4, 30)) * 1e20
    huge[:2] = huge[:2, :1]
    x = np.concatenate([rng.normal(size=(8, 30)), scores_near_a_tie(rng, 8, 30, k, tau, 3.0), huge])
    x = x.astype("float32")
    y = rng.integers(0, 30, 20)
    loss = SmoothTopKSVM(k=k, tau=tau, reduction=None)

    def value_and_grad(v):
        with tf.GradientTape() as tape:
            tape.watch(v)
            out = loss(y, v)
        return out, tape.gradient(out, v)

    v0, g0 = value_and_grad(tf.constant(x))
    v1, g1 = tf.function(value_and_grad, jit_compile=True)(tf.constant(x))
    assert np.all(np.isfinite(v1.numpy())) and np.all(np.isfinite(g1.numpy()))
    np.testing.assert_allclose(v1.numpy(), v0.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(g1.numpy(), g0.numpy(), rtol=1e-4, atol=1e-6)


def test_trains_a_model_with_jit_compile(rng):
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.integers(0, 20, 64)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(20)])
    model.compile(optimizer="adam", loss=SmoothTopKSVM(k=3, tau=0.5), jit_compile=True)
    losses = model.fit(x, y, epochs=3, batch_size=16, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


# ---------------------------------------------------------------------------
# Optional parity with the PyTorch reference (difftopk's port of oval-group/smooth-topk).
# ---------------------------------------------------------------------------


def reference_per_sample(x, y, k, tau, alpha):
    """The reference's per-sample values, float64: its switch, smooth and hard losses."""
    import torch

    with contextlib.redirect_stdout(io.StringIO()):
        from difftopk import smooth_topk

    n = x.shape[1]
    labels = torch.arange(n)
    scores, targets = torch.tensor(x, dtype=torch.float64), torch.tensor(y)
    with torch.no_grad():
        smooth, hard = smooth_topk.detect_large(scores, k, tau, 1e3)
        out = torch.zeros(len(y), dtype=torch.float64)
        if smooth.any():
            fn = smooth_topk.Topk_Smooth_SVM(labels, k, tau, alpha)
            out[smooth] = fn(scores[smooth].clone(), targets[smooth])
        if hard.any():
            out[hard] = smooth_topk.Topk_Hard_SVM(labels, k, alpha)(
                scores[hard].clone(), targets[hard]
            )
    return out.numpy(), hard.numpy()


@pytest.mark.reference
@pytest.mark.skipif(not reference_available(), reason="difftopk and torch not installed")
@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize(
    "scale,tau,near_tie",
    [
        (1.0, 1.0, False),
        (1.0, 0.1, False),
        (10.0, 0.01, False),
        (1e3, 1e-3, False),
        (3.0, 0.05, True),
        (1e3, 1e-3, True),
        (1e4, 0.01, True),
    ],
)
def test_values_match_the_reference(k, scale, tau, near_tie, rng):
    """Values only, in float64, to 1e-6.

    Gradients are not compared: the reference's hand-written backward is off
    by up to 1.6e-5 in float64 (a series approximation where terms cancel) and
    wrong for k = 1. Ours are checked against the enumeration and finite
    differences above instead.
    """
    n = 20
    if near_tie:
        x = scores_near_a_tie(rng, 16, n, k, tau, scale)
    else:
        x = rng.normal(size=(16, n)) * scale
    y = rng.integers(0, n, 16)
    for alpha in (1.0, 0.3):
        ref, _ = reference_per_sample(x, y, k, tau, alpha)
        ours = np.asarray(smooth_topk_svm(y, x, k=k, tau=tau, alpha=alpha))
        np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.reference
@pytest.mark.skipif(not reference_available(), reason="difftopk and torch not installed")
def test_mean_matches_the_reference_module(rng):
    import torch

    with contextlib.redirect_stdout(io.StringIO()):
        from difftopk import smooth_topk

    x = np.concatenate(
        [scores_with_a_gap(rng, 8, 30, 5, 0.1), scores_near_a_tie(rng, 8, 30, 5, 0.1, 5.0)]
    )
    y = rng.integers(0, 30, 16)
    module = smooth_topk.SmoothHardTopKLoss(30, 5, 0.1)
    ref = float(module(torch.tensor(x), torch.tensor(y)))
    np.testing.assert_allclose(float(SmoothTopKSVM(k=5, tau=0.1)(y, x)), ref, rtol=1e-6)
    assert reference_per_sample(x, y, 5, 0.1, 1.0)[1].tolist() == [True] * 8 + [False] * 8
