"""Grouped top-k cross-entropy with a transition from CE (Sawada et al., 2020).

The mathematics are pure functions (`grouped_cross_entropy`,
`topk_transition_loss`); `TopKTransitionLoss` holds the configuration and the
schedule of the mixing weight, whose state lives in `TransitionState` and is
advanced by `TransitionCallback` at the end of every training step.
"""

import keras
import numpy as np
from keras import ops

from keras_topk import _backend
from keras_topk import _config
from keras_topk import _inputs
from keras_topk.losses._base import TopKLoss
from keras_topk.ops.ranking import label_rank_2d

TRANSITIONS = ("constant", "linear", "adaptive")
GROUPS = ("label", "predicted")


# --------------------------------------------------------------------------- #
# Validation
# --------------------------------------------------------------------------- #


def _check_weight(name, value):
    if value is None:
        raise ValueError(f"`{name}` must be a number in [0, 1], got None.")
    return _config.check_float(name, value, minimum=0.0, maximum=1.0)


def check_transition_args(
    k, transition, weight, group, weight_start, weight_end, transition_steps, momentum
):
    """Validates the configuration of `TopKTransitionLoss`; returns it normalised."""
    k = _config.check_int("k", k, minimum=1)
    transition = _config.check_choice("transition", transition, TRANSITIONS)
    group = _config.check_choice("group", group, GROUPS)
    weight_start = _check_weight("weight_start", weight_start)
    weight_end = _check_weight("weight_end", weight_end)
    momentum = _config.check_float("momentum", momentum, minimum=0.0, maximum=1.0)
    if momentum == 1.0:
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
        if transition_steps is None:
            raise ValueError(
                "transition='linear' needs `transition_steps`, the number of training "
                "steps over which w moves from `weight_start` to `weight_end` (e.g. "
                "epochs * steps_per_epoch)."
            )
        transition_steps = _config.check_int("transition_steps", transition_steps, minimum=1)
    elif transition_steps is not None:
        raise ValueError(
            f"`transition_steps`={transition_steps!r} is only used by transition='linear'; "
            f"drop it for transition={transition!r}."
        )
    return k, transition, weight, group, weight_start, weight_end, transition_steps, momentum


def _check_call_weight(weight):
    # Tensors and variables are the caller's business (they may be traced);
    # Python numbers can be checked now.
    if weight is None or isinstance(weight, (bool, str)):
        raise ValueError(f"`weight` must be a number in [0, 1] or a scalar tensor, got {weight!r}.")
    if isinstance(weight, (int, float, np.integer, np.floating)):
        return _check_weight("weight", weight)
    return weight


def _prepare(y_true, y_pred, k, group):
    k = _config.check_int("k", k, minimum=1)
    group = _config.check_choice("group", group, GROUPS)
    scores = _inputs.standardize_scores(y_pred)
    _config.check_k_fits_classes("k", k, _inputs.num_classes_of(scores), strict=True)
    labels, dense = _inputs.standardize_labels(y_true, scores)
    flat_scores, flat_labels = _inputs.flatten_batch(scores, labels, dense)
    return scores, flat_scores, flat_labels, dense, k, group


# --------------------------------------------------------------------------- #
# The mathematics, on (b, n) scores
# --------------------------------------------------------------------------- #


def _label_index(labels, dense):
    if dense:
        return ops.cast(ops.argmax(labels, axis=-1), "int32")
    return labels


def _cross_entropy_2d(s, labels, dense, lse):
    if dense:
        return -ops.sum(labels * ops.log_softmax(s, axis=-1), axis=-1)
    return lse - ops.take_along_axis(s, labels[:, None], axis=1)[:, 0]


def _grouped_cross_entropy_2d(s, y, k, group, lse):
    """L_group for scores (b, n) and class indices y (b,)."""
    n = int(s.shape[-1])
    true_score = ops.take_along_axis(s, y[:, None], axis=1)[:, 0]
    if k == 1:
        # Both groups are {y} when the label is the top class, and plain CE
        # otherwise: L_group is cross-entropy either way.
        return lse - true_score
    # The choice of the group is "temporal": made from the current scores,
    # with no gradient through it. The gradient reaches the scores only
    # through the two logsumexps.
    chooser = ops.stop_gradient(s)
    if group == "label":
        is_label = ops.one_hot(y, n, dtype="bool")
        lowest = ops.convert_to_tensor(
            np.finfo(keras.backend.standardize_dtype(s.dtype)).min, dtype=s.dtype
        )
        _, others = ops.top_k(ops.where(is_label, lowest, chooser), k - 1)
        members = ops.concatenate([y[:, None], ops.cast(others, "int32")], axis=1)
        return lse - ops.logsumexp(ops.take_along_axis(s, members, axis=1), axis=-1)
    _, members = ops.top_k(chooser, k)
    members = ops.cast(members, "int32")
    label_in_group = ops.any(ops.equal(members, y[:, None]), axis=-1)
    grouped = lse - ops.logsumexp(ops.take_along_axis(s, members, axis=1), axis=-1)
    return ops.where(label_in_group, grouped, lse - true_score)


def _transition_2d(s, labels, dense, k, weight, group):
    # A masked class (-inf) would make the dense CE term 0 * -inf = NaN.
    s = _inputs.floor_masked_scores(s)
    lse = ops.logsumexp(s, axis=-1)
    y = _label_index(labels, dense)
    cross_entropy = _cross_entropy_2d(s, labels, dense, lse)
    grouped = _grouped_cross_entropy_2d(s, y, k, group, lse)
    if isinstance(weight, (int, float)):
        # Straight to the scores' dtype: via float32 a float64 loss would see 0.7 as 0.69999999.
        w = ops.convert_to_tensor(weight, dtype=s.dtype)
    else:
        w = ops.cast(weight, s.dtype)
    return (1.0 - w) * cross_entropy + w * grouped


def _topk_hits(s, labels, dense, k):
    """1.0 where fewer than k other classes score at least as high as the label.

    The tie rule of ``keras_topk.metrics.TopKAccuracy``: ties count against the
    label, so a model with constant scores (e.g. a zero-initialised head) is at
    0 and does not jump the adaptive schedule towards the grouped loss.
    """
    y = _label_index(labels, dense)
    return ops.cast(ops.less(label_rank_2d(s, y), k), "float32")


# --------------------------------------------------------------------------- #
# Public functions
# --------------------------------------------------------------------------- #


def grouped_cross_entropy(y_true, y_pred, k, group="label"):
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
    """
    scores, s, labels, dense, k, group = _prepare(y_true, y_pred, k, group)
    y = _label_index(labels, dense)
    losses = _grouped_cross_entropy_2d(s, y, k, group, ops.logsumexp(s, axis=-1))
    return _inputs.unflatten_batch(losses, scores)


def topk_transition_loss(y_true, y_pred, k, weight, group="label"):
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
    >>> bool(grouped[0] < ce[0])
    True
    """
    weight = _check_call_weight(weight)
    scores, s, labels, dense, k, group = _prepare(y_true, y_pred, k, group)
    return _inputs.unflatten_batch(_transition_2d(s, labels, dense, k, weight, group), scores)


# --------------------------------------------------------------------------- #
# Schedule state
# --------------------------------------------------------------------------- #


class TransitionState(keras.metrics.Metric):
    """The schedule state of a `TopKTransitionLoss`: four non-trainable variables.

    - ``weight``: the current mixing weight ``w`` (float32), read by the loss
      inside the train step;
    - ``steps``: training steps completed so far (int32);
    - ``accuracy``: running (EMA) top-k accuracy of the training batches;
    - ``batch_accuracy``: top-k accuracy of the last batch the loss saw,
      written by the loss, consumed by `TransitionCallback` (adaptive only).

    It is a ``keras.metrics.Metric`` so that `TransitionCallback` can put it
    among the model's metrics: JAX then passes the variables in and out of the
    jitted train step like any metric state, and the logs report ``w`` under
    the name ``"<loss name>_weight"``. ``reset_state`` is a no-op: Keras
    resets metrics every epoch, the schedule must carry on. Keras does not
    save metric variables, so this class saves its own
    (``save_own_variables``); it is reached through ``model.loss``.
    """

    def __init__(self, initial_weight=0.0, name="topk_transition_weight", **kwargs):
        super().__init__(name=name, **kwargs)
        self.weight = self.add_variable(
            shape=(),
            initializer=keras.initializers.Constant(float(initial_weight)),
            dtype="float32",
            aggregation="only_first_replica",
            name="weight",
        )
        self.steps = self.add_variable(
            shape=(), initializer="zeros", dtype="int32",
            aggregation="only_first_replica", name="steps",
        )
        self.accuracy = self.add_variable(
            shape=(), initializer="zeros", dtype="float32",
            aggregation="only_first_replica", name="accuracy",
        )
        self.batch_accuracy = self.add_variable(
            shape=(), initializer="zeros", dtype="float32",
            aggregation="mean", name="batch_accuracy",
        )

    def _state_variables(self):
        return [self.weight, self.steps, self.accuracy, self.batch_accuracy]

    def update_state(self, *args, **kwargs):
        # Updated by TopKTransitionLoss and TransitionCallback, not by Keras.
        pass

    def reset_state(self):
        pass

    def result(self):
        # A copy: JAX donates the state buffers to the next step, and logs
        # that alias the variable's buffer would be deleted under the caller.
        return ops.copy(ops.convert_to_tensor(self.weight))

    def save_own_variables(self, store):
        for i, v in enumerate(self._state_variables()):
            store[f"{i}"] = ops.convert_to_numpy(v)

    def load_own_variables(self, store):
        variables = self._state_variables()
        if len(store.keys()) != len(variables):
            raise ValueError(
                f"The saved transition state has {len(store.keys())} variables, "
                f"expected {len(variables)} (weight, steps, accuracy, batch_accuracy)."
            )
        for i, v in enumerate(variables):
            v.assign(store[f"{i}"])

    def get_config(self):
        return {"initial_weight": float(ops.convert_to_numpy(self.weight)), **super().get_config()}


# --------------------------------------------------------------------------- #
# The loss
# --------------------------------------------------------------------------- #


@keras.saving.register_keras_serializable(package="keras_topk")
class TopKTransitionLoss(TopKLoss):
    r"""Grouped top-k cross-entropy with a transition from CE (Sawada et al., 2020).

    Cross-entropy (CE) pushes the label above *every* other class. For top-k
    accuracy it is enough that at most ``k - 1`` classes stay above it, so the
    grouped loss treats the label and its ``k - 1`` strongest rivals as one
    class, chosen afresh from the current scores at each step ("temporal"
    top-k classes); only classes ranked k-th and below are pushed under the
    group. Training starts as CE and moves to the grouped loss:

    .. math::

        \mathrm{CE} = \operatorname{logsumexp}(s) - s_y, \qquad
        L_\mathrm{group} = -\log \sum_{j \in G} \mathrm{softmax}(s)_j
            = \operatorname{logsumexp}(s) - \operatorname{logsumexp}(s_G),

        L = (1 - w)\,\mathrm{CE} + w\,L_\mathrm{group}, \qquad w \in [0, 1].

    **The group.** ``group="label"`` (the default, our definition): ``G`` is
    the label ``y`` with the ``k - 1`` highest-scoring other classes.
    ``group="predicted"`` (the reading of NEC's patent filings, see below):
    ``G`` is the ``k`` highest-scoring classes, and ``L_group`` is plain CE
    when ``y`` is not among them. The two agree whenever ``y`` is in the top
    k; they differ on the missed samples, where "label" still only asks ``y``
    to overtake the k-th class and "predicted" asks for CE. The choice of
    ``G`` carries no gradient: ``dL_group/ds = softmax(s) - softmax_G(s)``,
    with ``softmax_G`` the softmax restricted to ``G`` (zero outside).
    ``k = 1`` and ``w = 0`` are exactly CE (for integer or one-hot labels).

    **The schedule of w** (``transition``):

    - ``"constant"``: ``w = weight``.
    - ``"linear"``: after ``t`` training steps,
      ``w = weight_start + (weight_end - weight_start) * min(t / transition_steps, 1)``.
    - ``"adaptive"`` (default): ``w`` follows the running top-k accuracy of the
      training batches, ``a_t = momentum * a_{t-1} + (1 - momentum) * acc_t``
      with ``a_0 = 0`` (no bias correction, so training starts at
      ``weight_start``), and ``w = weight_start + (weight_end - weight_start) * a_t``.
      ``acc_t`` is the fraction of the batch whose label is among the top k
      scores, with ``keras_topk.metrics.TopKAccuracy``'s tie rule (ties count
      against the label), computed by the loss with no gradient.

    **How the schedule advances: `TransitionCallback`.** ``"linear"`` and
    ``"adaptive"`` need ``keras_topk.losses.TransitionCallback()`` in
    ``model.fit(callbacks=...)``; without it ``w`` stays at ``weight_start``.
    The loss itself never updates the schedule, because it cannot tell a
    training step from an evaluation step (``model.evaluate`` and validation
    call it too) and because, under JAX, a loss cannot assign variables inside
    the jitted train step unless the trainer passes them in as state. The
    callback (1) adds this loss's `TransitionState` to the model's metrics,
    so that JAX threads its variables through the jitted step like any metric
    state (the loss reads ``w`` and records the batch accuracy there), and
    (2) after every training step computes the new ``w`` on the host and
    assigns it. This works the same on TensorFlow (eager, ``tf.function``,
    ``jit_compile=True``), JAX and PyTorch; evaluation never moves ``w``. With
    ``steps_per_execution = n`` the callback runs every ``n`` steps and
    advances the schedule by ``n`` steps at once (``momentum ** n`` for the
    running accuracy). In a custom training loop call ``loss.advance()`` after
    each optimizer step.

    **Saving.** The state (``w``, steps, running accuracy) lives in the
    non-trainable variables of ``loss.state``, a `TransitionState`. Keras 3
    saves a ``.keras`` file by walking the model's attributes: ``model.loss``
    is this loss and ``loss.state`` saves its own variables, so
    ``model.save("x.keras")`` stores them next to the weights (under
    ``loss/state``) and ``keras.models.load_model`` (after
    ``import keras_topk``, no ``custom_objects``) rebuilds the loss from its
    config during ``compile_from_config`` and then restores the variables:
    resumed training continues the transition where it stopped. Keras does
    not save a plain loss's or metric's variables; this state is the
    exception because it saves itself. ``model.save_weights`` stores it too.

    **What is ours.** The paper (Sawada, Kaneko, Sagi, "Trade-offs in Top-k
    Classification Accuracies on Losses for Deep Learning", arXiv 2007.15359)
    describes the loss as CE modified by grouping temporal top-k classes as a
    single class, with an adaptive transition from CE; it gives no code. The
    exact group (``group="label"``), the mixture ``(1 - w) CE + w L_group``,
    and the three schedules above (in particular ``w`` = EMA of the batch
    top-k accuracy) are our definitions, not the paper's.

    **Patents.** The method is the subject of patent filings by NEC (the
    authors' employer): JP7287490B2, WO2021090518A1, US20220405534A1, whose
    abstract speaks of "a grouped class formed by k classes within top k
    predicted probabilities" (``group="predicted"``). Check their status for
    your use.

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
    ...               callbacks=[keras_topk.losses.TransitionCallback()])
    >>> loss.current_weight
    0.5
    """

    def __init__(
        self,
        k=5,
        transition="adaptive",
        weight=None,
        group="label",
        weight_start=0.0,
        weight_end=1.0,
        transition_steps=None,
        momentum=0.99,
        reduction="sum_over_batch_size",
        name="topk_transition",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        (
            self.k,
            self.transition,
            self.weight,
            self.group,
            self.weight_start,
            self.weight_end,
            self.transition_steps,
            self.momentum,
        ) = check_transition_args(
            k, transition, weight, group, weight_start, weight_end, transition_steps, momentum
        )
        initial = self.weight if self.transition == "constant" else self.weight_start
        self.state = TransitionState(initial_weight=initial, name=f"{self.name}_weight")

    @property
    def current_weight(self):
        """The current ``w`` as a Python float."""
        return float(ops.convert_to_numpy(self.state.weight))

    def call(self, y_true, y_pred):
        scores, s, labels, dense, k, group = _prepare(y_true, y_pred, self.k, self.group)
        if self.transition == "constant":
            weight = self.weight
        else:
            weight = self.state.weight
        losses = _transition_2d(s, labels, dense, k, weight, group)
        # An empty batch has no accuracy (its mean would be a NaN in the state).
        if self.transition == "adaptive" and s.shape[0] != 0:
            hits = _topk_hits(s, labels, dense, k)
            accuracy = ops.stop_gradient(
                ops.divide_no_nan(ops.sum(hits), ops.cast(ops.shape(hits)[0], hits.dtype))
            )
            if _backend.may_assign_variables(accuracy):
                self.state.batch_accuracy.assign(accuracy)
        return _inputs.unflatten_batch(losses, scores)

    def schedule_weight(self, steps, accuracy=0.0):
        """``w`` after ``steps`` training steps at running accuracy ``accuracy``."""
        if self.transition == "constant":
            return self.weight
        if self.transition == "linear":
            progress = min(steps / self.transition_steps, 1.0)
        else:
            progress = min(max(accuracy, 0.0), 1.0)
        return self.weight_start + (self.weight_end - self.weight_start) * progress

    def advance(self, steps=1):
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

    def get_config(self):
        config = super().get_config()
        config.update(
            k=self.k,
            transition=self.transition,
            weight=self.weight,
            group=self.group,
            weight_start=self.weight_start,
            weight_end=self.weight_end,
            transition_steps=self.transition_steps,
            momentum=self.momentum,
        )
        return config


# --------------------------------------------------------------------------- #
# The callback
# --------------------------------------------------------------------------- #


def _find_transition_losses(loss):
    if loss is None:
        return []
    if isinstance(loss, TopKTransitionLoss):
        return [loss]
    if isinstance(loss, dict):
        loss = list(loss.values())
    if isinstance(loss, (list, tuple)):
        return [l for item in loss for l in _find_transition_losses(item)]
    return []


class TransitionCallback(keras.callbacks.Callback):
    """Advances the schedule of `TopKTransitionLoss` during ``model.fit``.

    Pass it to ``fit`` whenever a loss uses ``transition="linear"`` or
    ``"adaptive"``. It finds every `TopKTransitionLoss` in ``model.loss``
    (single, list or dict of losses), or takes the ones given, adds their
    `TransitionState` to the model's metrics (so JAX passes the state through
    the jitted train step, and the logs report ``w``), and after each training
    batch advances the schedule by the number of steps just run. See
    `TopKTransitionLoss` for why this is a callback.

    On JAX this syncs the model state to the host after every batch (as any
    callback that reads the model per batch does).

    Args:
        losses: a `TopKTransitionLoss` or a list of them; default: those in
            ``model.loss``.

    Example:

    >>> import keras_topk
    >>> callback = keras_topk.losses.TransitionCallback()
    >>> # model.fit(x, y, callbacks=[callback])
    """

    def __init__(self, losses=None):
        super().__init__()
        if losses is not None:
            losses = _find_transition_losses(losses if isinstance(losses, (list, tuple)) else [losses])
            if not losses:
                raise ValueError(
                    "`losses` must be a TopKTransitionLoss or a list of them; got none."
                )
        self._given = losses
        self._losses = []
        self._begin = None

    def set_model(self, model):
        super().set_model(model)
        losses = self._given or _find_transition_losses(getattr(model, "loss", None))
        if not losses:
            raise ValueError(
                "TransitionCallback found no TopKTransitionLoss in `model.loss`: compile "
                "the model with one, or pass it as TransitionCallback(losses=loss)."
            )
        self._losses = losses
        # Metric state is what JAX's trainer threads through the jitted step.
        metrics = model._metrics
        added = False
        for loss in losses:
            if not any(m is loss.state for m in metrics):
                metrics.append(loss.state)
                added = True
        if added:
            # Functions traced before the state joined the metrics would leave
            # `w` out of the logs; fit/evaluate rebuild them after `set_model`.
            for attr in ("train_function", "test_function"):
                if getattr(model, attr, None) is not None:
                    setattr(model, attr, None)

    def on_train_batch_begin(self, batch, logs=None):
        self._begin = batch

    def on_train_batch_end(self, batch, logs=None):
        steps = 1 if self._begin is None else max(batch - self._begin + 1, 1)
        self._begin = None
        self.model  # noqa: B018  (on JAX, syncs the step's state back to the variables)
        for loss in self._losses:
            loss.advance(steps)
