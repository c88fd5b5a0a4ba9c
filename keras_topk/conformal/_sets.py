"""The calibrated set predictor: calibration, prediction and evaluation of the sets."""

import dataclasses
import math
import warnings
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from keras_topk._config import check_alpha, check_float, check_int
from keras_topk.conformal._quantile import min_calibration_size, threshold_of
from keras_topk.conformal._scores import conformity, conformity_and_top, uniforms
from keras_topk.conformal._validation import (
    PROBABILITIES_AS_LOGITS,
    check_set_options,
    flatten_rows,
    labels_array,
    looks_like_probabilities,
    scores_array,
)

# Rows per block: the sort and its temporaries take a few times b x n float64,
# so ImageNet-sized inputs (50000 x 1000) are processed in blocks.
BLOCK = 4096


def blocks(b: int) -> list[slice]:
    return [slice(start, min(start + BLOCK, b)) for start in range(0, b, BLOCK)]


@dataclasses.dataclass(frozen=True)
class ConformalSets:
    """A calibrated set predictor: ``C(x) = {y : S(x, y) <= threshold}``, plus the top class.

    Non-randomised APS/RAPS sets also hold the most probable class and the
    classes tied with it; a masked class (score ``+inf``) is in no set.

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
        num_classes: the number of classes calibrated on (the last axis of the
            scores); scores of another width raise a ``ValueError``. ``None``
            (a hand-built object, or one saved before this field existed)
            accepts any width.

    Every field is checked when the object is built (a ``ValueError`` names
    the field). With ``from_logits=True``, APS/RAPS warn once per object when
    the scores look like probabilities.

    Example:

    >>> import numpy as np
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
    num_classes: int | None = None

    def __post_init__(self) -> None:
        alpha = check_alpha(self.alpha)
        randomized, from_logits, lam, k_reg = check_set_options(
            self.method, self.randomized, self.from_logits, self.lam, self.k_reg
        )
        num_classes = (
            None if self.num_classes is None else check_int("num_classes", self.num_classes, 1)
        )
        threshold = check_float("threshold", self.threshold, minimum=0.0)
        if self.method == "topk":
            # A rank: the sets hold the threshold + 1 best classes.
            if not threshold.is_integer():
                raise ValueError(
                    "`threshold` of method='topk' is a rank (k_hat - 1), a whole number; got "
                    f"{self.threshold!r}."
                )
            if num_classes is not None and threshold > num_classes - 1:
                raise ValueError(
                    f"`threshold` of method='topk' is a rank, at most num_classes - 1 = "
                    f"{num_classes - 1}; got {self.threshold!r}."
                )
        normalised = {
            "alpha": alpha,
            "threshold": threshold,
            "randomized": randomized,
            "from_logits": from_logits,
            "lam": lam,
            "k_reg": k_reg,
            "n_calibration": check_int("n_calibration", self.n_calibration, minimum=0),
            "num_classes": num_classes,
        }
        for name, value in normalised.items():
            object.__setattr__(self, name, value)

    def _checked(self, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """The scores as float64 (b, n) rows, checked against what the sets were calibrated on."""
        s = scores_array(scores)
        if self.num_classes is not None and s.shape[-1] != self.num_classes:
            raise ValueError(
                f"`scores` have {s.shape[-1]} classes (last axis of shape {s.shape}), but these "
                f"sets were calibrated on {self.num_classes} classes: use the scores of the "
                "model they were calibrated for."
            )
        flat = flatten_rows(s)
        if (
            self.method != "topk"
            and self.from_logits
            and not self.__dict__.get("_warned_probabilities", False)
            and looks_like_probabilities(flat)
        ):
            warnings.warn(PROBABILITIES_AS_LOGITS, UserWarning, stacklevel=3)
            object.__setattr__(self, "_warned_probabilities", True)
        return s, flat

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
        """The non-conformity score of every class, shape ``(..., n)`` (``+inf`` if masked)."""
        s, flat = self._checked(scores)
        u = uniforms(len(flat), seed) if self.randomized else None
        values = conformity(flat, self.method, self.from_logits, self.lam, self.k_reg, u)
        return values.reshape(s.shape)

    def predict(self, scores: ArrayLike, seed: int | None = None) -> np.ndarray:
        """Boolean membership masks, shape ``(..., n)``: ``True`` where the class is in the set.

        Args:
            scores: the model's scores of shape ``(..., n)``, in the form
                calibrated (logits or probabilities).
            seed: for randomised sets, the seed of the ``u`` drawn per example
                (``None``: fresh entropy each call). Ignored otherwise.

        Non-randomised APS/RAPS sets always hold the most probable class (and
        the classes tied with it); masked classes are never in a set.
        """
        s, flat = self._checked(scores)
        u = uniforms(len(flat), seed) if self.randomized else None
        member = np.empty(flat.shape, dtype=bool)
        for rows in blocks(len(flat)):
            values, top = conformity_and_top(
                flat[rows],
                self.method,
                self.from_logits,
                self.lam,
                self.k_reg,
                None if u is None else u[rows],
            )
            member[rows] = values <= self.threshold
            if top is not None and not self.randomized:
                member[rows] |= top
        return member.reshape(s.shape)

    def predict_indices(self, scores: ArrayLike, seed: int | None = None) -> list[np.ndarray]:
        """The sets as lists of class indices, most likely first (ties by class index).

        Returns a list with one int64 array per example (flattened leading axes).
        """
        s = self._checked(scores)[1]
        member = flatten_rows(self.predict(s, seed=seed))
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
            labels out of range, NaN scores, bad probabilities, or more masked
            calibration labels (probability 0) than ``alpha`` allows.

    Example:

    >>> import numpy as np
    >>> scores = np.array([[2.0, 1.0, 0.0]] * 9 + [[0.0, 1.0, 2.0]])
    >>> sets = calibrate(scores, np.zeros(10, int), alpha=0.1, method="topk")
    >>> sets.k_hat  # the 10th smallest of 9 ranks 0 and one rank 2: rank 2
    3
    """
    alpha = check_alpha(alpha)
    randomized, from_logits, lam, k_reg = check_set_options(
        method, randomized, from_logits, lam, k_reg
    )
    s = scores_array(scores)
    y = labels_array(labels, s)
    flat = flatten_rows(s)
    m = len(y)
    warned = method != "topk" and from_logits and looks_like_probabilities(flat)
    if warned:
        warnings.warn(PROBABILITIES_AS_LOGITS, UserWarning, stacklevel=2)
    minimum = min_calibration_size(alpha)
    if m < minimum:
        raise ValueError(
            f"alpha={alpha} needs at least {minimum} calibration examples (the "
            f"ceil((m + 1)(1 - alpha))-th smallest score must exist), got {m}. Use more "
            "calibration data or a larger alpha."
        )
    u = uniforms(m, seed) if randomized else None
    label_scores = np.empty(m, dtype=np.float64)
    for rows in blocks(m):
        values = conformity(
            flat[rows],
            method,
            from_logits,
            lam,
            k_reg,
            None if u is None else u[rows],
        )
        label_scores[rows] = values[np.arange(len(values)), y[rows]]
    threshold = threshold_of(label_scores, alpha)
    if math.isinf(threshold):
        masked = int(np.sum(np.isinf(label_scores)))
        what = "a -inf score" if method == "topk" else "probability 0 (a -inf logit)"
        raise ValueError(
            f"{masked} of {m} calibration labels have {what}: a masked class is never in a "
            f"set, so no threshold covers 1 - alpha = {1 - alpha:g} of them. Check the "
            "model's mask, or use a larger alpha."
        )
    sets = ConformalSets(
        method=method,
        alpha=alpha,
        threshold=threshold,
        randomized=randomized,
        from_logits=from_logits,
        lam=lam,
        k_reg=k_reg,
        n_calibration=m,
        num_classes=int(s.shape[-1]),
    )
    if warned:
        object.__setattr__(sets, "_warned_probabilities", True)  # once per object
    return sets


def evaluate_sets(sets: Any, labels: ArrayLike) -> dict[str, float]:
    """Empirical coverage and set sizes of prediction sets.

    Args:
        sets: boolean masks of shape ``(..., n)`` (`ConformalSets.predict`), or
            a list of index arrays (`ConformalSets.predict_indices`).
        labels: the true class indices, one per set.

    Returns:
        A dict of Python floats, ``"coverage"`` (the fraction of sets that
            hold their label), ``"mean_size"`` and ``"median_size"`` (the mean
            and median number of classes in a set).

    Example:

    >>> import numpy as np
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
        y = labels_array(labels, mask.astype(np.float64))
        flat = flatten_rows(mask)
        covered = flat[np.arange(len(y)), y]
        sizes = np.sum(flat, axis=-1).astype(np.float64)
    if len(sizes) == 0:
        raise ValueError("No sets to evaluate.")
    return {
        "coverage": float(np.mean(covered)),
        "mean_size": float(np.mean(sizes)),
        "median_size": float(np.median(sizes)),
    }
