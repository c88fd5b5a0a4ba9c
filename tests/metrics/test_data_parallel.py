"""The per-class and multi-label metrics under JAX ``keras.distribution.DataParallel``.

Keras's own ``SparseTopKCategoricalAccuracy`` fails there (keras#19290). A
subprocess (JAX must see two host devices before it starts) evaluates and
fits the same model on one device and on two, the batch sharded, and the
logs must agree: the state is a sum over examples, however they are split.
"""

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = textwrap.dedent(
    """
    import jax, keras, numpy as np
    from keras_topk import metrics as M

    assert len(jax.devices()) == 2, jax.devices()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 12)).astype("float32")
    labels = rng.integers(0, 10, 64).astype("int32")
    khot = (rng.uniform(size=(64, 10)) < 0.3).astype("float32")
    weights = rng.uniform(0, 2, 64).astype("float32")

    def run(distribution, multilabel):
        keras.distribution.set_distribution(distribution)
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(10)])
        if multilabel:
            loss, metrics, y = keras.losses.BinaryCrossentropy(from_logits=True), [
                M.PrecisionRecallAtK((1, 3))], khot
        else:
            loss, metrics, y = keras.losses.SparseCategoricalCrossentropy(from_logits=True), [
                M.CandidatesForCoverage((0.5, 0.9)), M.PerClassTopKAccuracy(2),
                M.CandidatesForCoverage((0.7,), num_classes=10, name="fixed")], labels
        model.compile("sgd", loss, metrics=metrics, jit_compile=True)
        logs = model.evaluate(x, y, sample_weight=weights, batch_size=32, verbose=0,
                              return_dict=True)
        history = model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False).history
        return logs, {k: v[-1] for k, v in history.items()}

    for multilabel in (False, True):
        one = run(None, multilabel)
        two = run(keras.distribution.DataParallel(devices=jax.devices()), multilabel)
        for a, b in zip(one, two):
            assert a.keys() == b.keys(), (a, b)
            for key in a:
                assert np.isclose(a[key], b[key], rtol=1e-6, atol=1e-7), (key, a[key], b[key])
        print(multilabel, one)
    print("two devices agree")
    """
)


# ~30 s (two JAX processes' worth of compilation): CI's slow step.
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs JAX")
def test_two_sharded_devices_log_what_one_device_logs(tmp_path):
    env = dict(
        os.environ,
        KERAS_BACKEND="jax",
        TF_CPP_MIN_LOG_LEVEL="2",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
    )
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "two devices agree" in result.stdout
