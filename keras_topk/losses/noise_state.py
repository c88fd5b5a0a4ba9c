"""The random stream of the noised top-k hinges, and how it reaches a compiled training step.

A noised loss draws fresh Gaussian noise at every step. Under JAX the jitted
train step only sees the variables the trainer passes in and out (the
model's weights, the optimizer's, the metrics'); a loss's own random state
would be read once, at trace time, and every step would draw the same noise
(keras-team/keras#18426). So the stream lives in a `NoiseState`, a metric-like
object holding a ``SeedGenerator``'s state, and `keras_topk.callbacks.NoiseCallback` puts it among
the model's metrics, which every backend's trainer threads through its step.
Under JAX a noised loss whose state is not threaded raises ``ValueError``
when the step is traced, rather than train on frozen noise.
"""

import random
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_topk import _backend
from keras_topk._typing import Tensor

__all__ = ["NoiseState"]


class NoiseState(keras.metrics.Metric):
    """The random stream of a noised loss: a ``SeedGenerator`` whose state the trainer threads.

    ``generator`` is a ``keras.random.SeedGenerator`` whose state is this
    metric's variable ``seed_state`` (``[hash of seed, draws]``): every draw reads it
    and advances it. As a metric among ``model.metrics`` (see `NoiseCallback`)
    the variable is passed in and out of the compiled step on every backend,
    so the noise changes at every step and two runs from the same seed draw
    the same noise. It logs nothing (``result`` is an empty dict), Keras's
    per-epoch ``reset_state`` leaves it alone (the stream carries on), and it
    saves its own variable, so resumed training continues the stream.

    Example:

    >>> import keras, keras_topk
    >>> state = keras_topk.losses.NoiseState(seed=7)
    >>> int(keras.ops.convert_to_numpy(state.seed_state)[1])  # draws so far
    0
    """

    def __init__(self, seed: int | None = None, name: str = "noise_state", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.seed = seed
        # PyTorch's Keras backend seeds each draw with the sum of the state's two
        # entries, so the streams of seeds s and s + 1 would be one draw apart:
        # a multiplicative hash spreads neighbouring seeds over the 31-bit range.
        # Unseeded, the draw is Keras's own (`python random`, which
        # `keras.utils.set_random_seed` seeds).
        spread = (
            random.randint(1, 10**9) if seed is None else (int(seed) * 2654435761) % (2**31 - 1)
        )
        self.generator = keras.random.SeedGenerator(spread)
        # A SeedGenerator's state starts at [seed, 0]. Written out rather than
        # read back from the generator, so that a loss built inside a traced
        # function (jax.jit) needs no concrete value.
        initial = np.array([spread, 0])
        # A variable of the metric (so that trainers thread it), which the
        # generator then uses as its state. "only_first_replica": replicas may
        # update it inside a replica context (TensorFlow's strategies).
        self.seed_state = self.add_variable(
            shape=(2,),
            initializer=keras.initializers.Constant(initial),
            dtype=keras.backend.standardize_dtype(self.generator.state.dtype),
            aggregation="only_first_replica",
            name="seed_state",
        )
        self.generator.state = self.seed_state

    def update_state(self, *args: Any, **kwargs: Any) -> None:
        """Does nothing: the loss advances the stream as it draws."""

    def reset_state(self) -> None:
        """Does nothing: Keras resets metrics every epoch, and the stream must carry on."""

    def result(self) -> dict:
        return {}

    def threaded(self, probe: Tensor) -> bool:
        """Whether a draw here reaches the next step (False only in an unthreaded JAX step)."""
        return _backend.variable_is_threaded(self.seed_state, probe)

    def get_config(self) -> dict:
        return {"seed": self.seed, **super().get_config()}

    def save_own_variables(self, store: Any) -> None:
        store["0"] = ops.convert_to_numpy(self.seed_state)

    def load_own_variables(self, store: Any) -> None:
        self.seed_state.assign(store["0"])


def find_noised_losses(loss: Any) -> list:
    """Every loss with a `NoiseState` in a loss, or a list or dict of losses."""
    if loss is None:
        return []
    if isinstance(getattr(loss, "noise_state", None), NoiseState):
        return [loss]
    if isinstance(loss, dict):
        items = list(loss.values())
    elif isinstance(loss, (list, tuple)):
        items = list(loss)
    else:
        return []
    return [found for item in items for found in find_noised_losses(item)]
