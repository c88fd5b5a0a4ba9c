"""A training step on a batch with no rows, as a filtered tf.data pipeline or an idle replica sends.

Keras's crossentropy answers it with a loss of 0 and a zero gradient on
TensorFlow; every keras-topk loss must do the same, rather than fail with "No
gradients provided for any variable" (its empty losses used to be disconnected
from the scores). On JAX and PyTorch Keras's own crossentropy cannot take the
step (Keras 3.15: the reduced loss of an empty batch has shape ``(0,)``); there
every keras-topk loss must behave as it does.
"""

import keras
import numpy as np
import pytest

from tests.contract import registry


def _empty_step(loss, case=None):
    """``(result, weights moved)`` of ``train_on_batch`` on a 0-row batch; result is the error if it raised."""
    x, y = registry.data(case, num_samples=4)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(registry.NUM_CLASSES)])
    model.compile(keras.optimizers.SGD(0.1), loss=loss)
    before = [keras.ops.convert_to_numpy(w) for w in model.weights]
    try:
        result = model.train_on_batch(x[:0], y[:0])
    except (ValueError, TypeError, RuntimeError) as error:
        return error, False
    after = [keras.ops.convert_to_numpy(w) for w in model.weights]
    return result, any(not np.array_equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("case", registry.LOSS_CASES, ids=registry.case_ids(registry.LOSS_CASES))
def test_an_empty_batch_trains_as_cross_entropy_does(case):
    expected, _ = _empty_step(keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    got, moved = _empty_step(case.make(), case)
    if isinstance(expected, Exception):
        assert isinstance(got, type(expected)), (got, expected)
        return
    assert not isinstance(got, Exception), got
    assert float(got) == 0.0 and float(expected) == 0.0
    assert not moved


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="see the module docstring")
def test_cross_entropy_takes_the_empty_step_on_tensorflow():
    # What the test above holds every loss to, on TensorFlow.
    result, moved = _empty_step(keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert float(result) == 0.0 and not moved
