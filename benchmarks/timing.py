"""Compiled loss steps and an interleaved median timer, for the TensorFlow and JAX backends.

A *step* maps scores to ``(loss, d loss / d scores)``: the part of a training
step that a loss adds. "XLA on" compiles it with XLA (``tf.function(jit_compile=True)``,
``jax.jit``); "XLA off" is a TensorFlow graph (``tf.function``) or, under JAX,
op-by-op dispatch. Every call blocks until the gradient is on the host side.
"""

import time

import keras
import numpy as np


def backend():
    return keras.backend.backend()


def make_inputs(batch, classes, seed=0):
    """Logits ~ N(0, 1) and uniform integer labels, as NumPy arrays."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(batch, classes)).astype("float32")
    labels = rng.integers(0, classes, size=batch).astype("int32")
    return scores, labels


def to_device(array):
    if backend() == "tensorflow":
        import tensorflow as tf

        return tf.constant(array)
    if backend() == "jax":
        import jax.numpy as jnp

        return jnp.asarray(array)
    raise NotImplementedError(f"benchmarks support the tensorflow and jax backends, not {backend()!r}")


def block(result):
    """Waits for a step's outputs (and copies the gradient to the host, as a training loop reads the loss)."""
    if backend() == "tensorflow":
        return [np.asarray(r) for r in result]
    import jax

    return jax.block_until_ready(result)


def loss_step(loss_fn, labels, xla):
    """``scores -> (loss, gradient)`` for ``loss_fn(y_true, y_pred)``, compiled with or without XLA."""
    if backend() == "tensorflow":
        import tensorflow as tf

        y = tf.constant(labels)

        @tf.function(jit_compile=bool(xla), reduce_retracing=True)
        def step(scores):
            with tf.GradientTape() as tape:
                tape.watch(scores)
                value = loss_fn(y, scores)
            return value, tape.gradient(value, scores)

        return step
    if backend() == "jax":
        import jax

        y = jax.numpy.asarray(labels)
        step = jax.value_and_grad(lambda scores: loss_fn(y, scores))
        return jax.jit(step) if xla else step
    raise NotImplementedError(f"benchmarks support the tensorflow and jax backends, not {backend()!r}")


def interleaved_medians(calls, repeats=20, warmups=2, budget_s=60.0, min_repeats=3):
    """Median wall time of each zero-argument callable, timed in rounds.

    Every round calls each callable once, in order, so that a change in the
    machine's load (this is a shared 2-core box) hits all of them alike and the
    ratios between them stay meaningful. The first ``warmups`` calls (which
    compile) are excluded; the first one's time is reported as ``first_call_s``.
    Rounds stop early, after at least ``min_repeats``, once ``budget_s`` is spent.

    Returns ``{name: {"median_ms", "p25_ms", "p75_ms", "runs", "first_call_s"}}``.
    """
    first = {}
    for name, call in calls.items():
        for i in range(max(warmups, 1)):
            t0 = time.perf_counter()
            call()
            if i == 0:
                first[name] = time.perf_counter() - t0
    times = {name: [] for name in calls}
    start = time.perf_counter()
    for r in range(repeats):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t0)
        if r + 1 >= min_repeats and time.perf_counter() - start > budget_s:
            break
    return {
        name: {
            "median_ms": float(np.median(t) * 1e3),
            "p25_ms": float(np.percentile(t, 25) * 1e3),
            "p75_ms": float(np.percentile(t, 75) * 1e3),
            "runs": len(t),
            "first_call_s": round(first[name], 3),
        }
        for name, t in times.items()
    }
