"""Where the label stands among the scores: the rank primitives shared by losses and metrics.

Every function here works on flat ``(b, n)`` scores and ``(b,)`` int32 labels;
the public wrappers that accept any leading axes live with the metrics.
"""

from keras import ops

__all__ = ["label_rank_2d"]


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
    beats = ops.logical_and(
        ops.logical_not(ops.less(s, label_score)), ops.logical_not(is_label)
    )
    return ops.sum(ops.cast(beats, "int32"), axis=-1)
