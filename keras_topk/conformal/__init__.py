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
is at most :math:`\hat q`.

A non-randomised APS/RAPS set always holds the most probable class (with every
class tied with it): :math:`C(x) = \{ y : S(x, y) \le \hat q \} \cup
\{ y : \pi_y = \max_j \pi_j \}`. Without that, a confident example whose top
probability alone exceeds :math:`\hat q` would get an empty set; adding
classes only raises the coverage, so the guarantee holds (these sets tend to
over-cover). Randomised sets can be empty (when even the top class's
:math:`u\, \pi_{(1)}` exceeds :math:`\hat q`); that is part of what makes
their coverage exact, and is rare at small ``alpha``. Top-k sets follow the
metrics' tie rule, so a tie for first place among more than :math:`\hat k`
classes leaves them empty.

A masked class is never in a set: one with probability exactly 0 for
APS/RAPS (a ``-inf`` logit, or a 0 with ``from_logits=False``), one scored
``-inf`` for top-k. Its non-conformity score is :math:`+\infty`, so a masked
calibration label counts as uncovered; `calibrate` raises if so many are
masked that no finite threshold reaches :math:`1 - \alpha`.

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

from keras_topk.conformal._keras import predict_sets
from keras_topk.conformal._quantile import min_calibration_size
from keras_topk.conformal._ranks import candidates_for_coverage, label_ranks
from keras_topk.conformal._sets import ConformalSets, calibrate, evaluate_sets

__all__ = [
    "ConformalSets",
    "calibrate",
    "candidates_for_coverage",
    "evaluate_sets",
    "label_ranks",
    "min_calibration_size",
    "predict_sets",
]

# The public path rather than the private module that defines each name, as before the
# module became a package: pickles of ConformalSets, help() and the API page (which groups
# names by defining module) all name keras_topk.conformal. The docstring examples therefore
# run with this module's namespace and import what else they use.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
