"""Float64 NumPy references for the relaxed top-k and TopKCrossEntropy.

Written from the paper's definitions (dense layer matrices multiplied out,
explicit permutation-matrix formulas), independently of keras_topk's
execution code: only the list of comparators is shared.
"""

import numpy as np
from scipy import special


def cdf(v, distribution, beta, art_lambda=0.5):
    v = np.asarray(v, dtype=np.float64)
    if distribution == "logistic":
        return special.expit(beta * v)
    if distribution == "logistic_phi":
        return special.expit(beta * v / (np.abs(v) + 1e-10) ** art_lambda)
    if distribution == "cauchy":
        return np.arctan(beta * v) / np.pi + 0.5
    if distribution == "reciprocal":
        u = beta * v
        return 0.5 * (u / (2 + np.abs(u)) + 1)
    if distribution == "gaussian":
        return special.ndtr(beta * v)
    if distribution == "optimal":
        u = beta * v
        return (
            np.clip(u, -0.25, 0.25)
            + 0.5
            + np.sign(u) * (np.abs(u) > 0.25) * (0.25 - 1 / 16 / (np.abs(u) + 1e-10))
        )
    raise ValueError(distribution)


def network_attribution(x, comparators, k, distribution, beta, art_lambda=0.5):
    """A (n, k) for one score vector: product of the dense layer matrices."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    total = np.eye(n)
    for layer in comparators:
        mat = np.eye(n)
        for a, b, lo, hi in layer:
            alpha = cdf(x[b] - x[a], distribution, beta, art_lambda)
            mat[a, a] = mat[b, b] = 0.0
            mat[lo, a], mat[lo, b] = alpha, 1 - alpha
            mat[hi, a], mat[hi, b] = 1 - alpha, alpha
        x = mat @ x
        total = mat @ total
    # Row r of `total` maps inputs to output wire r; wire n-1-j holds rank j.
    return np.stack([total[n - 1 - j] for j in range(k)], axis=1)


def neuralsort_attribution(s, k, tau):
    s = np.asarray(s, dtype=np.float64)
    n = s.shape[0]
    abs_sums = np.abs(s[:, None] - s[None, :]).sum(1)
    cols = []
    for j in range(k):
        logits = ((n - 1 - 2 * j) * s - abs_sums) / tau
        cols.append(special.softmax(logits))
    return np.stack(cols, axis=1)


def softsort_attribution(s, k, tau):
    s = np.asarray(s, dtype=np.float64)
    top = np.sort(s)[::-1][:k]
    return np.stack([special.softmax(-np.abs(s - t) / tau) for t in top], axis=1)


def lapsum_attribution(s, k, alpha):
    """Rank columns p^(j) - p^(j-1) of LapSum's top-j memberships, roots by bisection (float64)."""
    s = np.asarray(s, dtype=np.float64)
    s = s - s.max()
    n = len(s)

    def cdf(x):
        return np.where(x > 0, 1.0 - 0.5 * np.exp(-np.abs(x)), 0.5 * np.exp(-np.abs(x)))

    members = [np.zeros(n)]
    for j in range(1, k + 1):
        if j >= n:
            members.append(np.ones(n))
            continue
        lo, hi = s.min() - 60 * alpha - 1, 60 * alpha + 1
        for _ in range(2000):
            mid = 0.5 * (lo + hi)
            if mid in (lo, hi):
                break
            x = (s - mid) / alpha
            above = x > 0
            excess = (above.sum() - j) + 0.5 * (np.exp(x[~above]).sum() - np.exp(-x[above]).sum())
            lo, hi = (mid, hi) if excess > 0 else (lo, mid)
        members.append(cdf((s - 0.5 * (lo + hi)) / alpha))
    members = np.stack(members, axis=1)
    return members[:, 1:] - members[:, :-1]


def hard_topk(s, k):
    """Indicator [score i has rank j] for distinct scores."""
    order = np.argsort(-np.asarray(s), kind="stable")
    out = np.zeros((len(s), k))
    for j in range(k):
        out[order[j], j] = 1.0
    return out


def attribution(s, k, method, beta, distribution="logistic_phi", art_lambda=0.5):
    from keras_topk.ops import build_network

    if method == "neuralsort":
        return neuralsort_attribution(s, k, 1 / beta)
    if method == "softsort":
        return softsort_attribution(s, k, 1 / beta)
    if method == "lapsum":
        return lapsum_attribution(s, k, 1 / beta)
    net = build_network(method, len(s), k)
    return network_attribution(s, net.comparators(), k, distribution, beta, art_lambda)


def topk_cross_entropy(s, target, p_k, method, beta, distribution, art_lambda, m, top1_mode):
    """Loss of one sample; ``target`` an int label or a dense row."""
    s = np.asarray(s, dtype=np.float64)
    k = len(p_k)
    if m is not None:
        y = int(np.argmax(target)) if np.ndim(target) else int(target)
        others = np.delete(s, y)
        s = np.concatenate([[s[y]], np.sort(others)[::-1][: m - 1]])
        target = 0
    n = len(s)
    row = np.eye(n)[target] if np.ndim(target) == 0 else np.asarray(target, np.float64)
    a = attribution(s, k, method, beta, distribution, art_lambda)
    q = np.cumsum(a, axis=1)  # q[c, k-1]: P(class c in top k)
    soft = special.softmax(s)
    eps = 1e-7

    def nll(p):
        return -(row * np.log(p * (1 - 2 * eps) + eps)).sum()

    if top1_mode == "sort":
        return nll(sum(p_k[i] * q[:, i] for i in range(k)))
    rest = sum(p_k[i] * q[:, i] for i in range(1, k)) if k > 1 else np.zeros(n)
    if top1_mode == "sm":
        return nll(p_k[0] * soft + rest)
    ce = -(row * np.log(soft)).sum()
    return p_k[0] * ce + sum(p_k[1:]) * nll(rest) if k > 1 else p_k[0] * ce
