"""The non-conformity scores of every class (top-k rank, APS, RAPS), the masked classes
and the top tied group."""

import numpy as np

from keras_topk.conformal._ranks import all_ranks, pessimistic_positions
from keras_topk.conformal._validation import probabilities


def conformity_and_top(
    scores: np.ndarray,
    method: str,
    from_logits: bool,
    lam: float,
    k_reg: int,
    u: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Non-conformity scores S(x, y) of every class, shape (b, n), and the top tied group.

    ``u`` is (b,) or None. Masked classes score +inf. The second result is the
    (b, n) mask of the classes of highest probability (APS/RAPS), None for top-k.
    """
    if method == "topk":
        masked = np.isneginf(scores)
        if np.any(np.all(masked, axis=-1)):
            raise ValueError("A row of scores is -inf everywhere: every class is masked.")
        return np.where(masked, np.inf, all_ranks(scores).astype(np.float64)), None
    p = probabilities(scores, from_logits)
    count, mass = pessimistic_positions(p)
    s = mass if u is None else mass - (1.0 - u[:, None]) * p
    if method == "raps":
        s = s + lam * np.maximum(0, count - k_reg)
    # Probability 0 (a -inf logit): the class is impossible, so no threshold may admit it
    # (its mass score would be 1, inside every set whose threshold reaches 1).
    s = np.where(p == 0.0, np.inf, s)
    return s, p == np.max(p, axis=-1, keepdims=True)


def conformity(
    scores: np.ndarray,
    method: str,
    from_logits: bool,
    lam: float,
    k_reg: int,
    u: np.ndarray | None,
) -> np.ndarray:
    """Non-conformity scores S(x, y) of every class, shape (b, n); ``u`` is (b,) or None."""
    return conformity_and_top(scores, method, from_logits, lam, k_reg, u)[0]


def uniforms(b: int, seed: int | None) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=b)
