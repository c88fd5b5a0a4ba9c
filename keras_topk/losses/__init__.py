"""Keras losses that train for top-k accuracy."""

from keras_topk.losses.smooth_topk_svm import SmoothTopKSVM, TopKSVM, smooth_topk_svm, topk_svm
from keras_topk.losses.topk_cross_entropy import TopKCrossEntropy, topk_cross_entropy
from keras_topk.losses.topk_transition import (
    TopKTransitionLoss,
    TransitionCallback,
    TransitionState,
    grouped_cross_entropy,
    topk_transition_loss,
)
