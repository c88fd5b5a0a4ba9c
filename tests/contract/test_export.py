"""SavedModel export: ``model.export`` for serving, and `export_with_loss`.

A consumer process that cannot import keras_topk (tests/contract/
savedmodel_consumer.py) loads the artifacts with ``tf.saved_model.load`` and
must get the scores, the loss (with and without sample weights) and the
top-k predictions that Keras computes here.
"""

import os

import keras
import numpy as np
import pytest

import keras_topk
from keras_topk.export import export_with_loss
from tests.contract import registry
from tests.contract.helpers import run_consumer

TF = keras.backend.backend() == "tensorflow"
K = 3


def _label_spec(case):
    import tensorflow as tf

    if case.labels == "sparse":
        return None
    return tf.TensorSpec((None, registry.NUM_CLASSES), tf.float32)


def _export_and_expect(case, directory, serve_only=True):
    """Exports a model compiled with ``case``; returns the Keras values the consumer must match."""
    import tensorflow as tf

    x, y = registry.data(case, num_samples=24)
    model = registry.build_model(case, jit_compile=False)
    loss = model.loss
    state = getattr(loss, "state", None)
    if state is not None:
        state.weight.assign(0.37)  # mid-transition: the exported loss uses this w
    names = export_with_loss(
        model, os.path.join(directory, "with_loss"), k=K, label_spec=_label_spec(case)
    )
    assert names == ["serve", "loss", "weighted_loss", "top_k"]
    if serve_only:
        model.export(os.path.join(directory, "serve_only"), format="tf_saved_model", verbose=False)

    weights = np.random.default_rng(1).uniform(0.0, 2.0, len(x)).astype("float32")
    weights[:6] = 0.0
    scores = model(tf.constant(x), training=False)
    values, indices = tf.math.top_k(scores, K)
    expected = {
        "serve": scores.numpy(),
        "loss": float(loss(y, scores)),
        "weighted_loss": float(loss(y, scores, sample_weight=weights)),
        "top_k_values": values.numpy(),
        "top_k_indices": indices.numpy(),
    }
    if state is not None:
        # Consumers of the artifact must not move the exporting model's schedule.
        assert float(keras.ops.convert_to_numpy(state.weight)) == pytest.approx(0.37)
    return x, y, weights, expected


@pytest.mark.skipif(not TF, reason="SavedModel export needs the TensorFlow backend")
@pytest.mark.parametrize("which", ["default", pytest.param("all", marks=pytest.mark.slow)])
def test_savedmodels_give_keras_values_without_keras_topk(which, tmp_path):
    cases = [c for c in registry.LOSS_CASES if which == "all" or c.default_run]
    inputs, directories, expectations = {}, [], []
    for i, case in enumerate(cases):
        directory = os.path.join(tmp_path, case.id)
        # model.export's artifact does not depend on the loss: once is enough.
        x, y, weights, expected = _export_and_expect(case, directory, serve_only=i == 0)
        inputs["x"], inputs["sample_weight"] = x, weights  # same features for every case
        inputs[f"{i}/y"] = y
        directories.append(os.path.join(directory, "with_loss"))
        expectations.append(expected)
    directories.append(os.path.join(tmp_path, cases[0].id, "serve_only"))
    inputs[f"{len(cases)}/y"] = inputs["0/y"]

    outputs = run_consumer(inputs, directories, tmp_path)
    serve_only = len(cases)
    np.testing.assert_allclose(
        outputs[f"{serve_only}/serve"], expectations[0]["serve"], rtol=1e-6, atol=1e-6
    )
    assert f"{serve_only}/loss" not in outputs
    for with_loss, (case, expected) in enumerate(zip(cases, expectations)):
        np.testing.assert_allclose(
            outputs[f"{with_loss}/serve"], expected["serve"], rtol=1e-6, atol=1e-6
        )
        for name in ("loss", "weighted_loss"):
            assert float(outputs[f"{with_loss}/{name}"]) == pytest.approx(
                expected[name], rel=1e-5, abs=1e-6
            ), (case.id, name)
        np.testing.assert_allclose(
            outputs[f"{with_loss}/top_k_values"], expected["top_k_values"], rtol=1e-6
        )
        np.testing.assert_array_equal(
            outputs[f"{with_loss}/top_k_indices"], expected["top_k_indices"]
        )
        assert expected["weighted_loss"] != pytest.approx(expected["loss"], rel=1e-3)


@pytest.mark.skipif(not TF, reason="SavedModel export needs the TensorFlow backend")
@pytest.mark.parametrize(
    "loss,name",
    [
        (lambda: keras_topk.losses.TopKSVM(k=2, name="hinge"), "hinge"),
        (
            lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "sparse_categorical_crossentropy",
        ),
    ],
)
def test_the_loss_signatures_name_their_output_after_the_loss(loss, name, tmp_path):
    import tensorflow as tf

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6)])
    model.compile("sgd", loss=loss())
    path = os.path.join(tmp_path, "named")
    export_with_loss(model, path, k=2)
    reloaded = tf.saved_model.load(path)
    x = np.random.default_rng(3).normal(size=(5, 4)).astype("float32")
    y = np.array([0, 1, 5, 2, 2], "int32")
    weights = np.array([1.0, 0.0, 2.0, 1.0, 0.5], "float32")
    scores = model(x)
    expected = {
        "loss": float(model.loss(y, scores)),
        "weighted_loss": float(model.loss(y, scores, sample_weight=weights)),
    }
    signed = {
        "loss": reloaded.signatures["loss"](y_true=y, x=x),
        "weighted_loss": reloaded.signatures["weighted_loss"](y_true=y, x=x, sample_weight=weights),
    }
    called = {"loss": reloaded.loss(y, x), "weighted_loss": reloaded.weighted_loss(y, x, weights)}
    for endpoint, value in expected.items():
        # TF Serving's response key: the loss's name, not "output_0".
        assert list(signed[endpoint]) == [name]
        assert float(signed[endpoint][name]) == pytest.approx(value, rel=1e-6)
        # Python callers still get the scalar itself.
        assert float(called[endpoint]) == pytest.approx(value, rel=1e-6)


@pytest.mark.skipif(not TF, reason="SavedModel export needs the TensorFlow backend")
def test_export_with_loss_rejects_what_it_cannot_export(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6)])
    with pytest.raises(ValueError, match="not compiled with a loss"):
        export_with_loss(model, os.path.join(tmp_path, "a"))
    model.compile("sgd", loss=keras_topk.losses.TopKSVM(k=2))
    with pytest.raises(ValueError, match="`k`=7 must be at most the number of classes"):
        export_with_loss(model, os.path.join(tmp_path, "b"), k=7)
    with pytest.raises(ValueError, match="single loss"):
        export_with_loss(model, os.path.join(tmp_path, "c"), loss=[model.loss])


@pytest.mark.skipif(TF, reason="checks the error under other backends")
def test_export_with_loss_needs_tensorflow(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6)])
    model.compile("sgd", loss=keras_topk.losses.TopKSVM(k=2))
    with pytest.raises(ValueError, match="TensorFlow backend"):
        export_with_loss(model, os.path.join(tmp_path, "a"))


@pytest.mark.skipif(not TF, reason="the docstring example uses TensorFlow")
def test_docstring_example_runs():
    import doctest

    from keras_topk import export

    result = doctest.testmod(export, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5 and result.failed == 0
