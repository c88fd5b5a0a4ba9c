import os

import keras
import numpy as np
import pytest

import keras_topk
from keras_topk.metrics import MultiTopKAccuracy, TopKAccuracy, label_rank, topk_hits


def reference_rank(scores, label):
    """Position of the label in a full ranking that puts it after every class it ties with."""
    order = sorted(range(len(scores)), key=lambda j: (-scores[j], j == label))
    return order.index(label)


def reference_hits(scores, labels, k):
    scores = np.asarray(scores, dtype=np.float64).reshape(-1, np.shape(scores)[-1])
    labels = np.asarray(labels).reshape(-1)
    return np.array([reference_rank(s, y) < k for s, y in zip(scores, labels)], dtype=np.float64)


def tied_scores(rng, shape, levels=3):
    # Few distinct values, so ties are everywhere.
    return rng.integers(0, levels, size=shape).astype(np.float32)


def numpy_of(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("n", [1, 2, 5, 7])
def test_hits_and_ranks_match_brute_force_ranking_with_ties(n, rng):
    x = tied_scores(rng, (40, n))
    y = rng.integers(0, n, 40)
    ranks = numpy_of(label_rank(y, x))
    np.testing.assert_array_equal(ranks, [reference_rank(s, t) for s, t in zip(x, y)])
    for k in range(1, n + 2):
        np.testing.assert_array_equal(numpy_of(topk_hits(y, x, k)), reference_hits(x, y, k))


def test_without_ties_agrees_with_keras_in_top_k(rng):
    x = rng.normal(size=(50, 9)).astype(np.float32)
    y = rng.integers(0, 9, 50)
    for k in (1, 3, 8):
        expected = numpy_of(keras.ops.in_top_k(y, x, k)).astype(np.float32)
        np.testing.assert_array_equal(numpy_of(topk_hits(y, x, k)), expected)


@pytest.mark.parametrize("n", [2, 5, 10])
def test_constant_scores_are_never_a_hit_below_n(n):
    x = np.full((8, n), 0.25, dtype=np.float32)
    y = np.arange(8) % n
    for k in range(1, n):
        metric = TopKAccuracy(k)
        metric.update_state(y, x)
        assert float(metric.result()) == 0.0
    multi = MultiTopKAccuracy(ks=tuple(range(1, n + 2)))
    multi.update_state(y, x)
    values = {key: float(v) for key, v in multi.result().items()}
    assert values == {f"top{k}_accuracy": float(k >= n) for k in range(1, n + 2)}


def test_ties_count_against_the_label():
    x = np.array(
        [
            [2.0, 2.0, 1.0, 0.0],  # label 0 ties with class 1 for first place
            [2.0, 1.0, 1.0, 1.0],  # label 0 alone on top
            [3.0, 1.0, 1.0, 0.0],  # label 2 ties with class 1 behind class 0
            [0.0, 0.0, 0.0, 0.0],
        ]
    )
    y = np.array([0, 0, 2, 3])
    np.testing.assert_array_equal(numpy_of(label_rank(y, x)), [1, 0, 2, 3])
    np.testing.assert_array_equal(numpy_of(topk_hits(y, x, 1)), [0, 1, 0, 0])
    np.testing.assert_array_equal(numpy_of(topk_hits(y, x, 2)), [1, 1, 0, 0])
    np.testing.assert_array_equal(numpy_of(topk_hits(y, x, 3)), [1, 1, 1, 0])
    np.testing.assert_array_equal(numpy_of(topk_hits(y, x, 4)), [1, 1, 1, 1])


def test_nan_counts_against_the_label():
    x = np.array([[np.nan, 1.0, 0.0], [2.0, np.nan, 0.0], [2.0, 1.0, 0.0]])
    y = np.array([0, 0, 0])
    np.testing.assert_array_equal(numpy_of(label_rank(y, x)), [2, 1, 0])
    np.testing.assert_array_equal(numpy_of(topk_hits(y, x, 1)), [0, 0, 1])


def test_k_at_least_the_number_of_classes_is_always_a_hit(rng):
    x = rng.normal(size=(10, 4)).astype(np.float32)
    y = rng.integers(0, 4, 10)
    for k in (4, 5, 100):
        np.testing.assert_array_equal(numpy_of(topk_hits(y, x, k)), np.ones(10))


def test_one_hot_column_and_integer_labels_agree(rng):
    x = tied_scores(rng, (30, 6))
    y = rng.integers(0, 6, 30)
    expected = reference_hits(x, y, 2)
    for labels in (y, y[:, None], np.eye(6, dtype=np.float32)[y], y.astype(np.float32)[:, None]):
        np.testing.assert_array_equal(numpy_of(topk_hits(labels, x, 2)), expected)
        metric = TopKAccuracy(2)
        metric.update_state(labels, x)
        np.testing.assert_allclose(float(metric.result()), expected.mean(), rtol=1e-6)


def test_dense_labels_use_their_argmax(rng):
    x = rng.normal(size=(20, 5)).astype(np.float32)
    soft = rng.dirichlet(np.ones(5), size=20).astype(np.float32)
    expected = reference_hits(x, soft.argmax(-1), 2)
    np.testing.assert_array_equal(numpy_of(topk_hits(soft, x, 2)), expected)


@pytest.mark.parametrize("label_form", ["sparse", "column", "one_hot"])
def test_rank_3_predictions_flatten_leading_axes(label_form, rng):
    b, t, n = 4, 5, 7
    x = tied_scores(rng, (b, t, n), levels=4)
    y = rng.integers(0, n, (b, t))
    labels = {"sparse": y, "column": y[..., None], "one_hot": np.eye(n)[y]}[label_form]
    hits = numpy_of(topk_hits(labels, x, 3))
    assert hits.shape == (b, t)
    np.testing.assert_array_equal(hits.reshape(-1), reference_hits(x, y, 3))
    multi = MultiTopKAccuracy(ks=(1, 3))
    multi.update_state(labels, x)
    for k in (1, 3):
        np.testing.assert_allclose(
            float(multi.result()[f"top{k}_accuracy"]), reference_hits(x, y, k).mean(), rtol=1e-6
        )


def test_sample_weight_gives_a_weighted_mean(rng):
    x = tied_scores(rng, (25, 6))
    y = rng.integers(0, 6, 25)
    w = rng.uniform(0, 2, 25)
    w[:3] = 0.0
    for form in (w, w[:, None]):
        metric = TopKAccuracy(2)
        metric.update_state(y, x, sample_weight=form)
        expected = np.sum(w * reference_hits(x, y, 2)) / np.sum(w)
        np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-6)


def test_sample_weight_on_sequences_per_position_and_per_row(rng):
    b, t, n = 3, 4, 5
    x = tied_scores(rng, (b, t, n))
    y = rng.integers(0, n, (b, t))
    hits = reference_hits(x, y, 2).reshape(b, t)
    per_position = rng.uniform(0, 1, (b, t))
    per_row = np.array([1.0, 0.0, 3.0])
    cases = [
        (per_position, np.sum(per_position * hits) / np.sum(per_position)),
        (per_row, np.sum(per_row[:, None] * hits) / (t * np.sum(per_row))),
    ]
    for weight, expected in cases:
        multi = MultiTopKAccuracy(ks=(2, 3))
        multi.update_state(y, x, sample_weight=weight)
        np.testing.assert_allclose(float(multi.result()["top2_accuracy"]), expected, rtol=1e-6)


def test_keras_mask_on_predictions_is_honoured(rng):
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("sets a Keras mask on a TensorFlow tensor")
    from keras_topk._backend import set_keras_mask

    x = tied_scores(rng, (3, 4, 5))
    y = rng.integers(0, 5, (3, 4))
    mask = rng.integers(0, 2, (3, 4)).astype(bool)
    mask[0, 0] = True
    scores = tf.constant(x)
    set_keras_mask(scores, tf.constant(mask))
    metric = TopKAccuracy(2)
    metric.update_state(y, scores)
    hits = reference_hits(x, y, 2)
    np.testing.assert_allclose(float(metric.result()), hits[mask.reshape(-1)].mean(), rtol=1e-6)


def test_state_accumulates_over_batches_and_resets(rng):
    x = tied_scores(rng, (30, 6))
    y = rng.integers(0, 6, 30)
    metric = MultiTopKAccuracy(ks=(1, 4))
    for i in range(0, 30, 7):  # uneven batches
        metric.update_state(y[i : i + 7], x[i : i + 7])
    for k in (1, 4):
        np.testing.assert_allclose(
            float(metric.result()[f"top{k}_accuracy"]), reference_hits(x, y, k).mean(), rtol=1e-6
        )
    metric.reset_state()
    assert all(float(v) == 0.0 for v in metric.result().values())
    metric.update_state(y[:5], x[:5])
    np.testing.assert_allclose(
        float(metric.result()["top1_accuracy"]), reference_hits(x[:5], y[:5], 1).mean(), rtol=1e-6
    )


def test_multi_equals_separate_metrics_and_keeps_the_order_of_ks(rng):
    x = tied_scores(rng, (40, 8), levels=5)
    y = rng.integers(0, 8, 40)
    w = rng.uniform(0, 1, 40)
    ks = (5, 1, 2, 10)
    multi = MultiTopKAccuracy(ks=ks)
    multi.update_state(y, x, sample_weight=w)
    result = multi.result()
    assert list(result) == [f"top{k}_accuracy" for k in ks]
    for k in ks:
        single = TopKAccuracy(k)
        single.update_state(y, x, sample_weight=w)
        assert single.name == f"top{k}_accuracy"
        # Equal up to float32 summation order.
        assert float(result[f"top{k}_accuracy"]) == pytest.approx(float(single.result()), rel=1e-6)
        expected = np.sum(w * reference_hits(x, y, k)) / np.sum(w)
        assert float(single.result()) == pytest.approx(expected, rel=1e-6)


def test_key_format_names_the_entries():
    multi = MultiTopKAccuracy(ks=(1, 3), key_format="head_a_top{k}")
    multi.update_state([0], [[1.0, 0.0, 0.5]])
    assert {key: float(v) for key, v in multi.result().items()} == {
        "head_a_top1": 1.0,
        "head_a_top3": 1.0,
    }


def test_precision_of_scores_and_dtype_of_state(rng):
    x = rng.normal(size=(12, 5))
    y = rng.integers(0, 5, 12)
    expected = reference_hits(x, y, 2)
    for dtype in ("float16", "float32", "float64"):
        # Half precision may merge near-equal scores: the reference sees the rounded values.
        rounded = x.astype(dtype)
        np.testing.assert_array_equal(
            numpy_of(topk_hits(y, rounded, 2)), reference_hits(rounded, y, 2)
        )
    metric = TopKAccuracy(2, dtype="float64")
    metric.update_state(y, x)
    # JAX without x64 has no float64: the state then has the widest float the backend has.
    widest = keras.backend.standardize_dtype(keras.ops.zeros((), "float64").dtype)
    assert keras.backend.standardize_dtype(metric.result().dtype) == widest
    assert float(metric.result()) == pytest.approx(
        expected.mean(), rel=1e-12 if widest == "float64" else 1e-6
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k": 0}, "`k` must be >= 1"),
        ({"k": -2}, "`k` must be >= 1"),
        ({"k": 2.5}, "`k` must be an integer"),
        ({"k": "5"}, "`k` must be an integer"),
        ({"k": True}, "`k` must be an integer"),
    ],
)
def test_bad_k_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TopKAccuracy(**kwargs)
    with pytest.raises(ValueError, match=match):
        topk_hits([0], [[1.0, 0.0]], **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"ks": ()}, "at least one k"),
        ({"ks": (1, 5, 1)}, r"repeat a k; \[1\]"),
        ({"ks": 5}, "sequence of integers"),
        ({"ks": "15"}, "sequence of integers"),
        ({"ks": (1, 0)}, r"`ks\[1\]` must be >= 1"),
        ({"ks": (1, 2.5)}, r"`ks\[1\]` must be an integer"),
        ({"key_format": "top_accuracy"}, "must be a string containing"),
        ({"key_format": "top{k}_{j}"}, r"may only use the field \{k\} "),
    ],
)
def test_bad_multi_configuration_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiTopKAccuracy(**kwargs)


def test_mismatched_inputs_raise(rng):
    with pytest.raises(ValueError, match="do not match"):
        topk_hits(np.zeros((4, 3)), np.zeros((4, 5), np.float32), 2)
    with pytest.raises(ValueError, match="class indices in"):
        topk_hits(np.array([0, 5]), np.zeros((2, 5), np.float32), 2)
    with pytest.raises(ValueError, match="floating-point"):
        topk_hits(np.array([0, 1]), np.zeros((2, 5), np.int32), 2)


@pytest.mark.parametrize(
    "metric",
    [
        TopKAccuracy(k=3, name="acc3", dtype="float64"),
        TopKAccuracy(),
        MultiTopKAccuracy(ks=(5, 1), key_format="t{k}", name="many", dtype="float64"),
        MultiTopKAccuracy(),
    ],
    ids=["topk", "topk_default", "multi", "multi_default"],
)
def test_config_round_trip(metric, rng):
    config = metric.get_config()
    init_args = set(
        type(metric).__init__.__code__.co_varnames[1 : type(metric).__init__.__code__.co_argcount]
    )
    assert set(config) == init_args
    x = tied_scores(rng, (10, 6))
    y = rng.integers(0, 6, 10)
    for clone in (
        type(metric).from_config(config),
        keras.metrics.deserialize(keras.metrics.serialize(metric)),
        keras.metrics.get(keras.saving.serialize_keras_object(metric)),
    ):
        assert type(clone) is type(metric)
        assert clone.get_config() == config
        metric.reset_state()
        for m in (metric, clone):
            m.update_state(y, x)
        a, b = metric.result(), clone.result()
        if isinstance(a, dict):
            assert {key: float(v) for key, v in a.items()} == {
                key: float(v) for key, v in b.items()
            }
        else:
            assert float(a) == float(b)


def test_registered_names():
    assert keras.saving.get_registered_name(TopKAccuracy) == "keras_topk>TopKAccuracy"
    assert keras.saving.get_registered_name(MultiTopKAccuracy) == "keras_topk>MultiTopKAccuracy"


@pytest.mark.parametrize("jit", [False, True])
def test_graph_and_xla_match_eager(jit, rng):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.function")
    import tensorflow as tf

    x = tied_scores(rng, (3, 4, 6))
    y = rng.integers(0, 6, (3, 4))
    fn = tf.function(lambda a, b: label_rank(a, b), jit_compile=jit)
    np.testing.assert_array_equal(
        fn(tf.constant(y), tf.constant(x)).numpy().reshape(-1),
        [reference_rank(s, t) for s, t in zip(x.reshape(-1, 6), y.reshape(-1))],
    )


def _small_model(n_features, n_classes):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((n_features,))
    outputs = keras.layers.Dense(n_classes)(inputs)
    return keras.Model(inputs, outputs)


def test_fit_and_evaluate_with_jit_compile_log_every_k_from_one_entry(rng):
    n = 6
    x = rng.normal(size=(96, 8)).astype(np.float32)
    y = rng.integers(0, n, 96)
    model = _small_model(8, n)
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[
            MultiTopKAccuracy(ks=(1, 2, 5)),
            TopKAccuracy(1, name="single1"),
            TopKAccuracy(2, name="single2"),
            TopKAccuracy(5, name="single5"),
        ],
        jit_compile=True,
    )
    # docs/metrics.md's advice: a MultiTopKAccuracy key needs mode="max"; a TopKAccuracy name works with "auto".
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_top5_accuracy", mode="max", patience=5),
        keras.callbacks.EarlyStopping(monitor="val_single5", patience=5),
    ]
    history = model.fit(
        x, y, batch_size=32, epochs=2, validation_data=(x, y), callbacks=callbacks, verbose=0
    ).history
    assert callbacks[1].monitor_op is keras.ops.greater
    for prefix in ("", "val_"):
        for k in (1, 2, 5):
            assert history[f"{prefix}top{k}_accuracy"] == pytest.approx(
                history[f"{prefix}single{k}"], abs=1e-7
            )
    logs = model.evaluate(x, y, batch_size=32, return_dict=True, verbose=0)
    scores = model.predict(x, batch_size=32, verbose=0)
    for k in (1, 2, 5):
        expected = reference_hits(scores, y, k).mean()
        assert logs[f"top{k}_accuracy"] == pytest.approx(expected, abs=1e-6)
        assert logs[f"single{k}"] == pytest.approx(expected, abs=1e-6)
    # k=5 < n=6 should not be trivially 1 here, so the comparison above means something.
    assert 0.0 < logs["top1_accuracy"] < logs["top5_accuracy"] < 1.0


def test_saved_model_restores_the_compiled_metrics_without_custom_objects(tmp_path, rng):
    x = rng.normal(size=(40, 5)).astype(np.float32)
    y = rng.integers(0, 4, 40)
    model = _small_model(5, 4)
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[MultiTopKAccuracy(ks=(1, 2), key_format="t{k}"), TopKAccuracy(3)],
    )
    before = model.evaluate(x, y, return_dict=True, verbose=0)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    after = restored.evaluate(x, y, return_dict=True, verbose=0)
    assert set(after) == {"loss", "t1", "t2", "top3_accuracy"}
    for key in ("t1", "t2", "top3_accuracy"):
        assert after[key] == pytest.approx(before[key], abs=1e-7)
    compiled = [m for m in restored.metrics if hasattr(m, "metrics")][0].metrics
    kinds = {type(m): m.get_config() for m in compiled}
    assert kinds[MultiTopKAccuracy]["ks"] == [1, 2]
    assert kinds[TopKAccuracy]["k"] == 3


def test_docstring_examples_run():
    import doctest

    from keras_topk.metrics import topk_accuracy

    result = doctest.testmod(topk_accuracy, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 10 and result.failed == 0


@pytest.mark.parametrize("mode", ["jit", "graph"])
def test_a_log_key_claimed_twice_raises_instead_of_being_overwritten(mode, rng):
    # Keras renames repeated metric names but not repeated dict keys: both of
    # these would log top5_accuracy (top1_accuracy) with different values, and one
    # would silently replace the other. (Checked where the step is traced, under
    # TensorFlow and JAX; TensorFlow's run_eagerly=True and PyTorch's eager steps
    # are not.)
    if keras.backend.backend() not in ("tensorflow", "jax"):
        pytest.skip("checked only where TensorFlow or JAX trace the step")
    x = rng.normal(size=(32, 4)).astype("float32")
    y = rng.integers(0, 6, 32)
    for metrics in (
        [TopKAccuracy(2, name="top5_accuracy"), MultiTopKAccuracy(ks=(1, 2, 5))],
        [MultiTopKAccuracy(ks=(1, 5)), TopKAccuracy(1, name="top5_accuracy")],
        [
            MultiTopKAccuracy(ks=(1, 5)),
            keras_topk.metrics.CandidatesForCoverage((0.05,), key_format="top{percent}_accuracy"),
        ],
        [
            keras_topk.metrics.CandidatesForCoverage((0.01,), key_format="top{percent}_accuracy"),
            TopKAccuracy(1),
        ],
    ):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6)])
        model.compile(
            "sgd",
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=metrics,
            jit_compile=mode == "jit",
        )
        with pytest.raises(
            ValueError, match="Two metrics would log the same key 'top[15]_accuracy'"
        ):
            model.fit(x, y, batch_size=16, epochs=1, verbose=0)


@pytest.mark.parametrize("mode", ["jit", "graph"])
def test_a_key_logged_twice_with_the_same_value_warns_and_logs_it(mode, rng):
    # 0.1.0 accepted MultiTopKAccuracy(ks=(1, 5)) beside TopKAccuracy(k=5): both log
    # top5_accuracy, and whichever Keras keeps is the same top-5 accuracy.
    if keras.backend.backend() not in ("tensorflow", "jax"):
        pytest.skip("checked only where TensorFlow or JAX trace the step")
    x = rng.normal(size=(48, 4)).astype("float32")
    y = rng.integers(0, 8, 48)
    for metrics in (
        [MultiTopKAccuracy(ks=(1, 5)), TopKAccuracy(k=5)],
        [TopKAccuracy(5), MultiTopKAccuracy(ks=(1, 2, 5))],
        [MultiTopKAccuracy(ks=(1, 5)), MultiTopKAccuracy(ks=(5, 7), name="other")],
    ):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
        model.compile(
            "sgd",
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=metrics,
            jit_compile=mode == "jit",
        )
        with pytest.warns(UserWarning, match="Two metrics log the same key 'top5_accuracy'"):
            logs = model.evaluate(x, y, batch_size=48, verbose=0, return_dict=True)
        # The value, from the model's own scores in float64 NumPy: a hit when fewer
        # than 5 other classes score at least as high as the label.
        scores = np.asarray(model.predict(x, verbose=0), dtype="float64")
        label = scores[np.arange(len(y)), y][:, None]
        rivals = (scores >= label).sum(axis=1) - 1
        assert logs["top5_accuracy"] == pytest.approx(np.mean(rivals < 5), abs=1e-6)
        assert logs["top1_accuracy"] == pytest.approx(np.mean(rivals < 1), abs=1e-6)


def test_repeated_names_and_distinct_keys_still_log_every_value(rng):
    x = rng.normal(size=(32, 4)).astype("float32")
    y = rng.integers(0, 6, 32)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6)])
    model.compile(
        "sgd",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
        metrics=[
            TopKAccuracy(5),
            TopKAccuracy(5),
            MultiTopKAccuracy(ks=(1, 2)),
            MultiTopKAccuracy(ks=(5,), key_format="multi_top{k}", name="m2"),
        ],
    )
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert {
        "top5_accuracy",
        "top5_accuracy_1",
        "top1_accuracy",
        "top2_accuracy",
        "multi_top5",
    } <= set(logs)
    assert logs["top5_accuracy"] == logs["top5_accuracy_1"] == logs["multi_top5"]
    # Eager updates by hand on the same arrays log nothing and are not refused.
    s = model.predict(x, verbose=0)
    a, b = TopKAccuracy(5), MultiTopKAccuracy(ks=(5,))
    a.update_state(y, s)
    b.update_state(y, s)
    assert float(a.result()) == float(b.result()["top5_accuracy"])
