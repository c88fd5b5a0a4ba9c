"""Validation of hyperparameters, shared by every loss, metric and op.

Each check raises ``ValueError`` with a message that names the argument, the
value received and what would be accepted, so a bad configuration fails when
the object is built rather than as a NaN many steps into training.
"""

import math
import numbers
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np


def check_int(
    name: str, value: object, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Returns ``value`` as an int, rejecting bools, floats and out-of-range values."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(f"`{name}` must be an integer, got {value!r}.")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` must be <= {maximum}, got {value}.")
    return value


def check_float(
    name: str,
    value: object,
    minimum: float | None = None,
    maximum: float | None = None,
    min_inclusive: bool = True,
) -> float:
    """Returns ``value`` as a finite float within the given bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"`{name}` must be a real number, got {value!r}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value}.")
    if minimum is not None:
        if min_inclusive and value < minimum:
            raise ValueError(f"`{name}` must be >= {minimum}, got {value}.")
        if not min_inclusive and value <= minimum:
            raise ValueError(f"`{name}` must be > {minimum}, got {value}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` must be <= {maximum}, got {value}.")
    return value


def check_bool(name: str, value: object) -> bool:
    """Returns ``value`` as a bool, accepting only ``True``/``False`` (NumPy's too)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be True or False, got {value!r}.")
    return bool(value)


def check_choice(name: str, value: Any, choices: Collection[Any]) -> Any:
    """Returns ``value`` if it is one of ``choices``, else names them all."""
    try:
        known = value in choices
    except (TypeError, ValueError):  # unhashable, or an array whose == is elementwise
        known = False
    if not known:
        raise ValueError(f"Unknown `{name}` {value!r}; expected one of {sorted(choices)}.")
    return value


def check_alpha(alpha: object, name: str = "alpha") -> float:
    """Returns a miscoverage level as a float strictly between 0 and 1."""
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, numbers.Real):
        raise ValueError(f"`{name}` must be a number in (0, 1), got {alpha!r}.")
    value = float(alpha)
    if not 0.0 < value < 1.0:
        raise ValueError(
            f"`{name}` must lie strictly between 0 and 1 (the allowed miscoverage, e.g. 0.1 for "
            f"90% coverage), got {alpha!r}."
        )
    return value


def check_ks(ks: Any) -> tuple[int, ...]:
    """Validates a sequence of distinct k >= 1; returns it as a tuple of ints."""
    if isinstance(ks, (str, bytes)) or not hasattr(ks, "__len__"):
        raise ValueError(
            f"`ks` must be a sequence of integers such as (1, 5), got {ks!r}. For a single k "
            "use ks=(k,) or `TopKAccuracy(k)`."
        )
    if len(ks) == 0:
        raise ValueError("`ks` must list at least one k, e.g. ks=(1, 5).")
    checked = tuple(check_int(f"ks[{i}]", k, minimum=1) for i, k in enumerate(ks))
    duplicates = sorted({k for k in checked if checked.count(k) > 1})
    if duplicates:
        raise ValueError(
            f"`ks` must not repeat a k; {duplicates} appear more than once in {checked}."
        )
    return checked


def check_coverages(coverages: Any, allow_scalar: bool = False) -> tuple[float, ...]:
    """Validates distinct coverages in (0, 1]; returns them as a tuple of floats.

    ``allow_scalar`` takes a lone number as one coverage (`keras_topk.conformal`
    accepts ``coverages=0.9``; the metric asks for a sequence).
    """
    if allow_scalar and isinstance(coverages, numbers.Real) and not isinstance(coverages, bool):
        coverages = (coverages,)
    if isinstance(coverages, (str, bytes)) or not hasattr(coverages, "__len__"):
        raise ValueError(
            f"`coverages` must be a sequence of numbers in (0, 1] such as (0.9, 0.99), got "
            f"{coverages!r}."
        )
    if len(coverages) == 0:
        raise ValueError("`coverages` must list at least one coverage, e.g. (0.9, 0.99).")
    out = []
    for i, c in enumerate(coverages):
        # Anything float() takes (NumPy and TensorFlow scalars, Fraction), but not a bool.
        if isinstance(c, (bool, np.bool_)) or not hasattr(c, "__float__"):
            raise ValueError(f"`coverages[{i}]` must be a number in (0, 1], got {c!r}.")
        c = float(c)
        if not 0.0 < c <= 1.0:
            raise ValueError(
                f"`coverages[{i}]` must lie in (0, 1] (a fraction, 0.99 for 99%), got {c!r}."
            )
        out.append(c)
    if len(set(out)) != len(out):
        raise ValueError(f"`coverages` must not repeat a value, got {tuple(coverages)}.")
    return tuple(out)


def check_k_distribution(p_k: Sequence[float]) -> tuple[float, ...]:
    """Validates a distribution over k = 1..K and returns it as a tuple of floats."""
    if isinstance(p_k, (str, bytes)) or not hasattr(p_k, "__len__"):
        raise ValueError(
            "`p_k` must be a sequence of weights for k = 1..K, e.g. (0.5, 0, 0, 0, 0.5); "
            f"got {p_k!r}."
        )
    if len(p_k) == 0:
        raise ValueError("`p_k` must have at least one entry (the weight of k = 1).")
    weights = tuple(check_float(f"p_k[{i}]", w) for i, w in enumerate(p_k))
    negative = [i + 1 for i, w in enumerate(weights) if w < 0]
    if negative:
        raise ValueError(
            f"`p_k` must be non-negative; the weights of k = {negative} are negative: {weights}."
        )
    total = math.fsum(weights)
    if abs(total - 1.0) > 1e-4:
        raise ValueError(
            f"`p_k` must sum to 1 (it is a distribution over k); {weights} sums to {total:.6g}. "
            f"Divide each weight by {total:.6g} to normalise it."
        )
    return weights


def check_k_fits_classes(k_name: str, k: int, num_classes: int | None, strict: bool = True) -> None:
    """Raises if a top-k size cannot be used with ``num_classes`` classes.

    ``strict`` asks for ``k < num_classes`` (a top-k loss is constant when every
    class is in the top k); otherwise ``k <= num_classes`` is accepted.
    """
    if num_classes is None:
        return
    if k > num_classes or (strict and k == num_classes):
        bound = "smaller than" if strict else "at most"
        raise ValueError(
            f"`{k_name}`={k} must be {bound} the number of classes, which is "
            f"{num_classes} (the last axis of the scores)."
        )
