"""Grouped top-k cross-entropy with a transition from CE (Sawada et al., 2020).

The mathematics are pure functions (`grouped_cross_entropy`,
`topk_transition_loss`); `TopKTransitionLoss` holds the configuration and
reads the mixing weight from its schedule state
(`keras_topk.losses.transition_state`), which
`keras_topk.callbacks.TransitionCallback` advances after every training step.
"""

import dataclasses
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_topk import _backend, _config
from keras_topk.losses._base import LossConfig, TopKLoss, per_sample_losses
from keras_topk.losses.transition_state import TransitionState
from keras_topk.ops import ranking

__all__ = ["TopKTransitionLoss", "grouped_cross_entropy", "topk_transition_loss"]

TRANSITIONS = ("constant", "linear", "adaptive")
GROUPS = ("label", "predicted")


def _check_weight(name, value):
    if value is None:
        raise ValueError(f"`{name}` must be a number in [0, 1], got None.")
    return _config.check_float(name, value, minimum=0.0, maximum=1.0)


@dataclasses.dataclass(frozen=True)
class GroupConfig(LossConfig):
    """`grouped_cross_entropy`: the group's size and kind."""

    k: int
    group: str

    def __post_init__(self):
        object.__setattr__(self, "k", _config.check_int("k", self.k, minimum=1))
        object.__setattr__(self, "group", _config.check_choice("group", self.group, GROUPS))

    def check_classes(self, n):
        _config.check_k_fits_classes("k", self.k, n, strict=True)

    def maths(self, s, labels, rows):
        return _grouped_2d(s, labels, self, ops.logsumexp(s, axis=-1))


@dataclasses.dataclass(frozen=True)
class MixtureConfig(GroupConfig):
    """`topk_transition_loss` at one weight; with ``hits``, also each sample's top-k hit."""

    weight: Any
    hits: bool = False

    dense_rows = True

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "weight", _check_call_weight(self.weight))

    def maths(self, s, labels, rows):
        losses = _transition_2d(s, labels, rows, self, self.weight)
        if not self.hits:
            return losses
        # TopKAccuracy's tie rule: ties count against the label, so a model with
        # constant scores (a zero-initialised head) is at 0 and does not jump
        # the adaptive schedule towards the grouped loss.
        hits = ops.less(ranking.label_rank_2d(ops.stop_gradient(s), labels), self.k)
        return losses, ops.cast(hits, s.dtype)


@dataclasses.dataclass(frozen=True)
class TransitionConfig(LossConfig):
    """The configuration of `TopKTransitionLoss`, validated as a whole."""

    k: int
    transition: str
    weight: float | None
    group: str
    weight_start: float
    weight_end: float
    transition_steps: int | None
    momentum: float

    def __post_init__(self):
        GroupConfig(k=self.k, group=self.group)  # the shared checks
        checked = dict(
            k=_config.check_int("k", self.k, minimum=1),
            transition=_config.check_choice("transition", self.transition, TRANSITIONS),
            weight_start=_check_weight("weight_start", self.weight_start),
            weight_end=_check_weight("weight_end", self.weight_end),
            momentum=_config.check_float("momentum", self.momentum, minimum=0.0, maximum=1.0),
        )
        transition, weight, steps = checked["transition"], self.weight, self.transition_steps
        if checked["momentum"] == 1.0:
            raise ValueError(
                "`momentum` must be < 1 (with momentum=1 the running accuracy, and so the "
                "weight, never moves); got 1.0. Typical values are 0.9 to 0.999."
            )
        if transition == "constant":
            if weight is None:
                raise ValueError(
                    "transition='constant' needs `weight`, the fixed weight w in [0, 1] of "
                    "the grouped loss (w=0 is plain cross-entropy), e.g. weight=0.5."
                )
            weight = _check_weight("weight", weight)
        elif weight is not None:
            raise ValueError(
                f"`weight`={weight!r} is only used by transition='constant'; with "
                f"transition={transition!r} the weight moves from `weight_start` to "
                "`weight_end`. Drop `weight`, or use transition='constant'."
            )
        if transition == "linear":
            if steps is None:
                raise ValueError(
                    "transition='linear' needs `transition_steps`, the number of training "
                    "steps over which w moves from `weight_start` to `weight_end` (e.g. "
                    "epochs * steps_per_epoch)."
                )
            steps = _config.check_int("transition_steps", steps, minimum=1)
        elif steps is not None:
            raise ValueError(
                f"`transition_steps`={steps!r} is only used by transition='linear'; "
                f"drop it for transition={transition!r}."
            )
        checked.update(weight=weight, transition_steps=steps)
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    check_classes = GroupConfig.check_classes

    def at(self, weight, hits=False):
        """The mixture at the schedule's weight ``weight`` (the state's, in a step)."""
        return MixtureConfig(k=self.k, group=self.group, weight=weight, hits=hits)

    def maths(self, s, labels, rows):
        # The loss before any step; `TopKTransitionLoss.call` runs `at` the state's weight.
        initial = self.weight if self.transition == "constant" else self.weight_start
        return self.at(initial).maths(s, labels, rows)


def _check_call_weight(weight):
    # Tensors and variables are the caller's business (they may be traced);
    # Python numbers can be checked now.
    if weight is None or isinstance(weight, (bool, str)):
        raise ValueError(f"`weight` must be a number in [0, 1] or a scalar tensor, got {weight!r}.")
    if isinstance(weight, (int, float, np.integer, np.floating)):
        return _check_weight("weight", weight)
    return weight


# --------------------------------------------------------------------------- #
# The mathematics, on (b, n) scores
# --------------------------------------------------------------------------- #


def _grouped_2d(s, y, config, lse):
    """L_group for scores (b, n) and class indices y (b,)."""
    true_score = ranking.label_score(s, y)
    if config.k == 1:
        # Both groups are {y} when the label is the top class, and plain CE
        # otherwise: L_group is cross-entropy either way.
        return lse - true_score
    # The choice of the group is "temporal": made from the current scores,
    # with no gradient through it. The gradient reaches the scores only
    # through the two logsumexps.
    members = ranking.group_members(s, y, config.k, config.group)
    grouped = lse - ops.logsumexp(ops.take_along_axis(s, members, axis=1), axis=-1)
    if config.group == "label":
        return grouped
    label_in_group = ops.any(ops.equal(members, y[:, None]), axis=-1)
    return ops.where(label_in_group, grouped, lse - true_score)


def _transition_2d(s, y, rows, config, weight):
    lse = ops.logsumexp(s, axis=-1)
    if rows is None:
        cross_entropy = lse - ranking.label_score(s, y)
    else:
        cross_entropy = -ops.sum(rows * ops.log_softmax(s, axis=-1), axis=-1)
    grouped = _grouped_2d(s, y, config, lse)
    if isinstance(weight, (int, float)):
        # Straight to the scores' dtype: via float32 a float64 loss would see 0.7 as 0.69999999.
        w = ops.convert_to_tensor(weight, dtype=s.dtype)
    else:
        w = ops.cast(weight, s.dtype)
    return (1.0 - w) * cross_entropy + w * grouped


# --------------------------------------------------------------------------- #
# Public functions
# --------------------------------------------------------------------------- #


def grouped_cross_entropy(y_true: Any, y_pred: Any, *, k: int, group: str = "label") -> Any:
    r"""Per-sample grouped cross-entropy ``L_group`` (no transition).

    .. math::

        L_\mathrm{group} = -\log \sum_{j \in G} \mathrm{softmax}(s)_j
                         = \operatorname{logsumexp}(s) - \operatorname{logsumexp}(s_G)

    ``group="label"`` (default): ``G`` = the label with the ``k - 1``
    highest-scoring other classes. ``group="predicted"``: ``G`` = the ``k``
    highest-scoring classes, and ``L_group`` is plain cross-entropy when the
    label is not among them. The group is chosen from the current scores with
    no gradient through the choice. See `TopKTransitionLoss`.

    Args:
        y_true: integer labels of shape ``(...,)`` or ``(..., 1)``, or one-hot
            rows of shape ``(..., n)`` (the group uses their argmax).
        y_pred: scores (logits) of shape ``(..., n)``.
        k: group size, ``1 <= k < n``; ``k = 1`` is cross-entropy.
        group: "label" or "predicted".

    Returns:
        The loss of each sample, shape ``(...,)``, float32 (float64 for float64
        scores).

    Example: with ``k = 2`` the label (class 1) and its strongest rival
    (class 0) form the group, whose softmax mass is ``10.107 / 12.124``:

    >>> import keras_topk
    >>> round(float(keras_topk.losses.grouped_cross_entropy([1], [[2.0, 1.0, 0.5, -1.0]], k=2)[0]), 4)
    0.1819
    """
    return per_sample_losses(y_true, y_pred, GroupConfig(k=k, group=group))


def topk_transition_loss(
    y_true: Any, y_pred: Any, *, k: int, weight: Any, group: str = "label"
) -> Any:
    r"""Per-sample mixture ``(1 - w) CE + w L_group`` at a given weight.

    .. math::

        L = (1 - w)\,\bigl(\operatorname{logsumexp}(s) - s_y\bigr)
            + w\, L_\mathrm{group}(s, y)

    See `grouped_cross_entropy` for ``L_group`` and `TopKTransitionLoss` for
    the schedules of ``w``. For one-hot or soft label rows the CE term uses
    the full rows, ``-sum_c t_c log softmax(s)_c``, and the group their argmax.

    Args:
        y_true: integer labels of shape ``(...,)`` or ``(..., 1)``, or one-hot
            or soft rows of shape ``(..., n)``.
        y_pred: scores (logits) of shape ``(..., n)``.
        k: group size, ``1 <= k < n``.
        weight: ``w`` in ``[0, 1]``: a Python number (checked) or a scalar
            tensor or variable (not checked).
        group: "label" (default) or "predicted".

    Returns:
        The loss of each sample, shape ``(...,)``.

    Example:

    >>> import numpy as np, keras_topk
    >>> scores = np.array([[2.0, 1.0, 0.5, -1.0]], "float32")
    >>> ce = keras_topk.losses.topk_transition_loss([1], scores, k=2, weight=0.0)
    >>> grouped = keras_topk.losses.topk_transition_loss([1], scores, k=2, weight=1.0)
    >>> [round(float(ce[0]), 4), round(float(grouped[0]), 4)]
    [1.4952, 0.1819]
    """
    return per_sample_losses(y_true, y_pred, MixtureConfig(k=k, group=group, weight=weight))


# --------------------------------------------------------------------------- #
# The loss
# --------------------------------------------------------------------------- #


@keras.saving.register_keras_serializable(package="keras_topk")
class TopKTransitionLoss(TopKLoss):
    r"""Grouped top-k cross-entropy with a transition from CE (Sawada et al., 2020).

    Cross-entropy (CE) in which the label and its ``k - 1`` strongest rivals
    count as one class ``G``, chosen afresh from the current scores with no
    gradient through the choice, and a weight ``w`` that moves training from CE
    to the grouped loss:

    .. math::

        \mathrm{CE} = \operatorname{logsumexp}(s) - s_y, \qquad
        L_\mathrm{group} = -\log \sum_{j \in G} \mathrm{softmax}(s)_j
            = \operatorname{logsumexp}(s) - \operatorname{logsumexp}(s_G),

        L = (1 - w)\,\mathrm{CE} + w\,L_\mathrm{group}, \qquad w \in [0, 1].

    ``group="predicted"`` takes ``G`` = the ``k`` highest-scoring classes
    instead. ``w`` follows ``transition``: "constant" (``weight``), "linear"
    (``weight_start`` to ``weight_end`` over ``transition_steps`` training
    steps) or "adaptive" (``weight_start + (weight_end - weight_start) * a_t``,
    ``a_t`` the running top-k accuracy of the training batches, ties against
    the label). "linear" and "adaptive" need
    ``keras_topk.callbacks.TransitionCallback()`` in ``fit`` (or
    ``loss.advance()`` after each step of a custom loop); the state (``w``,
    steps, running accuracy) is saved with the model. Why a callback, how the
    state is saved, what is our definition rather than the paper's, and NEC's
    patent filings: the [TopKTransitionLoss guide](../transition-loss.md)
    (``docs/transition-loss.md``).

    Args:
        k: group size (the k of the top-k accuracy you train for),
            ``1 <= k < number of classes``.
        transition: "adaptive" (default), "linear" or "constant".
        weight: the fixed ``w`` in ``[0, 1]`` for "constant" (required there,
            must be None otherwise).
        group: "label" (default) or "predicted".
        weight_start: ``w`` at the start of "linear" and "adaptive" (default 0,
            i.e. CE).
        weight_end: ``w`` at the end of "linear", and at 100% running top-k
            accuracy for "adaptive" (default 1).
        transition_steps: number of training steps of the "linear" ramp
            (required there, must be None otherwise); for a ramp over epochs
            use ``epochs * steps_per_epoch``.
        momentum: EMA momentum of the running accuracy for "adaptive", in
            ``[0, 1)``; ``1 / (1 - momentum)`` steps is its time constant.
        reduction: Keras reduction, default "sum_over_batch_size".
        name: optional name; the logs report ``w`` as ``"<name>_weight"``.
        dtype: ignored for the computation (float32, float64 for float64
            scores; half precision is computed in float32).

    Labels are integer class indices of shape ``(batch,)`` or ``(batch, 1)``,
    or one-hot/soft rows of shape ``(batch, n)`` (CE uses the rows, the group
    their argmax). Leading batch axes are allowed.

    Example:

    >>> import numpy as np, keras, keras_topk
    >>> loss = keras_topk.losses.TopKTransitionLoss(k=2, transition="linear", transition_steps=4)
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5)])
    >>> model.compile("sgd", loss=loss)
    >>> x, y = np.ones((8, 3), "float32"), np.arange(8) % 5
    >>> _ = model.fit(x, y, batch_size=4, epochs=1, verbose=0,
    ...               callbacks=[keras_topk.callbacks.TransitionCallback()])
    >>> loss.current_weight
    0.5
    """

    config: TransitionConfig

    def __init__(
        self,
        k: int = 5,
        transition: str = "adaptive",
        weight: float | None = None,
        group: str = "label",
        weight_start: float = 0.0,
        weight_end: float = 1.0,
        transition_steps: int | None = None,
        momentum: float = 0.99,
        reduction: str | None = "sum_over_batch_size",
        name: str = "topk_transition",
        dtype: Any = None,
    ) -> None:
        config = TransitionConfig(
            k, transition, weight, group, weight_start, weight_end, transition_steps, momentum
        )
        super().__init__(config, name=name, reduction=reduction, dtype=dtype)
        initial = self.weight if self.transition == "constant" else self.weight_start
        self.state = TransitionState(initial_weight=initial, name=f"{self.name}_weight")

    @property
    def current_weight(self) -> float:
        """The current ``w`` as a Python float."""
        return float(ops.convert_to_numpy(self.state.weight))

    def call(self, y_true, y_pred):
        weight = self.weight if self.transition == "constant" else self.state.weight
        adaptive = self.transition == "adaptive"
        outputs = per_sample_losses(y_true, y_pred, self.config.at(weight, hits=adaptive))
        if not adaptive or not isinstance(outputs, tuple):  # an empty batch has no accuracy
            return outputs
        losses, hits = outputs
        # A sample with NaN or +inf scores counts as a miss (its hit is 0);
        # masked steps (padding) are no evidence of the model's accuracy.
        hits = ops.reshape(hits, (-1,))
        mask = _backend.get_keras_mask(y_pred)
        counted = (
            ops.ones_like(hits) if mask is None else ops.reshape(ops.cast(mask, hits.dtype), (-1,))
        )
        accuracy = ops.stop_gradient(ops.divide_no_nan(ops.sum(hits * counted), ops.sum(counted)))
        if _backend.may_assign_variables(accuracy):
            self.state.batch_accuracy.assign(ops.cast(accuracy, "float32"))
        return losses

    def schedule_weight(self, steps: int, accuracy: float = 0.0) -> float:
        """``w`` after ``steps`` training steps at running accuracy ``accuracy``."""
        if self.transition == "constant":
            return self.weight
        if self.transition == "linear":
            progress = min(steps / self.transition_steps, 1.0)
        else:
            progress = min(max(accuracy, 0.0), 1.0)
        return self.weight_start + (self.weight_end - self.weight_start) * progress

    def advance(self, steps: int = 1) -> float:
        """Advances the schedule by ``steps`` completed training steps.

        What `TransitionCallback` calls at the end of each training batch; call
        it yourself after each optimizer step in a custom training loop. Runs
        eagerly (outside any compiled function) and returns the new ``w``.
        """
        steps = _config.check_int("steps", steps, minimum=0)
        total = int(ops.convert_to_numpy(self.state.steps)) + steps
        accuracy = float(ops.convert_to_numpy(self.state.accuracy))
        if self.transition == "adaptive" and steps:
            decay = self.momentum**steps
            batch = float(ops.convert_to_numpy(self.state.batch_accuracy))
            accuracy = decay * accuracy + (1.0 - decay) * batch
            self.state.accuracy.assign(accuracy)
        weight = self.schedule_weight(total, accuracy)
        self.state.steps.assign(min(total, np.iinfo(np.int32).max))
        self.state.weight.assign(weight)
        return weight
