"""The smooth and hard top-k SVM by enumeration over all k-subsets (NumPy float64), and score makers.

Shared by the tests of `SmoothTopKSVM` and `TopKSVM`: values derived from the
definitions, independently of keras_topk.
"""

import contextlib
import io
import itertools
import math

import numpy as np
from scipy.special import logsumexp, softmax

THRESHOLD = math.log(1000.0)  # the reference's switch: gap >= k tau log(1000)


def _subsets(n, k):
    return [np.array(s) for s in itertools.combinations(range(n), k)]


def smooth_by_enumeration(s, y, k, tau, alpha):
    """Value and gradient of the smooth loss of one sample, from its definition.

    L = tau LSE_S((alpha [y not in S] + mean s_S) / tau) - tau LSE_{S contains y}(mean s_S / tau);
    dL/ds_j = E_p[j in S] / k - E_q[j in S] / k with p, q the two softmaxes over subsets.
    """
    subsets = _subsets(len(s), k)
    with_y = [c for c in subsets if y in c]
    a = np.array([alpha * (y not in c) + s[c].mean() for c in subsets]) / tau
    b = np.array([s[c].mean() for c in with_y]) / tau
    grad = np.zeros_like(s)
    for c, p in zip(subsets, softmax(a)):
        grad[c] += p / k
    for c, q in zip(with_y, softmax(b)):
        grad[c] -= q / k
    return tau * logsumexp(a) - tau * logsumexp(b), grad


def hard_by_enumeration(s, y, k, alpha):
    """Value and gradient of max_S (alpha [y not in S] + mean s_S) - max_{S contains y} mean s_S."""
    subsets = _subsets(len(s), k)
    with_y = [c for c in subsets if y in c]
    first = max(subsets, key=lambda c: alpha * (y not in c) + s[c].mean())
    second = max(with_y, key=lambda c: s[c].mean())
    grad = np.zeros_like(s)
    grad[first] += 1.0 / k
    grad[second] -= 1.0 / k
    return alpha * (y not in first) + s[first].mean() - s[second].mean(), grad


def uses_hard(s, k, tau):
    top = np.sort(s)[::-1]
    return top[k - 1] - top[k] >= k * tau * THRESHOLD


def definition(s, y, k, tau, alpha):
    if uses_hard(s, k, tau):
        return hard_by_enumeration(s, y, k, alpha)
    return smooth_by_enumeration(s, y, k, tau, alpha)


def scores_near_a_tie(rng, b, n, k, tau, scale):
    """Scores spread by ``scale`` whose k-th and (k+1)-th are closer than the switch."""
    x = -np.sort(-rng.normal(size=(b, n)) * scale, axis=1)
    x[:, k:] = x[:, k - 1 : k] - np.abs(rng.normal(size=(b, n - k))) * k * tau
    return rng.permuted(x, axis=1)


def scores_with_a_gap(rng, b, n, k, tau):
    """Scores whose k-th and (k+1)-th are 1 to 2 times the switch's gap apart."""
    x = -np.sort(-rng.normal(size=(b, n)) * k * tau, axis=1)
    gap = k * tau * THRESHOLD * rng.uniform(1.0, 2.0, size=(b, 1))
    x[:, k:] += x[:, k - 1 : k] - x[:, k : k + 1] - gap
    return rng.permuted(x, axis=1)


def mixed_scores(rng, n, k, tau):
    """Four rows of each: normal scores, a near-tie at rank k (smooth), a gap at rank k (hard)."""
    return np.concatenate(
        [
            rng.normal(size=(4, n)) * 3 * tau * k,
            scores_near_a_tie(rng, 4, n, k, tau, 5.0),
            scores_with_a_gap(rng, 4, n, k, tau),
        ]
    )


CASES = [(n, k) for n in (2, 3, 5, 8) for k in range(1, n)]


def reference_available():
    """Whether difftopk (the reference implementation) and torch import."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import difftopk.smooth_topk  # noqa: F401
    except ImportError:
        return False
    return True
