"""The Keras contract of every loss and metric in the registry.

For each case: XLA training is finite, deterministic and equal to eager; a
``.keras`` file round-trips (class, config, values, training state); mixed
precision computes in float32; and MirroredStrategy over two logical CPUs
gives the loss and gradients of one device, sample weights included.
"""

import os

import keras
import numpy as np
import pytest

from tests.contract import registry
from tests.contract.registry import BATCH_SIZE

TF = keras.backend.backend() == "tensorflow"
needs_tf = pytest.mark.skipif(not TF, reason="needs the TensorFlow backend")
# Under PyTorch, jit_compile=True is torch.compile (TorchDynamo + Inductor), which
# keras-topk does not support (it compiles for minutes on CPU); there the
# "compiled" run is Keras's default torch step, so the test checks that fit is
# finite and deterministic, and equal to run_eagerly.
COMPILED = keras.backend.backend() != "torch"


def _state_variables(model):
    """What a fit carries over: weights, optimizer, loss state (fit resets the metrics)."""
    found = {}
    groups = [model.variables, model.optimizer.variables]
    state = getattr(model.loss, "state", None)
    if state is not None:
        groups.append(state.variables)
    for group in groups:
        for v in group:
            found[id(v)] = v
    return list(found.values())


def _fit_and_evaluate(model, case, x, y):
    # No shuffling: the order of the batches is Keras's business (and not
    # reproducible from the seed under every backend); the steps are ours.
    history = model.fit(
        x, y, batch_size=BATCH_SIZE, epochs=1, shuffle=False, verbose=0, callbacks=case.callbacks()
    )
    evaluation = model.evaluate(x, y, batch_size=BATCH_SIZE, verbose=0, return_dict=True)
    return registry.flat_logs(history.history), registry.flat_logs(evaluation)


def _weights(model):
    return [np.asarray(w) for w in model.get_weights()]


@pytest.mark.parametrize("case", registry.training_params())
def test_xla_fit_is_finite_deterministic_and_equal_to_eager(case):
    x, y = registry.data(case)
    # SGD: Adam's first steps move each weight by about its learning rate
    # whatever the gradient's size, so rounding-level differences between XLA
    # and eager would show in the weights at full scale.
    optimizer = keras.optimizers.SGD(0.1)
    model = registry.build_model(case, optimizer=optimizer, jit_compile=COMPILED)
    # The seed fixes the initial weights.
    for a, b in zip(_weights(registry.build_model(case)), _weights(model)):
        np.testing.assert_array_equal(a, b)
    model.optimizer.build(model.trainable_variables)
    start = [np.array(keras.ops.convert_to_numpy(v)) for v in _state_variables(model)]

    first = _fit_and_evaluate(model, case, x, y)
    first_weights = _weights(model)
    for logs in first:
        assert logs and all(np.isfinite(v) for v in logs.values()), logs
    # The object under test is in the logs: the loss, or the metric's key(s).
    obj = registry.the_object(model, case)
    result = None if case.is_loss else obj.result()
    keys = ["loss"] if case.is_loss else list(result) if isinstance(result, dict) else [obj.name]
    assert set(keys) <= set(first[1]), (keys, first[1])

    # The same run again (same seed, same start, the same compiled step):
    # bit for bit the same.
    for v, value in zip(_state_variables(model), start):
        v.assign(value)
    second = _fit_and_evaluate(model, case, x, y)
    assert second == first
    for a, b in zip(_weights(model), first_weights):
        np.testing.assert_array_equal(a, b)

    # Eagerly, from the same seed: the same values up to float32 rounding.
    # XLA fuses and reorders float32 arithmetic (FMA), which rounds differently,
    # and the relaxed comparators are steep near ties: 1e-4 over an epoch, where
    # single forward passes agree to ~1e-6.
    eager = registry.build_model(case, optimizer=keras.optimizers.SGD(0.1), run_eagerly=True)
    eager.optimizer.build(eager.trainable_variables)
    eager_start = [np.array(keras.ops.convert_to_numpy(v)) for v in _state_variables(eager)]
    eager_logs = _fit_and_evaluate(eager, case, x, y)
    for got, want in zip(eager_logs, first):
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-5), key

    # The gradient of one step from the same start. (Not the weights after an
    # epoch: near ties the relaxations' gradients are steep enough that the
    # trajectories drift apart by more than rounding.)
    updates = []
    for m, snapshot in ((model, start), (eager, eager_start)):
        for v, value in zip(_state_variables(m), snapshot):
            v.assign(value)
        m.train_on_batch(x[:BATCH_SIZE], y[:BATCH_SIZE])
        updates.append([w - w0 for w, w0 in zip(_weights(m), snapshot)])
    scale = max(float(np.max(np.abs(u))) for u in updates[0])
    assert scale > 0
    for a, b in zip(*updates):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-3 * scale)


@pytest.mark.parametrize("case", registry.training_params())
def test_keras_file_round_trip_restores_class_config_values_and_training_state(case, tmp_path):
    x, y = registry.data(case)
    # Not XLA: this is about saving, and a loaded model compiles its own steps.
    model = registry.build_model(case, jit_compile=False)
    model.fit(x, y, batch_size=BATCH_SIZE, epochs=1, verbose=0, callbacks=case.callbacks())
    before = registry.flat_logs(model.evaluate(x, y, verbose=0, return_dict=True))
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)

    restored = keras.models.load_model(path)  # no custom_objects
    after = registry.flat_logs(restored.evaluate(x, y, verbose=0, return_dict=True))
    # TransitionCallback logs the schedule's w; a loaded model logs it again
    # once the callback is attached (below).
    state = getattr(registry.the_object(model, case), "state", None)
    assert before.keys() - after.keys() <= ({state.name} if state is not None else set())
    for key in after:
        assert after[key] == pytest.approx(before[key], rel=1e-6, abs=1e-7), key

    original, revived = registry.the_object(model, case), registry.the_object(restored, case)
    assert type(revived) is case.cls and revived is not original
    assert revived.get_config() == original.get_config()
    assert int(restored.optimizer.iterations) == int(model.optimizer.iterations) > 0
    if state is not None:
        for a, b in zip(revived.state.variables, state.variables):
            np.testing.assert_array_equal(
                keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
            )

    # Training continues from the same state: Adam's moments, the step count
    # and any loss state come back, so one more epoch lands on the same weights.
    logs = []
    for m in (model, restored):
        history = m.fit(
            x,
            y,
            batch_size=BATCH_SIZE,
            epochs=1,
            verbose=0,
            shuffle=False,
            callbacks=case.callbacks(),
        )
        logs.append(registry.flat_logs(history.history))
    for key in logs[0]:
        assert logs[1][key] == pytest.approx(logs[0][key], rel=1e-6, abs=1e-7), key
    for a, b in zip(_weights(restored), _weights(model)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", registry.CASES, ids=registry.case_ids(registry.CASES))
def test_half_precision_scores_are_computed_in_float32(case):
    s, y = registry.scores_and_labels(case)
    half = s.astype("float16")
    obj = case.make()
    if case.is_loss:
        value = obj(y, half)
        assert keras.backend.standardize_dtype(value.dtype) == "float32"
        # float32 internals: exactly the loss of the rounded scores in float32.
        reference = obj(y, half.astype("float32"))
        assert float(value) == float(reference) and np.isfinite(float(value))
    else:
        obj.update_state(y, half)
        reference = case.make()
        reference.update_state(y, half.astype("float32"))
        got, want = obj.result(), reference.result()
        if not isinstance(want, dict):
            got, want = {"": got}, {"": want}
        for key in want:
            assert float(got[key]) == float(want[key])


@pytest.mark.parametrize("case", registry.training_params())
def test_mixed_float16_training_is_finite_and_close_to_float32(case):
    x, y = registry.data(case)
    reference_model = registry.build_model(case, jit_compile=False)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = registry.build_model(case, jit_compile=False)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model.set_weights(reference_model.get_weights())
    half, full = model(x), reference_model(x)
    assert keras.backend.standardize_dtype(half.dtype) == "float16"
    if case.is_loss:
        # float16 logits carry ~1e-3 relative rounding, which is all that differs.
        loss = model.loss
        assert float(loss(y, half)) == pytest.approx(float(loss(y, full)), rel=1e-2)
    history = model.fit(
        x, y, batch_size=BATCH_SIZE, epochs=1, verbose=0, callbacks=case.callbacks()
    )
    logs = registry.flat_logs(history.history)
    assert logs and all(np.isfinite(v) for v in logs.values()), logs
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)


def _one_step(model, case, x, y, sample_weight):
    before = _weights(model)
    history = model.fit(
        x,
        y,
        sample_weight=sample_weight,
        batch_size=len(x),
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=case.callbacks(),
    )
    # SGD with learning rate 1: the weight update is minus the gradient.
    gradient = [b - a for a, b in zip(_weights(model), before)]
    return registry.flat_logs(history.history), gradient


@needs_tf
@pytest.mark.parametrize("case", registry.training_params())
def test_mirrored_strategy_matches_one_device(case):
    import tensorflow as tf

    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) < 2:
        pytest.skip("needs two logical CPUs (tests/conftest.py)")
    x, y = registry.data(case, num_samples=32)
    weights = np.random.default_rng(5).uniform(0.0, 2.0, size=len(x)).astype("float32")
    weights[:4] = 0.0

    def build():
        # TensorFlow cannot XLA-compile a MirroredStrategy step on logical CPUs
        # (the variables live on another device), whatever the loss: no jit.
        return registry.build_model(case, optimizer=keras.optimizers.SGD(1.0), jit_compile=False)

    single = build()
    start = single.get_weights()
    with tf.distribute.MirroredStrategy(
        [d.name for d in cpus[:2]], cross_device_ops=tf.distribute.ReductionToOneDevice()
    ).scope():
        mirrored = build()
    mirrored.set_weights(start)
    assert mirrored.distribute_strategy.num_replicas_in_sync == 2

    # The global batch of 32 splits into 16 a replica; the loss must reduce
    # over the global batch, with the weights, and the metrics (in the logs)
    # aggregate over both replicas.
    single_logs, single_grad = _one_step(single, case, x, y, weights)
    mirrored_logs, mirrored_grad = _one_step(mirrored, case, x, y, weights)
    for key in single_logs:
        assert mirrored_logs[key] == pytest.approx(single_logs[key], rel=1e-5, abs=1e-6), key
    for a, b in zip(mirrored_grad, single_grad):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)

    # ... and that is the loss's own definition on the whole batch, weighted.
    reference = build()
    reference.set_weights(start)
    loss_fn = reference.loss
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        value = loss_fn(y, reference(xt), sample_weight=weights)
    grads = tape.gradient(value, reference.trainable_variables)
    assert single_logs["loss[0]"] == pytest.approx(float(value), rel=1e-5)
    for a, b in zip(single_grad, grads):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-4, atol=1e-6)
    unweighted = float(loss_fn(y, reference(xt)))
    assert abs(unweighted - float(value)) > 1e-3 * abs(unweighted)  # the weights matter here
