r"""Prediction sets with guaranteed coverage: split-conformal top-k, APS and RAPS.

NumPy in, NumPy out: these functions work on scores a model has already
produced (``model.predict``), so they run the same on every Keras backend.

**The label's rank.** With scores :math:`s \in \mathbb{R}^n` and label
:math:`y`, :math:`r(s, y) = \#\{ j \ne y : s_j \ge s_y \}` is the label's
0-based rank with ties counted against it (the rule of
`keras_topk.metrics.TopKAccuracy`): the label is a top-k hit when
:math:`r < k`. `candidates_for_coverage` reads, off the ranks of a labelled
set, the smallest k whose top-k accuracy reaches a coverage: an empirical
quantile, with no guarantee for new data.

**Split conformal prediction** adds the guarantee. A non-conformity score
:math:`S(x, y)` (larger = stranger) is computed on ``m`` held-out labelled
calibration examples; with

.. math::

    \hat q = S_{(\lceil (m + 1)(1 - \alpha) \rceil)}

(the :math:`\lceil (m+1)(1-\alpha) \rceil`-th smallest calibration score),
the set :math:`C(x) = \{ y : S(x, y) \le \hat q \}` covers the label of a new
example exchangeable with the calibration ones with probability at least
:math:`1 - \alpha`; when the scores have no ties (randomised APS/RAPS), also
at most :math:`1 - \alpha + 1/(m + 1)`. The index needs
:math:`\lceil (m+1)(1-\alpha) \rceil \le m`, i.e. at least
:math:`\lceil (1 - \alpha)/\alpha \rceil` calibration examples (9 for
:math:`\alpha = 0.1`, 99 for 0.01); `calibrate` raises a ``ValueError`` below
that. ``alpha`` is read as the decimal it prints as (``0.1`` is exactly 1/10),
so :math:`(m+1)(1-\alpha)` does not pick up float rounding.

The three scores (``method``):

- ``"topk"``: :math:`S = r(s, y)`. :math:`\hat q + 1 = \hat k` and the set
  holds the classes of rank below :math:`\hat k`, the :math:`\hat k`
  best-scoring ones (fewer when classes tie across the cut: ties count
  against every tied class, as in the metrics). :math:`S` is discrete, so the
  coverage can sit well above :math:`1 - \alpha`.
- ``"aps"`` (Romano, Sesia & Candès 2020): with probabilities :math:`\pi`
  (softmax of the scores when ``from_logits=True``),
  :math:`S = \sum_{j : \pi_j \ge \pi_y} \pi_j`, the probability mass of the
  classes ranked at or above :math:`y`; randomised,
  :math:`S = \sum_{j \ne y : \pi_j \ge \pi_y} \pi_j + u\, \pi_y` with
  :math:`u \sim U(0, 1)` per example.
- ``"raps"`` (Angelopoulos, Bates, Malik & Jordan 2021): the APS score plus
  :math:`\lambda \max(0, o - k_{reg})`, where :math:`o = 1 + \#\{ j \ne y :
  \pi_j \ge \pi_y \}` is the label's 1-based position. The penalty keeps the
  long tail of small probabilities out of the sets.

Equal probabilities are ordered pessimistically, as in the metrics: a class
counts every class that ties with it as ranked above it, so tied classes get
the same score and enter or leave a set together, with no dependence on the
class index. Along the classes in decreasing probability the score never
decreases, so :math:`C(x)` is the run of the most probable classes whose score
is at most :math:`\hat q`. Randomised sets can be empty (when even the top
class's :math:`u\, \pi_{(1)}` exceeds :math:`\hat q`); that is part of what
makes their coverage exact, and is rare at small ``alpha``.

Example:

>>> import numpy as np
>>> from keras_topk import conformal
>>> rng = np.random.default_rng(0)
>>> logits = rng.normal(size=(2000, 10)) * 2.0
>>> p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
>>> labels = (p.cumsum(axis=1) > rng.uniform(size=(2000, 1))).argmax(axis=1)  # y ~ p
>>> topk = conformal.calibrate(logits[:1000], labels[:1000], alpha=0.1, method="topk")
>>> topk.k_hat
4
>>> conformal.evaluate_sets(topk.predict(logits[1000:]), labels[1000:])
{'coverage': 0.892, 'mean_size': 4.0, 'median_size': 4.0}
>>> aps = conformal.calibrate(logits[:1000], labels[:1000], alpha=0.1, method="aps",
...                           randomized=True, seed=0)
>>> conformal.evaluate_sets(aps.predict(logits[1000:], seed=1), labels[1000:])
{'coverage': 0.898, 'mean_size': 3.725, 'median_size': 4.0}
>>> conformal.candidates_for_coverage(logits, labels, coverages=(0.5, 0.9))
{0.5: 1, 0.9: 5}

(Coverage is guaranteed on average over calibration sets, not for each one:
0.892 here, for a 0.9 target.)
"""

import dataclasses
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "ConformalSets",
    "calibrate",
    "candidates_for_coverage",
    "evaluate_sets",
    "label_ranks",
    "min_calibration_size",
    "predict_sets",
]

_METHODS = ("topk", "aps", "raps")


# --- validation -------------------------------------------------------------------------------


def _check_alpha(alpha, name="alpha"):
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, (int, float, np.number)):
        raise ValueError(f"`{name}` must be a number in (0, 1), got {alpha!r}.")
    alpha = float(alpha)
    if not (0.0 < alpha < 1.0):
        raise ValueError(
            f"`{name}` must lie strictly between 0 and 1 (the allowed miscoverage, e.g. 0.1 for "
            f"90% coverage), got {alpha!r}."
        )
    return alpha


def _decimal(x):
    # The decimal the user typed: Fraction(0.1) is 0.1000000000000000055..., whose
    # (m + 1)(1 - alpha) lands just above an integer and shifts the quantile index.
    return Fraction(repr(float(x)))


def _scores_array(scores, name="scores"):
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


def _labels_array(labels, scores, name="labels"):
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


def _flat(scores):
    return scores.reshape(-1, scores.shape[-1])


def _probabilities(scores, from_logits):
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


# --- ranks and the conformity scores -----------------------------------------------------------


def _pessimistic_positions(values):
    """For every class: how many classes (itself included) have a value >= its value, and their sum.

    Returns ``(count, mass)`` of shape (b, n): ``count - 1`` is the class's
    0-based rank with ties against it; ``mass`` is the sum of the values of the
    classes counted (used with probabilities). Tied classes get the same pair.
    """
    b, n = values.shape
    order = np.argsort(-values, axis=1, kind="stable")
    ordered = np.take_along_axis(values, order, axis=1)
    # The last position of each run of equal values: a class counts its whole run.
    is_end = np.ones((b, n), dtype=bool)
    is_end[:, :-1] = ordered[:, :-1] != ordered[:, 1:]
    candidates = np.where(is_end, np.arange(n), n)
    end = np.minimum.accumulate(candidates[:, ::-1], axis=1)[:, ::-1]
    count = np.empty((b, n), dtype=np.int64)
    np.put_along_axis(count, order, end + 1, axis=1)
    mass = np.empty((b, n), dtype=np.float64)
    cumulative = np.cumsum(np.where(np.isfinite(ordered), ordered, 0.0), axis=1)
    np.put_along_axis(mass, order, np.take_along_axis(cumulative, end, axis=1), axis=1)
    return count, mass


def _all_ranks(scores):
    count, _ = _pessimistic_positions(scores)
    return count - 1


def label_ranks(scores: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """The label's 0-based rank in each row, ties counted against the label.

    :math:`r = \\#\\{ j \\ne y : s_j \\ge s_y \\}`: the label is a top-k hit
    when ``r < k``. The same rule and values as
    `keras_topk.metrics.label_rank`, computed in NumPy.

    Args:
        scores: array of shape ``(..., n)`` (logits or probabilities; only the
            order matters). NaN raises a ``ValueError``.
        labels: integer class indices of shape ``(...,)`` or ``(..., 1)``, or
            one-hot rows of shape ``(..., n)``.

    Returns:
        int64 array of shape ``(...,)``, values in ``[0, n - 1]``.

    Example:

    >>> label_ranks([[3.0, 1.0, 2.0], [1.0, 1.0, 0.0]], [2, 0]).tolist()
    [1, 1]
    """
    s = _scores_array(scores)
    y = _labels_array(labels, s)
    flat = _flat(s)
    label_score = flat[np.arange(len(y)), y]
    ranks = np.sum(flat >= label_score[:, None], axis=-1) - 1
    return ranks.reshape(s.shape[:-1])


def _check_coverages(coverages):
    if isinstance(coverages, (int, float, np.number)) and not isinstance(coverages, bool):
        coverages = (coverages,)
    if isinstance(coverages, (str, bytes)) or not hasattr(coverages, "__len__") or not coverages:
        raise ValueError(
            f"`coverages` must be a non-empty sequence of numbers in (0, 1], got {coverages!r}."
        )
    out = []
    for c in coverages:
        if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, float, np.number)):
            raise ValueError(f"`coverages` must hold numbers in (0, 1], got {c!r}.")
        if not (0.0 < float(c) <= 1.0):
            raise ValueError(f"Each coverage must lie in (0, 1], got {c!r}.")
        out.append(float(c))
    if len(set(out)) != len(out):
        raise ValueError(f"`coverages` must not repeat a value, got {tuple(coverages)}.")
    return tuple(out)


def candidates_for_coverage(
    scores: ArrayLike,
    labels: ArrayLike,
    coverages: Sequence[float] = (0.9, 0.95, 0.99),
    sample_weight: ArrayLike | None = None,
) -> dict[float, int]:
    """The smallest k whose top-k accuracy on these data reaches each coverage.

    :math:`k^*(c) = \\min \\{ k \\ge 1 : \\mathrm{acc}_k \\ge c \\}`, with
    :math:`\\mathrm{acc}_k` the (``sample_weight``-weighted) fraction of
    examples whose label rank (ties against the label) is below ``k``. This is
    an empirical quantile of the data given; for a guarantee on new data use
    `calibrate`. The same numbers as the
    `keras_topk.metrics.CandidatesForCoverage` metric.

    Args:
        scores: array of shape ``(..., n)``.
        labels: class indices of shape ``(...,)`` / ``(..., 1)`` or one-hot rows.
        coverages: the target coverages, each in ``(0, 1]``.
        sample_weight: optional non-negative weights of shape ``(...,)``.

    Returns:
        ``{coverage: k}`` in the order given, each ``k`` in ``[1, n]``.

    Example:

    >>> candidates_for_coverage([[3.0, 1.0, 2.0], [1.0, 1.0, 0.0]], [2, 0], coverages=(0.5, 1.0))
    {0.5: 2, 1.0: 2}
    """
    coverages = _check_coverages(coverages)
    ranks = np.asarray(label_ranks(scores, labels)).reshape(-1)
    n = np.shape(scores)[-1]
    if sample_weight is None:
        weights = np.ones_like(ranks, dtype=np.float64)
    else:
        weights = np.asarray(sample_weight, dtype=np.float64)
        if weights.size != ranks.size:
            raise ValueError(
                f"`sample_weight` must have one weight per example ({ranks.size}), got shape "
                f"{weights.shape}."
            )
        weights = weights.reshape(-1)
        if np.any(~np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError("`sample_weight` must be finite and non-negative.")
    total = float(np.sum(weights))
    if not total > 0:
        raise ValueError("No examples (or all weights zero): no coverage can be computed.")
    reached = np.cumsum(
        np.bincount(ranks, weights=weights, minlength=n)
    )  # reached[k-1] = acc_k * total
    result = {}
    for c in coverages:
        # Exact when the weights are counts: compare integers with the decimal coverage.
        if sample_weight is None:
            need = math.ceil(_decimal(c) * len(ranks))
            k = int(np.searchsorted(reached, need - 0.5)) + 1
        else:
            k = int(np.searchsorted(reached, c * total * (1 - 1e-12))) + 1
        result[c] = min(k, n)
    return result


def min_calibration_size(alpha: float) -> int:
    """The fewest calibration examples for which a finite conformal threshold exists.

    The threshold is the :math:`\\lceil (m+1)(1-\\alpha) \\rceil`-th smallest of
    ``m`` calibration scores, which needs that index to be at most ``m``:
    :math:`m \\ge \\lceil (1-\\alpha)/\\alpha \\rceil`.

    >>> min_calibration_size(0.1), min_calibration_size(0.05), min_calibration_size(0.01)
    (9, 19, 99)
    """
    a = _decimal(_check_alpha(alpha))
    return math.ceil((1 - a) / a)


def _quantile_index(m, alpha):
    """The 1-based order statistic ceil((m + 1)(1 - alpha)) used as the threshold."""
    return math.ceil((m + 1) * (1 - _decimal(alpha)))


def _conformity(scores, method, from_logits, lam, k_reg, u):
    """Non-conformity scores S(x, y) of every class, shape (b, n); ``u`` is (b,) or None."""
    if method == "topk":
        return _all_ranks(scores).astype(np.float64)
    p = _probabilities(scores, from_logits)
    count, mass = _pessimistic_positions(p)
    s = mass if u is None else mass - (1.0 - u[:, None]) * p
    if method == "raps":
        s = s + lam * np.maximum(0, count - k_reg)
    return s


def _uniforms(b, seed):
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=b)


# Rows per block: the sort and its temporaries take a few times b x n float64,
# so ImageNet-sized inputs (50000 x 1000) are processed in blocks.
_BLOCK = 4096


def _blocks(b):
    return [slice(start, min(start + _BLOCK, b)) for start in range(0, b, _BLOCK)]


@dataclasses.dataclass(frozen=True)
class ConformalSets:
    """A calibrated set predictor: ``C(x) = {y : S(x, y) <= threshold}``.

    Made by `calibrate`; holds everything needed to predict sets for new scores
    (of the same model, in the same form: logits when ``from_logits=True``).

    Attributes:
        method: ``"topk"``, ``"aps"`` or ``"raps"``.
        alpha: the allowed miscoverage; the sets cover with probability >= 1 - alpha.
        threshold: :math:`\\hat q`, the calibrated bound on the non-conformity
            score (for ``"topk"`` a rank: the sets hold ``threshold + 1`` classes).
        randomized: whether the APS/RAPS score draws ``u ~ U(0, 1)`` per example.
        from_logits: whether the scores are logits (softmax applied) or probabilities.
        lam: the RAPS penalty weight (unused by the other methods).
        k_reg: the RAPS position from which the penalty applies.
        n_calibration: the number of calibration examples.

    Example:

    >>> sets = ConformalSets(method="topk", alpha=0.1, threshold=1.0)  # usually from `calibrate`
    >>> sets.k_hat
    2
    >>> sets.predict(np.array([[0.1, 2.0, 1.0, 3.0]])).tolist()
    [[False, True, False, True]]
    >>> sets.predict(np.array([[0.1, 2.0, 1.0, 3.0], [1.0, 1.0, 1.0, 0.0]])).tolist()[1]  # a 3-way tie
    [False, False, False, False]
    >>> [a.tolist() for a in sets.predict_indices(np.array([[0.1, 2.0, 1.0, 3.0]]))]
    [[3, 1]]
    """

    method: str
    alpha: float
    threshold: float
    randomized: bool = False
    from_logits: bool = True
    lam: float = 0.01
    k_reg: int = 5
    n_calibration: int = 0

    @property
    def k_hat(self) -> int:
        """For ``method="topk"``: the number of top classes in every set (ties aside)."""
        if self.method != "topk":
            raise AttributeError(
                f"k_hat is the set size of method='topk'; this is method={self.method!r}, whose "
                "sets vary in size."
            )
        return int(self.threshold) + 1

    def scores_of(self, scores: ArrayLike, seed: int | None = None) -> np.ndarray:
        """The non-conformity score of every class, shape ``(..., n)``."""
        s = _scores_array(scores)
        flat = _flat(s)
        u = _uniforms(len(flat), seed) if self.randomized else None
        values = _conformity(flat, self.method, self.from_logits, self.lam, self.k_reg, u)
        return values.reshape(s.shape)

    def predict(self, scores: ArrayLike, seed: int | None = None) -> np.ndarray:
        """Boolean membership masks, shape ``(..., n)``: ``True`` where the class is in the set.

        Args:
            scores: the model's scores of shape ``(..., n)``, in the form
                calibrated (logits or probabilities).
            seed: for randomised sets, the seed of the ``u`` drawn per example
                (``None``: fresh entropy each call). Ignored otherwise.
        """
        s = _scores_array(scores)
        flat = _flat(s)
        u = _uniforms(len(flat), seed) if self.randomized else None
        member = np.empty(flat.shape, dtype=bool)
        for rows in _blocks(len(flat)):
            values = _conformity(
                flat[rows],
                self.method,
                self.from_logits,
                self.lam,
                self.k_reg,
                None if u is None else u[rows],
            )
            member[rows] = values <= self.threshold
        return member.reshape(s.shape)

    def predict_indices(self, scores: ArrayLike, seed: int | None = None) -> list[np.ndarray]:
        """The sets as lists of class indices, most likely first (ties by class index).

        Returns a list with one int64 array per example (flattened leading axes).
        """
        s = _flat(_scores_array(scores))
        member = _flat(self.predict(s, seed=seed))
        order = np.argsort(-s, axis=1, kind="stable")
        return [row_order[m[row_order]] for row_order, m in zip(order, member)]


def calibrate(
    scores: ArrayLike,
    labels: ArrayLike,
    alpha: float,
    method: str = "topk",
    *,
    randomized: bool = False,
    from_logits: bool = True,
    lam: float = 0.01,
    k_reg: int = 5,
    seed: int | None = None,
) -> "ConformalSets":
    """Calibrates a split-conformal set predictor on held-out labelled scores.

    Computes the non-conformity score of every calibration label (see the
    module docstring for ``"topk"``, ``"aps"`` and ``"raps"``) and takes as
    threshold the :math:`\\lceil (m+1)(1-\\alpha) \\rceil`-th smallest of the
    ``m`` scores. If calibration and test examples are exchangeable, the sets
    of `ConformalSets.predict` contain the test label with probability at
    least ``1 - alpha`` (and, randomised APS/RAPS, at most
    ``1 - alpha + 1/(m + 1)``). The calibration data must not have been used
    to train the model or choose its hyperparameters.

    Args:
        scores: calibration scores of shape ``(..., n)``: logits (default) or
            probabilities (``from_logits=False``) for ``"aps"``/``"raps"``;
            ``"topk"`` uses only their order.
        labels: class indices of shape ``(...,)`` / ``(..., 1)`` or one-hot rows.
        alpha: the allowed miscoverage, in (0, 1).
        method: ``"topk"``, ``"aps"`` or ``"raps"``.
        randomized: APS/RAPS only: draw ``u ~ U(0, 1)`` per example, which
            removes ties in the score and makes the coverage tight.
        from_logits: whether ``scores`` are logits.
        lam: RAPS penalty weight :math:`\\lambda \\ge 0`.
        k_reg: RAPS: positions beyond ``k_reg`` are penalised; an integer >= 0.
        seed: seed of the calibration ``u`` (randomised only).

    Returns:
        A `ConformalSets`.

    Raises:
        ValueError: ``alpha`` outside (0, 1), an unknown method, fewer
            calibration examples than `min_calibration_size`, mismatched shapes,
            labels out of range, NaN scores, or bad probabilities.

    Example:

    >>> scores = np.array([[2.0, 1.0, 0.0]] * 9 + [[0.0, 1.0, 2.0]])
    >>> sets = calibrate(scores, np.zeros(10, int), alpha=0.1, method="topk")
    >>> sets.k_hat  # the 10th smallest of 9 ranks 0 and one rank 2: rank 2
    3
    """
    alpha = _check_alpha(alpha)
    if method not in _METHODS:
        raise ValueError(f"`method` must be one of {_METHODS}, got {method!r}.")
    if not isinstance(randomized, (bool, np.bool_)):
        raise ValueError(f"`randomized` must be True or False, got {randomized!r}.")
    if randomized and method == "topk":
        raise ValueError(
            "`randomized=True` applies to method='aps' or 'raps'; the top-k set is not randomised."
        )
    if not isinstance(from_logits, (bool, np.bool_)):
        raise ValueError(f"`from_logits` must be True or False, got {from_logits!r}.")
    if (
        isinstance(lam, bool)
        or not isinstance(lam, (int, float, np.number))
        or not (math.isfinite(lam) and lam >= 0)
    ):
        raise ValueError(f"`lam` must be a finite number >= 0, got {lam!r}.")
    if isinstance(k_reg, bool) or not isinstance(k_reg, (int, np.integer)) or k_reg < 0:
        raise ValueError(f"`k_reg` must be an integer >= 0, got {k_reg!r}.")
    s = _scores_array(scores)
    y = _labels_array(labels, s)
    flat = _flat(s)
    m = len(y)
    minimum = min_calibration_size(alpha)
    if m < minimum:
        raise ValueError(
            f"alpha={alpha} needs at least {minimum} calibration examples (the "
            f"ceil((m + 1)(1 - alpha))-th smallest score must exist), got {m}. Use more "
            "calibration data or a larger alpha."
        )
    u = _uniforms(m, seed) if randomized else None
    label_scores = np.empty(m, dtype=np.float64)
    for rows in _blocks(m):
        values = _conformity(
            flat[rows],
            method,
            bool(from_logits),
            float(lam),
            int(k_reg),
            None if u is None else u[rows],
        )
        label_scores[rows] = values[np.arange(len(values)), y[rows]]
    threshold = float(np.sort(label_scores)[_quantile_index(m, alpha) - 1])
    return ConformalSets(
        method=method,
        alpha=alpha,
        threshold=threshold,
        randomized=bool(randomized),
        from_logits=bool(from_logits),
        lam=float(lam),
        k_reg=int(k_reg),
        n_calibration=m,
    )


def evaluate_sets(sets: Any, labels: ArrayLike) -> dict[str, float]:
    """Empirical coverage and set sizes of prediction sets.

    Args:
        sets: boolean masks of shape ``(..., n)`` (`ConformalSets.predict`), or
            a list of index arrays (`ConformalSets.predict_indices`).
        labels: the true class indices, one per set.

    Returns:
        ``{"coverage": fraction of sets holding their label, "mean_size": ...,
        "median_size": ...}`` as Python floats.

    Example:

    >>> evaluate_sets(np.array([[True, True, False], [False, False, True]]), [1, 0])
    {'coverage': 0.5, 'mean_size': 1.5, 'median_size': 1.5}
    """
    if isinstance(sets, (list, tuple)):
        labels = np.asarray(labels).reshape(-1)
        if len(sets) != len(labels):
            raise ValueError(f"Got {len(sets)} sets for {len(labels)} labels.")
        covered = np.array([int(y) in set(np.asarray(c).tolist()) for c, y in zip(sets, labels)])
        sizes = np.array([len(c) for c in sets], dtype=np.float64)
    else:
        mask = np.asarray(sets)
        if mask.dtype != bool or mask.ndim < 2:
            raise ValueError(
                "`sets` must be boolean masks of shape (..., num_classes) or a list of index "
                f"arrays; got an array of dtype {mask.dtype} and shape {mask.shape}."
            )
        y = _labels_array(labels, mask.astype(np.float64))
        flat = _flat(mask)
        covered = flat[np.arange(len(y)), y]
        sizes = np.sum(flat, axis=-1).astype(np.float64)
    if len(sizes) == 0:
        raise ValueError("No sets to evaluate.")
    return {
        "coverage": float(np.mean(covered)),
        "mean_size": float(np.mean(sizes)),
        "median_size": float(np.median(sizes)),
    }


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
    scores = model.predict(x, batch_size=batch_size, verbose=0)
    if isinstance(scores, (list, tuple, dict)):
        raise ValueError(
            "The model has several outputs; call `conformal_sets.predict` on the class scores "
            "of the output you calibrated."
        )
    if as_indices:
        return conformal_sets.predict_indices(scores, seed=seed)
    return conformal_sets.predict(scores, seed=seed)
