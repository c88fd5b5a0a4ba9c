"""Layers: `NormalizedDense`, the cosine-similarity last layer of the long-tail hinge's setting."""

from typing import Any

import keras
from keras import ops

from keras_topk._typing import Tensor

__all__ = ["NormalizedDense"]


@keras.saving.register_keras_serializable(package="keras_topk")
class NormalizedDense(keras.layers.Layer):
    r"""A dense layer of cosine similarities: features and weight columns L2-normalised.

    .. math::

        s_c = \frac{x^\top w_c}{\lVert x \rVert\, \lVert w_c \rVert} \in [-1, 1]

    No bias. The last layer of the long-tail setting of Garcin et al. (ICML
    2022) and of LDAM (Cao et al., 2019): the scores are cosines, and the
    loss's ``scale`` (e.g. `keras_topk.losses.LongTailTopKHinge`'s 30 to 60)
    acts as their inverse temperature. A zero feature vector or weight column
    gives scores of 0 (the norms are floored at ``epsilon``).

    Args:
        units: the number of classes.
        kernel_initializer: initializer of the ``(features, units)`` kernel,
            default "glorot_uniform".
        epsilon: the floor of the norms, default 1e-12.
        **kwargs: Keras layer arguments (``name``, ``dtype``, ...).

    Example:

    >>> import numpy as np, keras, keras_topk
    >>> layer = keras_topk.layers.NormalizedDense(2, kernel_initializer="identity")
    >>> np.round(keras.ops.convert_to_numpy(layer(np.array([[3.0, 4.0]], "float32"))), 4).tolist()
    [[0.6, 0.8]]
    """

    def __init__(
        self,
        units: int,
        kernel_initializer: Any = "glorot_uniform",
        epsilon: float = 1e-12,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"`units` must be a positive integer, got {units!r}.")
        if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or not epsilon > 0:
            raise ValueError(f"`epsilon` must be a positive number, got {epsilon!r}.")
        self.units = units
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.epsilon = float(epsilon)

    def build(self, input_shape: Any) -> None:
        features = input_shape[-1]
        if features is None:
            raise ValueError("NormalizedDense needs the last axis of its input to be known.")
        self.kernel = self.add_weight(
            shape=(int(features), self.units), initializer=self.kernel_initializer, name="kernel"
        )

    def call(self, inputs: Tensor) -> Tensor:
        # Normalised in float32 at least: half precision squares overflow/underflow.
        dtype = "float64" if self.compute_dtype == "float64" else "float32"
        x32, k32 = ops.cast(inputs, dtype), ops.cast(self.kernel, dtype)
        x32 = x32 / ops.maximum(ops.norm(x32, axis=-1, keepdims=True), self.epsilon)
        k32 = k32 / ops.maximum(ops.norm(k32, axis=0, keepdims=True), self.epsilon)
        return ops.cast(ops.matmul(x32, k32), self.compute_dtype)

    def compute_output_shape(self, input_shape: Any) -> tuple[int | None, ...]:
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            units=self.units,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            epsilon=self.epsilon,
        )
        return config
