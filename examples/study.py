"""The study engine: a fast trainer for heads on features, the tuning, and resumable cells.

A cell is one (condition, loss, seed) training run, or one tuning run
(condition, loss, grid setting). Each finished cell is a JSON file under
``<output>/cells/``, so an interrupted study continues where it stopped.

The trainer fits a linear head or a one-hidden-layer MLP on fixed features
with Adam on mini-batches. Only the loss runs in TensorFlow: one XLA-compiled
function per loss setting returns the loss's gradient with respect to the
scores (``keras_topk``'s pure loss functions on ``keras.ops``); the head's
forward and backward passes are NumPy. Tracing a relaxed sorting network takes
seconds, so a compiled loss is reused by every condition, seed and model.
Early stopping on a validation split of the *training* data (its labels as
noisy as the training labels, as a user's would be) picks the epoch for every
loss alike.
"""

import dataclasses
import hashlib
import json
import os

import numpy as np

__all__ = [
    "GRIDS",
    "QUICK_GRIDS",
    "FeatureTrainer",
    "Setting",
    "Store",
    "label_ranks",
    "accuracy_at_k",
    "split_validation",
    "tune",
    "validation_score",
]

LOSS_NAMES = ("ce", "topk_ce", "smooth_svm", "transition", "topk_svm")
LABELS = {
    "ce": "CE",
    "topk_ce": "TopKCrossEntropy",
    "smooth_svm": "SmoothTopKSVM",
    "transition": "TopKTransitionLoss",
    "topk_svm": "TopKSVM",
}
K = 5  # the k every top-k loss trains for (the papers' top-5)


@dataclasses.dataclass(frozen=True)
class Setting:
    """A loss and its hyperparameters: ``lr`` (Adam) and the loss's own, as sorted (name, value) pairs."""

    loss: str
    lr: float
    params: tuple = ()

    @classmethod
    def of(cls, loss, lr, **params):
        return cls(
            loss,
            float(lr),
            tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items())),
        )

    def as_dict(self):
        return {
            "loss": self.loss,
            "lr": self.lr,
            **{k: list(v) if isinstance(v, tuple) else v for k, v in self.params},
        }

    @classmethod
    def from_dict(cls, d):
        d = dict(d)
        return cls.of(d.pop("loss"), d.pop("lr"), **d)

    def describe(self):
        return ", ".join([f"lr={self.lr:g}"] + [f"{k}={_fmt(v)}" for k, v in self.params])


def _fmt(v):
    if isinstance(v, (tuple, list)):
        return "(" + ",".join(f"{x:g}" for x in v) + ")"
    return f"{v:g}" if isinstance(v, float) else str(v)


# The same budget for every loss: 4 validation runs each. CE has no parameter
# of its own, so its 4 runs are 4 learning rates; each top-k loss gets 2
# learning rates times its 2 main settings. `--grid full` crosses more.
PK_UNIFORM, PK_ENDS = (0.2,) * 5, (0.5, 0.0, 0.0, 0.0, 0.5)
GRIDS = {
    "default": {
        "ce": [Setting.of("ce", lr) for lr in (0.003, 0.01, 0.03, 0.1)],
        "topk_ce": [
            Setting.of("topk_ce", lr, p_k=pk, inverse_temperature=1.0)
            for lr in (0.01, 0.03)
            for pk in (PK_UNIFORM, PK_ENDS)
        ],
        "smooth_svm": [
            Setting.of("smooth_svm", lr, tau=tau, alpha=1.0)
            for lr in (0.01, 0.03)
            for tau in (1.0, 0.1)
        ],
        "transition": [
            Setting.of("transition", lr, schedule=s)
            for lr in (0.01, 0.03)
            for s in ("adaptive", "linear")
        ],
        "topk_svm": [
            Setting.of("topk_svm", lr, alpha=a) for lr in (0.01, 0.03) for a in (1.0, 0.1)
        ],
    },
    "full": {
        "ce": [Setting.of("ce", lr) for lr in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)],
        "topk_ce": [
            Setting.of("topk_ce", lr, p_k=pk, inverse_temperature=b)
            for lr in (0.01, 0.03)
            for pk in (PK_UNIFORM, PK_ENDS)
            for b in (1.0, 0.5)
        ],
        "smooth_svm": [
            Setting.of("smooth_svm", lr, tau=tau, alpha=a)
            for lr in (0.01, 0.03)
            for tau in (1.0, 0.1)
            for a in (1.0, 0.1)
        ],
        "transition": [
            Setting.of("transition", lr, schedule=s)
            for lr in (0.003, 0.01, 0.03)
            for s in ("adaptive", "linear")
        ],
        "topk_svm": [
            Setting.of("topk_svm", lr, alpha=a) for lr in (0.003, 0.01, 0.03) for a in (1.0, 0.1)
        ],
    },
}
QUICK_GRIDS = {
    "ce": [Setting.of("ce", lr) for lr in (0.01, 0.03)],
    "topk_ce": [
        Setting.of("topk_ce", lr, p_k=PK_UNIFORM, inverse_temperature=1.0) for lr in (0.01, 0.03)
    ],
    "smooth_svm": [Setting.of("smooth_svm", lr, tau=1.0, alpha=1.0) for lr in (0.01, 0.03)],
    "transition": [Setting.of("transition", 0.03, schedule=s) for s in ("adaptive", "linear")],
    "topk_svm": [Setting.of("topk_svm", lr, alpha=1.0) for lr in (0.01, 0.03)],
}


# --------------------------------------------------------------------------- #
# Ranks and accuracy (NumPy)
# --------------------------------------------------------------------------- #


def label_ranks(scores, labels):
    """How many other classes score at least as high as the label (ties count against it)."""
    scores = np.asarray(scores)
    label_scores = np.take_along_axis(scores, np.asarray(labels)[:, None].astype(np.int64), axis=1)
    return (scores >= label_scores).sum(axis=1) - 1


def accuracy_at_k(ranks, max_k):
    """Top-k accuracy for k = 1..max_k from the label ranks."""
    counts = np.bincount(np.minimum(np.asarray(ranks), max_k), minlength=max_k + 1)
    return (np.cumsum(counts)[:max_k] / len(ranks)).tolist()


def validation_score(ranks):
    """The model-selection criterion, the same for every loss: mean of top-1 and top-5 accuracy."""
    ranks = np.asarray(ranks)
    return float(0.5 * (np.mean(ranks < 1) + np.mean(ranks < K)))


def split_validation(x, y, fraction, seed):
    """A seeded random split of the training data into (train, validation)."""
    order = np.random.default_rng([seed, 99]).permutation(len(y))
    cut = int(round(len(y) * (1 - fraction)))
    return (x[order[:cut]], y[order[:cut]]), (x[order[cut:]], y[order[cut:]])


# --------------------------------------------------------------------------- #
# The trainer
# --------------------------------------------------------------------------- #


class _LossGradients:
    """``(loss, d loss / d scores)`` of a loss setting on a batch, XLA-compiled once per setting."""

    def __init__(self):
        self._fns = {}

    def __call__(self, setting, scores, labels, weights, transition_weight):
        import tensorflow as tf

        key = (setting.loss, setting.params)
        if key not in self._fns:
            self._fns[key] = tf.function(self._build(setting), jit_compile=True, autograph=False)
        loss, grad = self._fns[key](
            tf.constant(scores),
            tf.constant(labels),
            tf.constant(weights),
            tf.constant(transition_weight, tf.float32),
        )
        return float(loss), grad.numpy()

    @staticmethod
    def _build(setting):
        import keras
        import tensorflow as tf

        import keras_topk

        params = dict(setting.params)
        name = setting.loss
        if name == "ce":

            def per_sample(y, s, w):
                return keras.ops.sparse_categorical_crossentropy(y, s, from_logits=True)
        elif name == "topk_ce":

            def per_sample(y, s, w):
                return keras_topk.losses.topk_cross_entropy(
                    y,
                    s,
                    p_k=params["p_k"],
                    inverse_temperature=params["inverse_temperature"],
                    m=params.get("m", 16),
                )
        elif name == "smooth_svm":

            def per_sample(y, s, w):
                return keras_topk.losses.smooth_topk_svm(
                    y, s, k=K, tau=params["tau"], alpha=params["alpha"]
                )
        elif name == "topk_svm":

            def per_sample(y, s, w):
                return keras_topk.losses.topk_svm(y, s, k=K, alpha=params["alpha"])
        elif name == "transition":

            def per_sample(y, s, w):
                return keras_topk.losses.topk_transition_loss(y, s, k=K, weight=w)
        else:
            raise ValueError(f"unknown loss {name!r}")

        def fn(scores, labels, weights, w):
            with tf.GradientTape() as tape:
                tape.watch(scores)
                loss = tf.reduce_sum(per_sample(labels, scores, w) * weights) / tf.reduce_sum(
                    weights
                )
            return loss, tape.gradient(loss, scores)

        return fn


LOSS_GRADIENTS = _LossGradients()


@dataclasses.dataclass
class TrainerConfig:
    hidden: int = 0  # 0: a linear head; else one hidden ReLU layer of this width
    batch_size: int = 256
    max_epochs: int = 40
    patience: int = 6  # epochs without a better validation score
    momentum: float = 0.95  # of the adaptive transition's running top-k accuracy


class FeatureTrainer:
    """Trains a head on ``(features, labels)`` with one loss setting; NumPy Adam, compiled loss gradients."""

    def __init__(self, config, num_classes, loss_gradients=LOSS_GRADIENTS):
        self.config, self.num_classes, self.loss_gradients = config, num_classes, loss_gradients

    # -- the head --
    def init(self, dim, seed):
        rng = np.random.default_rng([seed, 1])
        sizes = (
            [dim, self.config.hidden, self.num_classes]
            if self.config.hidden
            else [dim, self.num_classes]
        )
        params = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            limit = np.sqrt(6.0 / (a + b))  # Glorot uniform, Keras's Dense default
            params += [
                rng.uniform(-limit, limit, (a, b)).astype(np.float32),
                np.zeros(b, np.float32),
            ]
        return params

    @staticmethod
    def forward(params, x):
        h = x
        for i in range(0, len(params) - 2, 2):
            h = np.maximum(h @ params[i] + params[i + 1], 0.0)
        return h @ params[-2] + params[-1]

    @staticmethod
    def _backward(params, x, d_scores):
        hs = [x]
        for i in range(0, len(params) - 2, 2):
            hs.append(np.maximum(hs[-1] @ params[i] + params[i + 1], 0.0))
        grads = [None] * len(params)
        g = d_scores
        for i in range(len(params) - 2, -1, -2):
            grads[i], grads[i + 1] = hs[i // 2].T @ g, g.sum(0)
            if i:
                g = (g @ params[i].T) * (hs[i // 2] > 0)
        return grads

    def fit(self, setting, train, validation, seed):
        """Trains; returns ``(best params, info)`` with the epoch chosen by early stopping."""
        (x, y), (xv, yv) = train, validation
        cfg = self.config
        params = self.init(x.shape[1], seed)
        m = [np.zeros_like(p) for p in params]
        v = [np.zeros_like(p) for p in params]
        rng = np.random.default_rng([seed, 2])
        b = cfg.batch_size
        steps_per_epoch = -(-len(y) // b)
        ramp = max(1, cfg.max_epochs * steps_per_epoch // 2)  # the linear transition's length
        schedule = dict(setting.params).get("schedule")
        t, running, best, best_epoch, history = 0, 0.0, -1.0, 0, []
        best_params = [p.copy() for p in params]
        for epoch in range(1, cfg.max_epochs + 1):
            order = rng.permutation(len(y))
            for start in range(0, len(y), b):
                idx = order[start : start + b]
                xb, yb = np.zeros((b, x.shape[1]), np.float32), np.zeros(b, np.int32)
                wb = np.zeros(b, np.float32)  # padding rows weigh 0: one compiled shape
                xb[: len(idx)], yb[: len(idx)], wb[: len(idx)] = x[idx], y[idx], 1.0
                scores = self.forward(params, xb).astype(np.float32)
                if schedule == "adaptive":
                    hits = label_ranks(scores[: len(idx)], yb[: len(idx)]) < K
                    running = cfg.momentum * running + (1 - cfg.momentum) * float(hits.mean())
                    weight = running
                elif schedule == "linear":
                    weight = min(t / ramp, 1.0)
                else:
                    weight = 0.0
                _, d_scores = self.loss_gradients(setting, scores, yb, wb, weight)
                grads = self._backward(params, xb, d_scores)
                t += 1
                for i, g in enumerate(grads):  # Adam, Keras's defaults
                    m[i] = 0.9 * m[i] + 0.1 * g
                    v[i] = 0.999 * v[i] + 0.001 * g * g
                    params[i] -= (
                        (setting.lr * np.sqrt(1 - 0.999**t) / (1 - 0.9**t))
                        * m[i]
                        / (np.sqrt(v[i]) + 1e-7)
                    )
            score = validation_score(label_ranks(self.forward(params, xv), yv))
            history.append(score)
            if score > best:
                best, best_epoch, best_params = score, epoch, [p.copy() for p in params]
            elif epoch - best_epoch >= cfg.patience:
                break
        return best_params, {
            "validation_score": best,
            "epoch": best_epoch,
            "epochs_run": len(history),
        }


def tune(settings, evaluate):
    """Runs ``evaluate(setting) -> validation score`` for each setting; returns (best, all scores).

    Ties go to the earlier setting in the grid.
    """
    scores = [float(evaluate(s)) for s in settings]
    best = int(np.argmax(scores))
    return settings[best], scores


# --------------------------------------------------------------------------- #
# Resumable storage of cells
# --------------------------------------------------------------------------- #


class Store:
    """Finished cells as JSON files, in a folder of their own per study configuration.

    ``<root>/cells/<digest of the configuration>/``: a rerun of the same study
    finds its cells and continues; another configuration (``--quick``, other
    seeds) keeps its own, so the two never mix.
    """

    def __init__(self, root, config):
        text = json.dumps(config, sort_keys=True)
        self.root = os.path.join(root, "cells", hashlib.sha1(text.encode()).hexdigest()[:12])
        os.makedirs(self.root, exist_ok=True)
        path = os.path.join(self.root, "study_config.json")
        if not os.path.exists(path):
            with open(path, "w") as f:
                f.write(json.dumps(config, indent=2, sort_keys=True) + "\n")

    def _path(self, *key):
        name = "-".join(str(k) for k in key)
        safe = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name)
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        return os.path.join(self.root, f"{safe[:100]}-{digest}.json")

    def get(self, *key):
        path = self._path(*key)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    def put(self, value, *key):
        path = self._path(*key)
        with open(path + ".tmp", "w") as f:
            json.dump(value, f)
        os.replace(path + ".tmp", path)  # a killed run leaves no half-written cell
        return value
