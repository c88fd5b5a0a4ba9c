"""The pipeline every keras-topk loss shares, and the base class that runs it.

A loss is four pieces (CONTRIBUTING.md, "A new loss, step by step"):

1. a frozen `LossConfig` subclass: the arguments as fields, validated once in
   ``__post_init__``, and the maths as its method ``maths(s, labels, rows)``
   on flat, finite ``(b, n)`` scores, with ``labels`` the ``(b,)`` int32 class
   of each sample and ``rows`` its dense (one-hot or soft) label rows
   ``(b, n)``, or None for sparse labels and for losses that use the classes
   only (``dense_rows = False``);
2. the public pure function, with an explicit keyword signature, which builds
   the configuration and returns ``per_sample_losses(y_true, y_pred, config)``;
3. the registered `TopKLoss` subclass, with the same keywords plus
   ``reduction``, ``name`` (its default written in the signature) and ``dtype``;
4. a contract case (``tests/contract/registry.py``), tests and a docs page.

`per_sample_losses` does the rest, once, for every loss:

1. scores: half precision computed in float32, float64 kept, anything else an
   error; the class axis must be known;
2. labels: integer classes ``(...,)``/``(..., 1)`` or one-hot/soft rows
   ``(..., n)``, range-checked where the values can be seen;
3. leading axes flattened to ``(b, n)``, an empty batch answered without
   running the maths, and the per-sample losses reshaped back to ``(...,)``;
4. the non-finite policy, the same for every loss (docs, "Bad input"):

   - ``-inf`` marks a masked class: it ranks below every finite score and
     gets no gradient (it is raised to a floor far below any real logit);
   - a sample whose label class is ``-inf`` (all-``-inf`` rows included; for
     dense rows, any class with label weight) cannot be reached: its loss is
     0 with a zero gradient, as a masked step's;
   - NaN or ``+inf`` (a float16 overflow) anywhere in a sample's scores makes
     its loss NaN, as Keras's crossentropy does, so that ``TerminateOnNaN``
     stops the run; the other samples and their gradients are untouched.

`TopKLoss.__call__` adds what ``keras.losses.Loss.__call__`` does: Keras masks
on ``y_pred`` (a masked step has weight 0 and the mean runs over the
unmasked steps), ``sample_weight`` and the reduction; and it warns once when
``y_pred`` comes out of a softmax or sigmoid, which top-k losses must not see.
"""

import abc
import dataclasses
import warnings
from typing import Any, ClassVar

import keras
import numpy as np
from keras import ops

from keras_topk import _backend, _inputs

__all__ = ["LossConfig", "TopKLoss", "per_sample_losses"]


@dataclasses.dataclass(frozen=True)
class LossConfig(abc.ABC):
    """A loss's arguments (its fields, validated once) and its maths.

    Subclasses declare the fields without defaults (the defaults live in the
    signatures of the pure function and the class, as in Keras's losses),
    check and normalise them in ``__post_init__`` and implement `maths`.
    """

    # Whether `maths` reads dense label rows (soft labels); if False, `rows` is None.
    dense_rows: ClassVar[bool] = False

    @abc.abstractmethod
    def maths(self, s: Any, labels: Any, rows: Any) -> Any:
        """The per-sample losses ``(b,)`` of finite scores ``s`` ``(b, n)``.

        May return a tuple ``(losses, *extra)`` of per-sample values; the
        extra ones (computed without gradient, e.g. hits) are 0 on the samples
        that give no loss.
        """

    def check_classes(self, n: int) -> None:  # noqa: B027 (a hook: most losses take any n)
        """Raises ValueError when the configuration cannot work with ``n`` classes."""

    @property
    def floor_scale(self) -> float:
        """The largest factor `maths` multiplies score differences by (an inverse
        temperature): the ``-inf`` floor leaves room for it."""
        return 1.0

    def as_kwargs(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def as_config(self) -> dict[str, Any]:
        """The JSON form (tuples as lists), as ``get_config`` returns it."""
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in self.as_kwargs().items()
        }


def per_sample_losses(y_true: Any, y_pred: Any, config: LossConfig) -> Any:
    """Runs the shared pipeline around ``config.maths``; one loss per sample.

    Args:
        y_true: labels, any of the accepted forms.
        y_pred: scores (logits) of shape ``(..., n)``.
        config: the loss's validated `LossConfig`.

    Returns:
        Losses of shape ``y_pred.shape[:-1]``, in the compute dtype (a tuple
        when ``config.maths`` returns extra per-sample values).
    """
    scores = _inputs.standardize_scores(y_pred)
    n = _inputs.num_classes_of(scores)
    config.check_classes(n)
    labels, dense = _inputs.standardize_labels(y_true, scores)
    s, labels = _inputs.flatten_batch(scores, labels, dense)
    if s.shape[0] == 0:
        # Some backends refuse reductions (max, top_k) of empty tensors. The
        # empty losses are read off the scores (no values, so no NaN) so that
        # a training step on an empty batch finds the loss connected to the
        # weights and gets a zero gradient, as Keras's crossentropy does.
        return _inputs.unflatten_batch(ops.sum(s, axis=-1) * 0.0, scores)
    rows = labels_dense = None
    if dense:
        labels_dense = labels
        if config.dense_rows:
            rows = labels
        labels = ops.cast(ops.argmax(labels, axis=-1), "int32")
    s, unreachable, broken = _non_finite_policy(
        s, labels, labels_dense if dense else None, config.floor_scale
    )
    outputs = config.maths(s, labels, rows)
    losses, extra = (outputs[0], outputs[1:]) if isinstance(outputs, tuple) else (outputs, None)
    zero = ops.zeros_like(losses)
    losses = ops.where(unreachable, zero, losses)
    losses = _inputs.unflatten_batch(ops.where(broken, zero + float("nan"), losses), scores)
    if extra is None:
        return losses
    skip = ops.logical_or(unreachable, broken)
    return (losses,) + tuple(
        _inputs.unflatten_batch(ops.where(skip, ops.zeros_like(v), v), scores) for v in extra
    )


def _non_finite_policy(s, labels, rows, floor_scale):
    """``(finite scores, unreachable, broken)``: see the module docstring.

    ``rows`` are dense label rows (any class with weight counts), or None for
    the integer ``labels``, whose own score alone decides.
    """
    inf = ops.convert_to_tensor(float("inf"), dtype=s.dtype)
    broken = ops.any(ops.logical_or(ops.isnan(s), ops.equal(s, inf)), axis=-1)
    if rows is None:
        # The label's own score: one element per row rather than a pass over a one-hot matrix.
        own = ops.take_along_axis(ops.stop_gradient(s), labels[:, None], axis=1)[:, 0]
        unreachable = ops.equal(own, -inf)
    else:
        unreachable = ops.any(ops.logical_and(ops.equal(s, -inf), ops.greater(rows, 0)), axis=-1)
    # Rows that give no loss are computed on zeros: whatever their maths would
    # make of them (inf - inf), their gradient is then exactly zero.
    skip = ops.logical_or(broken, unreachable)[:, None]
    s = ops.where(skip, ops.zeros_like(s), s)
    return _inputs.floor_masked_scores(s, scale=floor_scale), unreachable, broken


def _from_softmax(y_pred):
    """Whether ``y_pred`` was produced by a softmax or sigmoid, as far as Keras can tell.

    Keras's activations leave the logits on their output (``_keras_logits``,
    set where the tensor type takes attributes: TensorFlow and PyTorch); in a
    TensorFlow graph the producing op tells. JAX arrays carry neither, so a
    softmax output there is only caught when its values are concrete.
    """
    if getattr(y_pred, "_keras_logits", None) is not None:
        return True
    op = getattr(y_pred, "op", None)
    if op is not None and getattr(op, "type", None) in ("Softmax", "Sigmoid"):
        return True
    values = _backend.concrete_value(y_pred)
    if values is None or values.ndim < 2 or values.shape[-1] < 2 or values.size == 0:
        return False
    if values.dtype.kind != "f" or not np.all(np.isfinite(values)):
        return False
    return bool(np.all(values >= 0) and np.allclose(values.sum(-1), 1.0, atol=1e-3))


class TopKLoss(keras.losses.Loss):
    """A ``keras.losses.Loss`` whose ``call`` runs the shared pipeline on its configuration.

    Subclasses pass their validated configuration (a frozen `LossConfig`) to
    ``__init__``, which keeps it as ``config`` and exposes its fields as
    attributes; ``call`` runs the shared pipeline on it. Unlike Keras's base
    class, integer labels stay integers (they index classes), and float64
    scores stay float64 while half precision is computed in float32, whatever
    the loss's dtype.
    """

    def __init__(self, config: LossConfig, *, name: str, reduction: Any, dtype: Any) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.config = config
        for field, value in config.as_kwargs().items():
            setattr(self, field, value)

    def __call__(self, y_true, y_pred, sample_weight=None):
        mask = _backend.get_keras_mask(y_pred)
        self._warn_if_probabilities(y_pred)
        with keras.name_scope(self.name):
            scores = _inputs.standardize_scores(y_pred)
            if mask is not None and scores is not y_pred:
                _backend.set_keras_mask(scores, mask)  # for a `call` that needs it
            losses = self.call(y_true, scores)
            if mask is not None:
                # A masked step's scores may be anything (padding): its loss
                # is replaced, not multiplied by 0, so a NaN there stays out.
                mask = ops.reshape(ops.cast(mask, "bool"), ops.shape(losses))
                losses = ops.where(mask, losses, ops.zeros_like(losses))
            if sample_weight is not None:
                sample_weight = ops.convert_to_tensor(sample_weight, dtype=losses.dtype)
            return _backend.reduce_weighted_values(
                losses,
                sample_weight=sample_weight,
                mask=mask,
                reduction=self.reduction,
                dtype=losses.dtype,
            )

    def call(self, y_true, y_pred):
        return per_sample_losses(y_true, y_pred, self.config)

    def _warn_if_probabilities(self, y_pred):
        if getattr(self, "_warned_probabilities", False) or not _from_softmax(y_pred):
            return
        self._warned_probabilities = True
        warnings.warn(
            f"The loss `{self.name}` ({type(self).__name__}) received `y_pred` produced by a "
            "softmax or sigmoid activation. keras-topk losses take logits (unnormalised "
            "scores): remove the final activation (e.g. `Dense(n)` instead of "
            "`Dense(n, activation='softmax')`) and apply the softmax at prediction time.",
            stacklevel=3,
        )

    def get_config(self):
        # Keras's Loss leaves `dtype` out of its config; keep it, so that
        # `from_config(get_config())` rebuilds the loss with every argument.
        config = super().get_config()
        config["dtype"] = self._dtype_policy.name
        config.update(self.config.as_config())
        return config
