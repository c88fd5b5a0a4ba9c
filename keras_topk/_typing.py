"""Type aliases shared by keras-topk's annotations.

Keras 3 ships no tensor type: a backend op takes and returns a
``tf.Tensor``, a ``jax.Array``, a ``torch.Tensor`` or a NumPy array depending
on the backend, and a symbolic ``KerasTensor`` while a model is built. None
of these is a subtype of another, so the alias is ``Any``: it documents
which arguments are tensors without claiming a type that one backend would
contradict.
"""

from typing import Any

__all__ = ["Tensor"]

Tensor = Any
"""A backend tensor (or anything ``keras.ops.convert_to_tensor`` accepts)."""
