"""Callbacks: `TransitionCallback` advances the schedule of `TopKTransitionLoss`; `NoiseCallback`
threads the random stream of the noised hinges through the compiled training step."""

from typing import Any

import keras

from keras_topk import _backend
from keras_topk.losses import noise_state, topk_transition

__all__ = ["NoiseCallback", "TransitionCallback"]


def _find_transition_losses(
    loss: Any, path: str = ""
) -> list[tuple[str, topk_transition.TopKTransitionLoss]]:
    """``[(path, loss)]`` for every `TopKTransitionLoss` in a compiled loss structure."""
    if loss is None:
        return []
    if isinstance(loss, topk_transition.TopKTransitionLoss):
        return [(path, loss)]
    if isinstance(loss, dict):
        items = [(str(key), item) for key, item in loss.items()]
    elif isinstance(loss, (list, tuple)):
        items = [(str(i), item) for i, item in enumerate(loss)]
    else:
        return []
    return [found for key, item in items for found in _find_transition_losses(item, key)]


class TransitionCallback(keras.callbacks.Callback):
    """Advances the schedule of `TopKTransitionLoss` during ``model.fit``.

    Pass it to ``fit`` whenever a loss uses ``transition="linear"`` or
    ``"adaptive"``. It finds every `TopKTransitionLoss` in ``model.loss``
    (single, list or dict of losses), or takes the ones given, adds their
    `TransitionState` to the model's metrics (so JAX passes the state through
    the jitted train step, and the logs report ``w``), and after each training
    batch advances the schedule by the number of steps just run. See
    `TopKTransitionLoss` for why this is a callback.

    ``w`` is logged by the training steps only (in ``fit``'s History and
    progress bar): validation and ``evaluate`` do not report it (it is the
    same ``w``, not a validation quantity), with or without this callback,
    before or after ``keras.models.load_model``.

    Each loss logs ``w`` as ``"<loss name>_weight"``; when two transition
    losses in one model share a name (e.g. two default-named losses on two
    outputs), their keys get the output's name in front, so that neither
    hides the other. A loss instance belongs to one model: compiling it into a
    second one and fitting that with this callback raises ``ValueError``.

    On JAX this syncs the model state to the host after every batch (as any
    callback that reads the model per batch does).

    Args:
        losses: a `TopKTransitionLoss` or a list of them; default: those in
            ``model.loss``.

    Example:

    Two outputs, each with a default-named transition loss, log two keys:

    >>> import numpy as np, keras, keras_topk
    >>> inputs = keras.Input((3,))
    >>> heads = {name: keras.layers.Dense(5, name=name)(inputs) for name in ("a", "b")}
    >>> model = keras.Model(inputs, heads)
    >>> schedule = dict(k=2, transition="linear")
    >>> model.compile("sgd", loss={"a": keras_topk.losses.TopKTransitionLoss(**schedule, transition_steps=2),
    ...                            "b": keras_topk.losses.TopKTransitionLoss(**schedule, transition_steps=8)})
    >>> x, y = np.ones((8, 3), "float32"), np.arange(8) % 5
    >>> logs = model.fit(x, {"a": y, "b": y}, batch_size=4, verbose=0,
    ...                  callbacks=[keras_topk.callbacks.TransitionCallback()]).history
    >>> logs["a_topk_transition_weight"], logs["b_topk_transition_weight"]
    ([1.0], [0.25])
    """

    def __init__(self, losses: Any = None) -> None:
        super().__init__()
        if losses is not None:
            losses = [
                l
                for _, l in _find_transition_losses(
                    losses if isinstance(losses, (list, tuple)) else [losses]
                )
            ]
            if not losses:
                raise ValueError(
                    "`losses` must be a TopKTransitionLoss or a list of them; got none."
                )
        self._given = losses
        self._losses: list[Any] = []
        self._begin: int | None = None
        self._training = False

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        found = _find_transition_losses(getattr(model, "loss", None))
        if self._given:
            paths = {id(l): p for p, l in found}
            found = [(paths.get(id(l), str(i)), l) for i, l in enumerate(self._given)]
        if not found:
            raise ValueError(
                "TransitionCallback found no TopKTransitionLoss in `model.loss`: compile "
                "the model with one, or pass it as TransitionCallback(losses=loss)."
            )
        for _, loss in found:
            loss.state.claim(model, loss.name)
        self._name_states(found, model)
        self._losses = [loss for _, loss in found]
        _backend.add_model_metrics(model, [loss.state for loss in self._losses])

    @staticmethod
    def _name_states(
        found: list[tuple[str, topk_transition.TopKTransitionLoss]], model: keras.Model
    ) -> None:
        """Log keys ``"<loss name>_weight"``, prefixed by the output where names collide."""
        names = [loss.name for _, loss in found]
        output_names = list(getattr(model, "output_names", None) or [])
        for path, loss in found:
            key = f"{loss.name}_weight"
            if names.count(loss.name) > 1:
                prefix = path
                if path.isdigit() and int(path) < len(output_names):
                    prefix = output_names[int(path)]
                key = f"{prefix}_{key}"
            loss.state.name = key

    def _report(self, reporting: bool) -> None:
        for loss in self._losses:
            loss.state.reporting = reporting

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._training = True
        self._report(True)

    def on_train_end(self, logs: dict | None = None) -> None:
        self._training = False
        self._report(False)

    def on_test_begin(self, logs: dict | None = None) -> None:
        # Validation inside fit, or evaluate given this callback.
        self._report(False)

    def on_test_end(self, logs: dict | None = None) -> None:
        self._report(self._training)

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._begin = batch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        steps = 1 if self._begin is None else max(batch - self._begin + 1, 1)
        self._begin = None
        self.model  # noqa: B018  (on JAX, syncs the step's state back to the variables)
        for loss in self._losses:
            loss.advance(steps)


class NoiseCallback(keras.callbacks.Callback):
    """Puts the random stream of every noised loss among the model's metrics.

    Pass it to ``fit`` with `NoisedTopKHinge` or `LongTailTopKHinge` (with
    ``epsilon > 0``): the loss's `NoiseState` then travels through the
    compiled train step like any metric state, so that the noise changes at
    every step and is reproducible from the loss's ``seed`` on TensorFlow,
    JAX and PyTorch, with or without ``jit_compile``. Without it, JAX raises
    a ``ValueError`` naming this callback when the step is traced;
    TensorFlow and PyTorch assign the loss's variable directly and need it
    only for uniformity.

    Args:
        losses: a noised loss or a list of them; default: those in ``model.loss``.

    Example:

    >>> import numpy as np, keras, keras_topk
    >>> loss = keras_topk.losses.NoisedTopKHinge(k=2, seed=3)
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5)])
    >>> model.compile("sgd", loss=loss)
    >>> x, y = np.ones((8, 3), "float32"), np.arange(8) % 5
    >>> _ = model.fit(x, y, batch_size=4, verbose=0, callbacks=[keras_topk.callbacks.NoiseCallback()])
    >>> int(keras.ops.convert_to_numpy(loss.noise_state.seed_state)[1])  # one draw per step
    2
    """

    def __init__(self, losses: Any = None) -> None:
        super().__init__()
        if losses is not None:
            losses = noise_state.find_noised_losses(
                losses if isinstance(losses, (list, tuple)) else [losses]
            )
            if not losses:
                raise ValueError(
                    "`losses` must be a noised top-k loss (NoisedTopKHinge, LongTailTopKHinge) "
                    "or a list of them; got none."
                )
        self._given = losses

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        losses = self._given or noise_state.find_noised_losses(getattr(model, "loss", None))
        if not losses:
            raise ValueError(
                "NoiseCallback found no noised top-k loss in `model.loss`: compile the model "
                "with one, or pass it as NoiseCallback(losses=loss)."
            )
        _backend.add_model_metrics(model, [loss.noise_state for loss in losses])
