"""Files saved by earlier versions still load and compute the same (saved_models/fixtures).

The fixtures were written by ``python -m saved_models.make_fixtures``; see
its docstring for when (not) to regenerate them.
"""

import json
import os

import keras
import numpy as np
import pytest

import keras_topk
from tests.contract import registry
from tests.contract.test_export import ROOT, run_consumer

FIXTURES = os.path.join(ROOT, "saved_models", "fixtures")
NAMES = sorted(f[: -len(".npz")] for f in os.listdir(FIXTURES) if f.endswith(".npz"))
TF = keras.backend.backend() == "tensorflow"


def _record(name):
    with np.load(os.path.join(FIXTURES, f"{name}.npz")) as data:
        return {key: data[key] for key in data.files}


def test_every_loss_has_a_fixture():
    saved = {str(_record(name)["loss_class"]) for name in NAMES}
    losses = {c.cls.__name__ for c in registry.LOSS_CASES}
    assert losses <= saved, (
        f"{sorted(losses - saved)} have no saved-model fixture: add one to "
        "saved_models/make_fixtures.py and run it."
    )
    for name in NAMES:
        assert os.path.exists(os.path.join(FIXTURES, f"{name}.keras"))
        assert os.path.exists(os.path.join(FIXTURES, f"{name}_savedmodel", "saved_model.pb"))
    total = sum(
        os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(FIXTURES) for f in files
    )
    assert total < 1_500_000, f"the fixtures take {total} bytes: keep them tiny"


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
    evaluation = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    expected = {
        k[len("evaluate/") :]: float(v) for k, v in record.items() if k.startswith("evaluate/")
    }
    # The transition weight is logged only once TransitionCallback is attached.
    assert set(evaluation) == set(expected) - {f"{loss.name}_weight"}
    for key, value in evaluation.items():
        assert float(value) == pytest.approx(expected[key], rel=1e-5, abs=1e-6), key
    weighted = loss(y, scores, sample_weight=record["sample_weight"])
    assert float(weighted) == pytest.approx(float(record["weighted_loss"]), rel=1e-5)

    assert int(model.optimizer.iterations) == int(record["iterations"]) > 0
    state = getattr(loss, "state", None)
    if state is not None:
        for variable in state.variables:
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(variable), record[f"state/{variable.name}"], rtol=1e-6
            )
    callbacks = [keras_topk.losses.TransitionCallback()] if state is not None else []
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=callbacks)
    for i, weight in enumerate(model.get_weights()):
        np.testing.assert_allclose(weight, record[f"resumed/{i}"], rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not TF, reason="SavedModels load with TensorFlow")
def test_savedmodels_load_without_keras_topk_and_compute_what_they_did(tmp_path):
    inputs = {}
    records = [_record(name) for name in NAMES]
    for i, record in enumerate(records):
        inputs[f"{i}/y"] = record["y"]
    inputs["x"] = records[0]["x"]
    inputs["sample_weight"] = records[0]["sample_weight"]
    for record in records:  # one set of inputs serves every fixture
        np.testing.assert_array_equal(record["x"], inputs["x"])
        np.testing.assert_array_equal(record["sample_weight"], inputs["sample_weight"])
    outputs = run_consumer(
        inputs, [os.path.join(FIXTURES, f"{n}_savedmodel") for n in NAMES], tmp_path
    )
    for i, (name, record) in enumerate(zip(NAMES, records)):
        np.testing.assert_allclose(outputs[f"{i}/serve"], record["scores"], rtol=1e-5, atol=1e-6)
        assert float(outputs[f"{i}/loss"]) == pytest.approx(
            float(record["evaluate/loss"]), rel=1e-5
        ), name
        assert float(outputs[f"{i}/weighted_loss"]) == pytest.approx(
            float(record["weighted_loss"]), rel=1e-5
        ), name
        np.testing.assert_array_equal(outputs[f"{i}/top_k_indices"], record["top_k_indices"])
