"""The calibrated top-k hinge family (keras_topk/losses/topk_calibrated_hinge.py) and its noise.

Values and gradients against brute force in float64 NumPy; the noise under
``fit(jit_compile=True)`` on JAX, TensorFlow and PyTorch in subprocesses
(tests/losses/noise_fit.py). The references' own numbers are in
tests/references/test_hinge_reference_cases.py.
"""

import importlib
import json
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

from keras_topk import callbacks, losses
from tests.references import autodiff

SIZES = [(2, 1), (3, 1), (3, 2), (5, 2), (7, 3), (7, 6)]


def kth_largest(row, k):
    return np.sort(row)[::-1][k - 1]


def exact_by_sorting(x, y, k, margin):
    """Value and subgradient of max(0, margin + s_[k+1] - s_y), row by row."""
    values, grads = [], []
    for row, label in zip(x, y):
        value = max(0.0, margin + kth_largest(row, k + 1) - row[label])
        grad = np.zeros_like(row)
        if value > 0:
            grad[np.argsort(-row)[k]] += 1.0
            grad[label] -= 1.0
        values.append(value)
        grads.append(grad)
    return np.array(values), np.array(grads)


@pytest.mark.parametrize("n,k", SIZES)
def test_exact_hinge_equals_sorting(n, k, rng):
    x = rng.normal(scale=2.0, size=(8, n))
    y = rng.integers(0, n, 8)
    for margin in (0.0, 1.0, 2.5):
        value, grad = autodiff.value_and_grad(
            lambda v: losses.topk_calibrated_hinge(y, v, k=k, margin=margin), x
        )
        expected, expected_grad = exact_by_sorting(x, y, k, margin)
        np.testing.assert_allclose(value, expected, atol=1e-12)
        np.testing.assert_allclose(grad, expected_grad, atol=1e-12)


def test_differs_from_topk_svm_where_the_label_is_out():
    # Label 3 is 4th: the calibrated hinge compares it with the 3rd of all (0.5),
    # TopKSVM with the 2nd other (also 0.5) but scaled by 1/k.
    x = np.array([[2.0, 1.0, 0.5, -1.0]])
    calibrated = float(losses.topk_calibrated_hinge([3], x, k=2)[0])
    svm = float(losses.topk_svm([3], x, k=2, alpha=1.0)[0])
    assert calibrated == pytest.approx(1.0 + 0.5 + 1.0)
    assert svm == pytest.approx(1.0 + (1.0 + 1.0) / 2)
    # Label in the top k, beating the (k+1)-th by more than the margin: both 0.
    assert float(losses.topk_calibrated_hinge([0], x, k=2)[0]) == 0.0


@pytest.mark.parametrize("n,k", [(3, 1), (5, 2), (10, 4), (30, 5)])
def test_noised_hinge_is_the_mean_of_perturbed_order_statistics(n, k, rng):
    b, samples, epsilon = 6, 4, 0.7
    x = rng.normal(size=(b, n))
    y = rng.integers(0, n, b)
    z = rng.normal(size=(b, samples, n))
    value, grad = autodiff.value_and_grad(
        lambda v: losses.noised_topk_hinge(
            y, v, k=k, epsilon=epsilon, n_samples=samples, noise=z, margin=1.0
        ),
        x,
    )
    perturbed = x[:, None, :] + epsilon * z
    phi = np.array([[kth_largest(p, k + 1) for p in rows] for rows in perturbed]).mean(1)
    expected = np.maximum(0.0, 1.0 + phi - x[np.arange(b), y])
    np.testing.assert_allclose(value, expected, atol=1e-12)
    # Pathwise gradient: the share of draws where each class is (k+1)-th, minus the label.
    counts = np.zeros_like(x)
    for i in range(b):
        for t in range(samples):
            counts[i, np.argsort(-perturbed[i, t])[k]] += 1.0 / samples
    counts[np.arange(b), y] -= 1.0
    np.testing.assert_allclose(grad, np.where((expected > 0)[:, None], counts, 0.0), atol=1e-12)


def test_epsilon_zero_is_the_exact_hinge_and_needs_no_seed(rng):
    x = rng.normal(size=(5, 6))
    y = rng.integers(0, 6, 5)
    np.testing.assert_array_equal(
        np.asarray(losses.noised_topk_hinge(y, x, k=2, epsilon=0.0)),
        np.asarray(losses.topk_calibrated_hinge(y, x, k=2)),
    )


def test_noise_needs_a_seed_or_the_noise(rng):
    with pytest.raises(ValueError, match="`seed`"):
        losses.noised_topk_hinge([0], rng.normal(size=(1, 4)), k=1)


def test_int_seeds_repeat_and_generators_advance(rng):
    x = rng.normal(size=(4, 20)).astype("float32")
    y = rng.integers(0, 20, 4)

    def draw(seed):
        return np.asarray(losses.noised_topk_hinge(y, x, k=3, seed=seed, epsilon=2.0))

    np.testing.assert_array_equal(draw(7), draw(7))
    assert not np.array_equal(draw(7), draw(8))
    generator = keras.random.SeedGenerator(7)
    assert not np.array_equal(draw(generator), draw(generator))


def test_the_class_draws_new_noise_at_every_call(rng):
    x = rng.normal(size=(4, 20)).astype("float32")
    y = rng.integers(0, 20, 4)
    loss = losses.NoisedTopKHinge(k=3, epsilon=2.0, seed=11, reduction=None)
    twin = losses.NoisedTopKHinge(k=3, epsilon=2.0, seed=11, reduction=None)
    first, second = np.asarray(loss(y, x)), np.asarray(loss(y, x))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, np.asarray(twin(y, x)))
    assert int(keras.ops.convert_to_numpy(loss.noise_state.seed_state)[1]) == 2
    loss.noise_state.reset_state()  # what Keras does every epoch: the stream carries on
    assert int(keras.ops.convert_to_numpy(loss.noise_state.seed_state)[1]) == 2


def test_ldam_margins():
    np.testing.assert_allclose(
        losses.ldam_margins([1, 16, 81], max_margin=0.5), [0.5, 0.25, 0.5 / 3], rtol=1e-15
    )


@pytest.mark.parametrize("counts", [[10, 0, 3], [10, -2, 3], [10, float("nan"), 3]])
def test_non_positive_counts_are_an_error(counts):
    with pytest.raises(ValueError, match="class_counts"):
        losses.LongTailTopKHinge(counts, k=1)


def test_counts_must_match_the_classes(rng):
    with pytest.raises(ValueError, match="one training count per class"):
        losses.long_tail_topk_hinge(
            [0], rng.normal(size=(1, 4)), class_counts=[1, 2, 3], k=1, epsilon=0.0
        )


@pytest.mark.parametrize("n,k", [(3, 1), (7, 3)])
def test_long_tail_equals_sorting(n, k, rng):
    x = rng.normal(size=(8, n))
    y = rng.integers(0, n, 8)
    counts = rng.integers(1, 300, n)
    margins = 0.3 * counts**-0.25 / (counts**-0.25).max()
    value, grad = autodiff.value_and_grad(
        lambda v: losses.long_tail_topk_hinge(
            y, v, class_counts=counts.tolist(), k=k, max_margin=0.3, scale=7.0, epsilon=0.0
        ),
        x,
    )
    for i in range(8):
        unscaled, g = exact_by_sorting(x[i : i + 1], y[i : i + 1], k, margins[y[i]])
        np.testing.assert_allclose(value[i], 7.0 * unscaled[0], atol=1e-12)
        np.testing.assert_allclose(grad[i], 7.0 * g[0], atol=1e-12)


def test_multi_label_uses_the_lowest_positive(rng):
    n, k = 8, 3
    x = rng.normal(size=(10, n))
    rows = (rng.uniform(size=(10, n)) < 0.25).astype("float64")
    rows[np.arange(10), rng.integers(0, n, 10)] = 1.0
    rows[0] = 0.0  # no positive: nothing to rank, loss 0
    rows[1] = 0.0
    rows[1, 4] = 1.0  # one positive: the single-label loss
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value, grad = autodiff.value_and_grad(
            lambda v: losses.topk_calibrated_hinge(rows, v, k=k, multi_label=True), x
        )
    for i in range(10):
        positive = rows[i] > 0
        if not positive.any():
            assert value[i] == 0.0 and not grad[i].any()
            continue
        lowest = np.flatnonzero(positive)[np.argmin(x[i][positive])]
        expected, g = exact_by_sorting(x[i : i + 1], [lowest], k, 1.0)
        np.testing.assert_allclose(value[i], expected[0], atol=1e-12)
        np.testing.assert_allclose(grad[i], g[0], atol=1e-12)
    single = losses.topk_calibrated_hinge([4], x[1:2], k=k)
    np.testing.assert_allclose(value[1], np.asarray(single)[0], atol=1e-12)


def test_more_positives_than_k_warns_once():
    importlib.import_module("keras_topk.losses.topk_calibrated_hinge")._WARNED_POSITIVES.discard(1)
    rows = np.array([[1.0, 1.0, 0.0, 0.0]])
    scores = np.array([[0.3, 0.2, 0.1, 0.0]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        losses.topk_calibrated_hinge(rows, scores, k=1, multi_label=True)
        losses.topk_calibrated_hinge(rows, scores, k=1, multi_label=True)
    messages = [str(w.message) for w in caught if "positive labels" in str(w.message)]
    assert len(messages) == 1 and "cannot reach 0" in messages[0]


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(k=0), "k"),
        (dict(margin=-1.0), "margin"),
        (dict(epsilon=-0.1), "epsilon"),
        (dict(n_samples=0), "n_samples"),
        (dict(seed=-1), "seed"),
        (dict(multi_label="yes"), "multi_label"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        losses.NoisedTopKHinge(**kwargs)


def test_k_must_be_below_the_number_of_classes():
    with pytest.raises(ValueError, match="`k`=4"):
        losses.topk_calibrated_hinge([0], np.zeros((1, 4)), k=4)


def test_noise_state_saves_with_the_model(tmp_path):
    keras.utils.set_random_seed(0)
    loss = losses.NoisedTopKHinge(k=2, seed=5)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(6)])
    model.compile("sgd", loss=loss)
    x, y = np.ones((8, 3), "float32"), np.arange(8) % 6
    model.fit(x, y, batch_size=4, verbose=0, callbacks=[callbacks.NoiseCallback()])
    saved = keras.ops.convert_to_numpy(loss.noise_state.seed_state).tolist()
    assert saved[1] == 2
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    assert keras.ops.convert_to_numpy(restored.loss.noise_state.seed_state).tolist() == saved
    # Resumed, it continues the stream rather than repeat the first draws.
    fresh = losses.NoisedTopKHinge(k=2, seed=5, reduction=None)
    scores, labels = np.random.default_rng(0).normal(size=(4, 6)), np.arange(4)
    resumed = restored.loss.from_config({**restored.loss.get_config(), "reduction": None})
    resumed.noise_state.seed_state.assign(restored.loss.noise_state.seed_state)
    fresh(labels, scores), fresh(labels, scores)
    np.testing.assert_array_equal(
        np.asarray(resumed(labels, scores)), np.asarray(fresh(labels, scores))
    )


# --------------------------------------------------------------------------- #
# The noise under each backend's compiled fit
# --------------------------------------------------------------------------- #


def run_noise_fit(backend, parts):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run(
        [sys.executable, "-m", "tests.losses.noise_fit", ",".join(parts)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    lines = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


def check_noise(out, backend):
    assert out["backend"] == backend
    a, b, c = out["a"]["losses"], out["b"]["losses"], out["c"]["losses"]
    # The learning rate is 0: a step's loss changes only through its noise.
    assert len(set(a)) == len(a), f"the noise is frozen across steps: {a}"
    assert a == b, "the same seed must draw the same noise"
    # Another seed, another stream (not the same one shifted by a draw).
    assert not set(a) & set(c)
    # Every step drew once.
    assert out["a"]["draws"] == 3 and out["c"]["draws"] == 3
    assert out["a"]["logs"] == ["loss"]  # the state logs nothing
    # The noise acts: no step's loss is the exact hinge's on the same scores.
    assert all(abs(v - out["a"]["exact"]) > 1e-4 for v in a)


# CI runs these in its JAX and torch steps (.ci/run, "noise under jitted fit"); each takes
# 20 s to minutes (compiling fit's step several times), hence `slow`.
@pytest.mark.jax
@pytest.mark.slow
def test_jax_fit_draws_new_reproducible_noise_at_every_step():
    pytest.importorskip("jax")
    out = run_noise_fit("jax", ["a", "b", "c", "long_tail", "no_callback"])
    check_noise(out, "jax")
    assert len(set(out["long_tail"]["losses"])) == 3
    # Without the callback JAX would train on frozen noise: a clear error instead.
    assert "NoiseCallback" in out["no_callback_error"]


@pytest.mark.slow
def test_tensorflow_fit_draws_new_reproducible_noise_at_every_step():
    out = run_noise_fit("tensorflow", ["a", "b", "c", "no_callback"])
    check_noise(out, "tensorflow")
    # TensorFlow assigns the loss's variable inside the step: the callback is optional.
    assert out["no_callback"]["losses"] == out["a"]["losses"]


@pytest.mark.slow
def test_torch_fit_draws_new_reproducible_noise_at_every_step():
    pytest.importorskip("torch")
    # torch.compile of fit's step takes minutes here: three trainings only.
    check_noise(run_noise_fit("torch", ["a", "b", "c"]), "torch")
