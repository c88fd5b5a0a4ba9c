"""Compiled loss steps and the timing protocol, for Keras's TensorFlow and JAX backends.

A *step* maps scores to ``(loss, d loss / d scores)``: the part of a training
step that a loss adds. "XLA on" compiles it with XLA (``tf.function(jit_compile=True)``,
``jax.jit``); "XLA off" is a TensorFlow graph (``tf.function``) or, under JAX,
op-by-op dispatch. Every call blocks until the gradient is ready.

The protocol (``lower_quartiles``), made so that a busy machine cannot flatter a ratio:

- the callables are timed *interleaved*, one call of each per round, so that a
  change in the machine's load hits all of them alike;
- warm-up calls (compilation) are excluded, the first one's time is kept apart;
- several rounds, each a block of passes, each pass in a fresh random order;
- each figure is the *lower quartile* of its calls: the quiet calls, the
  closest a shared machine gets to the cost of the computation itself;
- softmax CE as Keras computes it is timed next to a bare fused op
  (``tf.nn.sparse_softmax_cross_entropy_with_logits``; under JAX a
  ``jax.nn.log_softmax`` CE) in the same rounds, and ``check_baseline`` refuses
  a figure whose two CE timings disagree by more than ``BASELINE_TOLERANCE``.

This module imports TensorFlow only under the TensorFlow backend, so that the
JAX benchmarks run on a machine without it.
"""

import os
import time

import keras
import numpy as np

# Keras's CE and the bare fused op compute the same thing: more than this apart,
# the baseline is not measuring the computation and no ratio to it is reported.
BASELINE_TOLERANCE = 1.5
_DEVICE = {"name": "cpu"}


class BaselineDisagreement(RuntimeError):
    """Keras's softmax CE and the bare fused op disagree: the ratios of this run would mislead."""


def backend():
    return keras.backend.backend()


def set_device(name):
    """Where inputs live and steps run: "cpu" or "gpu" (the first one)."""
    if name not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu', got {name!r}")
    if name == "gpu":
        if backend() == "jax":
            import jax

            if not [d for d in jax.devices() if d.platform == "gpu"]:
                raise SystemExit(f"--device gpu: JAX sees no GPU (jax.devices() = {jax.devices()})")
        elif backend() == "tensorflow":
            import tensorflow as tf

            if not tf.config.list_physical_devices("GPU"):
                raise SystemExit("--device gpu: TensorFlow sees no GPU")
    _DEVICE["name"] = name
    return name


def device():
    return _DEVICE["name"]


def make_inputs(batch, classes, seed=0):
    """Logits ~ N(0, 1) and uniform integer labels, as NumPy arrays."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(batch, classes)).astype("float32")
    labels = rng.integers(0, classes, size=batch).astype("int32")
    return scores, labels


def _tf_device():
    import tensorflow as tf

    return tf.device("/GPU:0" if device() == "gpu" else "/CPU:0")


def to_device(array):
    if backend() == "tensorflow":
        import tensorflow as tf

        with _tf_device():
            return tf.identity(tf.constant(array))
    if backend() == "jax":
        import jax

        target = [d for d in jax.devices() if d.platform == device()] or jax.devices("cpu")
        return jax.device_put(np.asarray(array), target[0])
    raise NotImplementedError(
        f"benchmarks support the tensorflow and jax backends, not {backend()!r}"
    )


def block(result):
    """Waits for a step's outputs (TensorFlow: copies them to the host, as a training loop reads the loss)."""
    if backend() == "tensorflow":
        return [np.asarray(r) for r in result]
    import jax

    return jax.block_until_ready(result)


def loss_step(loss_fn, labels, xla):
    """``scores -> (loss, gradient)`` for ``loss_fn(y_true, y_pred)``, compiled with or without XLA."""
    if backend() == "tensorflow":
        import tensorflow as tf

        with _tf_device():
            y = tf.identity(tf.constant(labels))

        @tf.function(jit_compile=bool(xla), reduce_retracing=True)
        def step(scores):
            with tf.GradientTape() as tape:
                tape.watch(scores)
                value = loss_fn(y, scores)
            return value, tape.gradient(value, scores)

        return step
    if backend() == "jax":
        import jax

        y = to_device(labels)
        step = jax.value_and_grad(lambda scores: loss_fn(y, scores))
        return jax.jit(step) if xla else step
    raise NotImplementedError(
        f"benchmarks support the tensorflow and jax backends, not {backend()!r}"
    )


def bare_ce_step(labels, xla):
    """The batch-mean softmax CE as one fused op of the backend, outside Keras: the check on Keras's CE."""
    if backend() == "tensorflow":
        import tensorflow as tf

        with _tf_device():
            y = tf.identity(tf.constant(labels))

        @tf.function(jit_compile=bool(xla), reduce_retracing=True)
        def step(scores):
            with tf.GradientTape() as tape:
                tape.watch(scores)
                value = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, scores))
            return value, tape.gradient(value, scores)

        return step
    if backend() == "jax":
        import jax
        import jax.numpy as jnp

        y = to_device(labels)

        def ce(scores):
            # As optax.softmax_cross_entropy_with_integer_labels computes it.
            log_p = jax.nn.log_softmax(scores, axis=-1)
            return -jnp.mean(jnp.take_along_axis(log_p, y[:, None], axis=-1))

        step = jax.value_and_grad(ce)
        return jax.jit(step) if xla else step
    raise NotImplementedError(
        f"benchmarks support the tensorflow and jax backends, not {backend()!r}"
    )


def lower_quartiles(calls, calls_per_round=10, rounds=3, warmups=2, budget_s=60.0, min_calls=3):
    """Times zero-argument callables interleaved; reports the lower quartile of each.

    Each of ``rounds`` rounds makes ``calls_per_round`` passes, one call of
    every callable per pass, each pass in a fresh (seeded) random order, so
    that none always runs right after another one. The first
    ``warmups`` calls of each (compilation) are excluded; the first one's time
    is reported as ``first_call_s``. Passes stop early once ``budget_s`` is
    spent, after at least ``min_calls`` calls of each.

    Returns ``{name: {"p25_ms", "median_ms", "p75_ms", "min_ms", "runs",
    "round_p25_ms", "first_call_s"}}``; ``p25_ms`` is the figure to report.
    """
    names = list(calls)
    # A fixed cyclic order would always put the same callable right after the heaviest one, which
    # pays for its clean-up (freed buffers, busy threads): each pass takes a fresh seeded order.
    rng = np.random.default_rng(0)
    first = {}
    for name in names:
        for i in range(max(warmups, 1)):
            t0 = time.perf_counter()
            calls[name]()
            if i == 0:
                first[name] = time.perf_counter() - t0
    times = {name: [] for name in names}
    per_round = {name: [] for name in names}
    start = time.perf_counter()
    done = False
    for _r in range(max(rounds, 1)):
        round_times = {name: [] for name in names}
        for _ in range(max(calls_per_round, 1)):
            for name in [names[i] for i in rng.permutation(len(names))]:
                t0 = time.perf_counter()
                calls[name]()
                dt = time.perf_counter() - t0
                times[name].append(dt)
                round_times[name].append(dt)
            if len(times[names[0]]) >= min_calls and time.perf_counter() - start > budget_s:
                done = True
                break
        for name in names:
            per_round[name].append(float(np.percentile(round_times[name], 25) * 1e3))
        if done:
            break
    return {
        name: {
            "p25_ms": float(np.percentile(t, 25) * 1e3),
            "median_ms": float(np.median(t) * 1e3),
            "p75_ms": float(np.percentile(t, 75) * 1e3),
            "min_ms": float(np.min(t) * 1e3),
            "runs": len(t),
            "round_p25_ms": per_round[name],
            "first_call_s": round(first[name], 3),
        }
        for name, t in times.items()
    }


def check_baseline(keras_ce_ms, bare_ce_ms, tolerance=BASELINE_TOLERANCE):
    """Raises ``BaselineDisagreement`` when Keras's CE and the bare op are more than ``tolerance``x apart.

    Returns the ratio ``keras_ce_ms / bare_ce_ms``.
    """
    if not (keras_ce_ms > 0 and bare_ce_ms > 0):
        raise BaselineDisagreement(
            f"non-positive CE timings: Keras {keras_ce_ms} ms, bare op {bare_ce_ms} ms"
        )
    ratio = keras_ce_ms / bare_ce_ms
    if ratio > tolerance or ratio < 1.0 / tolerance:
        raise BaselineDisagreement(
            f"Keras's softmax CE takes {keras_ce_ms:.3f} ms but the bare fused op {bare_ce_ms:.3f} ms "
            f"({ratio:.2f}x, beyond {tolerance}x): the baseline is not measuring the computation "
            "(load, or a slow Keras path), so no ratio to it is reported"
        )
    return ratio


def load_average():
    return [round(v, 2) for v in os.getloadavg()]
