"""Running a metric eagerly or compiled with XLA (TensorFlow or JAX), and brute-force ranks."""

import keras
import numpy as np

TF = keras.backend.backend() == "tensorflow"


def brute_rank(row, label):
    """Position of the label in a full ranking that puts it after every class it ties with."""
    order = sorted(range(len(row)), key=lambda j: (-row[j], j == label))
    return order.index(label)


def brute_ranks(scores, labels):
    scores = np.asarray(scores, dtype=np.float64).reshape(-1, np.shape(scores)[-1])
    labels = np.asarray(labels).reshape(-1)
    return np.array([brute_rank(s, y) for s, y in zip(scores, labels)])


def tied(rng, shape, levels=3):
    """Scores with few distinct values, so that ties are everywhere."""
    return rng.integers(0, levels, size=shape).astype("float32")


def to_numpy(value):
    if isinstance(value, dict):
        return {k: float(keras.ops.convert_to_numpy(v)) for k, v in value.items()}
    return keras.ops.convert_to_numpy(value)


def compiled(fn):
    if TF:
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    import jax

    return jax.jit(fn)


def run(make, batches, mode="eager"):
    """``make()``'s result after updating on ``batches`` of ``(y, s)`` or ``(y, s, w)``.

    ``mode="xla"`` runs each update as a compiled stateless update (XLA under
    TensorFlow, ``jax.jit`` under JAX) and the result compiled too; the metric
    must have its state already (``num_classes`` given).
    """
    metric = make()
    if mode == "eager":
        for batch in batches:
            y, s, w = (tuple(batch) + (None,))[:3]
            metric.update_state(y, s, sample_weight=w)
        return to_numpy(metric.result())
    if keras.backend.backend() not in ("tensorflow", "jax"):
        import pytest

        pytest.skip("XLA runs need TensorFlow or JAX")
    assert metric.variables, "XLA runs need the state up front: pass num_classes"
    state = [v.value for v in metric.variables]

    def update(state, y, s, w):
        return metric.stateless_update_state(state, y, s, sample_weight=w)

    step = compiled(update)
    for batch in batches:
        y, s, w = (tuple(batch) + (None,))[:3]
        state = step(state, y, s, w)
    return to_numpy(compiled(metric.stateless_result)(state))
