"""Validation of hyperparameters, shared by every loss, metric and op.

Each check raises ``ValueError`` with a message that names the argument, the
value received and what would be accepted, so a bad configuration fails when
the object is built rather than as a NaN many steps into training.
"""

import math
import numbers
from collections.abc import Collection, Sequence
from typing import Any


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


def check_choice(name: str, value: Any, choices: Collection[Any]) -> Any:
    """Returns ``value`` if it is one of ``choices``, else names them all."""
    if value not in choices:
        raise ValueError(f"Unknown `{name}` {value!r}; expected one of {sorted(choices)}.")
    return value


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
