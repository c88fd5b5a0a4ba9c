"""Where the label stands among the scores: the rank primitives shared by losses and metrics.

Every function here works on flat ``(b, n)`` scores and ``(b,)`` int32 labels;
the public wrappers that accept any leading axes live with the metrics and
losses. "The top-k of the other classes" always excludes the label with one
sentinel, `lowest`.
"""

import keras
import numpy as np
from keras import ops

__all__ = [
    "column",
    "group_members",
    "label_and_top_others",
    "label_rank_2d",
    "label_score",
    "lowest",
    "ranked_others",
    "top_others",
]


def label_rank_2d(s, labels):
    """Number of other classes scoring at least as high as the label, per row.

    The label's 0-based rank with ties counted against it: the label is a
    top-k hit when the rank is below ``k``. A NaN score counts against the
    label (a NaN label score is beaten by every class, a NaN elsewhere beats it).

    Args:
        s: scores of shape ``(b, n)``.
        labels: int32 class indices of shape ``(b,)``.

    Returns:
        int32 ranks of shape ``(b,)`` in ``[0, n - 1]``.
    """
    n = int(s.shape[-1])
    is_label = ops.one_hot(labels, n, dtype="bool")
    label_score = ops.take_along_axis(s, labels[:, None], axis=1)
    # "not s_j < s_y" rather than "s_j >= s_y": equal on numbers, but every
    # comparison with NaN is False, so NaN must count against the label rather
    # than make it unbeatable.
    beats = ops.logical_and(ops.logical_not(ops.less(s, label_score)), ops.logical_not(is_label))
    return ops.sum(ops.cast(beats, "int32"), axis=-1)


def lowest(dtype):
    """The sentinel that ranks a class below every real score: the lowest finite value.

    Finite rather than ``-inf``, so that differences and ``0 * sentinel`` in a
    gradient stay finite. The one sentinel of every "top-k of the others" below.
    """
    return float(np.finfo(keras.backend.standardize_dtype(dtype)).min)


def label_score(s, labels):
    """``s[i, labels[i]]`` of shape ``(b,)``, with its gradient (a mask, not a scatter)."""
    is_label = ops.one_hot(labels, int(s.shape[-1]), dtype="bool")
    return ops.sum(ops.where(is_label, s, ops.zeros_like(s)), axis=-1)


def top_others(s, labels, count):
    """The ``count`` highest scores of the classes other than the label, and their indices.

    Returns ``(values, indices)`` of shape ``(b, count)``, in descending order,
    with no gradient through the choice (or the values). Where fewer than
    ``count`` other classes exist, the label fills in with the `lowest`
    sentinel.
    """
    is_label = ops.one_hot(labels, int(s.shape[-1]), dtype="bool")
    sentinel = ops.convert_to_tensor(lowest(s.dtype), dtype=s.dtype)
    values, indices = ops.top_k(
        ops.stop_gradient(ops.where(is_label, sentinel, s)), count, sorted=True
    )
    return values, ops.cast(indices, "int32")


def column(x, j):
    """``x[:, j]`` as a masked sum.

    XLA:CPU runs ``top_k`` as a fast partial sort only if its outputs are
    sliced from column 0 alone; a slice such as ``values[:, k - 1]`` makes it
    a full sort of every row (30x slower at n = 1000). Masks keep it fast.
    """
    position = ops.arange(int(x.shape[-1]))[None, :]
    return ops.sum(ops.where(position == j, x, ops.zeros_like(x)), axis=-1)


def ranked_others(s, labels, count, ranks=()):
    """`top_others` with the scores at the given ranks, and their gradient.

    Returns ``(values, hits, ranked)``: ``values`` (b, count) as in
    `top_others`; for each rank ``r`` in ``ranks`` (0 = highest other class),
    ``hits[r]`` (b, n) marks that class and ``ranked[r]`` (b,) is its score,
    with its gradient. The gradient of ``top_k`` or of a gather is a scatter,
    on CPU slower than the rest of a loss; here it is a mask.
    """
    n = int(s.shape[-1])
    values, indices = top_others(s, labels, count)
    positions = ops.arange(n, dtype="int32")[None, :]
    ranks = tuple(ranks)
    hits = {r: ops.equal(positions, ops.cast(column(indices, r), "int32")[:, None]) for r in ranks}
    ranked = {}
    if ranks:
        picked = _with_gradient_at(
            s, [hits[r] for r in ranks], ops.stack([column(values, r) for r in ranks], axis=1)
        )
        ranked = {r: picked[:, i] for i, r in enumerate(ranks)}
    return values, hits, ranked


def _with_gradient_at(s, masks, picked):
    """``picked`` (b, r): the scores at the r masks (b, n), with their gradient."""

    @ops.custom_gradient
    def pick(scores):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            zeros = ops.zeros_like(scores)
            total = zeros
            for i, mask in enumerate(masks):
                total = total + ops.where(mask, upstream[:, i : i + 1], zeros)
            return total

        return ops.stop_gradient(picked), grad

    return pick(s)


def label_and_top_others(s, labels, m):
    """The label's score first, then the ``m - 1`` highest other scores, descending: (b, m).

    Gathered (with gradient) by index; the rest of the classes drop out.
    """
    _, others = top_others(s, labels, m - 1)
    members = ops.concatenate([labels[:, None], others], axis=1)
    return ops.take_along_axis(s, members, axis=1)


def group_members(s, labels, k, group):
    """Indices (b, k) of a top-k group, chosen from the scores with no gradient.

    ``group="label"``: the label and its ``k - 1`` highest-scoring rivals.
    ``group="predicted"``: the ``k`` highest-scoring classes (which may miss the
    label).
    """
    if group == "label":
        _, others = top_others(s, labels, k - 1)
        return ops.concatenate([labels[:, None], others], axis=1)
    _, members = ops.top_k(ops.stop_gradient(s), k)
    return ops.cast(members, "int32")
