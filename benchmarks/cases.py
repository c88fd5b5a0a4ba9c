"""The benchmark grid: which loss, with which arguments, at which batch size and number of classes."""

import dataclasses
import functools

import keras
from keras import ops

import keras_topk

IMAGENET = dict(batch=512, classes=1000)
IMAGENET_P_K = (0.2,) * 5
METHODS = ("splitter_selection", "bitonic", "odd_even", "neuralsort", "softsort")
# Groups that are also timed without XLA (the others only with it, to keep the run short).
GROUPS_WITHOUT_XLA = ("imagenet", "classes", "quick")


def default_m(classes):
    """The paper's m: 16 for ImageNet-1K, 50 for ImageNet-21K-P (10450 classes)."""
    return 50 if classes > 5000 else 16


@dataclasses.dataclass(frozen=True)
class Case:
    """One loss configuration at one input size.

    ``loss`` is the family ("cross_entropy", "topk_cross_entropy",
    "smooth_topk_svm", "topk_svm", "topk_transition", or one of
    `HINGE_FAMILY`), ``params`` its
    constructor arguments. ``skip`` says why a case is listed but not run.
    """

    group: str
    loss: str
    params: tuple
    batch: int
    classes: int
    skip: str = None

    @property
    def label(self):
        p = dict(self.params)
        if self.loss == "cross_entropy":
            return "softmax CE"
        if self.loss == "topk_cross_entropy":
            m = p.get("m")
            where = f"m={m}" if m else f"all {self.classes} classes"
            more = "".join(f", {k}={v}" for k, v in self.params if k not in ("p_k", "method", "m"))
            return f"TopKCrossEntropy {p['method']}, {where}, K={len(p['p_k'])}{more}"
        if self.loss == "smooth_topk_svm":
            return f"SmoothTopKSVM k={p['k']}, tau={p['tau']}"
        if self.loss == "topk_svm":
            return f"TopKSVM k={p['k']}"
        if self.loss == "topk_transition":
            return f"TopKTransitionLoss k={p['k']}, {p['group']} group"
        if self.loss == "selection":
            return (
                f"floor: the label and the top {p['count']} other scores alone "
                "(top_k + gather, with gradient)"
            )
        if self.loss in HINGE_FAMILY:
            more = ", ".join(f"{k}={v}" for k, v in self.params)
            return f"{HINGE_FAMILY[self.loss][0]} {more}"
        raise ValueError(self.loss)

    @property
    def key(self):
        args = ",".join(f"{k}={_short(v)}" for k, v in self.params)
        return f"{self.loss}({args})@b={self.batch},n={self.classes}"

    def build(self):
        """The Keras loss, reduced to the batch mean as in training."""
        p = dict(self.params)
        if self.loss == "cross_entropy":
            return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if self.loss == "topk_cross_entropy":
            return keras_topk.losses.TopKCrossEntropy(**p)
        if self.loss == "smooth_topk_svm":
            return keras_topk.losses.SmoothTopKSVM(**p)
        if self.loss == "topk_svm":
            return keras_topk.losses.TopKSVM(**p)
        if self.loss == "topk_transition":
            return keras_topk.losses.TopKTransitionLoss(transition="constant", **p)
        if self.loss == "selection":
            return functools.partial(_selection, count=p["count"])
        if self.loss in HINGE_FAMILY:
            return _hinge_family_step(self.loss, self.classes, p)
        raise ValueError(self.loss)

    def as_dict(self):
        return {
            "key": self.key,
            "group": self.group,
            "label": self.label,
            "loss": self.loss,
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in self.params},
            "batch": self.batch,
            "classes": self.classes,
        }


def _selection(y_true, y_pred, count):
    """What TopKCrossEntropy with ``m = count + 1`` does before ranking anything: the floor of its cost."""
    from keras_topk.ops import ranking

    labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
    return ops.mean(ranking.label_and_top_others(y_pred, labels, count + 1))


# The calibrated top-k hinge family and Lapin's baselines: (label, pure function name).
# The noised forms run as their pure functions with a fixed int seed: the same
# draw (keras.random.normal inside the step) as the classes, whose own stream
# needs a trainer to thread it under JAX.
HINGE_FAMILY = {
    "calibrated_hinge": ("TopKCalibratedHinge", "topk_calibrated_hinge"),
    "noised_hinge": ("NoisedTopKHinge", "noised_topk_hinge"),
    "long_tail_hinge": ("LongTailTopKHinge", "long_tail_topk_hinge"),
    "topk_hinge_alpha": ("TopKHingeAlpha", "topk_hinge_alpha"),
    "topk_hinge_beta": ("TopKHingeBeta", "topk_hinge_beta"),
    "truncated_entropy": ("TruncatedTopKEntropy", "truncated_topk_entropy"),
}


def power_law_counts(classes, largest=150, smallest=3):
    """Training counts falling geometrically from ``largest`` to ``smallest`` over the classes."""
    import numpy as np

    ratio = (smallest / largest) ** (np.arange(classes) / max(classes - 1, 1))
    return [int(c) for c in np.maximum(np.round(largest * ratio), 1)]


def _hinge_family_step(loss, classes, params):
    fn = getattr(keras_topk.losses, HINGE_FAMILY[loss][1])
    params = dict(params)
    if loss == "long_tail_hinge":
        params["class_counts"] = power_law_counts(classes)
    if loss in ("noised_hinge", "long_tail_hinge") and params.get("epsilon", 0) > 0:
        params["seed"] = 0

    def mean_loss(y_true, y_pred):
        return ops.mean(fn(y_true, y_pred, **params))

    return mean_loss


def hinge_family(group, batch, classes):
    """Every loss of the hinge family at one size (issue 23's goals: see docs/losses/topk-hinge-family.md)."""
    rows = [
        ("calibrated_hinge", (("k", 5),)),
        ("noised_hinge", (("k", 5), ("epsilon", 1.0), ("n_samples", 5))),
        ("long_tail_hinge", (("k", 5), ("epsilon", 0.01), ("n_samples", 5), ("scale", 50.0))),
        ("topk_hinge_alpha", (("k", 5),)),
        ("topk_hinge_beta", (("k", 5),)),
        ("truncated_entropy", (("k", 5),)),
    ]
    return [Case(group, loss, params, batch, classes) for loss, params in rows]


def _short(v):
    if isinstance(v, tuple) and len(set(v)) == 1:
        return f"({v[0]},)*{len(v)}"
    return str(v).replace(" ", "")


def topk_ce(
    group,
    batch,
    classes,
    method="splitter_selection",
    m="default",
    p_k=IMAGENET_P_K,
    skip=None,
    **extra,
):
    if m == "default":
        m = default_m(classes)
    params = (("p_k", tuple(p_k)), ("method", method), ("m", m)) + tuple(extra.items())
    return Case(group, "topk_cross_entropy", params, batch, classes, skip)


def smooth_svm(group, batch, classes, k=5, tau=1.0):
    return Case(group, "smooth_topk_svm", (("k", k), ("tau", tau)), batch, classes)


def cross_entropy(group, batch, classes):
    return Case(group, "cross_entropy", (), batch, classes)


def _all_classes_skip(method, classes):
    from keras_topk.ops import sorting_networks

    if method not in ("splitter_selection", "bitonic") or classes < 5000:
        return None
    net = sorting_networks.build_network(method, classes, len(IMAGENET_P_K))
    return (
        f"not run: ranking all {classes} classes runs {len(net.layers)} layers with "
        f"{net.num_comparators:,} comparators over {classes} wires per sample (seconds per step, "
        f"minutes of XLA compilation); the paper uses m={default_m(classes)} here"
    )


def loss_grid(quick=False):
    """Every case of the loss-timing suite, in run order."""
    if quick:
        b, n = 16, 40
        return [
            topk_ce("quick", b, n, m=8),
            smooth_svm("quick", b, n, k=3),
            topk_ce("quick", b, 2 * n, m=8),
            topk_ce(
                "quick",
                b,
                2 * n,
                method="bitonic",
                m=None,
                skip="not run: an example of a skipped case",
            ),
        ]
    b, n = IMAGENET["batch"], IMAGENET["classes"]
    cases = []
    # The ImageNet setting: every method with m = 16, and without m where it runs.
    for method in METHODS:
        cases.append(topk_ce("imagenet", b, n, method=method))
    for method in ("splitter_selection", "bitonic", "neuralsort", "softsort"):
        cases.append(topk_ce("imagenet", b, n, method=method, m=None))
    # The floor of every m=16 row: exact top-15 selection, as the reference's torch.topk.
    cases.append(Case("imagenet", "selection", (("count", 15),), b, n))
    cases.append(smooth_svm("imagenet", b, n, k=5, tau=1.0))
    cases.append(smooth_svm("imagenet", b, n, k=5, tau=0.1))
    cases.append(Case("imagenet", "topk_svm", (("k", 5),), b, n))
    for group in ("label", "predicted"):
        cases.append(
            Case("imagenet", "topk_transition", (("k", 5), ("weight", 0.5), ("group", group)), b, n)
        )
    # CIFAR-100 from scratch as the paper trains it: all 100 classes ranked, smce, inverse temperature 1/2.
    for method in ("splitter_selection", "bitonic"):
        cases.append(
            topk_ce(
                "cifar100", b, 100, method=method, m=None, top1_mode="smce", inverse_temperature=0.5
            )
        )
    # How the cost scales with the number of classes (b = 512) ...
    for classes in (100, 10450):
        cases.append(topk_ce("classes", b, classes))
        cases.append(topk_ce("classes", b, classes, method="bitonic"))
        for method in ("splitter_selection", "bitonic"):
            cases.append(
                topk_ce(
                    "classes",
                    b,
                    classes,
                    method=method,
                    m=None,
                    skip=_all_classes_skip(method, classes),
                )
            )
        cases.append(smooth_svm("classes", b, classes, k=5))
        cases.append(
            Case(
                "classes",
                "topk_transition",
                (("k", 5), ("weight", 0.5), ("group", "label")),
                b,
                classes,
            )
        )
    # ... with the batch size (n = 1000) ...
    for batch in (128, 1024):
        cases.append(topk_ce("batch", batch, n))
        cases.append(smooth_svm("batch", batch, n, k=5))
    # ... with m and K for TopKCrossEntropy, and with k for SmoothTopKSVM.
    for m in (8, 32, 64):
        cases.append(topk_ce("m_and_k", b, n, m=m))
    for p_k in ((0.5, 0.5), (0.1,) * 10):
        cases.append(topk_ce("m_and_k", b, n, p_k=p_k))
    for k in (1, 2, 10):
        cases.append(smooth_svm("m_and_k", b, n, k=k))
    # The calibrated top-k hinge family and Lapin's baselines against CE (issue 23).
    for classes in (100, 1000, 10450):
        cases.extend(hinge_family("hinge_family", b, classes))
    # LapSum ranking all classes (issue 24): CIFAR-100, ImageNet-1K and -21K-P sizes, and
    # 100,000 classes at b = 64 (goals: <= 2, 3, 4 x CE; the last runs).
    for classes in (100, 1000, 10450):
        cases.append(topk_ce("lapsum", b, classes, method="lapsum", m=None))
    cases.append(topk_ce("lapsum", 64, 100000, method="lapsum", m=None))
    return cases


def baseline(case):
    """Softmax cross-entropy at the case's size: the denominator of every ratio."""
    return cross_entropy(case.group, case.batch, case.classes)
