import math

import keras
import numpy as np
import pytest
from scipy import special

from keras_topk.losses import (
    TopKTransitionLoss,
    TransitionCallback,
    grouped_cross_entropy,
    topk_transition_loss,
)
from tests.conftest import requires_backend
from tests.references import autodiff

GROUPS = ("label", "predicted")

# JAX without JAX_ENABLE_X64 computes float64 inputs in float32.
FLOAT64 = (
    keras.backend.standardize_dtype(keras.ops.convert_to_tensor(np.zeros(1)).dtype) == "float64"
)
TIGHT = dict(rtol=1e-12, atol=1e-12) if FLOAT64 else dict(rtol=1e-5, atol=1e-6)
needs_float64 = pytest.mark.skipif(not FLOAT64, reason="needs float64 (JAX: set JAX_ENABLE_X64=1)")


# --------------------------------------------------------------------------- #
# NumPy float64 references, written on probabilities (-log of a sum of p_j),
# not on logsumexps as the code is.
# --------------------------------------------------------------------------- #


def ref_group(s, y, k, group):
    """The member indices of the group, and whether the label is in it."""
    s = np.asarray(s, np.float64)
    if group == "label":
        others = [j for j in np.argsort(-s, kind="stable") if j != y][: k - 1]
        return [y] + others, True
    members = list(np.argsort(-s, kind="stable")[:k])
    return members, y in members


def ref_grouped_ce(s, y, k, group):
    p = special.softmax(np.asarray(s, np.float64))
    members, label_in = ref_group(s, y, k, group)
    if not label_in:
        return -math.log(p[y])
    return -math.log(sum(p[j] for j in members))


def ref_ce(s, y):
    return -math.log(special.softmax(np.asarray(s, np.float64))[y])


def ref_mixture(s, y, k, w, group):
    return (1 - w) * ref_ce(s, y) + w * ref_grouped_ce(s, y, k, group)


def ref_gradient(s, y, k, w, group):
    """d/ds [(1-w) CE + w L_group] with the group held fixed."""
    p = special.softmax(np.asarray(s, np.float64))
    onehot = np.eye(len(s))[y]
    members, label_in = ref_group(s, y, k, group)
    if not label_in:
        members = [y]
    in_group = np.zeros(len(s))
    in_group[members] = 1.0
    p_group = p * in_group / np.sum(p * in_group)
    return (1 - w) * (p - onehot) + w * (p - p_group)


def distinct_scores(rng, b, n, scale=1.0):
    return (np.stack([rng.permutation(n) for _ in range(b)]) + rng.uniform(0, 0.5, (b, n))) * scale


# --------------------------------------------------------------------------- #
# Values
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("n,k", [(5, 2), (10, 3), (10, 9)])
def test_grouped_ce_matches_float64_reference(group, n, k, rng):
    s = distinct_scores(rng, 12, n, scale=0.7)
    y = rng.integers(0, n, 12)
    got = np.asarray(grouped_cross_entropy(y, s, k=k, group=group))
    ref = [ref_grouped_ce(row, label, k, group) for row, label in zip(s, y)]
    np.testing.assert_allclose(got, ref, **TIGHT)


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("w", [0.0, 0.25, 0.7, 1.0])
def test_mixture_matches_float64_reference(group, w, rng):
    n, k = 8, 3
    s = distinct_scores(rng, 10, n)
    y = rng.integers(0, n, 10)
    got = np.asarray(topk_transition_loss(y, s, k=k, weight=w, group=group))
    ref = [ref_mixture(row, label, k, w, group) for row, label in zip(s, y)]
    np.testing.assert_allclose(got, ref, **TIGHT)


def test_both_groups_cover_missed_and_hit_labels(rng):
    # The data of the group tests must contain both cases of "predicted".
    s = distinct_scores(rng, 12, 10, scale=0.7)
    y = rng.integers(0, 10, 12)
    hits = [ref_group(row, label, 3, "predicted")[1] for row, label in zip(s, y)]
    assert 0 < sum(hits) < len(hits)


@pytest.mark.parametrize("group", GROUPS)
def test_k1_is_cross_entropy_for_any_weight(group, rng):
    s = rng.normal(size=(6, 7))
    y = rng.integers(0, 7, 6)
    ce = [ref_ce(row, label) for row, label in zip(s, y)]
    for w in (0.0, 0.4, 1.0):
        np.testing.assert_allclose(
            np.asarray(topk_transition_loss(y, s, k=1, weight=w, group=group)), ce, **TIGHT
        )


@pytest.mark.parametrize("group", GROUPS)
def test_weight_zero_is_cross_entropy(group, rng):
    s = rng.normal(size=(6, 7)).astype("float32")
    y = rng.integers(0, 7, 6)
    keras_ce = keras.losses.sparse_categorical_crossentropy(y, s, from_logits=True)
    got = topk_transition_loss(y, s, k=4, weight=0.0, group=group)
    np.testing.assert_allclose(np.asarray(got), np.asarray(keras_ce), rtol=1e-5)


def test_groups_agree_when_the_label_is_in_the_topk(rng):
    s = distinct_scores(rng, 30, 9)
    y = rng.integers(0, 9, 30)
    label = np.asarray(grouped_cross_entropy(y, s, k=4, group="label"))
    predicted = np.asarray(grouped_cross_entropy(y, s, k=4, group="predicted"))
    ce = np.array([ref_ce(row, t) for row, t in zip(s, y)])
    hit = np.array([ref_group(row, t, 4, "predicted")[1] for row, t in zip(s, y)])
    assert hit.any() and (~hit).any()
    np.testing.assert_allclose(label[hit], predicted[hit], **TIGHT)
    # Missed labels: "predicted" falls back to CE, "label" asks for less.
    np.testing.assert_allclose(predicted[~hit], ce[~hit], **TIGHT)
    assert np.all(label[~hit] < ce[~hit])


def test_one_hot_labels_match_integer_labels(rng):
    s = rng.normal(size=(5, 6))
    y = rng.integers(0, 6, 5)
    a = np.asarray(topk_transition_loss(y, s, k=3, weight=0.6))
    b = np.asarray(topk_transition_loss(np.eye(6)[y], s, k=3, weight=0.6))
    c = np.asarray(topk_transition_loss(y[:, None], s, k=3, weight=0.6))
    np.testing.assert_allclose(b, a, **TIGHT)
    np.testing.assert_allclose(c, a, **TIGHT)


def test_soft_labels_use_full_rows_for_ce_and_argmax_for_the_group(rng):
    s = rng.normal(size=(4, 6))
    t = special.softmax(rng.normal(size=(4, 6)) * 2, axis=1)
    w = 0.3
    got = np.asarray(topk_transition_loss(t, s, k=2, weight=w))
    soft_ce = -np.sum(t * special.log_softmax(s, axis=1), axis=1)
    group = [ref_grouped_ce(row, int(np.argmax(tr)), 2, "label") for row, tr in zip(s, t)]
    np.testing.assert_allclose(got, (1 - w) * soft_ce + w * np.array(group), **TIGHT)


def test_leading_batch_axes(rng):
    s = rng.normal(size=(2, 3, 7))
    y = rng.integers(0, 7, (2, 3))
    got = np.asarray(topk_transition_loss(y, s, k=3, weight=0.5, group="predicted"))
    flat = np.asarray(
        topk_transition_loss(y.reshape(-1), s.reshape(-1, 7), k=3, weight=0.5, group="predicted")
    )
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got.reshape(-1), flat, **TIGHT)


def test_dtypes_half_computed_in_float32(rng):
    s = rng.normal(size=(4, 9))
    y = rng.integers(0, 9, 4)
    half = topk_transition_loss(y, s.astype("float16"), k=3, weight=0.5)
    assert keras.backend.standardize_dtype(half.dtype) == "float32"
    if FLOAT64:
        assert (
            keras.backend.standardize_dtype(topk_transition_loss(y, s, k=3, weight=0.5).dtype)
            == "float64"
        )
    ref = [
        ref_mixture(row, t, 3, 0.5, "label")
        for row, t in zip(s.astype("float16").astype(np.float64), y)
    ]
    np.testing.assert_allclose(np.asarray(half), ref, rtol=1e-5)


def test_class_matches_function_and_reduces(rng):
    s = rng.normal(size=(6, 8)).astype("float32")
    y = rng.integers(0, 8, 6)
    sw = rng.uniform(size=6).astype("float32")
    loss = TopKTransitionLoss(k=3, transition="constant", weight=0.4, group="predicted")
    per_sample = np.asarray(topk_transition_loss(y, s, k=3, weight=0.4, group="predicted"))
    np.testing.assert_allclose(float(loss(y, s)), per_sample.mean(), rtol=1e-5)
    np.testing.assert_allclose(
        float(loss(y, s, sample_weight=sw)), (per_sample * sw).mean(), rtol=1e-5
    )


# --------------------------------------------------------------------------- #
# Gradients
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("w", [0.0, 0.5, 1.0])
def test_gradient_flows_only_through_the_scores(group, w, rng):
    n, k = 9, 3
    s = distinct_scores(rng, 8, n, scale=0.6)
    y = rng.integers(0, n, 8)
    grad = autodiff.grad(
        lambda v: keras.ops.sum(topk_transition_loss(y, v, k=k, weight=w, group=group)), s
    )
    ref = np.stack([ref_gradient(row, t, k, w, group) for row, t in zip(s, y)])
    np.testing.assert_allclose(grad, ref, **(dict(rtol=1e-10, atol=1e-12) if FLOAT64 else TIGHT))


@needs_float64
def test_gradient_matches_finite_differences_away_from_ties(rng):
    # With distinct scores the group is locally constant, so the analytic
    # gradient with the group fixed is the true gradient.
    s = distinct_scores(rng, 2, 7)
    y = np.array([2, 5])

    def objective(v):
        return keras.ops.sum(topk_transition_loss(y, v, k=3, weight=0.6))

    grad = autodiff.grad(objective, s)
    eps = 1e-6
    numeric = np.zeros_like(s)
    for idx in np.ndindex(s.shape):
        d = np.zeros_like(s)
        d[idx] = eps
        numeric[idx] = (float(objective(s + d)) - float(objective(s - d))) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------- #
# Schedules
# --------------------------------------------------------------------------- #


def test_linear_schedule_advance():
    loss = TopKTransitionLoss(
        k=2, transition="linear", weight_start=0.2, weight_end=0.8, transition_steps=4
    )
    assert loss.current_weight == pytest.approx(0.2)
    got = [loss.advance() for _ in range(6)]
    np.testing.assert_allclose(got, [0.35, 0.5, 0.65, 0.8, 0.8, 0.8], **TIGHT)
    assert int(keras.ops.convert_to_numpy(loss.state.steps)) == 6
    assert loss.current_weight == pytest.approx(0.8)


def test_decreasing_linear_schedule():
    loss = TopKTransitionLoss(
        k=2, transition="linear", weight_start=1.0, weight_end=0.0, transition_steps=10
    )
    assert loss.advance(5) == pytest.approx(0.5)


def test_adaptive_schedule_is_an_ema_of_batch_accuracy():
    loss = TopKTransitionLoss(
        k=2, transition="adaptive", weight_start=0.1, weight_end=0.9, momentum=0.5
    )
    a = 0.0
    for acc, steps in [(1.0, 1), (0.5, 1), (0.25, 3)]:
        loss.state.batch_accuracy.assign(acc)
        w = loss.advance(steps)
        a = 0.5**steps * a + (1 - 0.5**steps) * acc
        assert w == pytest.approx(0.1 + 0.8 * a)
        assert loss.current_weight == pytest.approx(0.1 + 0.8 * a, abs=1e-7)


def test_constant_schedule_does_not_move():
    loss = TopKTransitionLoss(k=2, transition="constant", weight=0.3)
    loss.advance(100)
    assert loss.current_weight == pytest.approx(0.3)


def test_loss_records_batch_topk_accuracy(rng):
    s = distinct_scores(rng, 20, 6).astype("float32")
    y = rng.integers(0, 6, 20)
    loss = TopKTransitionLoss(k=2, transition="adaptive")
    loss(y, s)
    expected = np.mean([ref_group(row, t, 2, "predicted")[1] for row, t in zip(s, y)])
    assert float(keras.ops.convert_to_numpy(loss.state.batch_accuracy)) == pytest.approx(expected)


def test_batch_accuracy_skips_masked_steps(rng):
    s = distinct_scores(rng, 12, 6).astype("float32").reshape(3, 4, 6)
    y = rng.integers(0, 6, (3, 4))
    mask = np.arange(4)[None, :] < np.array([4, 2, 1])[:, None]
    scores = keras.ops.convert_to_tensor(s)
    from keras_topk import _backend

    _backend.set_keras_mask(scores, keras.ops.convert_to_tensor(mask))
    loss = TopKTransitionLoss(k=2, transition="adaptive")
    loss(y, scores)
    expected = np.mean([ref_group(row, t, 2, "predicted")[1] for row, t in zip(s[mask], y[mask])])
    assert float(keras.ops.convert_to_numpy(loss.state.batch_accuracy)) == pytest.approx(expected)
    assert expected != pytest.approx(
        np.mean(
            [ref_group(r, t, 2, "predicted")[1] for r, t in zip(s.reshape(-1, 6), y.reshape(-1))]
        )
    )


def test_batch_accuracy_counts_ties_against_the_label_like_the_metrics():
    # A zero-initialised head: every class ties. Counting ties as hits would
    # report 100% and start the adaptive schedule at the grouped loss.
    loss = TopKTransitionLoss(k=3, transition="adaptive")
    loss(np.array([0, 1, 2, 3]), np.zeros((4, 6), "float32"))
    assert float(keras.ops.convert_to_numpy(loss.state.batch_accuracy)) == 0.0
    scores = np.array(
        [[2.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]], "float32"
    )  # label 1 ties one / two others
    loss = TopKTransitionLoss(k=2, transition="adaptive")
    loss(np.array([1, 1]), scores)
    assert float(keras.ops.convert_to_numpy(loss.state.batch_accuracy)) == pytest.approx(0.0)
    loss(np.array([2, 0]), np.array([[3.0, 2.0, 1.0, 0.0], [1.0, 0.5, 0.5, 0.0]], "float32"))
    assert float(keras.ops.convert_to_numpy(loss.state.batch_accuracy)) == pytest.approx(0.5)


def test_loss_reads_the_current_weight(rng):
    s = rng.normal(size=(5, 6)).astype("float32")
    y = rng.integers(0, 6, 5)
    loss = TopKTransitionLoss(k=3, transition="linear", transition_steps=10)
    loss.state.weight.assign(0.7)
    expected = np.mean([ref_mixture(row, t, 3, 0.7, "label") for row, t in zip(s, y)])
    assert float(loss(y, s)) == pytest.approx(expected, rel=1e-5)


# --------------------------------------------------------------------------- #
# Training, saving
# --------------------------------------------------------------------------- #


def _data(rng, b=48, d=6, n=7):
    return rng.normal(size=(b, d)).astype("float32"), rng.integers(0, n, b)


def _model(loss, lr=0.3, steps_per_execution=1, n=7, d=6, jit_compile=True):
    model = keras.Sequential([keras.Input((d,)), keras.layers.Dense(n)])
    model.compile(
        keras.optimizers.SGD(lr),
        loss=loss,
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    return model


def test_linear_schedule_moves_during_fit_and_not_during_evaluation(rng):
    x, y = _data(rng)
    loss = TopKTransitionLoss(k=2, transition="linear", transition_steps=10)
    model = _model(loss)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert loss.current_weight == 0.0  # without the callback nothing moves
    history = model.fit(
        x,
        y,
        batch_size=16,
        epochs=1,
        verbose=0,
        validation_data=(x, y),
        callbacks=[TransitionCallback()],
    )
    assert loss.current_weight == pytest.approx(0.3)
    assert int(keras.ops.convert_to_numpy(loss.state.steps)) == 3
    assert history.history["topk_transition_weight"][0] == pytest.approx(0.3)
    model.evaluate(x, y, verbose=0)
    assert loss.current_weight == pytest.approx(0.3)
    assert int(keras.ops.convert_to_numpy(loss.state.steps)) == 3


def test_only_the_training_logs_report_the_weight(rng, tmp_path):
    # Validation used to log the same w again as `val_topk_transition_weight`, and
    # `evaluate` reported w only where a callback had added the state to the metrics:
    # not after `load_model`.
    x, y = _data(rng)
    loss = TopKTransitionLoss(k=2, transition="linear", transition_steps=10)
    model = _model(loss)
    history = model.fit(
        x,
        y,
        batch_size=16,
        epochs=2,
        verbose=0,
        validation_data=(x, y),
        callbacks=[TransitionCallback()],
    ).history
    assert set(history) == {"loss", "topk_transition_weight", "val_loss"}
    assert history["topk_transition_weight"][-1] == pytest.approx(0.6)
    assert set(model.evaluate(x, y, verbose=0, return_dict=True)) == {"loss"}
    path = str(tmp_path / "logs.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert set(restored.evaluate(x, y, verbose=0, return_dict=True)) == {"loss"}
    attached = restored.evaluate(
        x, y, verbose=0, return_dict=True, callbacks=[TransitionCallback()]
    )
    assert set(attached) == {"loss"}
    # Training the restored model logs w again, from where it stopped.
    history = restored.fit(
        x, y, batch_size=16, epochs=1, verbose=0, callbacks=[TransitionCallback()]
    ).history
    assert history["topk_transition_weight"] == [pytest.approx(0.9)]


def test_one_loss_instance_in_two_models_is_refused_with_a_clear_error(rng):
    x, y = _data(rng)
    loss = TopKTransitionLoss(k=2, transition="linear", transition_steps=3)
    first, second = _model(loss), _model(loss)
    first.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[TransitionCallback()])
    assert loss.current_weight == 1.0
    # The second model would start at w = 1: refused, naming both models.
    with pytest.raises(ValueError, match=f"already used by the model `{first.name}`"):
        second.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[TransitionCallback()])
    # Its own instance works; the first model keeps training with its loss.
    second.compile(
        keras.optimizers.SGD(0.3), loss=TopKTransitionLoss.from_config(loss.get_config())
    )
    second.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[TransitionCallback()])
    assert second.loss.current_weight == 1.0 and second.loss.state is not loss.state
    first.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[TransitionCallback()])


def test_two_transition_losses_in_one_model_log_two_keys(rng):
    x, y = _data(rng)
    inputs = keras.Input((6,))
    outputs = {
        "coarse": keras.layers.Dense(7, name="coarse")(inputs),
        "fine": keras.layers.Dense(7, name="fine")(inputs),
    }
    model = keras.Model(inputs, outputs)
    losses = {
        "coarse": TopKTransitionLoss(k=2, transition="linear", transition_steps=3),
        "fine": TopKTransitionLoss(k=2, transition="linear", transition_steps=6),
    }
    model.compile(keras.optimizers.SGD(0.1), loss=losses)
    history = model.fit(
        x,
        {"coarse": y, "fine": y},
        batch_size=16,
        epochs=1,
        verbose=0,
        callbacks=[TransitionCallback()],
    )
    assert history.history["coarse_topk_transition_weight"] == [pytest.approx(1.0)]
    assert history.history["fine_topk_transition_weight"] == [pytest.approx(0.5)]
    # Distinct names need no prefix.
    named = [
        TopKTransitionLoss(k=2, transition="constant", weight=0.25, name="a"),
        TopKTransitionLoss(k=2, transition="constant", weight=0.75, name="b"),
    ]
    model.compile(keras.optimizers.SGD(0.1), loss={"coarse": named[0], "fine": named[1]})
    history = model.fit(
        x,
        {"coarse": y, "fine": y},
        batch_size=16,
        epochs=1,
        verbose=0,
        callbacks=[TransitionCallback()],
    )
    assert history.history["a_weight"] == [0.25] and history.history["b_weight"] == [0.75]


@pytest.mark.skipif(
    keras.backend.backend() == "torch", reason="PyTorch needs steps_per_execution=1"
)
def test_steps_per_execution_counts_every_step(rng):
    x, y = _data(rng, b=64)
    loss = TopKTransitionLoss(k=2, transition="linear", transition_steps=8)
    model = _model(loss, steps_per_execution=2)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[TransitionCallback()])
    assert int(keras.ops.convert_to_numpy(loss.state.steps)) == 4
    assert loss.current_weight == pytest.approx(0.5)


def test_adaptive_schedule_follows_training_topk_accuracy(rng):
    # With a learning rate of 0 the scores are fixed, so the batch accuracies
    # (and the EMA the callback must build from them) can be replayed here.
    x, y = _data(rng, b=48)
    loss = TopKTransitionLoss(
        k=3, transition="adaptive", momentum=0.6, weight_start=0.1, weight_end=0.9
    )
    model = _model(loss, lr=0.0)
    scores = model.predict(x, verbose=0)
    model.fit(
        x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=[TransitionCallback()]
    )
    a = 0.0
    for _ in range(2):
        for start in range(0, 48, 16):
            acc = np.mean(
                [
                    ref_group(r, t, 3, "predicted")[1]
                    for r, t in zip(scores[start : start + 16], y[start : start + 16])
                ]
            )
            a = 0.6 * a + 0.4 * acc
    assert a > 0.05
    assert loss.current_weight == pytest.approx(0.1 + 0.8 * a, abs=1e-6)


def test_save_mid_transition_reload_same_weight_and_loss(rng, tmp_path):
    x, y = _data(rng)
    loss = TopKTransitionLoss(k=2, transition="adaptive", momentum=0.5, group="predicted")
    model = _model(loss)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[TransitionCallback()])
    w = loss.current_weight
    assert 0.0 < w < 1.0
    before = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    path = str(tmp_path / "mid.keras")
    model.save(path)

    restored = keras.models.load_model(path)
    new_loss = restored.loss
    assert isinstance(new_loss, TopKTransitionLoss) and new_loss is not loss
    assert new_loss.get_config() == loss.get_config()
    assert new_loss.current_weight == w
    for name in ("steps", "accuracy", "batch_accuracy"):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(getattr(new_loss.state, name)),
            keras.ops.convert_to_numpy(getattr(loss.state, name)),
        )
    after = restored.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    assert after == pytest.approx(before, rel=1e-6)
    # Resumed training continues the count where it stopped.
    restored.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[TransitionCallback()])
    assert int(keras.ops.convert_to_numpy(new_loss.state.steps)) == 6


def test_mixed_precision_fit(rng):
    x, y = _data(rng)
    loss = TopKTransitionLoss(k=2, transition="linear", transition_steps=6)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(7, dtype="mixed_float16")])
    model.compile(keras.optimizers.SGD(0.3), loss=loss, jit_compile=True)
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[TransitionCallback()])
    assert np.isfinite(history.history["loss"][0])
    assert loss.current_weight == pytest.approx(0.5)


@requires_backend("tensorflow")
def test_xla_matches_eager(rng):
    import tensorflow as tf

    s = rng.normal(size=(6, 9)).astype("float32")
    y = rng.integers(0, 9, 6)
    for group in GROUPS:
        fn = tf.function(
            lambda t, v, g=group: topk_transition_loss(t, v, k=4, weight=0.5, group=g),
            jit_compile=True,
        )
        np.testing.assert_allclose(
            fn(y, s).numpy(),
            np.asarray(topk_transition_loss(y, s, k=4, weight=0.5, group=group)),
            rtol=1e-6,
        )


@requires_backend("tensorflow")
def test_mirrored_strategy_fit(rng):
    import tensorflow as tf

    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) < 2:
        pytest.skip("needs two logical CPUs (tests/conftest.py)")
    x, y = _data(rng, b=64)
    with tf.distribute.MirroredStrategy(
        [d.name for d in cpus[:2]], cross_device_ops=tf.distribute.ReductionToOneDevice()
    ).scope():
        loss = TopKTransitionLoss(k=2, momentum=0.5)
        # TensorFlow cannot XLA-compile a MirroredStrategy step on logical CPUs
        # (variables on another device), whatever the loss.
        model = _model(loss, jit_compile=False)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[TransitionCallback()])
    assert int(keras.ops.convert_to_numpy(loss.state.steps)) == 4
    assert (
        0.0
        < loss.current_weight
        == pytest.approx(float(keras.ops.convert_to_numpy(loss.state.accuracy)))
    )


@requires_backend("jax")
def test_jax_jit_of_the_adaptive_loss_does_not_leak_tracers(rng):
    import jax

    s = rng.normal(size=(6, 9)).astype("float32")
    y = rng.integers(0, 9, 6)
    loss = TopKTransitionLoss(k=4)
    value = jax.jit(lambda t, v: loss(t, v))(y, s)
    assert np.isfinite(float(value))
    assert float(keras.ops.convert_to_numpy(loss.state.batch_accuracy)) == 0.0


# --------------------------------------------------------------------------- #
# Configuration
# --------------------------------------------------------------------------- #


def test_get_config_round_trip():
    loss = TopKTransitionLoss(
        k=3,
        transition="linear",
        group="predicted",
        weight_start=0.1,
        weight_end=0.9,
        transition_steps=100,
        momentum=0.9,
        reduction="sum",
        name="tl",
    )
    config = loss.get_config()
    for key in (
        "k",
        "transition",
        "weight",
        "group",
        "weight_start",
        "weight_end",
        "transition_steps",
        "momentum",
        "reduction",
        "name",
    ):
        assert key in config
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(clone, TopKTransitionLoss)
    assert clone.get_config() == config


def test_callback_without_a_transition_loss_raises(rng):
    x, y = _data(rng, b=16)
    model = _model("sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="TopKTransitionLoss"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[TransitionCallback()])
    with pytest.raises(ValueError, match="TopKTransitionLoss"):
        TransitionCallback(losses=[keras.losses.MeanSquaredError()])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(k=0), "`k`"),
        (dict(k=2.5), "`k`"),
        (dict(transition="cosine"), "transition"),
        (dict(group="top"), "group"),
        (dict(transition="constant"), "weight"),
        (dict(transition="constant", weight=1.5), "weight"),
        (dict(transition="constant", weight=-0.1), "weight"),
        (dict(transition="constant", weight=float("nan")), "weight"),
        (dict(transition="adaptive", weight=0.5), "weight"),
        (dict(transition="linear"), "transition_steps"),
        (dict(transition="linear", transition_steps=0), "transition_steps"),
        (dict(transition="adaptive", transition_steps=10), "transition_steps"),
        (dict(weight_start=2.0), "weight_start"),
        (dict(weight_end=float("nan")), "weight_end"),
        (dict(momentum=1.0), "momentum"),
        (dict(momentum=-0.1), "momentum"),
    ],
)
def test_bad_configuration_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TopKTransitionLoss(**kwargs)


def test_bad_call_arguments_raise(rng):
    s = rng.normal(size=(3, 5)).astype("float32")
    y = np.array([0, 1, 2])
    for k in (5, 6):
        with pytest.raises(ValueError, match="number of classes"):
            topk_transition_loss(y, s, k=k, weight=0.5)
        with pytest.raises(ValueError, match="number of classes"):
            TopKTransitionLoss(k=k)(y, s)
    for w in (1.1, float("nan"), None):
        with pytest.raises(ValueError, match="weight"):
            topk_transition_loss(y, s, k=2, weight=w)
    with pytest.raises(ValueError, match="group"):
        grouped_cross_entropy(y, s, k=2, group="nope")
    if keras.backend.backend() in ("tensorflow", "jax"):  # _backend checks label values there
        with pytest.raises(ValueError, match="Labels"):
            topk_transition_loss(np.array([0, 1, 7]), s, k=2, weight=0.5)
