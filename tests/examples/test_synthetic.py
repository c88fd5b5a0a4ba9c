import numpy as np
import pytest
from scipy.stats import multivariate_normal

from examples import synthetic


def small_config(**kwargs):
    return synthetic.BlobsConfig(**{"num_classes": 5, "blobs_per_class": 3, "train_size": 4000,
                                    "test_size": 500, **kwargs})


def test_posterior_matches_the_mixture_densities():
    blobs = synthetic.make_blobs(small_config(), np.random.default_rng(1))
    x = np.random.default_rng(2).uniform(-3, 3, (20, 2))
    cov = blobs.blob_std**2 * np.eye(2)
    density = np.array([
        [sum(np.exp(blobs.log_weights[c, m]) * multivariate_normal(blobs.centers[c, m], cov).pdf(p)
             for m in range(3)) for c in range(5)]
        for p in x
    ])
    expected = density / density.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(np.exp(blobs.log_posterior(x)), expected, rtol=1e-9, atol=1e-12)


def test_samples_follow_the_mixture():
    config = small_config(label_noise=0.0, train_size=20000)
    blobs = synthetic.make_blobs(config, np.random.default_rng(0))
    x, y = blobs.sample(np.random.default_rng(3), 20000)
    assert x.shape == (20000, 2) and x.dtype == np.float32
    np.testing.assert_allclose(np.bincount(y, minlength=5) / 20000, 0.2, atol=0.015)
    # Each class's mean is its blobs' centres weighted by the mixture weights.
    for c in range(5):
        expected = np.exp(blobs.log_weights[c]) @ blobs.centers[c]
        np.testing.assert_allclose(x[y == c].mean(axis=0), expected, atol=0.12)


def test_label_noise_flips_the_requested_fraction_uniformly():
    rng = np.random.default_rng(0)
    labels = np.zeros(50000, dtype=np.int32)
    noisy = synthetic.flip_labels(labels, 0.4, 5, rng)
    # A flipped label lands on each of the 5 classes with probability 1/5.
    assert np.mean(noisy != 0) == pytest.approx(0.4 * 4 / 5, abs=0.01)
    np.testing.assert_allclose(np.bincount(noisy)[1:] / 50000, 0.4 / 5, atol=0.006)


def test_task_keeps_test_labels_clean_and_is_reproducible():
    config = small_config(label_noise=1.0)
    a = synthetic.make_task(config, seed=7)
    b = synthetic.make_task(config, seed=7)
    for u, v in zip(a[:4], b[:4]):
        np.testing.assert_array_equal(u, v)
    x_train, y_train, x_test, y_test, blobs = a
    # All training labels are random: they carry no information about x.
    posterior_train = np.exp(blobs.log_posterior(x_train))
    assert np.mean(posterior_train.argmax(1) == y_train) == pytest.approx(0.2, abs=0.03)
    posterior_test = np.exp(blobs.log_posterior(x_test))
    assert np.mean(posterior_test.argmax(1) == y_test) > 0.3


def test_bayes_accuracy_is_the_expected_hit_rate_of_the_posterior_ranking():
    config = small_config(test_size=4000)
    _, _, x_test, y_test, blobs = synthetic.make_task(config, seed=0)
    curve = synthetic.bayes_accuracy_at_k(blobs, x_test, max_k=7)
    assert len(curve) == 7 and curve[4:] == pytest.approx([1.0, 1.0, 1.0])
    assert all(a < b for a, b in zip(curve[:4], curve[1:5]))
    # Counting hits of the posterior's ranking on the drawn labels agrees within sampling error.
    order = np.argsort(-blobs.log_posterior(x_test), axis=1)
    rank = np.argmax(order == y_test[:, None], axis=1)
    for k in (1, 2, 3):
        assert np.mean(rank < k) == pytest.approx(curve[k - 1], abs=0.03)
