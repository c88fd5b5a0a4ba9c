import dataclasses

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from examples import benchmark

SMALL = benchmark.Benchmark(groups=4, per_group=5, dim=3, train_per_class=10, test_size=500)


def test_posterior_is_the_mixture_densities_normalised():
    config = dataclasses.replace(SMALL, blobs=3)
    problem = benchmark.make_problem(config, np.random.default_rng(1))
    x = np.random.default_rng(2).normal(0, 1.5, (12, 3))
    density = np.array(
        [
            [
                np.mean([multivariate_normal(c, np.eye(3)).pdf(p) for c in problem.centers[y]])
                for y in range(20)
            ]
            for p in x
        ]
    )  # equal blob weights within a class
    expected = density / density.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(
        np.exp(problem.log_posterior(x, chunk=5)), expected, rtol=1e-9, atol=1e-13
    )


def test_bayes_limit_agrees_with_a_monte_carlo_estimate_of_the_bayes_classifier():
    # The limit is E_x[sum of the k largest posteriors]; a Monte Carlo estimate counts how often a label
    # drawn from the true distribution is among the k classes the posterior ranks highest.
    config = dataclasses.replace(SMALL, blobs=2, test_size=40000)
    problem = benchmark.make_problem(config, np.random.default_rng(3))
    x_ref = problem.sample(
        np.random.default_rng(4), np.random.default_rng(5).integers(0, 20, 20000)
    )
    limit = benchmark.bayes_accuracy_at_k(problem, x_ref, max_k=25)
    assert limit[19:] == pytest.approx([1.0] * 6)
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 20, 40000)
    x = problem.sample(rng, labels)
    order = np.argsort(-problem.log_posterior(x), axis=1)
    rank = np.argmax(order == labels[:, None], axis=1)
    for k in (1, 2, 5):
        hits = np.mean(rank < k)
        se = np.sqrt(hits * (1 - hits) / 40000) + np.sqrt(limit[k - 1] * (1 - limit[k - 1]) / 20000)
        assert hits == pytest.approx(limit[k - 1], abs=4 * se)
    assert 0.2 < limit[0] < limit[1] < limit[4] < 1.0


def test_label_ids_are_permuted_so_blocks_of_five_are_not_superclasses():
    problem = benchmark.make_problem(benchmark.Benchmark(), np.random.default_rng(0))
    assert np.bincount(problem.superclass).tolist() == [5] * 20
    blocks = problem.superclass.reshape(20, 5)
    assert sum(len(set(b)) == 1 for b in blocks) <= 1  # almost no block is one superclass
    # Classes of one superclass are nearer to each other than to the other classes.
    centers = problem.centers[:, 0]
    distance = np.linalg.norm(centers[:, None] - centers[None], axis=-1)
    same = problem.superclass[:, None] == problem.superclass[None]
    assert distance[same & ~np.eye(100, dtype=bool)].mean() < 0.5 * distance[~same].mean()


@pytest.mark.parametrize("noise", ["superclass", "block"])
def test_within_group_noise_keeps_the_group_and_redraws_uniformly_in_it(noise):
    problem = benchmark.make_problem(benchmark.Benchmark(), np.random.default_rng(0))
    labels = np.repeat(np.arange(100, dtype=np.int32), 400)
    noisy = benchmark.add_noise(labels, problem.superclass, noise, 0.6, np.random.default_rng(1))
    group = problem.superclass if noise == "superclass" else np.arange(100) // 5
    np.testing.assert_array_equal(group[noisy], group[labels])
    # With probability p the label is redrawn among the 5 of its group (itself included).
    assert np.mean(noisy != labels) == pytest.approx(0.6 * 4 / 5, abs=0.01)
    members = [np.flatnonzero(group == group[c]) for c in range(5)]
    for c in range(5):
        counts = np.array([np.sum(noisy[labels == c] == m) for m in members[c]]) / 400
        expected = np.where(members[c] == c, 0.4 + 0.6 / 5, 0.6 / 5)
        np.testing.assert_allclose(counts, expected, atol=0.06)


def test_uniform_noise_leaves_the_group_and_larger_p_adds_to_smaller():
    superclass = np.repeat(np.arange(20), 5)
    labels = np.repeat(np.arange(100, dtype=np.int32), 300)
    low = benchmark.add_noise(labels, superclass, "uniform", 0.3, np.random.default_rng(1))
    high = benchmark.add_noise(labels, superclass, "uniform", 0.6, np.random.default_rng(1))
    assert np.mean(low != labels) == pytest.approx(0.3 * 0.99, abs=0.01)
    assert np.mean(superclass[high] != superclass[labels]) == pytest.approx(0.6 * 0.95, abs=0.01)
    flipped_low = low != labels
    np.testing.assert_array_equal(high[flipped_low], low[flipped_low])  # common random numbers


def test_a_task_is_reproducible_with_clean_test_labels_and_shared_across_noise_levels():
    clean = benchmark.make_task(SMALL, seed=3)
    noisy = benchmark.make_task(dataclasses.replace(SMALL, noise="superclass", p=1.0), seed=3)
    again = benchmark.make_task(dataclasses.replace(SMALL, noise="superclass", p=1.0), seed=3)
    for a, b in zip(noisy[:4], again[:4]):
        np.testing.assert_array_equal(a, b)
    for i in (0, 2, 3):  # the same features and test labels; only the training labels differ
        np.testing.assert_array_equal(clean[i], noisy[i])
    x_train, y_clean = clean[0], clean[1]
    assert x_train.shape == (200, 3) and np.bincount(y_clean).tolist() == [10] * 20
    superclass = clean[4].superclass
    np.testing.assert_array_equal(superclass[noisy[1]], superclass[y_clean])
    assert np.mean(noisy[1] != y_clean) == pytest.approx(0.8, abs=0.1)


def test_bad_conditions_are_rejected():
    with pytest.raises(ValueError, match="noise"):
        benchmark.Benchmark(noise="gaussian")
    with pytest.raises(ValueError, match="p=1.5"):
        benchmark.Benchmark(noise="block", p=1.5)
