"""Relaxed comparators: the sigmoid-like CDFs that soften a swap.

A relaxed comparator on wires ``(a, b)`` mixes them with weight
``alpha = f(x_b - x_a)``: the soft minimum is ``alpha x_a + (1 - alpha) x_b``.
Every ``f`` here is the CDF of a symmetric density, so ``f(-v) = 1 - f(v)`` and
``f(v) -> [v > 0]`` as the inverse temperature grows. Formulas are those of
Petersen et al. (ICML 2022) as the reference implementation computes them.
"""

import math
from typing import Any

from keras import ops

from keras_topk import _config

DISTRIBUTIONS = ("logistic", "logistic_phi", "cauchy", "reciprocal", "gaussian", "optimal")


def comparator_weight(
    diff: Any, distribution: str, inverse_temperature: Any, art_lambda: float = 0.5
) -> Any:
    """``alpha = f(diff)`` for ``diff = x_b - x_a``, elementwise.

    Args:
        diff: differences ``x_b - x_a``.
        distribution: one of ``DISTRIBUTIONS``:
            - "logistic": ``sigmoid(beta v)``.
            - "logistic_phi": ``sigmoid(beta v / (|v| + 1e-10) ** art_lambda)``; the
              activation replacement trick (ART), steeper near ties so that
              close scores still get a useful gradient. At an exact tie
              (``v = 0``) the value is 1/2 and the scale ``(|v| + 1e-10) **
              art_lambda`` is taken as 1, which only sets the slope there (see
              `comparator_slope`).
            - "cauchy": ``atan(beta v) / pi + 1/2``.
            - "reciprocal": ``(beta v / (2 + |beta v|) + 1) / 2``.
            - "gaussian": the normal CDF of ``beta v``.
            - "optimal": ``clip(u, -1/4, 1/4) + 1/2 + sign(u) [|u| > 1/4] (1/4 - 1/(16|u|))``
              with ``u = beta v``; the monotonic sigmoid that Petersen et al. (2022,
              "Monotonic differentiable sorting networks") prove optimal.
        inverse_temperature: ``beta > 0``, the steepness.
        art_lambda: the exponent of "logistic_phi".

    Returns:
        ``alpha`` in ``[0, 1]``, the shape of ``diff``; ``f(0) = 1/2`` for every distribution.

    Example:

    >>> import numpy as np, keras, keras_topk
    >>> diff = np.array([-1.0, 0.0, 2.0], "float32")
    >>> def weights(distribution):
    ...     alpha = keras_topk.ops.comparator_weight(diff, distribution, inverse_temperature=1.0)
    ...     return [round(float(a), 4) for a in keras.ops.convert_to_numpy(alpha)]
    >>> weights("logistic")     # sigmoid(v)
    [0.2689, 0.5, 0.8808]
    >>> weights("cauchy")       # atan(v) / pi + 1/2: heavier tails
    [0.25, 0.5, 0.8524]
    """
    beta = inverse_temperature
    if distribution == "logistic":
        return ops.sigmoid(diff * beta)
    if distribution == "logistic_phi":
        # The default exponent 1/2 is a square root: far cheaper than pow (exp of a log) per comparator.
        scale = _art_scale(diff)
        scale = ops.sqrt(scale) if art_lambda == 0.5 else ops.power(scale, art_lambda)
        return ops.sigmoid(diff * beta / scale)
    if distribution == "gaussian":
        sigma = 1.0 / beta
        return 0.5 + 0.5 * ops.erf(diff / sigma / math.sqrt(2.0))
    v = diff * beta
    if distribution == "cauchy":
        return ops.arctan(v) / math.pi + 0.5
    if distribution == "reciprocal":
        return 0.5 * (v / (2.0 + ops.abs(v)) + 1.0)
    if distribution == "optimal":
        outside = ops.cast(v > 0.25, v.dtype) - ops.cast(v < -0.25, v.dtype)
        return ops.clip(v, -0.25, 0.25) + 0.5 + outside * (0.25 - 1.0 / 16.0 / (ops.abs(v) + 1e-10))
    _config.check_choice("distribution", distribution, DISTRIBUTIONS)
    raise AssertionError(f"{distribution!r} is in DISTRIBUTIONS but has no formula here")


def comparator_slope(
    diff: Any, alpha: Any, distribution: str, inverse_temperature: Any, art_lambda: float = 0.5
) -> Any:
    """``d alpha / d diff`` for ``alpha = comparator_weight(diff, ...)``, elementwise.

    Written out rather than left to autodiff so that a network's backward pass
    (`keras_topk.ops.relaxed_topk`) is one expression per layer; ``alpha`` is
    the forward value, reused where the derivative is a function of it. At
    points where a distribution is not differentiable (``|v| = 1/4`` for
    "optimal") the one-sided value that autodiff picks is used.

    "logistic_phi" has slope ``beta (1 - art_lambda) / (4 |v| ** art_lambda)``
    near a tie, unbounded as ``v -> 0``: it has no derivative at an exact tie,
    where the reference implementation's ``beta / (4 * 1e-10 ** art_lambda)``
    (2.5e4 ``beta`` for ``art_lambda = 0.5``) is an artefact of its ``1e-10``
    guard. There the slope here is the logistic's, ``beta / 4``, so that a row
    of tied scores (a zero-initialised head) gets a gradient of the size of
    cross-entropy's. Every ``v != 0`` keeps the reference's value and slope.

    Example:

    >>> import numpy as np, keras, keras_topk
    >>> diff = np.array([0.0, 1e-6, 1.0], "float32")
    >>> alpha = keras_topk.ops.comparator_weight(diff, "logistic_phi", 1.0)
    >>> slope = comparator_slope(diff, alpha, "logistic_phi", 1.0)
    >>> [float(f"{v:.3g}") for v in keras.ops.convert_to_numpy(slope)]
    [0.25, 125.0, 0.0983]
    """
    beta = inverse_temperature
    if distribution == "logistic":
        return beta * alpha * (1.0 - alpha)
    if distribution == "logistic_phi":
        magnitude = ops.abs(diff)
        scale = _art_scale(diff)
        root = ops.sqrt(scale) if art_lambda == 0.5 else ops.power(scale, art_lambda)
        # d/dv [v / (|v| + eps)^lambda] = (1 - lambda |v| / (|v| + eps)) / (|v| + eps)^lambda
        inner = (1.0 - art_lambda * magnitude / scale) / root
        return beta * alpha * (1.0 - alpha) * inner
    v = diff * beta
    if distribution == "gaussian":
        return beta / math.sqrt(2.0 * math.pi) * ops.exp(-0.5 * v * v)
    if distribution == "cauchy":
        return beta / math.pi / (1.0 + v * v)
    if distribution == "reciprocal":
        denominator = 2.0 + ops.abs(v)
        return beta / (denominator * denominator)
    if distribution == "optimal":
        magnitude = ops.abs(v) + 1e-10
        inside = ops.cast(ops.abs(v) <= 0.25, v.dtype)
        return beta * (inside + (1.0 - inside) / (16.0 * magnitude * magnitude))
    _config.check_choice("distribution", distribution, DISTRIBUTIONS)
    raise AssertionError(f"{distribution!r} is in DISTRIBUTIONS but has no formula here")


def _art_scale(diff: Any) -> Any:
    """``|v| + 1e-10``, the reference's "logistic_phi" scale, and 1 at an exact tie.

    A tied row (every score equal, as from a zero-initialised head) puts every
    comparator at ``v = 0``, where the reference's guard makes the slope
    ``beta / 4 * 1e10 ** art_lambda``; the value there, ``sigmoid(0)``, does
    not depend on the scale. The scale is a constant in autodiff's eyes at the
    tie as it is in `comparator_slope`.
    """
    tie = ops.equal(diff, 0.0)
    return ops.where(tie, ops.ones_like(diff), ops.abs(diff) + 1e-10)
