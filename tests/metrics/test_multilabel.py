import keras
import numpy as np
import pytest

from keras_topk.metrics import PrecisionRecallAtK, multilabel_topk_hits
from tests.metrics.metric_runs import TF, run, tied, to_numpy


def retrieved(row, k):
    """Classes in the top k by the conservative rule: fewer than k others score at least as high."""
    n = len(row)
    return {j for j in range(n) if sum(row[i] >= row[j] for i in range(n) if i != j) < k}


def brute(targets, scores, ks, weights=None):
    """Precision@k and recall@k by enumerating every row's top-k set."""
    n = np.shape(scores)[-1]
    scores = np.asarray(scores, np.float64).reshape(-1, n)
    targets = np.asarray(targets).reshape(-1, n) > 0.5
    w = np.ones(len(scores)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    out = {}
    rows = [i for i in range(len(scores)) if targets[i].any()]
    total = sum(w[i] for i in rows)
    for k in ks:
        precision = recall = 0.0
        for i in rows:
            relevant = set(np.flatnonzero(targets[i]))
            hits = len(retrieved(scores[i], k) & relevant)
            precision += w[i] * hits / k
            recall += w[i] * hits / len(relevant)
        out[f"precision_at_{k}"] = precision / total if total > 0 else 0.0
        out[f"recall_at_{k}"] = recall / total if total > 0 else 0.0
    return out


def khot(rng, shape, p=0.3):
    return (rng.uniform(size=shape) < p).astype("float32")


def assert_close(got, want):
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-6), key


@pytest.mark.parametrize("mode", ["eager", "xla"])
@pytest.mark.parametrize(
    "n,ks", [(1, (1,)), (4, (1, 2, 3, 4, 6)), (9, (1, 3, 5)), (40, (1, 5, 10))]
)
def test_values_match_enumeration_on_random_and_tied_scores(mode, n, ks, rng):
    for scores in (rng.normal(size=(50, n)).astype("float32"), tied(rng, (50, n))):
        targets = khot(rng, (50, n))  # some rows have no relevant class
        w = rng.uniform(0, 2, 50).astype("float32")
        for weights in (None, w):
            batches = [
                (targets[:20], scores[:20], None if weights is None else weights[:20]),
                (targets[20:], scores[20:], None if weights is None else weights[20:]),
            ]
            got = run(lambda: PrecisionRecallAtK(ks), batches, mode)
            assert_close(got, brute(targets, scores, ks, weights))


def test_hits_by_hand_with_a_tie_across_the_cut():
    scores = np.array([[0.9, 0.8, 0.8, 0.1]], "float32")
    targets = np.array([[1, 1, 0, 0]], "float32")
    # k = 2: classes 1 and 2 tie for second place, so neither is retrieved.
    np.testing.assert_array_equal(
        to_numpy(multilabel_topk_hits(targets, scores, (1, 2, 3, 4))), [[1.0, 1.0, 2.0, 2.0]]
    )
    m = PrecisionRecallAtK((2, 3))
    m.update_state(targets, scores)
    assert_close(
        to_numpy(m.result()),
        {"precision_at_2": 0.5, "precision_at_3": 2 / 3, "recall_at_2": 0.5, "recall_at_3": 1.0},
    )


def test_constant_scores_retrieve_nothing_below_n():
    m = PrecisionRecallAtK((1, 3, 4))
    m.update_state(np.array([[1, 0, 1, 0], [0, 1, 0, 0]]), np.zeros((2, 4), "float32"))
    assert to_numpy(m.result()) == {
        "precision_at_1": 0.0,
        "precision_at_3": 0.0,
        "precision_at_4": 0.375,
        "recall_at_1": 0.0,
        "recall_at_3": 0.0,
        "recall_at_4": 1.0,
    }


def test_rows_without_labels_are_left_out_and_counted(rng):
    scores = rng.normal(size=(6, 5)).astype("float32")
    targets = khot(rng, (6, 5), p=0.5)
    targets[[1, 4]] = 0.0
    weights = np.array([1.0, 2.0, 1.0, 1.0, 0.5, 1.0], "float32")
    m = PrecisionRecallAtK((1, 2))
    m.update_state(targets, scores, sample_weight=weights)
    assert float(m.examples_without_labels()) == 2.5
    keep = [0, 2, 3, 5]
    assert_close(to_numpy(m.result()), brute(targets[keep], scores[keep], (1, 2), weights[keep]))


def test_leading_axes_and_targets_above_one_half(rng):
    b, t, n = 3, 4, 7
    scores = tied(rng, (b, t, n))
    targets = khot(rng, (b, t, n))
    hits = to_numpy(multilabel_topk_hits(targets, scores, (2, 3)))
    assert hits.shape == (b, t, 2)
    flat_scores, flat_targets = scores.reshape(-1, n), targets.reshape(-1, n)
    for i, (row, target) in enumerate(zip(flat_scores, flat_targets)):
        relevant = set(np.flatnonzero(target))
        assert hits.reshape(-1, 2)[i].tolist() == [
            len(retrieved(row, k) & relevant) for k in (2, 3)
        ]
    # Smoothed targets (0.9 / 0.05) mean the same classes; a (b,) weight covers whole sequences.
    smoothed = np.where(targets > 0.5, 0.9, 0.05).astype("float32")
    per_row = np.array([1.0, 0.0, 2.0], "float32")
    m = PrecisionRecallAtK((2, 3))
    m.update_state(smoothed, scores, sample_weight=per_row)
    assert_close(to_numpy(m.result()), brute(targets, scores, (2, 3), np.repeat(per_row, t)))


def test_nan_is_never_retrieved_and_outranks_the_others():
    scores = np.array([[np.nan, 2.0, 1.0, 0.0], [3.0, np.nan, 1.0, 0.0]], "float32")
    targets = np.array([[1, 1, 0, 0], [0, 1, 1, 0]], "float32")
    # Row 0: NaN counts as above class 1, so top-1 retrieves nothing and
    # top-2 retrieves class 1 only. Row 1: the NaN label is never retrieved;
    # class 2 is third behind 3.0 and the NaN.
    np.testing.assert_array_equal(
        to_numpy(multilabel_topk_hits(targets, scores, (1, 2, 3))),
        [[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]],
    )


def test_keras_mask_on_predictions_is_honoured(rng):
    if not TF:
        pytest.skip("sets a Keras mask on a TensorFlow tensor")
    import tensorflow as tf

    from keras_topk._backend import set_keras_mask

    scores, targets = tied(rng, (3, 4, 6)), khot(rng, (3, 4, 6), p=0.5)
    mask = rng.integers(0, 2, (3, 4)).astype(bool)
    mask[0, 0] = True
    masked = tf.constant(scores)
    set_keras_mask(masked, tf.constant(mask))
    m = PrecisionRecallAtK((1, 2))
    m.update_state(targets, masked)
    assert_close(to_numpy(m.result()), brute(targets, scores, (1, 2), mask.astype(float)))


def test_fit_with_sigmoid_targets_logs_every_key(rng):
    x = rng.normal(size=(48, 5)).astype("float32")
    y = khot(rng, (48, 6), p=0.4)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(6)])
    model.compile(
        "sgd",
        keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[PrecisionRecallAtK((1, 3))],
        jit_compile=True,
    )
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    logs = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    expected = brute(y, model.predict(x, verbose=0), (1, 3))
    for key, value in expected.items():
        assert logs[key] == pytest.approx(value, abs=1e-6), key


# --- bad input (this class is outside the single-label table of tests/contract) ----------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(ks=(1, 0)), "must be >= 1"),
        (dict(ks=(1, 1)), "must not repeat"),
        (dict(ks=()), "at least one"),
        (dict(ks=5), "sequence"),
        (dict(ks=(2.5,)), "must be an integer"),
        (dict(key_format="p_at_{k}"), "'{metric}' and '{k}'"),
        (dict(key_format="{metric}_{k}_{x}"), "may only use the fields"),
    ],
)
def test_bad_configuration_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PrecisionRecallAtK(**kwargs)


@pytest.mark.parametrize(
    "targets,scores,match",
    [
        (np.array([0, 1]), np.zeros((2, 4), "float32"), "k-hot rows"),
        (np.zeros((2, 3), "float32"), np.zeros((2, 4), "float32"), "k-hot rows"),
        (np.zeros((3, 4), "float32"), np.zeros((2, 4), "float32"), "k-hot rows"),
        (np.zeros((2, 4), "float32"), np.zeros((2, 4), "int32"), "floating-point logits"),
        (np.float32(1.0), np.float32(1.0), "must have a class axis"),
    ],
)
def test_bad_input_raises(targets, scores, match):
    with pytest.raises(ValueError, match=match):
        PrecisionRecallAtK((1,)).update_state(targets, scores)


def test_documented_results_for_odd_input(rng):
    m = PrecisionRecallAtK((1, 2))
    m.update_state(np.zeros((0, 5), "float32"), np.zeros((0, 5), "float32"))
    assert set(to_numpy(m.result()).values()) == {0.0}
    scores, targets = rng.normal(size=(8, 6)).astype("float32"), khot(rng, (8, 6), p=0.5)
    masked = scores.copy()
    masked[:, 4:] = -np.inf
    results = []
    for s in (masked, np.where(np.isinf(masked), -1e20, masked).astype("float32")):
        m = PrecisionRecallAtK((1, 3, 6))
        m.update_state(targets, s)
        results.append(to_numpy(m.result()))
    assert results[0] == results[1]
    # Boolean and integer targets are k-hot rows too.
    for form in (targets.astype(bool), targets.astype("int32")):
        m = PrecisionRecallAtK((1, 3))
        m.update_state(form, scores)
        assert_close(to_numpy(m.result()), brute(targets, scores, (1, 3)))
