"""Split-conformal sets: the coverage guarantee on synthetic data, thresholds by brute force, ties.

The coverage tests draw fresh data for every calibration/test split from a
known distribution and compute every split at once in NumPy: the
non-conformity scores of the whole pool come from ``ConformalSets.scores_of``,
and each split's threshold is the ceil((m + 1)(1 - alpha))-th smallest of its
calibration scores, computed here with integer arithmetic (independently of
``calibrate``, which is checked against it on a few splits).
"""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from keras_topk import conformal
from keras_topk.conformal import ConformalSets, calibrate, evaluate_sets

ALPHAS = (0.01, 0.05, 0.1)
# (method, randomized) pairs; the randomised scores have no ties, the others may.
VARIANTS = [("topk", False), ("aps", False), ("aps", True), ("raps", False), ("raps", True)]


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sample_labels(rng, p):
    return (np.cumsum(p, axis=-1) > rng.uniform(size=p.shape[:-1] + (1,))).argmax(axis=-1)


def draw_overconfident(rng, size, n=10):
    """Logits of a model twice as confident as the truth: labels ~ softmax(logits / 2)."""
    logits = 4.0 * rng.normal(size=(size, n))
    return logits, sample_labels(rng, softmax(logits / 2.0))


def draw_long_tail(rng, size, n=200):
    """The RAPS paper's case: a confident model, the label among its top 5 classes 97% of the
    time, and a long tail of small probabilities spread over the other classes."""
    logits = rng.normal(size=(size, n))
    boost = np.zeros(n)
    boost[:5] = [6.0, 4.5, 4.0, 3.5, 3.0]
    logits += boost[np.argsort(rng.uniform(size=(size, n)), axis=1)]
    order = np.argsort(-logits, axis=1)
    u = rng.uniform(size=size)
    position = np.where(
        u < 0.75, 0, np.where(u < 0.97, rng.integers(1, 5, size), rng.integers(0, n, size))
    )
    return logits, order[np.arange(size), position]


def quantile_index(m, alpha):
    # ceil((m + 1)(1 - alpha)) with alpha as the decimal it prints as.
    return math.ceil((m + 1) * (1 - Fraction(repr(alpha))))


def simulate(draw, method, randomized, alphas, splits, m_cal, m_test, seed, **settings):
    """Coverage and mean set size of every split, for every alpha: ``{alpha: (cov, size)}``."""
    rng = np.random.default_rng(seed)
    m = m_cal + m_test
    logits, labels = draw(rng, splits * m)
    scorer = ConformalSets(
        method=method, alpha=0.5, threshold=0.0, randomized=randomized, **settings
    )
    scores = scorer.scores_of(logits, seed=seed + 1)
    n = scores.shape[-1]
    scores = scores.reshape(splits, m, n)
    label_scores = np.take_along_axis(scores, labels.reshape(splits, m, 1), axis=2)[..., 0]
    results = {}
    for alpha in alphas:
        q = np.sort(label_scores[:, :m_cal], axis=1)[:, quantile_index(m_cal, alpha) - 1]
        coverage = np.mean(label_scores[:, m_cal:] <= q[:, None], axis=1)
        sizes = np.mean(np.sum(scores[:, m_cal:] <= q[:, None, None], axis=2), axis=1)
        results[alpha] = (coverage, sizes)
    # calibrate() gives the same threshold on the same scores (first split).
    if not randomized:
        cal = calibrate(logits[:m_cal], labels[:m_cal], alphas[0], method, **settings)
        expected = np.sort(label_scores[0, :m_cal])[quantile_index(m_cal, alphas[0]) - 1]
        assert cal.threshold == expected
    return results


@pytest.mark.parametrize("method,randomized", VARIANTS)
def test_mean_coverage_over_random_splits_meets_the_guarantee(method, randomized):
    # m_cal = 99: for scores without ties the expected coverage is exactly
    # ceil(100 (1 - alpha)) / 100 = 1 - alpha for each alpha, and at most
    # 1 - alpha + 1/100. One order statistic more or less moves the mean by
    # 1/100, many Monte Carlo standard errors, so an off-by-one fails.
    splits, m_cal, m_test = 1000, 99, 200
    results = simulate(
        draw_overconfident, method, randomized, ALPHAS, splits, m_cal, m_test, seed=7
    )
    for alpha in ALPHAS:
        coverage, _ = results[alpha]
        mean = coverage.mean()
        error = coverage.std(ddof=1) / math.sqrt(splits)  # Monte Carlo standard error
        assert mean >= 1 - alpha - 3 * error, (alpha, mean, error)
        if randomized:
            assert mean <= 1 - alpha + 1 / (m_cal + 1) + 3 * error, (alpha, mean, error)
            # The exact expectation for scores without ties.
            exact = quantile_index(m_cal, alpha) / (m_cal + 1)
            assert abs(mean - exact) <= 4 * error, (alpha, mean, exact, error)


@pytest.mark.slow
@pytest.mark.parametrize("method,randomized", VARIANTS)
@pytest.mark.parametrize("m_cal", [99, 250, 1000])
def test_mean_coverage_many_splits_several_calibration_sizes(method, randomized, m_cal):
    splits = 3000 if m_cal < 1000 else 1000
    results = simulate(draw_overconfident, method, randomized, ALPHAS, splits, m_cal, 300, seed=11)
    for alpha in ALPHAS:
        coverage, _ = results[alpha]
        mean, error = coverage.mean(), coverage.std(ddof=1) / math.sqrt(splits)
        lower = quantile_index(m_cal, alpha) / (m_cal + 1)
        assert lower >= 1 - alpha
        assert mean >= lower - 3 * error
        if randomized:
            assert mean <= lower + 3 * error
            assert mean <= 1 - alpha + 1 / (m_cal + 1) + 3 * error


def test_raps_sets_are_smaller_than_aps_sets_with_a_long_tail():
    splits, m_cal, m_test, alpha = 8, 500, 500, 0.1
    aps = simulate(draw_long_tail, "aps", True, (alpha,), splits, m_cal, m_test, seed=3)[alpha]
    raps = simulate(
        draw_long_tail, "raps", True, (alpha,), splits, m_cal, m_test, seed=3, lam=0.01, k_reg=5
    )[alpha]
    # Same data and u (same seed): a paired comparison, split by split.
    assert np.all(raps[1] < aps[1]), (raps[1], aps[1])
    assert raps[1].mean() < 0.75 * aps[1].mean(), (raps[1].mean(), aps[1].mean())
    for coverage, _ in (aps, raps):
        assert coverage.mean() >= 1 - alpha - 3 * coverage.std(ddof=1) / math.sqrt(splits)


# --- exact checks without Monte Carlo error -----------------------------------------------


@pytest.mark.parametrize("method,randomized", VARIANTS)
@pytest.mark.parametrize("alpha", [0.1, 0.2, 0.34])
def test_leave_one_out_coverage_is_exactly_guaranteed(method, randomized, alpha, rng):
    # Exchangeability made exact: for a fixed pool of m + 1 examples, each in
    # turn is the test point and the other m calibrate. The mean over the m + 1
    # choices is the coverage conditional on the pool, >= 1 - alpha, and equal
    # to ceil((m + 1)(1 - alpha)) / (m + 1) when the scores have no ties.
    m, n = 14, 4
    for _trial in range(5):
        # Few distinct logits: ties everywhere (except in the randomised scores).
        logits = rng.integers(0, 3, size=(m + 1, n)).astype(float)
        labels = rng.integers(0, n, m + 1)
        scorer = ConformalSets(method=method, alpha=alpha, threshold=0.0, randomized=randomized)
        u_seed = int(rng.integers(1 << 30))
        all_scores = scorer.scores_of(logits, seed=u_seed)
        label_scores = all_scores[np.arange(m + 1), labels]
        hits = []
        for test in range(m + 1):
            rest = np.delete(np.arange(m + 1), test)
            q = np.sort(label_scores[rest])[quantile_index(m, alpha) - 1]
            hits.append(label_scores[test] <= q)
        assert np.mean(hits) >= 1 - alpha
        if len(np.unique(label_scores)) == m + 1:
            assert np.mean(hits) == pytest.approx(quantile_index(m, alpha) / (m + 1))


def full_conformal_p_value(calibration_scores, test_score):
    """The conformal p-value: the fraction of the m + 1 scores at least as strange as the test's."""
    return (1 + np.sum(calibration_scores >= test_score)) / (len(calibration_scores) + 1)


@pytest.mark.parametrize("method", ["topk", "aps", "raps"])
def test_sets_are_the_classes_whose_p_value_exceeds_alpha(method, rng):
    # A second definition of the same sets: y is in C(x) iff its conformal
    # p-value exceeds alpha, computed by brute force over the calibration scores.
    for _trial in range(20):
        m, n = int(rng.integers(10, 25)), int(rng.integers(2, 6))
        alpha = float(rng.choice([0.1, 0.2, 0.3, 0.5]))
        logits = rng.integers(0, 4, size=(m + 6, n)).astype(float)
        labels = rng.integers(0, n, m + 6)
        sets = calibrate(logits[:m], labels[:m], alpha, method, lam=0.05, k_reg=1)
        cal = sets.scores_of(logits[:m])[np.arange(m), labels[:m]]
        test = sets.scores_of(logits[m:])
        expected = np.array(
            [[full_conformal_p_value(cal, test[i, j]) > alpha for j in range(n)] for i in range(6)]
        )
        np.testing.assert_array_equal(sets.predict(logits[m:]), expected)


def brute_force_aps_score(p, label, u, lam=0.0, k_reg=0):
    """sum of p over classes ranked at or above the label (ties before it), label's own mass times u."""
    above = [j for j in range(len(p)) if j != label and p[j] >= p[label]]
    return sum(p[j] for j in above) + u * p[label] + lam * max(0, len(above) + 1 - k_reg)


def test_aps_and_raps_scores_match_their_definition_with_ties(rng):
    for _trial in range(50):
        n = int(rng.integers(1, 7))
        b = int(rng.integers(1, 5))
        logits = rng.integers(0, 3, size=(b, n)).astype(float)
        p = softmax(logits)
        for randomized in (False, True):
            seed = int(rng.integers(1000))
            u = np.random.default_rng(seed).uniform(size=b) if randomized else np.ones(b)
            for method, lam, k_reg in (("aps", 0.0, 0), ("raps", 0.2, 2)):
                sets = ConformalSets(method, 0.1, 0.0, randomized, lam=lam, k_reg=k_reg)
                got = sets.scores_of(logits, seed=seed)
                for i, j in itertools.product(range(b), range(n)):
                    expected = brute_force_aps_score(p[i], j, u[i], lam, k_reg)
                    assert got[i, j] == pytest.approx(expected, abs=1e-12)


def test_topk_threshold_on_a_hand_case():
    # Ten calibration examples, label ranks 0 x 6, 1 x 2, 2, 3. alpha = 0.2:
    # ceil(11 * 0.8) = 9th smallest rank = 2, so k_hat = 3.
    scores = np.array([[3.0, 2.0, 1.0, 0.0]] * 10)
    labels = np.array([0] * 6 + [1, 1, 2, 3])
    sets = calibrate(scores, labels, alpha=0.2, method="topk")
    assert sets.threshold == 2.0 and sets.k_hat == 3
    np.testing.assert_array_equal(sets.predict(scores[:1]), [[True, True, True, False]])
    assert [a.tolist() for a in sets.predict_indices(np.array([[0.0, 1.0, 3.0, 2.0]]))] == [
        [2, 3, 1]
    ]
    # alpha = 0.1: the 10th smallest = 3, every class.
    assert calibrate(scores, labels, alpha=0.1, method="topk").k_hat == 4
    # alpha = 0.5: ceil(5.5) = 6th smallest = 0: the top class only.
    assert calibrate(scores, labels, alpha=0.5, method="topk").k_hat == 1


def test_topk_sets_with_ties_follow_the_metric_rule():
    # Tied classes rank behind each other: with k_hat = 2, a three-way tie for
    # first place leaves the set empty, a two-way tie fills it.
    sets = ConformalSets("topk", 0.1, threshold=1.0)
    scores = np.array([[1.0, 1.0, 1.0, 0.0], [2.0, 2.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(
        sets.predict(scores),
        [[False, False, False, False], [True, True, False, False], [False, False, False, False]],
    )
    # Constant calibration scores: every rank is n - 1, so every set is the full set.
    full = calibrate(np.zeros((20, 4)), np.arange(20) % 4, alpha=0.1, method="topk")
    assert full.k_hat == 4
    assert full.predict(np.zeros((3, 4))).all()


def test_tied_probabilities_enter_aps_sets_together():
    sets = ConformalSets("aps", 0.1, threshold=0.7, from_logits=False)
    p = np.array([[0.3, 0.3, 0.3, 0.1], [0.5, 0.25, 0.25, 0.0]])
    # Row 0: each tied class scores 0.9 > 0.7: none enters (no arbitrary pick).
    # Row 1: 0.5, then both 0.25s score 1.0.
    np.testing.assert_array_equal(
        sets.predict(p), [[False, False, False, False], [True, False, False, False]]
    )


def test_label_ranks_and_candidates_by_brute_force(rng):
    for _trial in range(30):
        b, n = int(rng.integers(1, 30)), int(rng.integers(1, 8))
        scores = rng.integers(0, 3, size=(b, n)).astype(float)
        labels = rng.integers(0, n, b)
        ranks = conformal.label_ranks(scores, labels)
        expected = [
            sum(scores[i, j] >= scores[i, labels[i]] for j in range(n) if j != labels[i])
            for i in range(b)
        ]
        np.testing.assert_array_equal(ranks, expected)
        coverages = (0.3, 0.5, 0.9, 1.0)
        got = conformal.candidates_for_coverage(scores, labels, coverages)
        for c in coverages:
            # Enumerate k: the first whose top-k accuracy reaches c.
            k = next(k for k in range(1, n + 1) if np.mean(np.array(expected) < k) >= c - 1e-12)
            assert got[c] == k


def test_candidates_are_exact_at_decimal_coverages():
    # 9 of 10 labels ranked first: top-1 accuracy is exactly 0.9 (0.9 * 10 in
    # floating point is 9.000000000000002 and must not push k to 2).
    scores = np.array([[1.0, 0.0]] * 10)
    labels = np.array([0] * 9 + [1])
    assert conformal.candidates_for_coverage(scores, labels, (0.9, 0.91)) == {0.9: 1, 0.91: 2}
    weights = np.array([1.0] * 9 + [3.0])
    assert conformal.candidates_for_coverage(scores, labels, (0.75,), sample_weight=weights) == {
        0.75: 1
    }


def test_quantile_index_is_the_decimal_one():
    # (99 + 1)(1 - 0.1) = 90 exactly, not 90.00000000000001 (which would give 91).
    sets = calibrate(np.tile(np.arange(5.0), (99, 1)), np.arange(99) % 5, 0.1, "topk")
    ranks = np.sort(4 - np.arange(99) % 5)
    assert sets.threshold == ranks[89]
    assert conformal.min_calibration_size(0.1) == 9
    assert conformal.min_calibration_size(0.01) == 99
    assert quantile_index(conformal.min_calibration_size(0.05), 0.05) <= 19
    assert quantile_index(18, 0.05) > 18


def test_evaluate_sets_masks_and_indices_agree(rng):
    logits, labels = draw_overconfident(rng, 400)
    sets = calibrate(logits[:200], labels[:200], 0.1, "raps", randomized=True, seed=0)
    mask = sets.predict(logits[200:], seed=5)
    indices = sets.predict_indices(logits[200:], seed=5)
    report = evaluate_sets(mask, labels[200:])
    assert report == evaluate_sets(indices, labels[200:])
    assert report["coverage"] == pytest.approx(np.mean(mask[np.arange(200), labels[200:]]))
    assert report["mean_size"] == pytest.approx(mask.sum(1).mean())
    assert report["median_size"] == np.median(mask.sum(1))
    for row, idx, s in zip(mask, indices, logits[200:]):
        assert sorted(idx.tolist()) == np.flatnonzero(row).tolist()
        assert np.all(np.diff(s[idx]) <= 0)  # most likely first


def test_leading_axes_and_probability_inputs(rng):
    logits, labels = draw_overconfident(rng, 240)
    sets = calibrate(logits[:120].reshape(12, 10, 10), labels[:120].reshape(12, 10), 0.1, "aps")
    flat = calibrate(logits[:120], labels[:120], 0.1, "aps")
    assert sets.threshold == flat.threshold
    mask = sets.predict(logits[120:].reshape(4, 30, 10))
    assert mask.shape == (4, 30, 10)
    np.testing.assert_array_equal(mask.reshape(-1, 10), flat.predict(logits[120:]))
    probs = calibrate(softmax(logits[:120]), labels[:120], 0.1, "aps", from_logits=False)
    assert probs.threshold == pytest.approx(flat.threshold, abs=1e-12)
    one_hot = calibrate(logits[:120], np.eye(10)[labels[:120]], 0.1, "aps")
    assert one_hot.threshold == flat.threshold


def test_predict_sets_runs_a_keras_model(rng):
    import keras

    logits, labels = draw_overconfident(rng, 300)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Identity()])
    sets = calibrate(logits[:150], labels[:150], 0.1, "topk")
    np.testing.assert_array_equal(
        conformal.predict_sets(model, logits[150:].astype("float32"), sets, batch_size=64),
        sets.predict(logits[150:].astype("float32")),
    )
    indices = conformal.predict_sets(
        model, logits[150:153].astype("float32"), sets, as_indices=True
    )
    assert [len(i) for i in indices] == [sets.k_hat] * 3


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: calibrate(np.zeros((50, 3)), np.zeros(50, int), 0.0), "strictly between 0 and 1"),
        (lambda: calibrate(np.zeros((50, 3)), np.zeros(50, int), 1.0), "strictly between 0 and 1"),
        (lambda: calibrate(np.zeros((50, 3)), np.zeros(50, int), True), "number in"),
        (lambda: calibrate(np.zeros((50, 3)), np.zeros(50, int), 0.01), "at least 99 calibration"),
        (lambda: calibrate(np.zeros((8, 3)), np.zeros(8, int), 0.1), "at least 9 calibration"),
        (lambda: calibrate(np.zeros((50, 3)), np.zeros(49, int), 0.1), "do not match"),
        (lambda: calibrate(np.zeros((50, 3)), np.full(50, 3), 0.1), r"in \[0, 3\)"),
        (lambda: calibrate(np.zeros((50, 3)), np.full(50, 0.5), 0.1), "whole class indices"),
        (lambda: calibrate(np.full((50, 3), np.nan), np.zeros(50, int), 0.1), "NaN"),
        (lambda: calibrate(np.zeros((50, 3)), np.zeros(50, int), 0.1, "lac"), "must be one of"),
        (lambda: calibrate(np.zeros((50, 3)), np.zeros(50, int), 0.1, randomized=True), "randomi"),
        (lambda: calibrate(np.zeros((50, 3)), np.zeros(50, int), 0.1, "raps", lam=-1), "`lam`"),
        (lambda: calibrate(np.zeros((50, 3)), np.zeros(50, int), 0.1, "raps", k_reg=1.5), "k_reg"),
        (lambda: calibrate(np.zeros(50), np.zeros(50, int), 0.1), "num_classes"),
        (
            lambda: calibrate(np.zeros((50, 3)), np.zeros(50, int), 0.1, "aps", from_logits=False),
            "sum to 1",
        ),
        (lambda: calibrate(np.full((50, 3), np.inf), np.zeros(50, int), 0.1, "aps"), r"\+inf"),
        (lambda: ConformalSets("topk", 0.1, 1.0).predict(np.array([[np.nan, 1.0]])), "NaN"),
        (
            lambda: conformal.candidates_for_coverage(np.zeros((4, 3)), [0] * 4, (0.9, 1.5)),
            r"\(0, 1\]",
        ),
        (lambda: evaluate_sets(np.zeros((2, 3)), [0, 1]), "boolean masks"),
    ],
)
def test_bad_input_raises_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def coverage_table(splits=1000, m_cal=99, m_test=200, seed=7):
    """The figures of the coverage table: ``python -m tests.test_conformal``."""
    rows = []
    for method, randomized in VARIANTS:
        results = simulate(
            draw_overconfident, method, randomized, ALPHAS, splits, m_cal, m_test, seed
        )
        for alpha in ALPHAS:
            coverage, sizes = results[alpha]
            rows.append(
                (
                    method + (" (randomised)" if randomized else ""),
                    alpha,
                    coverage.mean(),
                    coverage.std(ddof=1) / math.sqrt(splits),
                    1 - alpha,
                    1 - alpha + 1 / (m_cal + 1),
                    sizes.mean(),
                    np.median(sizes),
                )
            )
    return rows


if __name__ == "__main__":
    print(
        "| method | alpha | mean coverage (+- s.e.) | lower 1-alpha | upper 1-alpha+1/(m+1) "
        "| mean set size | median of split mean sizes |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, alpha, mean, error, lower, upper, size, median in coverage_table():
        print(
            f"| {name} | {alpha} | {mean:.4f} +- {error:.4f} | {lower:.3f} | {upper:.3f} "
            f"| {size:.2f} | {median:.2f} |"
        )
    print("\nLong tail (200 classes), alpha = 0.1, 8 splits of 500 + 500, randomised:")
    for method in ("aps", "raps"):
        coverage, sizes = simulate(draw_long_tail, method, True, (0.1,), 8, 500, 500, seed=3)[0.1]
        print(f"| {method} | {coverage.mean():.4f} | {sizes.mean():.2f} |")
