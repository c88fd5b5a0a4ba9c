"""keras-topk: losses and metrics that train Keras classifiers for top-k accuracy."""

__version__ = "0.1.0"

from keras_topk import (  # noqa: E402,F401
    callbacks,
    conformal,
    export,  # noqa: E402,F401  (imports TensorFlow only when called)
    layers,
    losses,
    metrics,
    ops,
)

__all__ = ["__version__", "callbacks", "conformal", "export", "layers", "losses", "metrics", "ops"]
