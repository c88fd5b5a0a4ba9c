"""The base class every keras-topk loss derives from."""

import keras
from keras import ops
from keras_topk import _backend
from keras_topk import _inputs


class TopKLoss(keras.losses.Loss):
    """A ``keras.losses.Loss`` that computes in the scores' precision.

    Keras's base class casts ``y_true`` and ``y_pred`` to the loss's dtype
    (float32 by default). Top-k losses differ in two ways: integer labels stay
    integers (they index classes), and float64 scores stay float64 while half
    precision is computed in float32, whatever the loss's dtype. Subclasses
    implement ``call(y_true, y_pred)`` on standardised inputs and return one
    loss per sample; the reduction and ``sample_weight`` are Keras's own.
    """

    def __call__(self, y_true, y_pred, sample_weight=None):
        with keras.name_scope(self.name):
            scores = _inputs.standardize_scores(y_pred)
            losses = self.call(y_true, scores)
            if sample_weight is not None:
                sample_weight = ops.convert_to_tensor(sample_weight, dtype=losses.dtype)
            return _backend.reduce_weighted_values(
                losses,
                sample_weight=sample_weight,
                mask=None,
                reduction=self.reduction,
                dtype=losses.dtype,
            )

    def get_config(self):
        # Keras's Loss leaves `dtype` out of its config; keep it, so that
        # `from_config(get_config())` rebuilds the loss with every argument.
        config = super().get_config()
        config["dtype"] = self._dtype_policy.name
        return config
