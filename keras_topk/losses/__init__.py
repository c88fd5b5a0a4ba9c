"""Keras losses that train for top-k accuracy."""

import warnings
from typing import Any

from keras_topk.losses.lapin import (
    TopKHingeAlpha,
    TopKHingeBeta,
    TruncatedTopKEntropy,
    topk_hinge_alpha,
    topk_hinge_beta,
    truncated_topk_entropy,
)
from keras_topk.losses.noise_state import NoiseState
from keras_topk.losses.smooth_topk_svm import SmoothTopKSVM, smooth_topk_svm
from keras_topk.losses.topk_calibrated_hinge import (
    LongTailTopKHinge,
    NoisedTopKHinge,
    TopKCalibratedHinge,
    ldam_margins,
    long_tail_topk_hinge,
    noised_topk_hinge,
    topk_calibrated_hinge,
)
from keras_topk.losses.topk_cross_entropy import TopKCrossEntropy, topk_cross_entropy
from keras_topk.losses.topk_svm import TopKSVM, topk_svm
from keras_topk.losses.topk_transition import (
    TopKTransitionLoss,
    grouped_cross_entropy,
    topk_transition_loss,
)
from keras_topk.losses.transition_state import TransitionState

__all__ = [
    "LongTailTopKHinge",
    "NoiseState",
    "NoisedTopKHinge",
    "SmoothTopKSVM",
    "TopKCalibratedHinge",
    "TopKHingeAlpha",
    "TopKHingeBeta",
    "TopKCrossEntropy",
    "TopKSVM",
    "TopKTransitionLoss",
    "TransitionState",
    "TruncatedTopKEntropy",
    "grouped_cross_entropy",
    "ldam_margins",
    "long_tail_topk_hinge",
    "noised_topk_hinge",
    "smooth_topk_svm",
    "topk_calibrated_hinge",
    "topk_cross_entropy",
    "topk_hinge_alpha",
    "topk_hinge_beta",
    "topk_svm",
    "topk_transition_loss",
    "truncated_topk_entropy",
]


def __getattr__(name: str) -> Any:
    # `keras_topk.losses.TransitionCallback` (0.1) is served from its home,
    # imported on first use: an import at the top would run up from the losses
    # to the callbacks, which import the losses.
    if name == "TransitionCallback":
        warnings.warn(
            "`keras_topk.losses.TransitionCallback` is deprecated; use "
            "`keras_topk.callbacks.TransitionCallback`.",
            DeprecationWarning,
            stacklevel=2,
        )
        from keras_topk.callbacks import TransitionCallback

        return TransitionCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
