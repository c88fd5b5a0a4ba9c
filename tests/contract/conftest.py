import keras
import pytest


@pytest.fixture(autouse=True)
def _float32_policy():
    # A test that fails under mixed_float16 must not leave the policy behind.
    yield
    keras.mixed_precision.set_global_policy("float32")
