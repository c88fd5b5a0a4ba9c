"""Keras losses that train for top-k accuracy."""

# The callback lives in keras_topk.callbacks; this name keeps code written for
# 0.1 (`keras_topk.losses.TransitionCallback`) working.
from keras_topk.callbacks import TransitionCallback  # noqa: E402
from keras_topk.losses.smooth_topk_svm import SmoothTopKSVM, smooth_topk_svm
from keras_topk.losses.topk_cross_entropy import TopKCrossEntropy, topk_cross_entropy
from keras_topk.losses.topk_svm import TopKSVM, topk_svm
from keras_topk.losses.topk_transition import (
    TopKTransitionLoss,
    grouped_cross_entropy,
    topk_transition_loss,
)
from keras_topk.losses.transition_state import TransitionState

__all__ = [
    "SmoothTopKSVM",
    "TopKCrossEntropy",
    "TopKSVM",
    "TopKTransitionLoss",
    "TransitionCallback",
    "TransitionState",
    "grouped_cross_entropy",
    "smooth_topk_svm",
    "topk_cross_entropy",
    "topk_svm",
    "topk_transition_loss",
]
