"""Masks, non-finite scores and softmax outputs: one behaviour for every loss and metric.

The policy (README, "Bad input"; keras_topk/losses/_base.py) is the same for
every loss, on TensorFlow, JAX and PyTorch:

- a Keras mask on ``y_pred`` (a ``Masking`` layer, ``mask_zero=True``) removes
  the masked steps: the loss is the loss of the unmasked steps alone, and a
  masked step's scores (padding, even NaN) cannot reach the value or gradient;
- ``-inf`` masks classes: value and gradient finite, masked classes get no
  gradient, and a sample whose label class is ``-inf`` has loss 0 and no
  gradient;
- ``+inf`` (a float16 overflow) or NaN in a sample's scores makes that
  sample's loss NaN (TerminateOnNaN stops the run), nothing else;
- ``y_pred`` from a softmax/sigmoid layer gets one warning per loss.

The cases come from the registry, so a new loss or metric is checked by
adding its contract case.
"""

import warnings

import keras
import numpy as np
import pytest

from keras_topk import _backend
from tests.contract import registry

BACKEND = keras.backend.backend()
N = registry.NUM_CLASSES
KINDS = ("sparse", "onehot", "soft")
LOSS_CASES = [c for c in registry.LOSS_CASES if c.labels in KINDS]
METRIC_CASES = [c for c in registry.METRIC_CASES if c.labels in KINDS]
ids = registry.case_ids


def per_sample_loss(case):
    """The case's loss with no reduction: one value per sample."""
    loss = case.make()
    return type(loss).from_config({**loss.get_config(), "reduction": None})


def value_and_grad(loss, y, s):
    """``(loss(y, s), d sum(loss) / d s)`` as NumPy, on the current backend."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        x = tf.Variable(s)
        with tf.GradientTape() as tape:
            value = loss(y, x)
        return value.numpy(), tape.gradient(value, x).numpy()
    if BACKEND == "jax":
        import jax

        def summed(x):
            value = loss(y, x)
            return keras.ops.sum(value), value

        # jit: eager JAX compiles every primitive for every new shape (minutes).
        (_, value), grad = jax.jit(jax.value_and_grad(summed, has_aux=True))(s)
        return np.asarray(value), np.asarray(grad)
    if BACKEND == "torch":
        import torch

        x = torch.tensor(s, requires_grad=True)
        value = loss(y, x)
        value.sum().backward()
        return value.detach().cpu().numpy(), x.grad.cpu().numpy()
    pytest.skip(f"no gradients on {BACKEND}")


def labels_for(case, y, s):
    """Labels of the case's kind; soft rows put no mass on ``-inf`` classes."""
    if case.labels != "soft":
        return registry.encode_labels(y, case.labels)
    rows = registry.encode_labels(y, "soft", np.where(np.isfinite(s), s, 0.0).astype("float64"))
    # Rows whose label is masked stay unreachable; the others lose the masked classes.
    label_masked = np.isneginf(s[np.arange(len(y)), y])
    rows = np.where(np.isneginf(s) & ~label_masked[:, None], 0.0, rows)
    return (rows / rows.sum(-1, keepdims=True)).astype("float32")


def metric_values(case, y, s):
    metric = case.make()
    metric.update_state(y, s)
    result = metric.result()
    if isinstance(result, dict):
        return {key: float(result[key]) for key in result}
    return {"": np.asarray(keras.ops.convert_to_numpy(result), dtype="float64")}


# --------------------------------------------------------------------------- #
# -inf: masked classes
# --------------------------------------------------------------------------- #


def _minus_inf_scores(seed=3):
    s, y = registry.scores_and_labels(num_samples=8, seed=seed)
    y = y % 5  # labels among the classes left unmasked below
    s[0, 7:] = -np.inf  # some classes masked
    s[1, :] = -np.inf  # a whole row masked
    s[2, [y[2], 8, 9]] = -np.inf  # the label's own class masked
    s[3, 5:] = -np.inf
    s[4, 6:] = -np.inf
    return s, y


@pytest.mark.parametrize("case", LOSS_CASES, ids=ids(LOSS_CASES))
def test_minus_inf_masks_give_finite_values_and_gradients(case):
    s, y = _minus_inf_scores()
    labels = labels_for(case, y, s)
    value, grad = value_and_grad(per_sample_loss(case), labels, s)
    assert value.shape == (8,) and np.all(np.isfinite(value)), value
    assert np.all(np.isfinite(grad)), grad
    masked = np.isneginf(s)
    assert np.all(grad[masked] == 0.0), "a masked class got a gradient"
    # The label cannot be reached: the sample drops out (value and gradient 0).
    assert value[1] == 0.0 and value[2] == 0.0
    assert np.all(grad[[1, 2]] == 0.0)
    # Elsewhere -inf behaves as a very low score.
    low = np.where(masked, np.float32(-1e20), s)
    reachable = [0, 3, 4, 5, 6, 7]
    want, want_grad = value_and_grad(per_sample_loss(case), labels, low)
    np.testing.assert_allclose(value[reachable], want[reachable], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad[reachable], want_grad[reachable], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("case", METRIC_CASES, ids=ids(METRIC_CASES))
def test_minus_inf_masks_give_finite_metrics(case):
    s, y = _minus_inf_scores()
    labels = labels_for(case, y, s)
    got = metric_values(case, labels, s)
    # -inf ranks below every finite score: as the lowest finite float.
    want = metric_values(case, labels, np.where(np.isneginf(s), np.finfo("float32").min, s))
    for key in want:
        assert np.all(np.isfinite(got[key])), got
        np.testing.assert_array_equal(got[key], want[key])


# --------------------------------------------------------------------------- #
# +inf (float16 overflow) and NaN
# --------------------------------------------------------------------------- #


def _plus_inf_scores():
    s, y = registry.scores_and_labels(num_samples=8, seed=4)
    s[2, (y[2] + 1) % N] = np.inf  # another class overflowed
    s[5, y[5]] = np.inf  # the label's score overflowed
    s[6, y[6]] = np.nan
    return s, y


@pytest.mark.parametrize("case", LOSS_CASES, ids=ids(LOSS_CASES))
def test_plus_inf_and_nan_make_that_sample_nan_and_nothing_else(case):
    s, y = _plus_inf_scores()
    labels = labels_for(case, y, s)
    value, grad = value_and_grad(per_sample_loss(case), labels, s)
    broken = np.array([i in (2, 5, 6) for i in range(8)])
    assert np.all(np.isnan(value[broken])), value
    assert np.all(np.isfinite(value[~broken])), value
    # The other samples' values and gradients are those of the batch without them.
    want, want_grad = value_and_grad(per_sample_loss(case), labels[~broken], s[~broken])
    np.testing.assert_allclose(value[~broken], want, rtol=1e-6, atol=1e-7)
    # (to float32 rounding: a batch of another size may sum in another order)
    np.testing.assert_allclose(grad[~broken], want_grad, rtol=1e-5, atol=1e-6)
    assert np.all(grad[broken] == 0.0)


@pytest.mark.parametrize("case", METRIC_CASES, ids=ids(METRIC_CASES))
def test_plus_inf_ranks_above_every_finite_score_in_metrics(case):
    s, y = _plus_inf_scores()
    s[6, y[6]] = 0.0  # NaN is test_bad_input's row
    labels = labels_for(case, y, s)
    got = metric_values(case, labels, s)
    want = metric_values(case, labels, np.where(np.isposinf(s), np.finfo("float32").max, s))
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])


# --------------------------------------------------------------------------- #
# Keras masks
# --------------------------------------------------------------------------- #

STEPS, FEATURES, BATCH = 5, 4, 6
LENGTHS = np.array([5, 3, 1, 4, 2, 5])


def _sequences(case, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, STEPS, FEATURES)).astype("float32")
    mask = np.arange(STEPS)[None, :] < LENGTHS[:, None]
    x[~mask] = 0.0
    y = rng.integers(0, N, size=(BATCH, STEPS)).astype("int32")
    scores = rng.normal(size=(BATCH, STEPS, N))
    return x, registry.encode_labels(y, case.labels, scores), mask


def _sequence_model(case):
    keras.utils.set_random_seed(registry.SEED)
    model = keras.Sequential(
        [
            keras.Input((STEPS, FEATURES)),
            keras.layers.Masking(0.0),
            keras.layers.Dense(N),
        ]
    )
    loss, metrics = case.loss_and_metrics()
    model.compile(optimizer="sgd", loss=loss, metrics=metrics)
    return model


def _tolerance():
    # The masked reduction sums in another order than the reference.
    return dict(rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("case", LOSS_CASES, ids=ids(LOSS_CASES))
def test_masked_sequence_model_loss_is_the_loss_of_the_unmasked_steps(case):
    x, y, mask = _sequences(case)
    model = _sequence_model(case)
    evaluation = model.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True)
    scores = keras.ops.convert_to_numpy(model(x))
    # The reference sees the unmasked steps only, as a flat batch.
    want = float(case.make()(y[mask], scores[mask]))
    unmasked = float(case.make()(y, scores))
    assert evaluation["loss"] == pytest.approx(want, **_tolerance())
    assert abs(unmasked - want) > 1e-4 * abs(want)  # the padding would change it


@pytest.mark.parametrize("case", METRIC_CASES, ids=ids(METRIC_CASES))
def test_masked_sequence_model_metric_is_the_metric_of_the_unmasked_steps(case):
    x, y, mask = _sequences(case)
    model = _sequence_model(case)
    evaluation = model.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True)
    scores = keras.ops.convert_to_numpy(model(x))
    want = metric_values(case, y[mask], scores[mask])
    metric = registry.the_object(model, case)
    result = metric.result()
    keys = list(result) if isinstance(result, dict) else [metric.name]
    for key, want_key in zip(sorted(keys), sorted(want)):
        assert evaluation[key] == pytest.approx(float(np.mean(want[want_key])), **_tolerance()), key


@pytest.mark.parametrize("case", LOSS_CASES, ids=ids(LOSS_CASES))
def test_mask_keeps_padding_out_of_value_and_gradient(case):
    x, y, mask = _sequences(case)
    s = np.random.default_rng(7).normal(size=(BATCH, STEPS, N)).astype("float32")
    s[~mask] = np.nan  # whatever padding computes must not matter
    loss = case.make()

    def masked_loss(labels, scores):
        scores = keras.ops.convert_to_tensor(scores)
        _backend.set_keras_mask(scores, keras.ops.convert_to_tensor(mask))
        return keras.ops.reshape(loss(labels, scores), (1,))

    value, grad = value_and_grad(masked_loss, y, s)
    want, want_grad = value_and_grad(
        lambda t, v: keras.ops.reshape(case.make()(t, v), (1,)), y[mask], s[mask]
    )
    assert float(value[0]) == pytest.approx(float(want[0]), rel=1e-6)
    assert np.all(grad[~mask] == 0.0)
    np.testing.assert_allclose(grad[mask], want_grad, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- #
# Softmax outputs
# --------------------------------------------------------------------------- #


def _softmax_model(case):
    keras.utils.set_random_seed(registry.SEED)
    model = keras.Sequential(
        [
            keras.Input((registry.NUM_FEATURES,)),
            keras.layers.Dense(N, activation="softmax"),
        ]
    )
    model.compile(optimizer="sgd", loss=case.make(), jit_compile=False)
    return model


def _our_warnings(record):
    return [w for w in record if "softmax" in str(w.message) and "keras-topk" in str(w.message)]


@pytest.mark.parametrize("case", LOSS_CASES, ids=ids(LOSS_CASES))
@pytest.mark.skipif(
    BACKEND == "jax",
    reason="JAX arrays carry no trace of the softmax in a jitted step "
    "(README, 'Bad input'); the eager check is test_softmax_values_warn_in_eager_calls",
)
def test_model_ending_in_softmax_warns_once(case):
    x, y = registry.data(case, num_samples=32)
    model = _softmax_model(case)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=case.callbacks())
        model.evaluate(x, y, verbose=0)
    ours = _our_warnings(record)
    assert len(ours) == 1, [str(w.message) for w in record]
    assert model.loss.name in str(ours[0].message) and "logits" in str(ours[0].message)


@pytest.mark.parametrize("case", LOSS_CASES, ids=ids(LOSS_CASES))
def test_softmax_values_warn_in_eager_calls_and_logits_do_not(case):
    s, y = registry.scores_and_labels(case)
    loss = case.make()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        loss(y, s)
        loss(y, s - s.max(-1, keepdims=True))  # non-positive logits: still logits
    assert not _our_warnings(record)
    probabilities = np.exp(s) / np.exp(s).sum(-1, keepdims=True)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        loss(y, probabilities)
        loss(y, probabilities)
    assert len(_our_warnings(record)) == 1
