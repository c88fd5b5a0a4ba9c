from fractions import Fraction

import keras
import numpy as np
import pytest

import keras_topk
from keras_topk import conformal
from keras_topk.metrics import CandidatesForCoverage, TopKAccuracy
from keras_topk.metrics.coverage import candidates_from_histogram, rank_histogram
from tests.metrics.metric_runs import TF, brute_ranks, run, tied, to_numpy

COVERAGES = (0.3, 0.5, 0.9, 0.95, 0.99, 1.0)


def brute_candidates(scores, labels, coverages, weights=None):
    """Enumerate k = 1..n: the first whose (weighted) top-k accuracy reaches each coverage."""
    ranks = brute_ranks(scores, labels)
    n = np.shape(scores)[-1]
    out = {}
    for c in coverages:
        for k in range(1, n + 1):
            if weights is None:  # exact: counts against the decimal coverage
                reached = Fraction(int(np.sum(ranks < k)), len(ranks)) >= Fraction(repr(c))
            else:
                w = np.asarray(weights, dtype=np.float64).reshape(-1)
                reached = np.sum(w * (ranks < k)) >= c * np.sum(w) * (1 - 1e-9)
            if reached:
                out[c] = float(k)
                break
    return out


def keyed(values, coverages):
    return {f"candidates_for_{100 * c:.10g}": values[c] for c in coverages}


@pytest.mark.parametrize("mode", ["eager", "xla"])
@pytest.mark.parametrize("n", [1, 2, 7, 30])
def test_random_and_tied_scores_match_enumeration(mode, n, rng):
    for scores in (rng.normal(size=(64, n)).astype("float32"), tied(rng, (64, n))):
        labels = rng.integers(0, n, 64)
        got = run(
            lambda: CandidatesForCoverage(COVERAGES, num_classes=n),
            [(labels[:40], scores[:40]), (labels[40:], scores[40:])],
            mode,
        )
        assert got == keyed(brute_candidates(scores, labels, COVERAGES), COVERAGES)


@pytest.mark.parametrize("mode", ["eager", "xla"])
def test_sample_weight_and_leading_axes(mode, rng):
    b, t, n = 6, 5, 9
    scores = tied(rng, (b, t, n), levels=4)
    labels = rng.integers(0, n, (b, t))
    per_position = rng.uniform(0, 2, (b, t)).astype("float32")
    per_row = np.array([1.0, 0.0, 2.0, 0.5, 1.0, 3.0], "float32")
    for w, expected_w in ((per_position, per_position), (per_row, np.repeat(per_row, t))):
        got = run(
            lambda: CandidatesForCoverage(COVERAGES, num_classes=n), [(labels, scores, w)], mode
        )
        assert got == keyed(brute_candidates(scores, labels, COVERAGES, expected_w), COVERAGES)
    # One-hot labels, and the column form, agree with integer labels.
    for form in (np.eye(n, dtype="float32")[labels], labels[..., None]):
        got = run(lambda: CandidatesForCoverage(COVERAGES, num_classes=n), [(form, scores)], mode)
        assert got == keyed(brute_candidates(scores, labels, COVERAGES), COVERAGES)


def test_decimal_coverages_are_reached_exactly():
    # 99 of 100 labels ranked first: top-1 accuracy is exactly 99%, although
    # float32(0.99) * 100 > 99.
    scores = np.tile(np.array([[1.0, 0.0]], "float32"), (100, 1))
    labels = np.array([0] * 99 + [1])
    m = CandidatesForCoverage((0.9, 0.99, 0.991))
    m.update_state(labels, scores)
    assert to_numpy(m.result()) == {
        "candidates_for_90": 1.0,
        "candidates_for_99": 1.0,
        "candidates_for_99.1": 2.0,
    }


def test_state_is_the_rank_histogram_and_gives_every_topk_accuracy(rng):
    n = 8
    scores, labels = tied(rng, (50, n)), rng.integers(0, n, 50)
    m = CandidatesForCoverage()
    m.update_state(labels, scores)
    np.testing.assert_array_equal(
        to_numpy(m.histogram), np.bincount(brute_ranks(scores, labels), minlength=n)
    )
    np.testing.assert_array_equal(to_numpy(rank_histogram(labels, scores)), to_numpy(m.histogram))
    accuracies = to_numpy(m.topk_accuracies())
    for k in range(1, n + 1):
        top = TopKAccuracy(k)
        top.update_state(labels, scores)
        assert accuracies[k - 1] == pytest.approx(float(top.result()), abs=1e-6)
    # The NumPy function of keras_topk.conformal gives the same candidates.
    expected = conformal.candidates_for_coverage(scores, labels, (0.9, 0.95, 0.99))
    assert to_numpy(m.result()) == {
        f"candidates_for_{round(100 * c)}": float(k) for c, k in expected.items()
    }


def test_batches_merge_exactly_and_reset(rng):
    n = 12
    scores, labels = rng.normal(size=(90, n)).astype("float32"), rng.integers(0, n, 90)
    whole, parts = CandidatesForCoverage(), CandidatesForCoverage()
    whole.update_state(labels, scores)
    for i in range(0, 90, 7):
        parts.update_state(labels[i : i + 7], scores[i : i + 7])
    assert to_numpy(whole.result()) == to_numpy(parts.result())
    parts.reset_state()
    assert set(to_numpy(parts.result()).values()) == {0.0}


def test_constant_scores_need_every_class():
    m = CandidatesForCoverage((0.1, 0.99))
    m.update_state(np.arange(6) % 3, np.zeros((6, 3), "float32"))
    assert to_numpy(m.result()) == {"candidates_for_10": 3.0, "candidates_for_99": 3.0}


def test_candidates_from_histogram_by_hand():
    values = to_numpy(
        candidates_from_histogram(np.array([5.0, 0.0, 4.0, 1.0]), (0.5, 0.51, 0.9, 1.0))
    )
    np.testing.assert_array_equal(values, [1.0, 3.0, 3.0, 4.0])
    np.testing.assert_array_equal(to_numpy(candidates_from_histogram(np.zeros(3), (0.9,))), [0.0])


def test_state_is_made_at_the_first_update_or_up_front(rng):
    lazy = CandidatesForCoverage()
    assert not lazy.variables and set(to_numpy(lazy.result()).values()) == {0.0}
    lazy.update_state([0, 1], rng.normal(size=(2, 5)).astype("float32"))
    assert lazy.num_classes == 5 and len(lazy.variables) == 1
    with pytest.raises(ValueError, match="holds state for 5 classes but got scores with 4"):
        lazy.update_state([0], np.zeros((1, 4), "float32"))
    fixed = CandidatesForCoverage(num_classes=4)
    assert len(fixed.variables) == 1
    with pytest.raises(ValueError, match="holds state for 4 classes but got scores with 5"):
        fixed.update_state([0], np.zeros((1, 5), "float32"))
    # The configuration keeps what was asked, not what was inferred.
    assert lazy.get_config()["num_classes"] is None


def test_keras_mask_on_predictions_is_honoured(rng):
    if not TF:
        pytest.skip("sets a Keras mask on a TensorFlow tensor")
    import tensorflow as tf

    from keras_topk._backend import set_keras_mask

    scores, labels = tied(rng, (3, 4, 6)), rng.integers(0, 6, (3, 4))
    mask = rng.integers(0, 2, (3, 4)).astype(bool)
    mask[0, 0] = True
    masked = tf.constant(scores)
    set_keras_mask(masked, tf.constant(mask))
    m = CandidatesForCoverage(COVERAGES)
    m.update_state(labels, masked)
    assert to_numpy(m.result()) == keyed(
        brute_candidates(scores, labels, COVERAGES, mask.astype(float)), COVERAGES
    )


def test_fit_logs_one_entry_per_coverage_and_lower_is_better(rng):
    x = rng.normal(size=(64, 5)).astype("float32")
    y = rng.integers(0, 4, 64)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)])
    model.compile(
        "sgd",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[CandidatesForCoverage((0.9, 0.99))],
        jit_compile=True,
    )
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0, validation_data=(x, y))
    assert {"candidates_for_90", "candidates_for_99", "val_candidates_for_99"} <= set(
        history.history
    )
    logs = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    expected = brute_candidates(model.predict(x, verbose=0), y, (0.9, 0.99))
    assert (
        logs["candidates_for_90"] == expected[0.9] and logs["candidates_for_99"] == expected[0.99]
    )
    assert CandidatesForCoverage()._direction == "down"


# --- bad input (this class is outside the single-label table of tests/contract) ----------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(coverages=(0.9, 0.0)), r"in \(0, 1\]"),
        (dict(coverages=(1.5,)), r"in \(0, 1\]"),
        (dict(coverages=(float("nan"),)), r"in \(0, 1\]"),
        (dict(coverages=()), "at least one"),
        (dict(coverages=0.9), "sequence"),
        (dict(coverages=(0.9, 0.9)), "repeat"),
        (dict(coverages=(True,)), "a number"),
        (dict(coverages=(np.True_,)), "a number"),
        (dict(key_format="candidates"), "key_format"),
        (dict(key_format="{percent}_{k}"), "key_format"),
        (dict(num_classes=0), "must be >= 1"),
        (dict(num_classes=2.5), "must be an integer"),
    ],
)
def test_bad_configuration_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CandidatesForCoverage(**kwargs)


@pytest.mark.parametrize(
    "coverages",
    [(0.9, 0.0), (1.5,), (float("nan"),), (), "0.9", (0.9, 0.9), (True,), (0.9, "high")],
)
def test_the_metric_and_conformal_refuse_coverages_alike(coverages):
    # One check serves both: the same bad coverages, the same message.
    with pytest.raises(ValueError) as from_metric:
        CandidatesForCoverage(coverages)
    with pytest.raises(ValueError) as from_conformal:
        conformal.candidates_for_coverage(np.zeros((4, 3)), [0, 1, 2, 0], coverages)
    assert str(from_metric.value) == str(from_conformal.value)


def _update(labels, scores):
    m = CandidatesForCoverage((0.5, 1.0))
    m.update_state(labels, scores)
    return to_numpy(m.result())


@pytest.mark.parametrize(
    "labels,scores,match",
    [
        (np.zeros((8, 3), "float32"), np.zeros((8, 10), "float32"), "do not match"),
        (np.zeros((7,), "int32"), np.zeros((8, 10), "float32"), "disagree on the batch size"),
        (np.array([0, 10]), np.zeros((2, 10), "float32"), r"class indices in \[0, 10\)"),
        (np.array([0, -1]), np.zeros((2, 10), "float32"), r"class indices in \[0, 10\)"),
        (np.array([0.5, 1.0], "float32"), np.zeros((2, 10), "float32"), "whole numbers"),
        (np.array([0, 1]), np.zeros((2, 10), "int32"), "floating-point logits"),
        (np.int32(0), np.float32(1.0), "must have a class axis"),
    ],
)
def test_bad_input_raises(labels, scores, match):
    with pytest.raises(ValueError, match=match):
        _update(labels, scores)


def test_documented_results_for_odd_input(rng):
    n = 10
    scores, labels = rng.normal(size=(8, n)).astype("float32"), rng.integers(0, 7, 8)
    # Empty batch: nothing seen, every entry 0.
    assert set(_update(np.zeros((0,), "int32"), np.zeros((0, n), "float32")).values()) == {0.0}
    # Classes masked with -inf rank as with a very negative score.
    masked = scores.copy()
    masked[:, 7:] = -np.inf
    assert _update(labels, masked) == _update(labels, np.where(np.isinf(masked), -1e20, masked))
    # NaN counts against the label: as +inf elsewhere, as -inf on the label.
    nan, against = scores.copy(), scores.copy()
    nan[2, (labels[2] + 1) % n], against[2, (labels[2] + 1) % n] = np.nan, np.inf
    nan[5, labels[5]], against[5, labels[5]] = np.nan, -np.inf
    m = CandidatesForCoverage((1.0,))
    m.update_state(labels, nan)
    histogram = to_numpy(m.histogram)
    assert histogram[n - 1] >= 1  # the NaN label is last
    assert _update(labels, nan) == _update(labels, against)


def test_registered_for_saving():
    assert (
        keras.saving.get_registered_object("keras_topk>CandidatesForCoverage")
        is CandidatesForCoverage
    )
    assert keras_topk.metrics.CandidatesForCoverage is CandidatesForCoverage
