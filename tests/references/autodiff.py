"""Gradients on whichever backend the tests run under, for comparison with references."""

import keras
import numpy as np
import pytest


def value_and_grad(fn, x):
    """Returns ``fn(x)`` and the gradient of its sum with respect to ``x``, as NumPy."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        v = tf.Variable(x)
        with tf.GradientTape() as tape:
            out = fn(v)
        return np.asarray(out), tape.gradient(out, v).numpy()
    if backend == "jax":
        import jax

        def summed(v):
            out = fn(v)
            return keras.ops.sum(out), out

        # jit: eager JAX compiles every primitive for every new shape, which
        # makes the many-shape tests take minutes.
        (_, value), g = jax.jit(jax.value_and_grad(summed, has_aux=True))(x)
        return np.asarray(value), np.asarray(g)
    pytest.skip(f"no gradients on {backend}")


def grad(fn, x):
    """The gradient of ``sum(fn(x))`` with respect to ``x``, as NumPy."""
    return value_and_grad(fn, x)[1]


def finite_differences(fn, x, h=1e-6):
    """Central differences ``(fn(x + h e_i) - fn(x - h e_i)) / 2h`` of a scalar ``fn``, entry by entry."""
    x = np.asarray(x, dtype="float64")
    out = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[idx] = h
        out[idx] = (float(fn(x + step)) - float(fn(x - step))) / (2 * h)
    return out
