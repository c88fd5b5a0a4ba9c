"""The only backend-specific code in keras-topk, and its only use of private Keras.

Everything else is written with ``keras.ops``. What cannot be written that way
is checking label *values*: that needs either concrete values (eager mode) or a
backend's own run-time assertion (TensorFlow graphs). Under XLA and JAX tracing
no value check is possible; what the losses then do with a bad label is
documented in the README ("Bad input").

The three private ``keras.src`` names keras-topk uses are imported here and
nowhere else, each with a fallback, so a Keras release that moves one breaks
this module only (and only degrades, never fails to import).
"""

from collections.abc import Iterable
from typing import Any

import keras
import numpy as np

from keras_topk._typing import Tensor

try:  # Keras >= 3.6
    from keras.src.backend import get_keras_mask, set_keras_mask
except ImportError:  # pragma: no cover - older or reorganised Keras

    def get_keras_mask(x: Tensor) -> Tensor | None:
        """The Keras mask attached to ``x`` by a masking layer, or None."""
        return getattr(x, "_keras_mask", None)

    def set_keras_mask(x: Tensor, mask: Tensor | None) -> None:
        """Attaches ``mask`` to ``x`` as a masking layer would."""
        x._keras_mask = mask


try:
    from keras.src.backend.common.stateless_scope import in_stateless_scope
except ImportError:  # pragma: no cover

    def in_stateless_scope() -> bool:
        return False


try:
    from keras.src.backend.common.stateless_scope import get_stateless_scope
    from keras.src.backend.common.symbolic_scope import in_symbolic_scope
except ImportError:  # pragma: no cover

    def get_stateless_scope() -> Any:
        return None

    def in_symbolic_scope() -> bool:
        return False


try:
    from keras.src.losses.loss import reduce_weighted_values
except ImportError:  # pragma: no cover
    reduce_weighted_values = None


def concrete_value(x: Any) -> np.ndarray | None:
    """Returns ``x`` as a NumPy array if its values are known now, else None."""
    if isinstance(x, (np.ndarray, np.generic, int, float, list, tuple)):
        return np.asarray(x)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.executing_eagerly() and hasattr(x, "numpy"):
            return x.numpy()
        return None
    if backend == "jax":
        import jax

        if isinstance(x, jax.core.Tracer):
            return None
        return np.asarray(x)
    if backend == "numpy":
        return np.asarray(x)
    if backend == "torch":
        import torch

        # PyTorch runs eagerly, except under torch.compile (Keras's
        # jit_compile=True for torch), whose traced tensors have no values.
        compiler = getattr(torch, "compiler", None)
        if compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling():
            return None
        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy()
        return None
    return None


def check_labels_in_range(labels: Tensor, num_classes: int) -> Tensor:
    """Checks integer labels lie in [0, num_classes); returns the labels.

    Eager values raise ``ValueError`` at once. In a TensorFlow graph
    (``tf.function`` without XLA) the check runs with the step and raises
    ``InvalidArgumentError``; XLA compiles the assertion away.
    """
    values = concrete_value(labels)
    if values is not None:
        bad = (values < 0) | (values >= num_classes)
        if np.any(bad):
            first = values[bad].reshape(-1)[:5].tolist()
            raise ValueError(
                f"Labels must be class indices in [0, {num_classes}) for scores with "
                f"{num_classes} classes; got out-of-range labels {first} "
                f"({int(np.sum(bad))} of {values.size})."
            )
        return labels
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        message = f"Labels must be class indices in [0, {num_classes})"
        checks = [
            tf.debugging.assert_non_negative(labels, message=message),
            tf.debugging.assert_less(labels, tf.cast(num_classes, labels.dtype), message=message),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(labels)
    return labels


def may_assign_variables(value: Tensor) -> bool:
    """Whether code that computed ``value`` may assign Keras variables here.

    Under JAX a variable can only be updated inside a StatelessScope (the
    trainer's): a plain ``jax.jit`` of a loss would leak a tracer into it.
    TensorFlow graphs and eager code assign directly.
    """
    if keras.backend.backend() != "jax":
        return True
    return in_stateless_scope() or concrete_value(value) is not None


def variable_is_threaded(variable: keras.Variable, probe: Tensor) -> bool:
    """Whether an update of ``variable`` made here reaches the next compiled step.

    Only JAX can drop one: inside the trainer's jitted step a variable that
    the trainer does not pass in (as model, optimizer or metric state) reads
    as a trace-time constant and its update is discarded; inside a plain
    ``jax.jit`` (``probe``, a tensor of the computation, is then traced) no
    variable can be updated at all. Symbolic shape inference runs no step.
    """
    if keras.backend.backend() != "jax" or in_symbolic_scope():
        return True
    scope = get_stateless_scope()
    if scope is None:
        return concrete_value(probe) is not None
    return scope.get_current_value(variable) is not None


def add_model_metrics(model: keras.Model, metrics: Iterable[keras.metrics.Metric]) -> None:
    """Adds state objects (metrics) to a compiled model's metrics, once each.

    Metric state is what JAX's trainer threads through the jitted step, and
    Keras 3 has no public way to add a metric to a compiled model (compile's
    ``metrics`` are per output and would be updated with y_true/y_pred): hence
    the private list, after which ``model.metrics`` reports the state.
    """
    present = model._metrics
    added = False
    for metric in metrics:
        if not any(m is metric for m in present):
            present.append(metric)
            added = True
    if added:
        # Functions traced before the state joined the metrics would leave it
        # out of the step and the logs; fit/evaluate rebuild them after `set_model`.
        for attr in ("train_function", "test_function"):
            if getattr(model, attr, None) is not None:
                setattr(model, attr, None)
