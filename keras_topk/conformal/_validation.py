"""Checks of the NumPy inputs (scores, labels, probabilities) and of the set options as a
whole; each scalar is checked by `keras_topk._config`."""

from fractions import Fraction
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from keras_topk._config import check_bool, check_choice, check_float, check_int

METHODS = ("topk", "aps", "raps")


def check_set_options(
    method: str, randomized: bool, from_logits: bool, lam: float, k_reg: int
) -> tuple[bool, bool, float, int]:
    """``(randomized, from_logits, lam, k_reg)`` checked and normalised, for one ``method``.

    Shared by `calibrate` and a hand-built ``ConformalSets``, so both refuse
    the same values with the same messages.
    """
    check_choice("method", method, METHODS)
    randomized = check_bool("randomized", randomized)
    if randomized and method == "topk":
        raise ValueError(
            "`randomized=True` applies to method='aps' or 'raps'; the top-k set is not randomised."
        )
    return (
        randomized,
        check_bool("from_logits", from_logits),
        check_float("lam", lam, minimum=0.0),
        check_int("k_reg", k_reg, minimum=0),
    )


def decimal(x: float) -> Fraction:
    # The decimal the user typed: Fraction(0.1) is 0.1000000000000000055..., whose
    # (m + 1)(1 - alpha) lands just above an integer and shifts the quantile index.
    return Fraction(repr(float(x)))


def scores_array(scores: ArrayLike, name: str = "scores") -> np.ndarray:
    try:
        array = np.asarray(scores)
    except Exception as error:  # pragma: no cover - exotic array-likes
        raise ValueError(
            f"`{name}` must be an array of shape (..., num_classes): {error}"
        ) from None
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ):
        raise ValueError(
            f"`{name}` must be a numeric array of shape (..., num_classes), got dtype {array.dtype}."
        )
    if array.ndim < 2:
        raise ValueError(
            f"`{name}` must have shape (..., num_classes) with at least one batch axis, got "
            f"shape {array.shape}."
        )
    if array.shape[-1] < 1:
        raise ValueError(f"`{name}` must have at least one class, got shape {array.shape}.")
    array = array.astype(np.float64)
    nan = np.isnan(array)
    if np.any(nan):
        rows = np.unique(np.nonzero(nan.reshape(-1, array.shape[-1]))[0])
        raise ValueError(
            f"`{name}` contain NaN in {len(rows)} of {array.size // array.shape[-1]} rows "
            f"(first rows, flattened: {rows[:5].tolist()}); a NaN score has no rank, so no set "
            "or coverage can be computed. Check the model's outputs."
        )
    return array


def labels_array(labels: Any, scores: np.ndarray, name: str = "labels") -> np.ndarray:
    labels = np.asarray(labels)
    lead = scores.shape[:-1]
    n = scores.shape[-1]
    if labels.shape == lead + (1,) and lead + (1,) != scores.shape:
        labels = labels[..., 0]
    elif labels.shape == scores.shape and n > 1:
        # One-hot (or soft) rows: the class is the argmax, as in the metrics.
        labels = np.argmax(labels, axis=-1)
    if labels.shape != lead:
        raise ValueError(
            f"`{name}` of shape {labels.shape} do not match scores of shape {scores.shape}: "
            f"expected integer class indices of shape {lead} (or {lead + (1,)}), or one-hot "
            f"rows of shape {scores.shape}."
        )
    if labels.dtype == bool or not (
        np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)
    ):
        raise ValueError(f"`{name}` must be integer class indices, got dtype {labels.dtype}.")
    if np.issubdtype(labels.dtype, np.floating):
        bad = ~np.isfinite(labels) | (np.floor(labels) != labels)
        if np.any(bad):
            raise ValueError(
                f"`{name}` must be whole class indices, got {labels[bad][:5].tolist()}."
            )
    labels = labels.astype(np.int64)
    bad = (labels < 0) | (labels >= n)
    if np.any(bad):
        raise ValueError(
            f"`{name}` must be class indices in [0, {n}) for scores with {n} classes; got "
            f"{labels[bad][:5].tolist()} ({int(np.sum(bad))} of {labels.size})."
        )
    return labels.reshape(-1)


def flatten_rows(scores: np.ndarray) -> np.ndarray:
    return scores.reshape(-1, scores.shape[-1])


def probabilities(scores: np.ndarray, from_logits: bool) -> np.ndarray:
    """Rows of probabilities, float64, from logits (softmax) or checked probabilities."""
    if from_logits:
        if np.any(np.isposinf(scores)):
            raise ValueError(
                "Logits contain +inf: their softmax is undefined (inf - inf). Clip the logits, or "
                "pass probabilities with from_logits=False."
            )
        top = np.max(scores, axis=-1, keepdims=True)
        if np.any(np.isneginf(top)):
            raise ValueError("A row of logits is -inf everywhere: it has no softmax.")
        e = np.exp(scores - top)
        return e / np.sum(e, axis=-1, keepdims=True)
    if np.any(~np.isfinite(scores)) or np.any(scores < 0):
        raise ValueError(
            "With from_logits=False the scores must be probabilities (finite, >= 0, rows summing "
            "to 1); got negative or infinite values. Pass logits with from_logits=True."
        )
    sums = np.sum(scores, axis=-1)
    if np.any(np.abs(sums - 1.0) > 1e-3):
        worst = float(sums.reshape(-1)[np.argmax(np.abs(sums - 1.0))])
        raise ValueError(
            "With from_logits=False the scores must be probabilities whose rows sum to 1 (within "
            f"1e-3); a row sums to {worst:.6g}. Pass logits with from_logits=True, or normalise."
        )
    return scores


def looks_like_probabilities(flat: np.ndarray) -> bool:
    # One class: the softmax is 1 whatever the score, so nothing to warn about.
    if flat.size == 0 or flat.shape[-1] < 2 or not np.all(np.isfinite(flat)) or np.any(flat < 0):
        return False
    return bool(np.all(np.abs(np.sum(flat, axis=-1) - 1.0) <= 1e-3))


PROBABILITIES_AS_LOGITS = (
    "The scores passed with from_logits=True look like probabilities (every row is >= 0 and "
    "sums to 1): APS/RAPS apply a softmax to them, which flattens the distribution and changes "
    "the sets. If the model ends in a softmax, calibrate with from_logits=False."
)
