import importlib.util
import os

import keras
import pytest

# The examples need TensorFlow, tensorflow-datasets and matplotlib (pip install -e ".[examples]").
if not all(
    importlib.util.find_spec(m) for m in ("tensorflow", "tensorflow_datasets", "matplotlib")
):
    collect_ignore_glob = ["test_*.py"]


def pytest_collection_modifyitems(config, items):
    # The examples run on tf.data and tfds: TensorFlow backend only.
    if keras.backend.backend() == "tensorflow":
        return
    skip = pytest.mark.skip(reason="the examples need the TensorFlow backend")
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")
