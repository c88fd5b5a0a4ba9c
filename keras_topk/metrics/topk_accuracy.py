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

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from keras_topk import _backend, _config, _inputs
from keras_topk._typing import Tensor
from keras_topk.metrics._common import (
    claim_log_keys,
    flat_ranks_and_labels,
    format_keys,
    ks_config,
    safe_divide,
    sample_weights,
)

__all__ = ["MultiTopKAccuracy", "TopKAccuracy", "label_rank", "topk_hits"]


def label_rank(y_true: Tensor, y_pred: Tensor) -> Tensor:
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
    scores, ranks, _ = flat_ranks_and_labels(y_true, y_pred)
    return _inputs.unflatten_batch(ranks, scores)


def topk_hits(y_true: Tensor, y_pred: Tensor, k: int = 5) -> Tensor:
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


class _RankHitsMean(keras.metrics.Metric):
    """Weighted mean of ``label_rank < k`` for several k, from one rank pass."""

    def __init__(self, ks: tuple[int, ...], name: str | None = None, dtype: Any = None) -> None:
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

    def update_state(
        self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None
    ) -> None:
        claim_log_keys(
            self,
            self._log_keys(),
            y_true,
            y_pred,
            renamed_by_keras=self._single,
            quantities=[("topk_accuracy", k) for k in self._ks],
        )
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

    def reset_state(self) -> None:
        self.totals.assign(ops.zeros((len(self._ks),), dtype=self.dtype))
        self.count.assign(0)

    def _accuracies(self) -> Tensor:
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

    def __init__(self, k: int = 5, name: str | None = None, dtype: Any = None) -> None:
        k = _config.check_int("k", k, minimum=1)
        super().__init__((k,), name=name or f"top{k}_accuracy", dtype=dtype)
        self.k = k

    _single = True

    def _log_keys(self) -> list[str]:
        return [self.name]

    def result(self) -> Tensor:
        return self._accuracies()[0]

    def get_config(self) -> dict[str, Any]:
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
      two metrics logging one key replace one another. Where both log the
      same value (``TopKAccuracy(k=5)`` next to ``MultiTopKAccuracy(ks=(1,
      5))``: the top-5 accuracy as ``top5_accuracy``) nothing is lost and
      ``fit``/``evaluate`` warn; where the values differ they raise a
      ``ValueError`` naming both metrics. Both happen when the step is first
      traced (every compiled step; TensorFlow's ``run_eagerly=True``
      debugging mode traces nothing and is not checked). Drop the duplicate k
      or pass another ``key_format``.

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
        self,
        ks: Sequence[int] = (1, 5),
        key_format: str = "top{k}_accuracy",
        name: str = "multi_topk_accuracy",
        dtype: Any = None,
    ) -> None:
        ks = _config.check_ks(ks)
        keys = format_keys(key_format, [{"k": k} for k in ks], "top{k}_accuracy")
        super().__init__(ks, name=name, dtype=dtype)
        self.ks = ks
        self.key_format = key_format
        self._keys = keys

    _single = False

    def _log_keys(self) -> list[str]:
        return list(self._keys)

    def result(self) -> dict[str, Tensor]:
        accuracies = self._accuracies()
        return {key: accuracies[i] for i, key in enumerate(self._keys)}

    def get_config(self) -> dict[str, Any]:
        return ks_config(self)
