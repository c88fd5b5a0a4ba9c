"""Pieces shared by the metrics: weights, class-count state, and log keys that cannot collide."""

import warnings
from collections.abc import Hashable, Sequence
from typing import Any, cast

import keras
from keras import ops

from keras_topk import _backend, _inputs
from keras_topk._typing import Tensor
from keras_topk.ops.ranking import label_rank_2d


def sample_weights(
    sample_weight: Tensor | None, mask: Tensor | None, per_sample: Tensor, dtype: Any
) -> Tensor | None:
    """Weights broadcast to the per-sample shape of ``per_sample``, or None.

    Keras conventions: ``(batch, 1)`` weights for ``(batch,)`` samples, and
    ``(batch,)`` weights for ``(batch, time)`` samples apply to whole rows. A
    Keras mask multiplies in.
    """
    if sample_weight is None and mask is None:
        return None
    weights = ops.ones_like(per_sample, dtype=dtype)
    for w in (sample_weight, mask):
        if w is None:
            continue
        w = ops.cast(ops.convert_to_tensor(w), dtype)
        if len(w.shape) == len(per_sample.shape) + 1 and w.shape[-1] == 1:
            w = ops.squeeze(w, axis=-1)
        while len(w.shape) < len(per_sample.shape):
            w = ops.expand_dims(w, axis=-1)
        weights = weights * w
    return weights


def flat_weights(
    sample_weight: Tensor | None, mask: Tensor | None, per_sample: Tensor, dtype: Any
) -> Tensor:
    """`sample_weights` flattened to ``(b,)``; ones where neither is given."""
    weights = sample_weights(sample_weight, mask, per_sample, dtype)
    if weights is None:
        return ops.ones((_flat_size(per_sample),), dtype=dtype)
    weights = ops.broadcast_to(weights, ops.shape(per_sample))
    return ops.reshape(weights, (-1,))


def _flat_size(x: Tensor) -> Any:
    return ops.shape(ops.reshape(x, (-1,)))[0]


def flat_ranks_and_labels(y_true: Tensor, y_pred: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(scores, ranks, labels)``: scores standardized; rank and index of the label, ``(b,)``."""
    scores = _inputs.standardize_scores(y_pred)
    labels, dense = _inputs.standardize_labels(y_true, scores)
    flat_scores, flat_labels = _inputs.flatten_batch(scores, labels, dense)
    if dense:
        flat_labels = ops.cast(ops.argmax(flat_labels, axis=-1), "int32")
    return scores, label_rank_2d(flat_scores, flat_labels), flat_labels


def format_keys(
    key_format: Any, fields: Sequence[dict[str, Any]], example: str, needs: str = "all"
) -> list[str]:
    """The log keys ``key_format.format(**f)`` for each dict ``f`` in ``fields``, checked.

    ``key_format`` must be a string that names the fields of ``fields`` (all of
    them, or with ``needs="any"`` at least one), uses no other field, and gives
    distinct keys (repeated keys would overwrite each other in the logs);
    ``example`` is a valid one, for the message.
    """
    names = list(fields[0])
    joined = f" {'and' if needs == 'all' else 'or'} ".join(f"'{{{name}}}'" for name in names)
    present = [f"{{{name}}}" in key_format for name in names] if isinstance(key_format, str) else []
    if not present or not (all(present) if needs == "all" else any(present)):
        raise ValueError(
            f"`key_format` must be a string containing {joined}, e.g. {example!r}; "
            f"got {key_format!r}."
        )
    try:
        keys = [key_format.format(**values) for values in fields]
    except (KeyError, IndexError, ValueError) as error:
        allowed = " and ".join(f"{{{name}}}" for name in names)
        raise ValueError(
            f"`key_format` {key_format!r} may only use the field{'s' if len(names) > 1 else ''} "
            f"{allowed} (double other braces); formatting it failed: {error!r}."
        ) from None
    if len(set(keys)) != len(keys):
        raise ValueError(f"`key_format` {key_format!r} gives repeated keys {keys}.")
    return keys


def ks_config(metric: keras.metrics.Metric) -> dict[str, Any]:
    """``get_config`` of a metric configured by ``ks`` and ``key_format``."""
    return {
        "ks": list(metric.ks),
        "key_format": metric.key_format,
        "name": metric.name,
        "dtype": metric.dtype,
    }


class ClassStateMetric(keras.metrics.Metric):
    """A metric whose state has one entry per class, created when the class count is known.

    With ``num_classes=None`` the variables are made at the first
    ``update_state`` (in ``fit``, while Keras builds the model's metrics from a
    symbolic batch, before any step is compiled), so a metric need not be told
    the number of classes; with ``num_classes`` given they are made at once
    and scores with another class count raise a ``ValueError``.
    """

    def __init__(
        self, num_classes: int | None = None, name: str | None = None, dtype: Any = None
    ) -> None:
        super().__init__(name=name, dtype=dtype)
        if num_classes is not None:
            from keras_topk import _config

            num_classes = _config.check_int("num_classes", num_classes, minimum=1)
        # As configured (None: read from the scores); `num_classes` is what the state has.
        self._num_classes_arg = num_classes
        self.num_classes = num_classes
        self._state_built = False
        if num_classes is not None:
            self._build_state(num_classes)

    def _state_shapes(self, n: int) -> dict[str, tuple[int, ...]]:
        """``{name: shape}`` of the state variables for ``n`` classes."""
        raise NotImplementedError

    def _build_state(self, n: int) -> None:
        for name, shape in self._state_shapes(n).items():
            setattr(
                self,
                name,
                self.add_variable(shape=shape, initializer="zeros", dtype=self.dtype, name=name),
            )
        self.num_classes = n
        self._state_built = True

    def _ensure_state(self, n: int) -> None:
        if not self._state_built:
            self._build_state(n)
        elif n != self.num_classes:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} holds state for {self.num_classes} classes "
                f"but got scores with {n} classes (last axis of y_pred). Use one metric per "
                "output, or create it with the right `num_classes`."
            )

    def _ranked_batch(
        self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, int]:
        """``(ranks, labels, weights, n)`` of a batch, flat ``(b,)``; makes the state if needed.

        ``weights`` combine ``sample_weight`` and the Keras mask of ``y_pred``
        (ones where neither is given).
        """
        mask = _backend.get_keras_mask(y_pred)
        scores, ranks, labels = flat_ranks_and_labels(y_true, y_pred)
        n = _inputs.num_classes_of(scores)
        self._ensure_state(n)
        per_sample = ops.zeros(ops.shape(scores)[:-1], dtype=self.dtype)
        return ranks, labels, flat_weights(sample_weight, mask, per_sample, self.dtype), n

    def reset_state(self) -> None:
        if not self._state_built:
            return
        # A built state has its class count.
        num_classes = cast(int, self.num_classes)
        for name, shape in self._state_shapes(num_classes).items():
            getattr(self, name).assign(ops.zeros(shape, dtype=self.dtype))


# --- log keys --------------------------------------------------------------------------------
#
# Keras renames a metric whose *name* repeats (top5_accuracy_1), but the keys of
# a metric that returns a dict go into the logs as they are, so two metrics
# logging the same key silently overwrite each other. Every keras_topk metric
# claims its log keys when its update is traced in a compiled step; the metrics
# of one output in one step receive the very same y_true/y_pred objects, so a
# key claimed twice for the same tensors is the collision. A collision of two
# keys that log the same quantity (TopKAccuracy(5) beside MultiTopKAccuracy(ks=(1, 5)))
# loses nothing, so it only warns: 0.1.0 accepted it silently.

_CLAIMS: dict[str, Any] = {"tensors": None, "keys": {}}


def claim_log_keys(
    metric: keras.metrics.Metric,
    keys: Sequence[str],
    y_true: Tensor,
    y_pred: Tensor,
    renamed_by_keras: bool = False,
    quantities: Sequence[Hashable | None] | None = None,
) -> None:
    """Raises ``ValueError`` if another metric already logs one of ``keys`` for these tensors.

    Only traced (symbolic) updates are checked: eager calls are the user's own
    (two metrics updated on the same arrays by hand log nothing). Keys of
    single-valued metrics (``renamed_by_keras=True``) collide only with dict
    keys: Keras renames repeated metric names itself. ``quantities`` (one
    hashable per key, e.g. ``("topk_accuracy", 5)``) say what each key logs:
    where both metrics log the same quantity under a key, the value Keras keeps
    is the same either way, and a ``UserWarning`` replaces the error.
    """
    if keras.backend.backend() not in ("tensorflow", "jax"):
        # PyTorch steps run eagerly (torch.compile aside): no trace to tell a
        # compiled step from the user's own calls, so no check.
        return
    if _backend.concrete_value(y_pred) is not None:
        return
    tensors = _CLAIMS["tensors"]
    if tensors is None or tensors[0] is not y_true or tensors[1] is not y_pred:
        # Strong references: the ids of freed tensors could be reused.
        _CLAIMS["tensors"] = (y_true, y_pred)
        _CLAIMS["keys"] = {}
    claims = _CLAIMS["keys"]
    if quantities is None:
        quantities = [None] * len(keys)
    for key, quantity in zip(keys, quantities):
        owner = claims.get(key)
        if owner is not None and owner[0] is not metric and not (renamed_by_keras and owner[1]):
            if quantity is not None and owner[2] == quantity:
                warnings.warn(
                    f"Two metrics log the same key {key!r}: {type(owner[0]).__name__} "
                    f"{owner[0].name!r} and {type(metric).__name__} {metric.name!r}. Both compute "
                    "the same value, so the logs lose nothing, but one of them is redundant.",
                    UserWarning,
                    stacklevel=2,
                )
                continue
            raise ValueError(
                f"Two metrics would log the same key {key!r}: {type(owner[0]).__name__} "
                f"{owner[0].name!r} and {type(metric).__name__} {metric.name!r}. Keras keeps only "
                "one of them. Drop the duplicate k, or give one metric another name or "
                "`key_format` (e.g. MultiTopKAccuracy(ks=..., key_format='multi_top{k}'))."
            )
        claims[key] = (metric, renamed_by_keras, quantity)


def release_claims() -> None:
    """Forgets the tensors of the last traced step (for tests)."""
    _CLAIMS["tensors"] = None
    _CLAIMS["keys"] = {}


def safe_divide(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator``, 0 where the denominator is 0, in the inputs' dtype.

    (``keras.ops.divide_no_nan`` returns float32 for float64 inputs under PyTorch.)
    """
    numerator = ops.convert_to_tensor(numerator)
    denominator = ops.convert_to_tensor(denominator)
    zero = ops.equal(denominator, 0)
    quotient = ops.divide(numerator, ops.where(zero, ops.ones_like(denominator), denominator))
    return ops.where(zero, ops.zeros_like(quotient), quotient)
