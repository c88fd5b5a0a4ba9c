"""Top-k accuracy metrics that ties cannot inflate, for one or several k per pass."""

from keras_topk.metrics.topk_accuracy import (
    MultiTopKAccuracy,
    TopKAccuracy,
    label_rank,
    topk_hits,
)
