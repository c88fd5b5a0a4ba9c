"""Differentiable primitives: sorting networks, relaxations, relaxed top-k, symmetric polynomials."""

from keras_topk.ops.lapsum import lapsum_topk, log_lapsum_topk
from keras_topk.ops.relaxations import DISTRIBUTIONS, comparator_weight
from keras_topk.ops.relaxed_topk import METHODS, soft_topk
from keras_topk.ops.sorting_networks import NETWORKS, build_network
from keras_topk.ops.symmetric_polynomials import log_elementary_symmetric

__all__ = [
    "DISTRIBUTIONS",
    "METHODS",
    "NETWORKS",
    "build_network",
    "comparator_weight",
    "lapsum_topk",
    "log_elementary_symmetric",
    "log_lapsum_topk",
    "soft_topk",
]
