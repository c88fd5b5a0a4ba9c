"""The schedule state of `TopKTransitionLoss`: its variables, how they save, whose they are."""

import weakref
from typing import Any

import keras
from keras import ops

from keras_topk._typing import Tensor

__all__ = ["TransitionState"]


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
    jitted train and test steps like any metric state, and the training logs
    report ``w`` under the state's name, ``"<loss name>_weight"``. Only the
    training logs: ``result()`` is ``{name: w}`` while the callback runs
    training steps (``reporting`` True) and ``{}`` otherwise, so that neither
    validation (a ``val_<name>`` key, the same ``w`` again) nor ``evaluate``
    reports it, whether or not a callback has added the state to the metrics
    (after ``keras.models.load_model`` none has); ``loss.current_weight``
    reads it anywhere. ``reset_state`` is a no-op: Keras resets metrics every
    epoch, the schedule must carry on. Keras does not save metric variables,
    so this class saves its own (``save_own_variables``); it is reached
    through ``model.loss``.

    A state belongs to one model: the schedule of one model's training (see
    `claim`).

    Example:

    >>> import keras, keras_topk
    >>> state = keras_topk.losses.TransitionState(initial_weight=0.25)
    >>> float(keras.ops.convert_to_numpy(state.weight)), [v.name for v in state.variables]
    (0.25, ['weight', 'steps', 'accuracy', 'batch_accuracy'])
    >>> state.result()  # outside the training steps of TransitionCallback: no log
    {}
    >>> state.reporting = True
    >>> {name: float(w) for name, w in state.result().items()}
    {'topk_transition_weight': 0.25}
    """

    def __init__(
        self, initial_weight: float = 0.0, name: str = "topk_transition_weight", **kwargs: Any
    ) -> None:
        super().__init__(name=name, **kwargs)
        self._owner: weakref.ref[keras.Model] | None = None
        # Read when the train and test steps are traced (per step on PyTorch):
        # `TransitionCallback` sets it for its training steps only.
        self.reporting = False
        weight = keras.initializers.Constant(float(initial_weight))
        self.weight = self._scalar("weight", "float32", weight)
        self.steps = self._scalar("steps", "int32")
        self.accuracy = self._scalar("accuracy", "float32")
        # The batch's accuracy is the mean over replicas; the schedule itself is
        # computed once, on the first replica's copy.
        self.batch_accuracy = self._scalar("batch_accuracy", "float32", aggregation="mean")

    def _scalar(
        self,
        name: str,
        dtype: str,
        initializer: Any = "zeros",
        aggregation: str = "only_first_replica",
    ) -> keras.Variable:
        return self.add_variable(
            shape=(), initializer=initializer, dtype=dtype, aggregation=aggregation, name=name
        )

    def claim(self, model: keras.Model, loss_name: str) -> None:
        """Binds the state to ``model``; a second live model gets a clear error.

        One schedule cannot follow two trainings: the second model would start
        where the first stopped (e.g. at ``w = 1``).
        """
        owner = self._owner() if self._owner is not None else None
        if owner is not None and owner is not model:
            raise ValueError(
                f"The TopKTransitionLoss `{loss_name}` is already used by the model "
                f"`{owner.name}`: its schedule state (w, steps, running accuracy) belongs "
                f"to one model. Compile `{model.name}` with its own loss instance, e.g. "
                "`TopKTransitionLoss.from_config(loss.get_config())`."
            )
        self._owner = weakref.ref(model)

    def _state_variables(self) -> list[keras.Variable]:
        return [self.weight, self.steps, self.accuracy, self.batch_accuracy]

    def update_state(self, *args: Any, **kwargs: Any) -> None:
        """Does nothing: the loss and `TransitionCallback` advance the schedule, not Keras."""

    def reset_state(self) -> None:
        """Does nothing: Keras resets metrics every epoch, and the schedule must carry on."""

    def result(self) -> dict[str, Tensor]:
        """``{name: w}`` while `reporting` (training steps), else ``{}``: no log entry."""
        if not self.reporting:
            return {}
        # A copy: JAX donates the state buffers to the next step, and logs
        # that alias the variable's buffer would be deleted under the caller.
        return {self.name: ops.copy(ops.convert_to_tensor(self.weight))}

    def save_own_variables(self, store: Any) -> None:
        for i, v in enumerate(self._state_variables()):
            store[f"{i}"] = ops.convert_to_numpy(v)

    def load_own_variables(self, store: Any) -> None:
        variables = self._state_variables()
        if len(store.keys()) != len(variables):
            raise ValueError(
                f"The saved transition state has {len(store.keys())} variables, "
                f"expected {len(variables)} (weight, steps, accuracy, batch_accuracy)."
            )
        for i, v in enumerate(variables):
            v.assign(store[f"{i}"])

    def get_config(self) -> dict[str, Any]:
        return {"initial_weight": float(ops.convert_to_numpy(self.weight)), **super().get_config()}
