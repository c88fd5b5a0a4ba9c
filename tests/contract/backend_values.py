"""Values and gradients of every registry case on fixed inputs, under the current backend.

    KERAS_BACKEND=tensorflow python -m tests.contract.backend_values OUT.npz

test_jax_backend.py runs this under TensorFlow in a subprocess and compares
with the same computation under JAX.
"""

import sys

import keras
import numpy as np

from tests.contract import registry


def gradient(loss, y, s):
    """d loss(y, s) / d s, by the backend's own autodiff."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(s)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = loss(y, x)
        return tape.gradient(value, x).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda x: loss(y, x))(s))
    raise ValueError(f"no gradient for backend {backend}")


def compute(cases=None):
    """``{"<case id>/<quantity>": array}`` for the given cases (default: all)."""
    out = {}
    weights = np.random.default_rng(11).uniform(0.0, 2.0, 16).astype("float32")
    for case in registry.CASES if cases is None else cases:
        s, y = registry.scores_and_labels(case, num_samples=16, seed=21)
        if case.is_loss:
            loss = case.make()
            per_sample = type(loss).from_config({**loss.get_config(), "reduction": None})
            out[f"{case.id}/per_sample"] = keras.ops.convert_to_numpy(per_sample(y, s))
            out[f"{case.id}/weighted"] = keras.ops.convert_to_numpy(
                loss(y, s, sample_weight=weights)
            )
            out[f"{case.id}/gradient"] = gradient(loss, y, s)
        else:
            metric = case.make()
            metric.update_state(y, s, sample_weight=weights)
            result = metric.result()
            if isinstance(result, dict):
                for key, value in result.items():
                    out[f"{case.id}/{key}"] = keras.ops.convert_to_numpy(value)
            else:
                out[f"{case.id}/result"] = keras.ops.convert_to_numpy(result)
    return out


if __name__ == "__main__":
    np.savez(sys.argv[1], backend=np.array(keras.backend.backend()), **compute())
