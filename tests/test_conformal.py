"""Split-conformal sets: the coverage guarantee on synthetic data, thresholds by brute force, ties.

The coverage tests draw fresh data for every calibration/test split from a
known distribution and compute every split at once in NumPy: the
non-conformity scores of the whole pool come from ``ConformalSets.scores_of``,
and each split's threshold is the ceil((m + 1)(1 - alpha))-th smallest of its
calibration scores, computed here with integer arithmetic (independently of
``calibrate``, which is checked against it on a few splits).
"""

import dataclasses
import itertools
import math
import warnings
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
    # Non-randomised APS/RAPS sets also hold the top class (these logits have no ties).
    forced = method != "topk" and not randomized
    top = (logits == logits.max(axis=-1, keepdims=True)).reshape(splits, m, n) & forced
    label_top = np.take_along_axis(top, labels.reshape(splits, m, 1), axis=2)[..., 0]
    results = {}
    for alpha in alphas:
        q = np.sort(label_scores[:, :m_cal], axis=1)[:, quantile_index(m_cal, alpha) - 1]
        covered = (label_scores[:, m_cal:] <= q[:, None]) | label_top[:, m_cal:]
        coverage = np.mean(covered, axis=1)
        members = (scores[:, m_cal:] <= q[:, None, None]) | top[:, m_cal:]
        sizes = np.mean(np.sum(members, axis=2), axis=1)
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
    # p-value exceeds alpha, computed by brute force over the calibration scores
    # (non-randomised APS/RAPS: or y ties for the highest logit).
    for _trial in range(20):
        m, n = int(rng.integers(10, 25)), int(rng.integers(2, 6))
        alpha = float(rng.choice([0.1, 0.2, 0.3, 0.5]))
        logits = rng.integers(0, 4, size=(m + 6, n)).astype(float)
        labels = rng.integers(0, n, m + 6)
        sets = calibrate(logits[:m], labels[:m], alpha, method, lam=0.05, k_reg=1)
        cal = sets.scores_of(logits[:m])[np.arange(m), labels[:m]]
        test = sets.scores_of(logits[m:])
        expected = np.array(
            [
                [
                    full_conformal_p_value(cal, test[i, j]) > alpha
                    or (method != "topk" and logits[m + i, j] == logits[m + i].max())
                    for j in range(n)
                ]
                for i in range(6)
            ]
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
    p = np.array([[0.3, 0.3, 0.3, 0.1], [0.5, 0.25, 0.25, 0.0], [0.4, 0.2, 0.2, 0.2]])
    # Row 0: each tied class scores 0.9 > 0.7, but they tie for the top: all
    # three enter (the top group is always in; no arbitrary pick of one).
    # Row 1: 0.5, then both 0.25s score 1.0. Row 2: 0.4, then the three 0.2s score 1.0.
    np.testing.assert_array_equal(
        sets.predict(p),
        [[True, True, True, False], [True, False, False, False], [True, False, False, False]],
    )
    wider = ConformalSets("aps", 0.1, threshold=0.8, from_logits=False)
    np.testing.assert_array_equal(wider.predict(p[2:]), [[True, False, False, False]])
    np.testing.assert_allclose(wider.scores_of(p[2:]), [[0.4, 1.0, 1.0, 1.0]], atol=1e-12)


# --- non-randomised sets always hold the top class (issue 20, item 1) ---------------------


def test_the_issue_example_holds_the_top_class():
    sets = calibrate([[0.7, 0.2, 0.1]] * 9, [0] * 9, 0.1, "aps", from_logits=False)
    # Nine label scores 0.7: the threshold is 0.7, below the new example's top score 0.8.
    assert sets.threshold == pytest.approx(0.7)
    np.testing.assert_array_equal(sets.predict([[0.8, 0.1, 0.1]]), [[True, False, False]])
    raps = calibrate([[0.7, 0.2, 0.1]] * 9, [0] * 9, 0.1, "raps", from_logits=False, k_reg=0)
    assert raps.threshold == pytest.approx(0.7 + 0.01)
    np.testing.assert_array_equal(raps.predict([[0.8, 0.1, 0.1]]), [[True, False, False]])
    # A tie for the top enters whole, even when its score (0.8) exceeds the threshold.
    np.testing.assert_array_equal(sets.predict([[0.4, 0.4, 0.2]]), [[True, True, False]])


@pytest.mark.parametrize("method", ["aps", "raps"])
def test_non_randomised_sets_are_the_threshold_sets_plus_the_top_group(method, rng):
    # Confident examples whose top probability alone exceeds the threshold: the
    # set is {S <= q} with the classes of highest logit added, never empty.
    empty_before = 0
    for _trial in range(20):
        n = int(rng.integers(2, 7))
        logits = np.concatenate(
            [rng.normal(size=(60, n)), rng.integers(0, 3, size=(40, n)) * 4.0]
        )  # continuous rows, and confident rows with ties
        labels = rng.integers(0, n, 100)
        sets = calibrate(logits[:50], labels[:50], 0.2, method, lam=0.05, k_reg=1)
        scores = sets.scores_of(logits[50:])
        top = logits[50:] == logits[50:].max(axis=1, keepdims=True)
        mask = sets.predict(logits[50:])
        np.testing.assert_array_equal(mask, (scores <= sets.threshold) | top)
        assert mask.any(axis=1).all()
        empty_before += int(np.sum(~(scores <= sets.threshold).any(axis=1)))
    assert empty_before > 0  # the rule made a difference in these draws


def test_randomised_sets_may_still_be_empty():
    # Randomised APS, p = (0.8, 0.1, 0.1), threshold 0.3: the top class's score is
    # u * 0.8, so it enters iff u <= 0.375 (u drawn from the seed, as predict does).
    sets = ConformalSets("aps", 0.1, 0.3, randomized=True, from_logits=False)
    p = np.tile([0.8, 0.1, 0.1], (200, 1))
    u = np.random.default_rng(4).uniform(size=200)
    mask = sets.predict(p, seed=4)
    np.testing.assert_array_equal(mask[:, 0], u * 0.8 <= 0.3)
    assert not mask[:, 1:].any()
    assert 0 < np.sum(~mask.any(axis=1)) < 200


# --- the class count, hand-built objects, masks, probabilities (issue 20, item 5) -------


def test_sets_remember_their_class_count(rng):
    import keras

    logits, labels = draw_overconfident(rng, 100)
    for method in ("topk", "aps", "raps"):
        sets = calibrate(logits, labels, 0.1, method)
        assert sets.num_classes == 10
        for width in (3, 15):
            other = rng.normal(size=(4, width))
            for call in (sets.predict, sets.scores_of, sets.predict_indices):
                with pytest.raises(ValueError, match="3 classes|15 classes") as error:
                    call(other)
                assert "calibrated on 10 classes" in str(error.value)
            model = keras.Sequential([keras.Input((width,)), keras.layers.Identity()])
            with pytest.raises(ValueError, match=f"`model` outputs {width} classes"):
                conformal.predict_sets(model, other.astype("float32"), sets)
        assert sets.predict(logits[:4]).shape == (4, 10)


def test_sets_saved_without_a_class_count_still_load(rng):
    logits, labels = draw_overconfident(rng, 100)
    sets = calibrate(logits, labels, 0.1, "raps", randomized=True, seed=0)
    saved = dataclasses.asdict(sets)
    assert ConformalSets(**saved) == sets
    old = {k: v for k, v in saved.items() if k != "num_classes"}  # the fields before the count
    loaded = ConformalSets(**old)
    assert loaded.num_classes is None
    np.testing.assert_array_equal(
        loaded.predict(logits[:5], seed=1), sets.predict(logits[:5], seed=1)
    )
    assert loaded.predict(rng.normal(size=(2, 4)), seed=1).shape == (2, 4)  # any width


# pickle.dumps(ConformalSets("raps", 0.1, 0.85, lam=0.02, k_reg=2, n_calibration=50),
# protocol=4) made by keras_topk.conformal before it had the class count (commit bd90432).
OLD_PICKLE = (
    "gASVsAAAAAAAAACMFGtlcmFzX3RvcGsuY29uZm9ybWFslIwNQ29uZm9ybWFsU2V0c5STlCmBlH2UKIwGbWV0aG9klIwE"
    "cmFwc5SMBWFscGhhlEc/uZmZmZmZmowJdGhyZXNob2xklEc/6zMzMzMzM4wKcmFuZG9taXplZJSJjAtmcm9tX2xvZ2l0"
    "c5SIjANsYW2URz+UeuFHrhR7jAVrX3JlZ5RLAowNbl9jYWxpYnJhdGlvbpRLMnViLg=="
)


def test_sets_pickled_before_the_class_count_still_load(rng):
    import base64
    import pickle

    loaded = pickle.loads(base64.b64decode(OLD_PICKLE))
    assert loaded == ConformalSets("raps", 0.1, 0.85, lam=0.02, k_reg=2, n_calibration=50)
    assert loaded.num_classes is None
    # p = (0.5, 0.3, 0.2): RAPS scores 0.5, 0.8 and 1.0 + 0.02 * (3 - 2), threshold 0.85.
    np.testing.assert_array_equal(loaded.predict(np.log([[0.5, 0.3, 0.2]])), [[True, True, False]])
    # A pickle of today's sets names the public module and keeps the count.
    logits, labels = draw_overconfident(rng, 100)
    sets = calibrate(logits, labels, 0.1, "aps")
    data = pickle.dumps(sets, protocol=4)
    assert b"keras_topk.conformal\x94" in data
    assert pickle.loads(data) == sets and pickle.loads(data).num_classes == 10


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"method": "lac"}, "Unknown `method` 'lac'; expected one of"),
        ({"method": None}, "Unknown `method` None; expected one of"),
        ({"alpha": 0.0}, "strictly between 0 and 1"),
        ({"alpha": 1.5}, "strictly between 0 and 1"),
        ({"alpha": "0.1"}, "`alpha` must be a number"),
        ({"threshold": float("nan")}, "`threshold` must be finite"),
        ({"threshold": float("inf")}, "`threshold` must be finite"),
        ({"threshold": -0.5}, "`threshold` must be >= 0"),
        ({"threshold": "1"}, "`threshold` must be a real number"),
        ({"method": "topk", "threshold": 1.5}, "whole number"),
        ({"method": "topk", "threshold": 3.0, "num_classes": 3}, "at most num_classes - 1 = 2"),
        ({"num_classes": 0}, "`num_classes` must be >= 1"),
        ({"num_classes": 2.5}, "`num_classes` must be an integer"),
        ({"num_classes": True}, "`num_classes` must be an integer"),
        ({"method": "topk", "threshold": 1.0, "randomized": True}, "randomi"),
        ({"randomized": 1}, "`randomized` must be True or False"),
        ({"from_logits": "yes"}, "`from_logits` must be True or False"),
        ({"lam": -0.1}, "`lam` must be >= 0"),
        ({"k_reg": -1}, "`k_reg` must be >= 0"),
        ({"n_calibration": -3}, "`n_calibration` must be >= 0"),
    ],
)
def test_hand_built_sets_are_validated(fields, message):
    base = {"method": "aps", "alpha": 0.1, "threshold": 0.9}
    with pytest.raises(ValueError, match=message):
        ConformalSets(**{**base, **fields})


def test_hand_built_fields_are_normalised():
    sets = ConformalSets("topk", np.float32(0.25), np.int64(2), k_reg=3.0, num_classes=np.int32(4))
    assert (sets.alpha, sets.threshold, sets.k_reg, sets.num_classes) == (0.25, 2.0, 3, 4)
    assert type(sets.threshold) is float and type(sets.num_classes) is int
    assert sets.k_hat == 3


def test_masked_classes_never_enter_a_set():
    inf = np.inf
    logits = np.array([[2.0, 1.0, 0.0, -inf], [-inf, 0.0, -inf, 0.0]])
    mask_of_masked = np.isneginf(logits)
    # Thresholds at and beyond 1: every unmasked class is in, never a masked one.
    for threshold in (1.0, 1.0 + 1e-9, 5.0):
        for sets in (
            ConformalSets("aps", 0.1, threshold),
            ConformalSets("aps", 0.1, threshold, randomized=True),
            ConformalSets("raps", 0.1, threshold, lam=0.0),
        ):
            np.testing.assert_array_equal(sets.predict(logits, seed=0), ~mask_of_masked)
            assert np.all(np.isposinf(sets.scores_of(logits, seed=0)[mask_of_masked]))
    # A zero probability with from_logits=False is masked alike.
    p = np.array([[0.5, 0.5, 0.0]])
    np.testing.assert_array_equal(
        ConformalSets("aps", 0.1, 1.0, from_logits=False).predict(p), [[True, True, False]]
    )
    # Top-k: k_hat = n would hold every class; the -inf ones stay out.
    np.testing.assert_array_equal(ConformalSets("topk", 0.1, 3.0).predict(logits), ~mask_of_masked)
    with pytest.raises(ValueError, match="-inf everywhere"):
        ConformalSets("topk", 0.1, 3.0).predict(np.full((1, 4), -inf))


def test_masked_calibration_labels_count_as_uncovered():
    # 30 examples, alpha = 0.1: the threshold is the ceil(31 * 0.9) = 28th smallest
    # label score. Two masked labels score +inf and sit above it; three make it
    # +inf, which no finite set reaches: refused.
    logits = np.tile([3.0, 1.0, 0.0, -np.inf], (30, 1))
    labels = np.array([0] * 28 + [3, 3])
    for method in ("aps", "raps", "topk"):
        sets = calibrate(logits, labels, 0.1, method)
        scores = sets.scores_of(logits)[np.arange(30), labels]
        assert np.isposinf(scores[-2:]).all()
        assert sets.threshold == np.sort(scores)[27] == scores[0]
        with pytest.raises(ValueError, match="3 of 30 calibration labels"):
            calibrate(logits, np.array([0] * 27 + [3, 3, 3]), 0.1, method)


def test_probabilities_passed_as_logits_warn_once_per_object(rng):
    logits, labels = draw_overconfident(rng, 100)
    probs = softmax(logits)

    def warned(run):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run()
        return [str(w.message) for w in caught if issubclass(w.category, UserWarning)]

    for method in ("aps", "raps"):
        sets = ConformalSets(method, 0.1, 0.9)
        messages = warned(lambda: [sets.predict(probs), sets.scores_of(probs), sets.predict(probs)])
        assert len(messages) == 1 and "look like probabilities" in messages[0]
        assert not warned(lambda: sets.predict(probs))  # this object has warned
        assert len(warned(lambda: ConformalSets(method, 0.1, 0.9).predict(probs))) == 1
        # calibrate warns once, and the object it returns does not warn again.
        assert len(warned(lambda: calibrate(probs, labels, 0.1, method).predict(probs))) == 1
        # Logits, or probabilities declared as such, do not warn.
        assert not warned(lambda: ConformalSets(method, 0.1, 0.9).predict(logits))
        assert not warned(lambda: calibrate(probs, labels, 0.1, method, from_logits=False))
    # Top-k uses only the order: probabilities are fine there.
    assert not warned(lambda: calibrate(probs, labels, 0.1, "topk").predict(probs))


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
        (
            lambda: calibrate(np.zeros((50, 3)), np.zeros(50, int), 0.1, "lac"),
            "Unknown `method` 'lac'",
        ),
        (
            # An array is not a method name: refused by name, not by NumPy's ambiguous truth value.
            lambda: calibrate(np.zeros((50, 3)), np.zeros(50, int), 0.1, np.array(["aps", "raps"])),
            "Unknown `method`",
        ),
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
