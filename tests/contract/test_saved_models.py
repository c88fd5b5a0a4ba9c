"""Files saved by earlier versions still load and compute the same (tests/fixtures/saved_models).

The fixtures were written by ``python -m tests.fixtures.make_saved_models``; see
its docstring for when (not) to regenerate them.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_topk
from tests.contract import registry
from tests.contract.helpers import ROOT, run_consumer

FIXTURES = os.path.join(ROOT, "tests", "fixtures", "saved_models")
NAMES = sorted(f[: -len(".npz")] for f in os.listdir(FIXTURES) if f.endswith(".npz"))
TF = keras.backend.backend() == "tensorflow"


def _record(name):
    with np.load(os.path.join(FIXTURES, f"{name}.npz")) as data:
        return {key: data[key] for key in data.files}


def _noised(record):
    """Whether the fixture's loss drew noise (NoisedTopKHinge, LongTailTopKHinge, epsilon > 0)."""
    return "noise/z" in record


def _fixed_noise_losses(config, y, scores, z):
    """Per-sample losses of a noised loss for the noise ``z``, from its config (any backend)."""
    L = keras_topk.losses
    if "class_counts" in config:
        keys = ["class_counts", "k", "max_margin", "scale", "epsilon", "n_samples"]
        return L.long_tail_topk_hinge(y, scores, noise=z, **{key: config[key] for key in keys})
    keys = ["k", "margin", "epsilon", "n_samples", "multi_label"]
    return L.noised_topk_hinge(y, scores, noise=z, **{key: config[key] for key in keys})


def _draws(loss):
    return int(keras.ops.convert_to_numpy(loss.noise_state.seed_state)[1])


def test_every_loss_has_a_fixture():
    saved = {str(_record(name)["loss_class"]) for name in NAMES}
    losses = {c.cls.__name__ for c in registry.LOSS_CASES}
    assert losses <= saved, (
        f"{sorted(losses - saved)} have no saved-model fixture: add one to "
        "tests/fixtures/make_saved_models.py and run it."
    )
    for name in NAMES:
        assert os.path.exists(os.path.join(FIXTURES, f"{name}.keras"))
        assert os.path.exists(os.path.join(FIXTURES, f"{name}_savedmodel", "saved_model.pb"))
    sizes: dict[str, int] = {}
    for directory, _, files in os.walk(FIXTURES):
        for f in files:
            name = os.path.relpath(os.path.join(directory, f), FIXTURES).split(os.sep)[0]
            for suffix in ("_savedmodel", ".keras", ".npz"):
                name = name.removesuffix(suffix)
            sizes[name] = sizes.get(name, 0) + os.path.getsize(os.path.join(directory, f))
    # A SavedModel's graph (four endpoints, two signatures, each tracing the
    # loss) takes 70-270 kB whatever the model's size; the rest is a few kB.
    big = {name: size for name, size in sizes.items() if size > 400_000}
    assert not big, f"fixtures over 400 kB: {big}; keep them tiny"
    total = sum(sizes.values())
    assert total < 2_500_000, f"the fixtures take {total} bytes: keep them tiny"


@pytest.mark.parametrize("name", NAMES)
def test_keras_file_loads_and_computes_what_it_did(name):
    record = _record(name)
    model = keras.models.load_model(os.path.join(FIXTURES, f"{name}.keras"))  # no custom_objects
    loss = model.loss
    assert type(loss).__name__ == str(record["loss_class"])
    assert type(loss) is getattr(keras_topk.losses, str(record["loss_class"]))
    assert loss.get_config() == json.loads(str(record["loss_config"]))
    x, y = record["x"], record["y"]

    scores = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(scores, record["scores"], rtol=1e-5, atol=1e-6)
    noised = _noised(record)
    # The noise drawn from a saved stream is TensorFlow's (its stateless
    # generator): other backends draw other noise from the same state, so there
    # the noised losses check the stream's position and the losses for a fixed
    # noise, and the values below that do not depend on the noise.
    same_noise = TF or not noised
    if noised:
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(loss.noise_state.seed_state), record["state/seed_state"]
        )
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(
                _fixed_noise_losses(loss.get_config(), y, scores, record["noise/z"])
            ),
            record["noise/losses"],
            rtol=1e-5,
            atol=1e-6,
        )
    noise_callbacks = [keras_topk.callbacks.NoiseCallback()] if noised else []
    evaluation = model.evaluate(
        x, y, batch_size=16, verbose=0, return_dict=True, callbacks=noise_callbacks
    )
    expected = {
        k[len("evaluate/") :]: float(v) for k, v in record.items() if k.startswith("evaluate/")
    }
    # The transition weight is logged only once TransitionCallback is attached.
    assert set(evaluation) == set(expected) - {f"{loss.name}_weight"}
    for key, value in evaluation.items():
        if key == "loss" and not same_noise:
            continue
        # With noise, evaluate's loss continues the saved stream (two draws).
        assert float(value) == pytest.approx(expected[key], rel=1e-5, abs=1e-6), key
    if noised:
        assert _draws(loss) == int(record["state/seed_state"][1]) + 2
    weighted = loss(y, scores, sample_weight=record["sample_weight"])
    if same_noise:
        assert float(weighted) == pytest.approx(float(record["weighted_loss"]), rel=1e-5)

    assert int(model.optimizer.iterations) == int(record["iterations"]) > 0
    state = getattr(loss, "state", None)
    if state is not None:
        for variable in state.variables:
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(variable), record[f"state/{variable.name}"], rtol=1e-6
            )
    callbacks = [keras_topk.callbacks.TransitionCallback()] if state is not None else []
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=callbacks + noise_callbacks,
    )
    if noised:
        # evaluate (2), the weighted loss (1), one epoch (2): the stream went on.
        assert _draws(loss) == int(record["state/seed_state"][1]) + 5
    if same_noise:
        for i, weight in enumerate(model.get_weights()):
            np.testing.assert_allclose(weight, record[f"resumed/{i}"], rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not TF, reason="SavedModels load with TensorFlow")
def test_savedmodels_load_without_keras_topk_and_compute_what_they_did(tmp_path):
    inputs = {}
    # The noised SavedModels draw from their stream at every call: see the next test.
    names = [name for name in NAMES if not _noised(_record(name))]
    records = [_record(name) for name in names]
    for i, record in enumerate(records):
        inputs[f"{i}/y"] = record["y"]
    inputs["x"] = records[0]["x"]
    inputs["sample_weight"] = records[0]["sample_weight"]
    for record in records:  # one set of inputs serves every fixture
        np.testing.assert_array_equal(record["x"], inputs["x"])
        np.testing.assert_array_equal(record["sample_weight"], inputs["sample_weight"])
    outputs = run_consumer(
        inputs, [os.path.join(FIXTURES, f"{n}_savedmodel") for n in names], tmp_path
    )
    for i, (name, record) in enumerate(zip(names, records)):
        np.testing.assert_allclose(outputs[f"{i}/serve"], record["scores"], rtol=1e-5, atol=1e-6)
        assert float(outputs[f"{i}/loss"]) == pytest.approx(
            float(record["evaluate/loss"]), rel=1e-5
        ), name
        assert float(outputs[f"{i}/weighted_loss"]) == pytest.approx(
            float(record["weighted_loss"]), rel=1e-5
        ), name
        np.testing.assert_array_equal(outputs[f"{i}/top_k_indices"], record["top_k_indices"])


# Loads each noised SavedModel twice, in a process where keras_topk cannot be
# imported: the loss endpoints of the first copy, then the loss signature of a
# fresh one (whose first draw is at the saved position again).
_NOISED_CONSUMER = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from savedmodel_consumer import _NoKerasTopK
sys.meta_path.insert(0, _NoKerasTopK())
import tensorflow as tf
inputs = np.load(sys.argv[2])
x, y, w = (tf.constant(inputs[key]) for key in ("x", "y", "sample_weight"))
outputs = {}
for i, directory in enumerate(sys.argv[4:]):
    artifact = tf.saved_model.load(directory)
    outputs[f"{i}/serve"] = artifact.serve(x).numpy()
    outputs[f"{i}/top_k_indices"] = artifact.top_k(x)["indices"].numpy()
    outputs[f"{i}/loss"] = artifact.loss(y, x).numpy()
    outputs[f"{i}/weighted_loss"] = artifact.weighted_loss(y, x, w).numpy()
    outputs[f"{i}/loss_again"] = artifact.loss(y, x).numpy()
    signed = tf.saved_model.load(directory).signatures["loss"](y_true=y, x=x)
    outputs[f"{i}/signed_loss"] = next(iter(signed.values())).numpy()
assert "keras_topk" not in sys.modules
np.savez(sys.argv[3], **outputs)
"""


@pytest.mark.skipif(not TF, reason="SavedModels load with TensorFlow")
def test_noised_savedmodels_continue_their_saved_noise_stream(tmp_path):
    """A noised loss's SavedModel draws from the stream saved with it, without keras_topk.

    Its ``loss`` endpoints are stateful: every call draws fresh noise from the
    saved position on, so a call does not give ``evaluate``'s loss (two draws
    on half batches) and the signature equals the function only on a fresh
    copy. The first two calls must give what they gave when the fixture was
    written (the stream continues from where it was saved), a third call other
    noise, and the forward pass what the Keras model gave.
    """
    names = [name for name in NAMES if _noised(_record(name))]
    assert names, "no fixture of a noised loss (NoisedTopKHinge, LongTailTopKHinge)"
    records = [_record(name) for name in names]
    for record in records:  # one set of inputs serves every fixture
        np.testing.assert_array_equal(record["x"], records[0]["x"])
        np.testing.assert_array_equal(record["y"], records[0]["y"])
        np.testing.assert_array_equal(record["sample_weight"], records[0]["sample_weight"])
    inputs_path = os.path.join(tmp_path, "inputs.npz")
    outputs_path = os.path.join(tmp_path, "outputs.npz")
    np.savez(inputs_path, **{key: records[0][key] for key in ("x", "y", "sample_weight")})
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KERAS_BACKEND")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _NOISED_CONSUMER,
            os.path.join(ROOT, "tests", "contract"),
            inputs_path,
            outputs_path,
            *[os.path.join(FIXTURES, f"{n}_savedmodel") for n in names],
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    outputs = dict(np.load(outputs_path))
    for i, (name, record) in enumerate(zip(names, records)):
        np.testing.assert_allclose(outputs[f"{i}/serve"], record["scores"], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(outputs[f"{i}/top_k_indices"], record["top_k_indices"])
        loss = float(outputs[f"{i}/loss"])
        assert loss == pytest.approx(float(record["savedmodel/loss"]), rel=1e-5), name
        assert float(outputs[f"{i}/weighted_loss"]) == pytest.approx(
            float(record["savedmodel/weighted_loss"]), rel=1e-5
        ), name
        assert float(outputs[f"{i}/signed_loss"]) == pytest.approx(loss, rel=1e-6), name
        assert float(outputs[f"{i}/loss_again"]) != pytest.approx(loss, rel=1e-4), name
