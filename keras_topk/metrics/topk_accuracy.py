r"""Top-k accuracy that ties cannot inflate, for one or several k per pass.

The rule: with scores :math:`s \in \mathbb{R}^n` and label :math:`y`, let

.. math::

    r(s, y) = \#\{\, j \ne y : s_j \ge s_y \,\}

be the number of *other* classes that score at least as high as the label (its
0-based rank, ties counted against the label). The label is a top-k hit when
:math:`r(s, y) < k`. Ties are resolved pessimistically, so a model cannot gain
accuracy by tying: constant scores give 0% top-k accuracy for every k < n.
(``keras.ops.in_top_k``, and with it Keras's own top-k accuracy metrics,
counts a tie with the k-th score as a hit, so constant scores give 100%.)

A NaN anywhere in a row counts against the label: a NaN label score is beaten
by every other class, a NaN elsewhere beats the label. ``k >= n`` is allowed:
every label is then a hit (there are only n - 1 other classes).

:math:`r` takes one comparison of each score with the label's score, O(n) a
sample, and gives every k at once (``hit_k = r < k``), so several k cost the
same single pass as one and no ``top_k`` is needed.
"""

from typing import Any

import keras
from keras import ops

from keras_topk import _backend, _config, _inputs
from keras_topk.metrics._common import claim_log_keys, ks_config, safe_divide, sample_weights
from keras_topk.ops.ranking import label_rank_2d

__all__ = ["MultiTopKAccuracy", "TopKAccuracy", "label_rank", "topk_hits"]


def label_rank(y_true: Any, y_pred: Any) -> Any:
    """Number of other classes scoring at least as high as the label.

    This is the label's 0-based rank with ties counted against it; the label
    is a top-k hit when ``label_rank(y_true, y_pred) < k``.

    Args:
        y_true: integer labels of shape ``(...,)`` or ``(..., 1)``, or one-hot
            (or any dense) label rows of shape ``(..., n)``, whose argmax is
            taken as the class (the first index among equal maxima).
        y_pred: scores of shape ``(..., n)`` (logits or probabilities; only
            their order matters). Leading axes are any number of batch axes.

    Returns:
        int32 tensor of shape ``(...,)`` with values in ``[0, n - 1]``.

    Example:

    >>> import keras
    >>> ranks = label_rank([0, 1, 2], [[3.0, 1.0, 2.0]] * 3)
    >>> keras.ops.convert_to_numpy(ranks).tolist()
    [0, 2, 1]
    """
    scores = _inputs.standardize_scores(y_pred)
    labels, dense = _inputs.standardize_labels(y_true, scores)
    flat_scores, flat_labels = _inputs.flatten_batch(scores, labels, dense)
    if dense:
        flat_labels = ops.cast(ops.argmax(flat_labels, axis=-1), "int32")
    ranks = label_rank_2d(flat_scores, flat_labels)
    return _inputs.unflatten_batch(ranks, scores)


def topk_hits(y_true: Any, y_pred: Any, k: int = 5) -> Any:
    """Per-sample top-k hits under the pessimistic tie rule.

    A label is a hit when fewer than ``k`` other classes score at least as
    high as it does (see `TopKAccuracy`). ``k >= n`` makes every label a hit.

    Args:
        y_true: integer labels of shape ``(...,)`` or ``(..., 1)``, or one-hot
            (or any dense) label rows of shape ``(..., n)`` (argmax as class).
        y_pred: scores of shape ``(..., n)``.
        k: the number of top classes that count as correct, an integer >= 1.

    Returns:
        1.0 for a hit, 0.0 for a miss, shape ``(...,)``, in ``floatx()``.

    Example:

    >>> import keras
    >>> hits = topk_hits([0, 0], [[1.0, 1.0, 0.0], [2.0, 1.0, 0.0]], k=1)
    >>> keras.ops.convert_to_numpy(hits).tolist()  # a tie for first is a miss
    [0.0, 1.0]
    """
    k = _config.check_int("k", k, minimum=1)
    return ops.cast(ops.less(label_rank(y_true, y_pred), k), keras.backend.floatx())


def check_ks(ks):
    """Validates a sequence of distinct k >= 1; returns it as a tuple of ints."""
    if isinstance(ks, (str, bytes)) or not hasattr(ks, "__len__"):
        raise ValueError(
            f"`ks` must be a sequence of integers such as (1, 5), got {ks!r}. For a single k "
            "use ks=(k,) or `TopKAccuracy(k)`."
        )
    if len(ks) == 0:
        raise ValueError("`ks` must list at least one k, e.g. ks=(1, 5).")
    ks = tuple(_config.check_int(f"ks[{i}]", k, minimum=1) for i, k in enumerate(ks))
    duplicates = sorted({k for k in ks if ks.count(k) > 1})
    if duplicates:
        raise ValueError(f"`ks` must not repeat a k; {duplicates} appear more than once in {ks}.")
    return ks


class _RankHitsMean(keras.metrics.Metric):
    """Weighted mean of ``label_rank < k`` for several k, from one rank pass."""

    def __init__(self, ks, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._ks = ks
        # Accuracies are maximised: lets callbacks with mode="auto" find out.
        self._direction = "up"
        self.totals = self.add_variable(
            shape=(len(ks),), initializer="zeros", dtype=self.dtype, name="totals"
        )
        self.count = self.add_variable(
            shape=(), initializer="zeros", dtype=self.dtype, name="count"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        claim_log_keys(self, self._log_keys(), y_true, y_pred, renamed_by_keras=self._single)
        mask = _backend.get_keras_mask(y_pred)
        ranks = label_rank(y_true, y_pred)
        ks = ops.convert_to_tensor(self._ks, dtype="int32")
        hits = ops.cast(ops.less(ops.expand_dims(ranks, -1), ks), self.dtype)
        hits = ops.reshape(hits, (-1, len(self._ks)))
        weights = sample_weights(sample_weight, mask, ranks, self.dtype)
        if weights is None:
            self.totals.assign_add(ops.sum(hits, axis=0))
            self.count.assign_add(ops.cast(ops.shape(hits)[0], self.dtype))
        else:
            weights = ops.reshape(weights, (-1,))
            self.totals.assign_add(ops.sum(hits * weights[:, None], axis=0))
            self.count.assign_add(ops.sum(weights))

    def reset_state(self):
        self.totals.assign(ops.zeros((len(self._ks),), dtype=self.dtype))
        self.count.assign(0)

    def _accuracies(self):
        return safe_divide(self.totals, self.count)


@keras.saving.register_keras_serializable(package="keras_topk")
class TopKAccuracy(_RankHitsMean):
    r"""Top-k accuracy that counts ties against the label.

    The label ``y`` is a hit when fewer than ``k`` other classes score at least
    as high as it does:

    .. math::

        \mathrm{hit}_k(s, y) = \big[\, \#\{ j \ne y : s_j \ge s_y \} < k \,\big]

    and the metric is the (``sample_weight``-weighted) mean of the hits. Ties
    never help: constant scores give 0% for every ``k`` below the number of
    classes ``n`` (Keras's ``TopKCategoricalAccuracy`` gives 100%). ``k >= n``
    is accepted and gives 100%. A NaN score counts against the label.

    Works for integer labels, shape ``(...,)`` or ``(..., 1)``, and for one-hot
    (or dense) labels of shape ``(..., n)``, whose argmax is the class, so one
    metric serves both ``sparse_categorical_crossentropy`` and
    ``categorical_crossentropy`` models. Scores ``(..., n)`` may have any
    number of leading batch axes (sequence models: ``(batch, time, n)``);
    every position is one sample. ``sample_weight`` may have the samples'
    shape or a prefix of it (a ``(batch,)`` weight applies to a whole
    sequence), and a Keras mask on the predictions is honoured.

    To log several k, use `MultiTopKAccuracy`: one pass for all of them.

    Args:
        k: the number of top classes that count as correct, an integer >= 1.
        name: the metric's name, by default ``f"top{k}_accuracy"``.
        dtype: the dtype of the metric's state and result.

    Example:

    >>> import numpy as np
    >>> import keras_topk
    >>> m = keras_topk.metrics.TopKAccuracy(k=2)
    >>> m.update_state([0, 1], np.array([[0.5, 0.9, 0.1], [0.3, 0.3, 0.3]]))
    >>> float(m.result())  # sample 1: rank 1 < 2; sample 2: 2 ties, rank 2
    0.5

    ```python
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=[keras_topk.metrics.TopKAccuracy(k=5)])
    ```
    """

    def __init__(self, k=5, name=None, dtype=None):
        k = _config.check_int("k", k, minimum=1)
        super().__init__((k,), name=name or f"top{k}_accuracy", dtype=dtype)
        self.k = k

    _single = True

    def _log_keys(self):
        return [self.name]

    def result(self):
        return self._accuracies()[0]

    def get_config(self):
        return {"k": self.k, "name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="keras_topk")
class MultiTopKAccuracy(_RankHitsMean):
    r"""Top-k accuracy for several k from one pass, logged as one entry per k.

    Computes, once per sample, the number of other classes scoring at least as
    high as the label, :math:`r = \#\{ j \ne y : s_j \ge s_y \}` (one O(n)
    comparison pass, no ``top_k``), and counts a hit for every k with
    ``r < k``: the same rule, values and input shapes as `TopKAccuracy`, for
    all ``ks`` at the price of one.

    ``result()`` returns a dict, ``{key_format.format(k=k): accuracy}`` in the
    order of ``ks``; Keras logs each key on its own in ``fit``/``evaluate``
    (``"top5_accuracy"``, ``"val_top5_accuracy"``, ...). Two things follow
    from the keys not being metric names:

    - ``EarlyStopping``/``ModelCheckpoint`` monitoring one of these keys need
      ``mode="max"`` (with ``mode="auto"`` Keras cannot tell the direction).
    - Keras does not prefix dict keys with the output name in multi-output
      models: give each output's metric its own ``key_format`` (for example
      ``"head_top{k}"``) or the entries overwrite each other.
    - Keras renames a repeated metric *name* but not a repeated dict key, so
      ``TopKAccuracy(k=5)`` next to ``MultiTopKAccuracy(ks=(1, 5))`` would
      both log ``top5_accuracy`` and one would silently replace the other.
      keras-topk metrics refuse this: ``fit``/``evaluate`` raise a
      ``ValueError`` naming both metrics when the step is first traced (every
      compiled step; TensorFlow's ``run_eagerly=True`` debugging mode traces
      nothing and is not checked). Drop the duplicate k or pass another
      ``key_format``.

    Args:
        ks: the k to report, a non-empty sequence of distinct integers >= 1.
            ``k >= n`` (the number of classes) is accepted and gives 1.0.
        key_format: the log key of each k, a format string with ``{k}``.
        name: the metric's name (not logged: the keys are).
        dtype: the dtype of the metric's state and results.

    Example:

    >>> import numpy as np
    >>> import keras_topk
    >>> m = keras_topk.metrics.MultiTopKAccuracy(ks=(1, 2, 3))
    >>> m.update_state([0, 1], np.array([[0.5, 0.9, 0.1], [0.3, 0.3, 0.3]]))
    >>> {key: float(v) for key, v in m.result().items()}
    {'top1_accuracy': 0.0, 'top2_accuracy': 0.5, 'top3_accuracy': 1.0}

    ```python
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=[keras_topk.metrics.MultiTopKAccuracy(ks=(1, 5))],
                  jit_compile=True)
    history = model.fit(x, y, validation_split=0.1)
    history.history["val_top5_accuracy"]
    ```
    """

    def __init__(
        self, ks=(1, 5), key_format="top{k}_accuracy", name="multi_topk_accuracy", dtype=None
    ):
        ks = check_ks(ks)
        keys = _format_keys(key_format, ks)
        super().__init__(ks, name=name, dtype=dtype)
        self.ks = ks
        self.key_format = key_format
        self._keys = keys

    _single = False

    def _log_keys(self):
        return list(self._keys)

    def result(self):
        accuracies = self._accuracies()
        return {key: accuracies[i] for i, key in enumerate(self._keys)}

    def get_config(self):
        return ks_config(self)


def _format_keys(key_format, ks):
    if not isinstance(key_format, str) or "{k}" not in key_format:
        raise ValueError(
            f"`key_format` must be a string containing '{{k}}', e.g. 'top{{k}}_accuracy'; "
            f"got {key_format!r}."
        )
    try:
        keys = [key_format.format(k=k) for k in ks]
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(
            f"`key_format` {key_format!r} must have '{{k}}' as its only field "
            f"(double other braces); formatting it failed: {error!r}."
        ) from None
    return keys
