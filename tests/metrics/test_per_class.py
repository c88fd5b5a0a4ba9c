import keras
import numpy as np
import pytest

from keras_topk.metrics import PerClassTopKAccuracy, TopKAccuracy
from tests.metrics.metric_runs import TF, brute_ranks, run, tied, to_numpy


def brute_per_class(scores, labels, k, n, weights=None):
    """Per-class top-k accuracy by sorting every row; NaN for a class with no (weighted) example."""
    ranks = brute_ranks(scores, labels)
    labels = np.asarray(labels).reshape(-1)
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    out = np.full(n, np.nan)
    for c in range(n):
        total = sum(w[i] for i in range(len(labels)) if labels[i] == c)
        if total > 0:
            out[c] = (
                sum(w[i] for i in range(len(labels)) if labels[i] == c and ranks[i] < k) / total
            )
    return out


def macro(per_class):
    present = ~np.isnan(per_class)
    return float(np.mean(per_class[present])) if present.any() else 0.0


@pytest.mark.parametrize("mode", ["eager", "xla"])
@pytest.mark.parametrize("n,k", [(1, 1), (3, 1), (7, 2), (7, 7), (25, 5)])
def test_macro_and_per_class_match_brute_force(mode, n, k, rng):
    for scores in (rng.normal(size=(60, n)).astype("float32"), tied(rng, (60, n))):
        # Labels drawn from half the classes: the others are absent.
        labels = rng.integers(0, max(1, n // 2 + 1), 60)
        w = rng.uniform(0, 2, 60).astype("float32")
        for weights in (None, w):
            batches = [
                (labels[:25], scores[:25], None if weights is None else weights[:25]),
                (labels[25:], scores[25:], None if weights is None else weights[25:]),
            ]
            expected = brute_per_class(scores, labels, k, n, weights)
            got = run(lambda: PerClassTopKAccuracy(k, num_classes=n), batches, mode)
            assert got == pytest.approx(macro(expected), abs=1e-6)
            metric = PerClassTopKAccuracy(k)
            for y, s, ww in batches:
                metric.update_state(y, s, sample_weight=ww)
            np.testing.assert_allclose(to_numpy(metric.per_class_result()), expected, atol=1e-6)


def test_absent_classes_are_excluded_so_macro_grows_with_k(rng):
    # torchmetrics#2417: averaging absent classes as 0 made macro top-2 fall
    # below top-1. Leaving them out keeps the average monotone in k.
    n = 10
    scores = rng.normal(size=(40, n)).astype("float32")
    labels = rng.choice([1, 4, 6], 40)
    values = []
    for k in range(1, n + 1):
        m = PerClassTopKAccuracy(k)
        m.update_state(labels, scores)
        values.append(float(m.result()))
        per_class = to_numpy(m.per_class_result())
        assert np.isnan(per_class[[0, 2, 3, 5, 7, 8, 9]]).all()
        assert float(m.result()) == pytest.approx(np.mean(per_class[[1, 4, 6]]), abs=1e-6)
    assert values == sorted(values) and values[-1] == 1.0


def test_zero_weight_examples_do_not_make_a_class_present(rng):
    scores = np.array([[2.0, 1.0, 0.0]] * 4, "float32")
    m = PerClassTopKAccuracy(1)
    m.update_state([0, 1, 2, 2], scores, sample_weight=[1.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(to_numpy(m.per_class_result()), [1.0, 0.0, np.nan])
    assert float(m.result()) == 0.5


def test_leading_axes_one_hot_labels_and_a_balanced_case_equal_topk_accuracy(rng):
    b, t, n = 4, 6, 5
    scores = tied(rng, (b, t, n))
    labels = np.tile(np.arange(n), b * t // n + 1)[: b * t].reshape(b, t)
    rng.shuffle(labels.reshape(-1))
    m = PerClassTopKAccuracy(2)
    m.update_state(np.eye(n, dtype="float32")[labels], scores)
    expected = brute_per_class(scores, labels, 2, n)
    np.testing.assert_allclose(to_numpy(m.per_class_result()), expected, atol=1e-6)
    # With the same weight in every class, macro = micro (TopKAccuracy).
    w = 1.0 / np.bincount(labels.reshape(-1), minlength=n)[labels]
    m = PerClassTopKAccuracy(2)
    m.update_state(labels, scores, sample_weight=w)
    top = TopKAccuracy(2)
    top.update_state(labels, scores, sample_weight=w)
    assert float(m.result()) == pytest.approx(float(top.result()), abs=1e-6)


def test_constant_scores_give_zero_for_every_present_class():
    m = PerClassTopKAccuracy(2)
    m.update_state([0, 1, 2], np.zeros((3, 4), "float32"))
    np.testing.assert_array_equal(to_numpy(m.per_class_result()), [0.0, 0.0, 0.0, np.nan])


def test_state_is_made_at_the_first_update_or_up_front():
    lazy = PerClassTopKAccuracy(3)
    assert float(lazy.result()) == 0.0 and not lazy.variables
    with pytest.raises(ValueError, match="seen no data"):
        lazy.per_class_result()
    lazy.update_state([1], np.zeros((1, 4), "float32"))
    assert lazy.num_classes == 4
    with pytest.raises(ValueError, match="holds state for 4 classes but got scores with 6"):
        lazy.update_state([1], np.zeros((1, 6), "float32"))
    lazy.reset_state()
    np.testing.assert_array_equal(to_numpy(lazy.counts), np.zeros(4))
    assert PerClassTopKAccuracy(1).name == "macro_top1_accuracy"


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
    m = PerClassTopKAccuracy(2)
    m.update_state(labels, masked)
    expected = brute_per_class(scores, labels, 2, 6, mask.astype(float))
    np.testing.assert_allclose(to_numpy(m.per_class_result()), expected, atol=1e-6)


def test_fit_logs_the_macro_average(rng):
    x = rng.normal(size=(48, 5)).astype("float32")
    y = rng.integers(0, 3, 48)  # classes 3 and 4 never appear
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(5)])
    model.compile(
        "sgd",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[PerClassTopKAccuracy(2)],
        jit_compile=True,
    )
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    logs = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    expected = brute_per_class(model.predict(x, verbose=0), y, 2, 5)
    assert logs["macro_top2_accuracy"] == pytest.approx(macro(expected), abs=1e-6)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(k=0), "must be >= 1"),
        (dict(k=1.5), "must be an integer"),
        (dict(num_classes=0), "must be >= 1"),
    ],
)
def test_bad_configuration_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PerClassTopKAccuracy(**kwargs)
