"""Under KERAS_BACKEND=jax, every loss and metric gives TensorFlow's values and gradients.

Run by CI in its JAX step (``KERAS_BACKEND=jax pytest -m "jax or not slow"``);
skipped under other backends. TensorFlow's values come from a subprocess
(tests/contract/backend_values.py) on the same inputs.
"""

import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.contract import backend_values, registry

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = [
    pytest.mark.jax,
    pytest.mark.skipif(keras.backend.backend() != "jax", reason="needs KERAS_BACKEND=jax"),
]


@pytest.fixture(scope="module")
def tensorflow_values(tmp_path_factory):
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("TensorFlow is not installed: nothing to compare with")
    path = os.path.join(tmp_path_factory.mktemp("tf_values"), "values.npz")
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-m", "tests.contract.backend_values", path],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    values = dict(np.load(path))
    assert str(values.pop("backend")) == "tensorflow"
    return values


@pytest.fixture(scope="module")
def jax_values():
    return backend_values.compute()


@pytest.mark.parametrize("case", registry.CASES, ids=registry.case_ids(registry.CASES))
def test_values_and_gradients_match_tensorflow(case, tensorflow_values, jax_values):
    keys = sorted(k for k in tensorflow_values if k.startswith(f"{case.id}/"))
    assert keys and keys == sorted(k for k in jax_values if k.startswith(f"{case.id}/"))
    for key in keys:
        got, want = jax_values[key], tensorflow_values[key]
        assert np.all(np.isfinite(got)), key
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6, err_msg=key)


def test_keras_topk_imports_and_runs_without_tensorflow():
    # keras_topk.export imports TensorFlow only when called: a JAX-only
    # installation must import and use keras_topk.
    code = (
        "import importlib.abc, sys\n"
        "class NoTF(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'tensorflow' or name.startswith('tensorflow.'):\n"
        "            raise ImportError('no TensorFlow here')\n"
        "sys.meta_path.insert(0, NoTF())\n"
        "import numpy as np, keras_topk\n"
        "loss = keras_topk.losses.SmoothTopKSVM(k=2)\n"
        "print(float(loss(np.array([0, 1]), np.eye(2, 4, dtype='float32'))))\n"
        "assert 'tensorflow' not in sys.modules\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax")
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert np.isfinite(float(result.stdout.strip().splitlines()[-1]))
