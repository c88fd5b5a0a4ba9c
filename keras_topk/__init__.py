"""keras-topk: losses and metrics that train Keras classifiers for top-k accuracy."""

__version__ = "0.1.0"

from keras_topk import callbacks, losses, metrics, ops  # noqa: E402,F401
from keras_topk import export  # noqa: E402,F401  (imports TensorFlow only when called)

__all__ = ["__version__", "callbacks", "export", "losses", "metrics", "ops"]
