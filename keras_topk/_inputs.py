"""Standardisation of scores and labels, shared by every loss and metric.

Scores are logits of shape ``(..., n)``: half precision is promoted to float32
(the relaxations underflow in float16), float64 is kept, anything else is an
error. Labels are either integer class indices of shape ``(...,)`` or
``(..., 1)``, or dense (one-hot or soft) rows of shape ``(..., n)``.
"""

from typing import Any

import numpy as np
from keras import backend, ops

from keras_topk import _backend
from keras_topk._typing import Tensor

_HALF = ("float16", "bfloat16")


def compute_dtype(dtype: Any) -> str:
    """The dtype keras-topk computes in for scores of ``dtype``."""
    dtype = backend.standardize_dtype(dtype)
    if dtype in _HALF:
        return "float32"
    if dtype in ("float32", "float64"):
        return dtype
    raise ValueError(
        f"Scores (y_pred) must be floating-point logits, got dtype {dtype}. "
        "Cast them with `keras.ops.cast(y_pred, 'float32')`."
    )


def standardize_scores(y_pred: Tensor) -> Tensor:
    """Returns scores as a float32/float64 tensor of rank >= 1 with a static class axis."""
    scores = ops.convert_to_tensor(y_pred)
    dtype = compute_dtype(scores.dtype)
    if len(scores.shape) < 1:
        raise ValueError(
            "Scores (y_pred) must have a class axis, shape (batch, num_classes); got a scalar."
        )
    if scores.shape[-1] is None:
        raise ValueError(
            "The number of classes (last axis of y_pred) must be known when the loss is "
            f"traced; got scores of shape {scores.shape}."
        )
    if backend.standardize_dtype(scores.dtype) != dtype:
        scores = ops.cast(scores, dtype)
    return scores


def num_classes_of(scores: Tensor) -> int:
    return int(scores.shape[-1])


def standardize_labels(y_true: Tensor, scores: Tensor) -> tuple[Tensor, bool]:
    """Returns ``(labels, dense)`` for ``scores`` of shape ``(..., n)``.

    Sparse labels come back as int32 of shape ``scores.shape[:-1]`` (range-checked
    where the values can be seen); dense labels as rows of ``scores.dtype`` of the
    same shape as the scores.
    """
    labels = ops.convert_to_tensor(y_true)
    n = num_classes_of(scores)
    rank = len(scores.shape)
    label_rank = len(labels.shape)
    expected = (
        f"integer labels of shape {_shape(scores.shape[:-1])} or "
        f"{_shape(scores.shape[:-1] + (1,))}, or one-hot/soft labels of shape "
        f"{_shape(scores.shape)}"
    )
    if label_rank == rank and labels.shape[-1] == n and n != 1:
        dense = True
    elif label_rank == rank and labels.shape[-1] == 1:
        dense = False
        labels = ops.squeeze(labels, axis=-1)
    elif label_rank == rank - 1:
        dense = False
    else:
        raise ValueError(
            f"Labels (y_true) of shape {_shape(labels.shape)} do not match scores (y_pred) "
            f"of shape {_shape(scores.shape)}: expected {expected}."
        )
    for a, b in zip(labels.shape[: rank - 1], scores.shape[:-1]):
        if a is not None and b is not None and a != b:
            raise ValueError(
                f"Labels (y_true) of shape {_shape(labels.shape)} and scores (y_pred) of "
                f"shape {_shape(scores.shape)} disagree on the batch size: expected {expected}."
            )
    label_dtype = backend.standardize_dtype(labels.dtype)
    if not label_dtype.startswith(("int", "uint", "float", "bfloat16", "bool")):
        raise ValueError(
            f"Labels (y_true) must be integer class indices or one-hot/soft rows of numbers, "
            f"got dtype {label_dtype}."
        )
    if dense:
        return ops.cast(labels, scores.dtype), True
    if label_dtype == "bool":
        raise ValueError(f"Labels (y_true) must be class indices, got dtype {label_dtype}.")
    if not label_dtype.startswith(("int", "uint")):
        _check_whole_numbers(labels)
    labels = ops.cast(labels, "int32")
    labels = _backend.check_labels_in_range(labels, n)
    # Where no check can run (XLA, jax.jit), an out-of-range label would index
    # out of bounds: TensorFlow's XLA clamps the index, JAX's gather fills in
    # NaN. Clipping makes it the same finite result on every backend: the
    # nearest class (documented in the README, "Bad input").
    return ops.clip(labels, 0, n - 1), False


def _check_whole_numbers(labels: Tensor) -> None:
    # Casting 1.5 to int32 would silently train on class 1; this usually means
    # probabilities were passed where class indices belong. Only values known
    # now (eager) can be checked.
    values = _backend.concrete_value(labels)
    if values is None:
        return
    bad = ~np.isfinite(values) | (np.floor(values) != values)
    if np.any(bad):
        first = values[bad].reshape(-1)[:5].tolist()
        raise ValueError(
            "Labels (y_true) of shape (batch,) or (batch, 1) are class indices and must be "
            f"whole numbers; got {first} ({int(np.sum(bad))} of {values.size}). For "
            "one-hot or soft labels pass rows of shape (batch, num_classes)."
        )


def floor_masked_scores(scores: Tensor, scale: float = 1.0) -> Tensor:
    """Replaces scores below a large negative floor (``-inf`` included) by the floor.

    ``-inf`` is the usual way to mask a class out, but differences and
    products of two ``-inf`` (``-inf - -inf``, ``0 * -inf``) are NaN. The floor,
    ``-max_float / (16 n^2 scale)``, is far below any real logit and keeps the
    sums of ``n^2`` pairwise differences (times ``scale``, e.g. an inverse
    temperature) finite. Floored scores get no gradient; NaN is kept.
    """
    n = num_classes_of(scores)
    dtype = backend.standardize_dtype(scores.dtype)
    floor = -float(np.finfo(dtype).max) / (16.0 * n * n * max(float(scale), 1.0))
    floor = ops.convert_to_tensor(floor, dtype=dtype)
    return ops.where(ops.less(scores, floor), floor, scores)


def flatten_batch(scores: Tensor, labels: Tensor, dense: bool) -> tuple[Tensor, Tensor]:
    """Flattens leading axes: scores to (b, n), labels to (b,) or (b, n)."""
    n = num_classes_of(scores)
    scores = ops.reshape(scores, (-1, n))
    labels = ops.reshape(labels, (-1, n) if dense else (-1,))
    return scores, labels


def unflatten_batch(values: Tensor, reference_scores: Tensor) -> Tensor:
    """Reshapes per-sample values of shape (b,) back to the scores' leading axes."""
    if len(reference_scores.shape) == 2:
        return values
    return ops.reshape(values, ops.shape(reference_scores)[:-1])


def _shape(shape: tuple[int | None, ...]) -> str:
    return (
        "("
        + ", ".join("None" if d is None else str(d) for d in shape)
        + (",)" if len(shape) == 1 else ")")
    )
