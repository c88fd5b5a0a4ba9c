"""Prediction sets straight from a Keras model's outputs (`predict_sets`)."""

from typing import Any

from keras_topk.conformal._sets import ConformalSets


def predict_sets(
    model: Any,
    x: Any,
    conformal_sets: "ConformalSets",
    *,
    batch_size: int | None = None,
    seed: int | None = None,
    as_indices: bool = False,
) -> Any:
    """Prediction sets of a Keras model for inputs ``x``.

    Runs ``model.predict(x)`` and applies `ConformalSets.predict` (or
    ``predict_indices``). The model's outputs must be in the form the sets
    were calibrated on: logits for ``from_logits=True`` (a model ending in a
    softmax outputs probabilities: calibrate with ``from_logits=False``).

    Args:
        model: a Keras model whose output is the class scores ``(..., n)``.
        x: its inputs (anything ``model.predict`` takes).
        conformal_sets: a `ConformalSets` from `calibrate`.
        batch_size: passed to ``model.predict``.
        seed: the seed of the randomised sets' ``u``.
        as_indices: return lists of class indices instead of boolean masks.

    Returns:
        Boolean masks of shape ``(..., n)``, or a list of index arrays.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Identity()])  # logits = inputs
    >>> sets = ConformalSets(method="topk", alpha=0.1, threshold=1.0)
    >>> x = np.array([[0.5, 2.0, 1.0], [3.0, 0.0, 1.0]], dtype="float32")
    >>> [a.tolist() for a in predict_sets(model, x, sets, as_indices=True)]
    [[1, 2], [0, 2]]
    """
    if not isinstance(conformal_sets, ConformalSets):
        raise ValueError(
            f"`conformal_sets` must be a ConformalSets from `calibrate`, got "
            f"{type(conformal_sets).__name__}."
        )
    width = output_width(model)
    if conformal_sets.num_classes is not None and width not in (None, conformal_sets.num_classes):
        raise ValueError(
            f"`model` outputs {width} classes, but `conformal_sets` were calibrated on "
            f"{conformal_sets.num_classes} classes: calibrate on this model's scores."
        )
    scores = model.predict(x, batch_size=batch_size, verbose=0)
    if isinstance(scores, (list, tuple, dict)):
        raise ValueError(
            "The model has several outputs; call `conformal_sets.predict` on the class scores "
            "of the output you calibrated."
        )
    if as_indices:
        return conformal_sets.predict_indices(scores, seed=seed)
    return conformal_sets.predict(scores, seed=seed)


def output_width(model: Any) -> int | None:
    """The last axis of a single-output model's declared output shape; None when unknown."""
    try:
        shape = model.output_shape
    except (AttributeError, ValueError, RuntimeError):  # subclassed or unbuilt models
        return None
    if isinstance(shape, tuple) and shape and isinstance(shape[-1], int):
        return shape[-1]
    return None
