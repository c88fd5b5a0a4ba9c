import os

# 3, not 2: the full `tensorflow` wheel logs "E0000 ... cuInit" on a CPU machine at ERROR level.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_configure(config):
    # Two logical CPUs, so the MirroredStrategy tests can run on one machine;
    # must happen before TensorFlow initialises its devices.
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        cpus = tf.config.list_physical_devices("CPU")
        try:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
            )
        except RuntimeError:
            pass


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def requires_backend(name):
    return pytest.mark.skipif(keras.backend.backend() != name, reason=f"needs the {name} backend")
