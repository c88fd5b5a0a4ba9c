"""Every public loss and metric of keras_topk, and the cases the contract runs on.

`discover()` finds the classes by walking ``keras_topk.losses`` and
``keras_topk.metrics``: every public ``keras.losses.Loss`` or
``keras.metrics.Metric`` subclass. `CASES` holds one or more constructor
calls per class, with non-default values for every constructor argument
across a class's cases, so that a ``get_config`` round trip checks each of
them. `test_registry.py` fails when a discovered class has no case, so a new
loss or metric cannot ship without passing the contract.
"""

import dataclasses
import inspect

import keras
import numpy as np

import keras_topk
from keras_topk.callbacks import TransitionCallback
from keras_topk.losses import TopKTransitionLoss

# Public classes deliberately outside the contract, with the reason.
EXCLUDED = {
    "TransitionState": (
        "the schedule state of TopKTransitionLoss, not a metric to compile: the loss "
        "creates it, TransitionCallback adds it to the model's metrics and it is saved "
        "as `loss.state`; the TopKTransitionLoss cases check its round trip"
    ),
    "NoiseState": (
        "the random stream of NoisedTopKHinge/LongTailTopKHinge, not a metric to compile: "
        "the loss creates it, NoiseCallback adds it to the model's metrics and it is saved "
        "as `loss.noise_state`; tests/losses/test_topk_calibrated_hinge.py checks it"
    ),
}

SEED = 1234
NUM_FEATURES = 12
NUM_CLASSES = 10
NUM_SAMPLES = 64
BATCH_SIZE = 16


def discover():
    """``{name: class}`` of every public Loss/Metric subclass in keras_topk.losses/metrics."""
    found = {}
    for module in (keras_topk.losses, keras_topk.metrics):
        for name in dir(module):
            obj = getattr(module, name)
            if name.startswith("_") or not inspect.isclass(obj):
                continue
            if issubclass(obj, (keras.losses.Loss, keras.metrics.Metric)):
                found[name] = obj
    return found


@dataclasses.dataclass(frozen=True)
class Case:
    """One constructor call of a loss or metric, and the labels to train it with."""

    id: str
    cls: type
    kwargs: dict
    labels: str = "sparse"  # "sparse" (int classes), "onehot", "soft" or "multihot" rows
    # The training tests (XLA, saving, mixed precision, MirroredStrategy) run
    # every case; those of cases without `default_run` are marked slow, to
    # keep the default run within budget (CI runs them in its slow step).
    default_run: bool = False
    # False for classes whose inputs or values the single-label table of
    # test_bad_input.py does not describe (multi-label targets, k counts); each
    # such class has its own bad-input table under tests/metrics/.
    bad_input_table: bool = True

    @property
    def is_loss(self):
        return issubclass(self.cls, keras.losses.Loss)

    def make(self):
        return self.cls(**self.kwargs)

    def loss_and_metrics(self):
        """``(loss, metrics)`` to compile: the object under test and partners for the rest."""
        if self.is_loss:
            return self.make(), [
                keras_topk.metrics.TopKAccuracy(k=2),
                keras_topk.metrics.MultiTopKAccuracy(ks=(1, 3)),
            ]
        if self.labels == "sparse":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        elif self.labels == "multihot":
            loss = keras.losses.BinaryCrossentropy(from_logits=True)
        else:
            loss = keras.losses.CategoricalCrossentropy(from_logits=True)
        return loss, [self.make()]

    def callbacks(self):
        # TopKTransitionLoss advances its schedule only through this callback.
        if self.cls in (L.NoisedTopKHinge, L.LongTailTopKHinge):
            return [keras_topk.callbacks.NoiseCallback()]
        return [TransitionCallback()] if self.cls is TopKTransitionLoss else []


L, M = keras_topk.losses, keras_topk.metrics

CASES = [
    Case(
        "smooth_svm",
        L.SmoothTopKSVM,
        dict(k=3, tau=0.5, alpha=0.5, reduction="sum", name="svm", dtype="float64"),
        default_run=True,
    ),
    Case("smooth_svm_k1_onehot", L.SmoothTopKSVM, dict(k=1, tau=2.0, alpha=0.2), labels="onehot"),
    Case(
        "hard_svm",
        L.TopKSVM,
        dict(k=2, alpha=0.7, reduction="mean", name="hard", dtype="float64"),
        default_run=True,
    ),
    Case(
        "topk_ce",
        L.TopKCrossEntropy,
        dict(p_k=(0.5, 0.5), inverse_temperature=0.5, art_lambda=0.25, top1_mode="sort"),
        default_run=True,
    ),
    Case(
        "topk_ce_bitonic_m",
        L.TopKCrossEntropy,
        dict(
            p_k=(0.5, 0.0, 0.5),
            method="bitonic",
            inverse_temperature=2.0,
            distribution="cauchy",
            art_lambda=0.25,
            m=6,
            top1_mode="smce",
            reduction="sum",
            name="tce",
            dtype="float64",
        ),
    ),
    Case("topk_ce_soft", L.TopKCrossEntropy, dict(p_k=(0.5, 0.0, 0.5)), labels="soft"),
    Case("topk_ce_neuralsort", L.TopKCrossEntropy, dict(p_k=(0.25,) * 4, method="neuralsort")),
    Case(
        "topk_ce_lapsum",
        L.TopKCrossEntropy,
        dict(p_k=(0.2,) * 5, method="lapsum", inverse_temperature=2.0, top1_mode="smce"),
        default_run=True,
    ),
    Case(
        "transition_adaptive",
        L.TopKTransitionLoss,
        dict(
            k=3,
            group="predicted",
            weight_start=0.1,
            weight_end=0.9,
            momentum=0.5,
            reduction="sum",
            name="tl",
            dtype="float64",
        ),
        default_run=True,
    ),
    Case(
        "transition_linear_onehot",
        L.TopKTransitionLoss,
        dict(k=2, transition="linear", transition_steps=3),
        labels="onehot",
    ),
    Case("transition_constant", L.TopKTransitionLoss, dict(k=4, transition="constant", weight=0.4)),
    # The noised hinges run here with epsilon = 0 (the exact form; n_samples and
    # seed are then only carried through get_config): their noise comes from
    # each backend's own RNG, so TensorFlow's and JAX's values cannot agree
    # (test_jax_backend). tests/losses/test_topk_calibrated_hinge.py trains the
    # noised form under compiled fit on TensorFlow, JAX and PyTorch.
    Case(
        "calibrated_hinge",
        L.TopKCalibratedHinge,
        dict(k=3, margin=0.5, reduction="sum", name="cal", dtype="float64"),
        default_run=True,
    ),
    Case(
        "calibrated_hinge_multilabel",
        L.TopKCalibratedHinge,
        dict(k=2, multi_label=True),
        labels="multihot",
        bad_input_table=False,
    ),
    Case(
        "noised_hinge_exact",
        L.NoisedTopKHinge,
        dict(
            k=2,
            margin=0.7,
            epsilon=0.0,
            n_samples=3,
            seed=5,
            reduction="sum",
            name="noised",
            dtype="float64",
        ),
        default_run=True,
    ),
    Case(
        "noised_hinge_multilabel",
        L.NoisedTopKHinge,
        dict(k=3, epsilon=0.0, multi_label=True),
        labels="multihot",
        bad_input_table=False,
    ),
    Case(
        "long_tail_hinge_exact",
        L.LongTailTopKHinge,
        dict(
            class_counts=[150, 90, 60, 40, 25, 15, 10, 6, 4, 3],
            k=2,
            max_margin=0.4,
            scale=2.0,
            epsilon=0.0,
            n_samples=3,
            seed=9,
            reduction="sum",
            name="lt",
            dtype="float64",
        ),
        default_run=True,
    ),
    Case(
        "topk_hinge_alpha",
        L.TopKHingeAlpha,
        dict(k=3, margin=0.5, reduction="sum", name="alpha", dtype="float64"),
        default_run=True,
    ),
    Case(
        "topk_hinge_beta",
        L.TopKHingeBeta,
        dict(k=3, margin=0.5, reduction="sum", name="beta", dtype="float64"),
        default_run=True,
    ),
    Case(
        "truncated_entropy",
        L.TruncatedTopKEntropy,
        dict(k=3, reduction="sum", name="tent", dtype="float64"),
        default_run=True,
    ),
    Case("topk_accuracy", M.TopKAccuracy, dict(k=3, name="t3", dtype="float64"), default_run=True),
    Case("topk_accuracy_onehot", M.TopKAccuracy, dict(k=1), labels="onehot"),
    Case(
        "multi_topk_accuracy",
        M.MultiTopKAccuracy,
        dict(ks=(1, 3, 12), key_format="acc{k}", name="multi", dtype="float64"),
        default_run=True,
    ),
    # Metrics with one state entry per class: `num_classes` given (state made
    # at construction) and omitted (made at the first update, in fit's build).
    Case(
        "candidates_for_coverage",
        M.CandidatesForCoverage,
        dict(
            coverages=(0.5, 0.9, 1.0),
            num_classes=NUM_CLASSES,
            key_format="cand{percent}",
            name="cands",
            dtype="float64",
        ),
        default_run=True,
        bad_input_table=False,
    ),
    Case(
        "candidates_for_coverage_lazy_onehot",
        M.CandidatesForCoverage,
        dict(coverages=(0.8,)),
        labels="onehot",
    ),
    Case(
        "per_class_topk_accuracy",
        M.PerClassTopKAccuracy,
        dict(k=2, num_classes=NUM_CLASSES, name="pc2", dtype="float64"),
        default_run=True,
    ),
    Case("per_class_topk_accuracy_lazy_onehot", M.PerClassTopKAccuracy, dict(k=1), labels="onehot"),
    Case(
        "precision_recall_at_k",
        M.PrecisionRecallAtK,
        dict(ks=(1, 3, 12), key_format="{metric}{k}", name="pr", dtype="float64"),
        labels="multihot",
        default_run=True,
        bad_input_table=False,
    ),
]
LOSS_CASES = [c for c in CASES if c.is_loss]
METRIC_CASES = [c for c in CASES if not c.is_loss]


def case_ids(cases):
    return [c.id for c in cases]


def training_params(cases=None):
    """``pytest.param`` per case, slow unless the case is in the default run."""
    import pytest

    return [
        pytest.param(c, id=c.id, marks=() if c.default_run else pytest.mark.slow)
        for c in (CASES if cases is None else cases)
    ]


# --------------------------------------------------------------------------- #
# Data and models
# --------------------------------------------------------------------------- #


def data(case=None, num_samples=NUM_SAMPLES, seed=0):
    """``(x, y)``: features and labels (in the case's label format) with learnable structure."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_samples, NUM_FEATURES)).astype("float32")
    teacher = np.random.default_rng(99).normal(size=(NUM_FEATURES, NUM_CLASSES))
    logits = x @ teacher + rng.normal(scale=2.0, size=(num_samples, NUM_CLASSES))
    y = np.argmax(logits, axis=-1).astype("int32")
    return x, encode_labels(y, case.labels if case else "sparse", logits)


def encode_labels(y, kind, logits=None):
    if kind == "sparse":
        return y
    if kind == "onehot":
        return np.eye(NUM_CLASSES, dtype="float32")[y]
    if kind == "soft":
        # The true class gets most of the mass, the rest follows the teacher.
        e = np.exp(logits - logits.max(-1, keepdims=True))
        return (0.7 * np.eye(NUM_CLASSES)[y] + 0.3 * e / e.sum(-1, keepdims=True)).astype("float32")
    if kind == "multihot":
        # The label and, where the teacher's runner-up is close, that class too.
        hot = np.eye(NUM_CLASSES, dtype="float32")[y]
        if logits is not None:
            top2 = np.sort(logits, axis=-1)[:, -2:]
            close = (top2[:, 1] - top2[:, 0]) < 1.0
            hot[np.arange(len(y)), np.argsort(logits, axis=-1)[:, -2]] += close
        return np.minimum(hot, 1.0)
    raise ValueError(kind)


def scores_and_labels(case=None, num_samples=8, seed=3, dtype="float32"):
    """Raw logits and labels for calling a loss or metric directly."""
    rng = np.random.default_rng(seed)
    s = rng.normal(scale=2.0, size=(num_samples, NUM_CLASSES)).astype(dtype)
    y = rng.integers(0, NUM_CLASSES, num_samples).astype("int32")
    return s, encode_labels(y, case.labels if case else "sparse", s.astype("float64"))


def build_model(case, optimizer=None, dtype=None, **compile_kwargs):
    """A Dense head on NUM_FEATURES inputs, compiled with the case; seeded."""
    keras.utils.set_random_seed(SEED)
    model = keras.Sequential(
        [keras.Input((NUM_FEATURES,)), keras.layers.Dense(NUM_CLASSES, dtype=dtype)]
    )
    loss, metrics = case.loss_and_metrics()
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(0.05),
        loss=loss,
        metrics=metrics,
        **compile_kwargs,
    )
    return model


def flat_logs(logs):
    """``{key: float}`` from a History dict or an evaluate dict."""
    out = {}
    for key, value in logs.items():
        if isinstance(value, list):
            for i, v in enumerate(value):
                out[f"{key}[{i}]"] = float(v)
        else:
            out[key] = float(value)
    return out


def compiled_objects(model):
    """The loss and the compiled metric objects of ``model``."""
    metrics = []
    for m in model.metrics:
        metrics.extend(getattr(m, "metrics", []))
    return model.loss, metrics


def the_object(model, case):
    """The instance of the case's class inside a compiled model."""
    loss, metrics = compiled_objects(model)
    if case.is_loss:
        return loss
    (found,) = [m for m in metrics if type(m) is case.cls]
    return found
