"""Top-k metrics that ties cannot inflate: accuracy for one or several k, candidates for a
coverage, per-class (macro) top-k accuracy, and multi-label precision/recall at k."""

from keras_topk.metrics.coverage import (
    CandidatesForCoverage,
    candidates_from_histogram,
    rank_histogram,
)
from keras_topk.metrics.multilabel import PrecisionRecallAtK, multilabel_topk_hits
from keras_topk.metrics.per_class import PerClassTopKAccuracy
from keras_topk.metrics.topk_accuracy import (
    MultiTopKAccuracy,
    TopKAccuracy,
    label_rank,
    topk_hits,
)

__all__ = [
    "CandidatesForCoverage",
    "MultiTopKAccuracy",
    "PerClassTopKAccuracy",
    "PrecisionRecallAtK",
    "TopKAccuracy",
    "candidates_from_histogram",
    "label_rank",
    "multilabel_topk_hits",
    "rank_histogram",
    "topk_hits",
]
