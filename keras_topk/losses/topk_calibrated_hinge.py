r"""The top-k calibrated hinge (Yang & Koyejo, ICML 2020) and its stochastic smoothing (Garcin et al., ICML 2022).

With ``s_[j]`` the j-th largest of **all** n scores (the label's included):

- `TopKCalibratedHinge`: ``max(0, margin + s_[k+1] - s_y)`` (psi_5 of Yang &
  Koyejo, the only top-k calibrated hinge of their family); with multi-hot
  labels ``s_y`` is the lowest score of a positive label (the TKML loss of Hu
  et al., NeurIPS 2020).
- `NoisedTopKHinge`: ``s_[k+1]`` replaced by ``(1/S) sum_t (s + epsilon Z_t)_[k+1]``,
  ``Z_t ~ N(0, I)`` drawn afresh at every step; its gradient is the pathwise
  one of the reference (the same Z serve the value and the gradient).
- `LongTailTopKHinge`: ``max(0, scale (m_y + phi(s) - s_y))`` with the LDAM
  margins ``m_c = max_margin n_c^(-1/4) / max_j n_j^(-1/4)`` of the training counts.

The noise comes from the loss's `NoiseState` (see
`keras_topk.losses.noise_state`); the pure functions take ``seed`` (an int or a
``keras.random.SeedGenerator``) or the noise itself (``noise``).
"""

import copy
import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import keras
import numpy as np
from keras import ops

from keras_topk import _backend, _config
from keras_topk.losses._base import LossConfig, TopKLoss, per_sample_losses
from keras_topk.losses.noise_state import NoiseState
from keras_topk.ops import ranking

__all__ = [
    "LongTailTopKHinge",
    "NoisedTopKHinge",
    "TopKCalibratedHinge",
    "ldam_margins",
    "long_tail_topk_hinge",
    "noised_topk_hinge",
    "topk_calibrated_hinge",
]

_WARNED_POSITIVES: set[int] = set()


# --------------------------------------------------------------------------- #
# The mathematics, on (b, n) scores
# --------------------------------------------------------------------------- #


def _kth_largest(x, k):
    """The k-th largest entry (1-based) along the last axis, with its gradient (a mask).

    ``x`` is (..., n); returns (...,). The choice carries no gradient; the value
    is read through a mask, so the gradient is a one-hot on the chosen class.
    """
    n = int(x.shape[-1])
    _, indices = ops.top_k(ops.stop_gradient(x), k, sorted=True)
    chosen = ranking.column(ops.cast(indices, "int32"), k - 1)
    hit = ops.equal(ops.arange(n, dtype="int32"), chosen[..., None])
    return ops.sum(ops.where(hit, x, ops.zeros_like(x)), axis=-1)


def _smoothed_kth(s, k, epsilon, noise):
    """``(1/S) sum_t (s + epsilon Z_t)_[k]`` for noise (b, S, n); ``s_[k]`` when there is none."""
    if noise is None:
        return _kth_largest(s, k)
    perturbed = s[:, None, :] + ops.convert_to_tensor(epsilon, dtype=s.dtype) * ops.cast(
        noise, s.dtype
    )
    return ops.mean(_kth_largest(perturbed, k), axis=1)


def _target_score(s, labels, rows, multi_label, k):
    """``s_y``, or with multi-hot rows the lowest score among the positive labels."""
    if not multi_label or rows is None:
        return ranking.label_score(s, labels)
    positive = ops.greater(rows, 0)
    _warn_if_more_positives_than_k(positive, k)
    highest = ops.convert_to_tensor(
        float(np.finfo(keras.backend.standardize_dtype(s.dtype)).max), s.dtype
    )
    # A row without positives reads `highest`: its loss is 0, with no gradient.
    return ops.min(ops.where(positive, s, highest), axis=-1)


def _warn_if_more_positives_than_k(positive, k):
    values = _backend.concrete_value(positive)
    if values is None or values.size == 0 or k in _WARNED_POSITIVES:
        return
    most = int(values.sum(axis=-1).max())
    if most > k:
        _WARNED_POSITIVES.add(k)
        warnings.warn(
            f"A sample has {most} positive labels but k={k}: the top-k calibrated hinge "
            "asks every positive to be in the top k, so with more than k positives its "
            "loss cannot reach 0. Use k >= the number of positives (e.g. the largest "
            "label count), or accept a loss that stays positive on those samples.",
            stacklevel=4,
        )


def ldam_margins(class_counts: Sequence[float], max_margin: float = 0.2) -> np.ndarray:
    """The LDAM per-class margins ``m_c = max_margin n_c^(-1/4) / max_j n_j^(-1/4)`` (float64).

    Example: the rarest class gets ``max_margin``; a class 16 times as frequent half of it.

    >>> import keras_topk
    >>> keras_topk.losses.ldam_margins([160, 10], max_margin=0.2).tolist()
    [0.1, 0.2]
    """
    counts = _check_counts(class_counts)
    max_margin = _config.check_float("max_margin", max_margin, minimum=0.0)
    powers = np.asarray(counts, dtype=np.float64) ** -0.25
    return max_margin * powers / powers.max()


def _check_counts(class_counts):
    if isinstance(class_counts, (str, bytes)) or not hasattr(class_counts, "__len__"):
        raise ValueError(
            "`class_counts` must be a sequence of the training counts of the n classes, "
            f"e.g. [500, 120, 7]; got {class_counts!r}."
        )
    counts = np.asarray(class_counts, dtype=np.float64).reshape(-1)
    if counts.size < 2:
        raise ValueError(
            f"`class_counts` must have one count per class (n >= 2); got {counts.size}."
        )
    bad = np.flatnonzero(~np.isfinite(counts) | (counts <= 0))
    if bad.size:
        raise ValueError(
            "`class_counts` must be positive finite counts (a class with no training sample "
            f"would get an infinite margin); classes {bad[:5].tolist()} have counts "
            f"{counts[bad[:5]].tolist()}. Drop those classes, or count them as 1."
        )
    return tuple(int(c) if float(c).is_integer() else float(c) for c in counts)


# --------------------------------------------------------------------------- #
# Configurations
# --------------------------------------------------------------------------- #


def _check_seed(seed):
    if seed is None:
        return None
    return _config.check_int("seed", seed, minimum=0, maximum=2**32 - 1)


class _Noised:
    """The noise of a configuration's maths: none, given, or drawn from a seed at each call."""

    # ("given", tensor of shape (..., S, n)), ("seed", int or SeedGenerator) or None (exact).
    _noise: Any = None
    # Fields of the configurations this mixes into.
    epsilon: float
    n_samples: int

    def with_noise(self, source):
        """A copy whose maths uses ``source`` (see `_noise_source`)."""
        clone = copy.copy(self)
        object.__setattr__(clone, "_noise", source)
        return clone

    def draw(self, s):
        """The noise (b, S, n) for the scores ``s`` (b, n), or None."""
        if self._noise is None or self.epsilon == 0.0:
            return None
        kind, value = self._noise
        shape = (ops.shape(s)[0], self.n_samples, int(s.shape[-1]))
        if kind == "given":
            return ops.reshape(ops.cast(value, s.dtype), shape)
        return keras.random.normal(shape, dtype=s.dtype, seed=value)


@dataclasses.dataclass(frozen=True)
class CalibratedHingeConfig(LossConfig):
    """``max(0, margin + s_[k+1] - s_y)``; multi-hot rows with ``multi_label``."""

    k: int
    margin: float
    multi_label: bool

    def __post_init__(self):
        object.__setattr__(self, "k", _config.check_int("k", self.k, minimum=1))
        object.__setattr__(self, "margin", _config.check_float("margin", self.margin, minimum=0.0))
        if not isinstance(self.multi_label, (bool, np.bool_)):
            raise ValueError(f"`multi_label` must be True or False, got {self.multi_label!r}.")
        object.__setattr__(self, "multi_label", bool(self.multi_label))

    def check_classes(self, n):
        _config.check_k_fits_classes("k", self.k, n, strict=True)

    # Always read (cheap): only multi_label uses them.
    dense_rows = True

    def maths(self, s, labels, rows):
        phi = self.order_statistic(s)
        target = _target_score(s, labels, rows, self.multi_label, self.k)
        return ops.relu(self.margin + phi - target)

    def order_statistic(self, s):
        return _kth_largest(s, self.k + 1)


@dataclasses.dataclass(frozen=True)
class NoisedHingeConfig(_Noised, CalibratedHingeConfig):
    epsilon: float
    n_samples: int
    seed: int | None

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(
            self, "epsilon", _config.check_float("epsilon", self.epsilon, minimum=0.0)
        )
        object.__setattr__(
            self, "n_samples", _config.check_int("n_samples", self.n_samples, minimum=1)
        )
        object.__setattr__(self, "seed", _check_seed(self.seed))

    def order_statistic(self, s):
        return _smoothed_kth(s, self.k + 1, self.epsilon, self.draw(s))


@dataclasses.dataclass(frozen=True)
class LongTailHingeConfig(_Noised, LossConfig):
    """``max(0, scale (m_y + phi(s) - s_y))`` with the LDAM margins ``m``."""

    class_counts: Sequence[float]
    k: int
    max_margin: float
    scale: float
    epsilon: float
    n_samples: int
    seed: int | None
    # The LDAM margins of the counts (float64), set in __post_init__.
    _margins: ClassVar[np.ndarray]

    def __post_init__(self):
        object.__setattr__(self, "class_counts", _check_counts(self.class_counts))
        object.__setattr__(self, "k", _config.check_int("k", self.k, minimum=1))
        margins = ldam_margins(self.class_counts, self.max_margin)
        object.__setattr__(self, "max_margin", float(self.max_margin))
        object.__setattr__(
            self,
            "scale",
            _config.check_float("scale", self.scale, minimum=0.0, min_inclusive=False),
        )
        object.__setattr__(
            self, "epsilon", _config.check_float("epsilon", self.epsilon, minimum=0.0)
        )
        object.__setattr__(
            self, "n_samples", _config.check_int("n_samples", self.n_samples, minimum=1)
        )
        object.__setattr__(self, "seed", _check_seed(self.seed))
        object.__setattr__(self, "_margins", margins)

    def check_classes(self, n):
        _config.check_k_fits_classes("k", self.k, n, strict=True)
        if n is not None and n != len(self.class_counts):
            raise ValueError(
                f"`class_counts` has {len(self.class_counts)} entries but the scores have "
                f"{n} classes: give one training count per class."
            )

    @property
    def floor_scale(self):
        return self.scale

    def maths(self, s, labels, rows):
        phi = _smoothed_kth(s, self.k + 1, self.epsilon, self.draw(s))
        margins = ops.convert_to_tensor(
            self._margins.astype(keras.backend.standardize_dtype(s.dtype))
        )
        margin = ops.take(margins, labels, axis=0)
        return ops.relu(self.scale * (margin + phi - ranking.label_score(s, labels)))


# --------------------------------------------------------------------------- #
# Noise and the pipeline
# --------------------------------------------------------------------------- #


def _noise_source(config, seed, noise):
    """How the maths gets its noise: None (exact), a tensor (given) or a seed to draw from."""
    if config.epsilon == 0.0:
        return None
    if noise is not None:
        return ("given", noise)
    if seed is None:
        raise ValueError(
            f"`seed` is required when epsilon={config.epsilon} > 0: an int, or a "
            "keras.random.SeedGenerator whose state the caller threads through compiled "
            "steps (unseeded draws can freeze at trace time under JAX). Or pass the "
            "noise itself as `noise`, or use the loss class, which owns its stream."
        )
    return ("seed", seed)


# --------------------------------------------------------------------------- #
# Public functions
# --------------------------------------------------------------------------- #


def topk_calibrated_hinge(
    y_true: Any, y_pred: Any, *, k: int = 5, margin: float = 1.0, multi_label: bool = False
) -> Any:
    """Per-sample top-k calibrated hinge ``max(0, margin + s_[k+1] - s_y)``.

    See `TopKCalibratedHinge`.

    Example: the 3rd largest of all scores is 0.5 and the label scores 1.0,
    so with k = 2 the loss is ``1 + 0.5 - 1.0 = 0.5``:

    >>> import keras_topk
    >>> float(keras_topk.losses.topk_calibrated_hinge([1], [[2.0, 1.0, 0.5, -1.0]], k=2)[0])
    0.5
    """
    config = CalibratedHingeConfig(k=k, margin=margin, multi_label=multi_label)
    return per_sample_losses(y_true, y_pred, config)


def noised_topk_hinge(
    y_true: Any,
    y_pred: Any,
    *,
    k: int = 5,
    margin: float = 1.0,
    epsilon: float = 1.0,
    n_samples: int = 5,
    seed: Any = None,
    multi_label: bool = False,
    noise: Any = None,
) -> Any:
    """Per-sample noised top-k hinge ``max(0, margin + (1/S) sum_t (s + epsilon Z_t)_[k+1] - s_y)``.

    See `NoisedTopKHinge`. ``seed`` is an int (the same noise at every call)
    or a ``keras.random.SeedGenerator`` (advanced at every call; under JAX its
    state must be threaded through compiled steps); ``noise`` gives ``Z``
    itself, of shape ``y_pred.shape[:-1] + (n_samples, n)``. One of them is
    required when ``epsilon > 0``; ``epsilon = 0`` is `topk_calibrated_hinge`.

    Example: with no noise (``epsilon = 0``) it is the exact hinge:

    >>> import keras_topk
    >>> float(keras_topk.losses.noised_topk_hinge([1], [[2.0, 1.0, 0.5, -1.0]], k=2, epsilon=0.0)[0])
    0.5
    """
    config = NoisedHingeConfig(
        k=k, margin=margin, multi_label=multi_label, epsilon=epsilon, n_samples=n_samples, seed=None
    )
    return per_sample_losses(y_true, y_pred, config.with_noise(_noise_source(config, seed, noise)))


def long_tail_topk_hinge(
    y_true: Any,
    y_pred: Any,
    *,
    class_counts: Sequence[float],
    k: int = 5,
    max_margin: float = 0.2,
    scale: float = 50.0,
    epsilon: float = 0.01,
    n_samples: int = 5,
    seed: Any = None,
    noise: Any = None,
) -> Any:
    """Per-sample long-tail hinge ``max(0, scale (m_y + phi(s) - s_y))``, LDAM margins ``m``.

    See `LongTailTopKHinge`; ``seed`` and ``noise`` as for `noised_topk_hinge`.

    Example: two classes of 160 and 10 samples have margins 0.1 and 0.2; with
    no noise, label 0 beating the 2nd score by 0.05 gives ``10 (0.1 - 0.05)``:

    >>> import keras_topk
    >>> loss = keras_topk.losses.long_tail_topk_hinge(
    ...     [0], [[0.3, 0.25]], class_counts=[160, 10], k=1, scale=10.0, epsilon=0.0)
    >>> round(float(loss[0]), 6)
    0.5
    """
    config = LongTailHingeConfig(
        class_counts=class_counts,
        k=k,
        max_margin=max_margin,
        scale=scale,
        epsilon=epsilon,
        n_samples=n_samples,
        seed=None,
    )
    return per_sample_losses(y_true, y_pred, config.with_noise(_noise_source(config, seed, noise)))


# --------------------------------------------------------------------------- #
# The losses
# --------------------------------------------------------------------------- #


@keras.saving.register_keras_serializable(package="keras_topk")
class TopKCalibratedHinge(TopKLoss):
    r"""The top-k calibrated hinge (Yang & Koyejo, ICML 2020, their psi_5).

    .. math::

        l_k(s, y) = \max\bigl(0,\ \mathrm{margin} + s_{[k+1]} - s_y\bigr)

    with ``s_[k+1]`` the (k+1)-th largest of **all** the scores, the label's
    included: zero once the label beats the (k+1)-th class by ``margin``, i.e.
    once it is safely in the top k. Its gradient has two non-zeros (``-1`` on
    the label, ``+1`` on the (k+1)-th class). Unlike `TopKSVM` (Berrada et
    al.: ``max(0, alpha + (t_k - s_y) / k)``, ``t_k`` the k-th largest *other*
    score), it compares the label with the (k+1)-th of all classes, which is
    what makes it top-k calibrated: while the label is in the top k the two
    coincide up to the factor ``1/k``; when the label is out, psi_5 compares it
    with the (k+1)-th class (a class ranked above k-th), `TopKSVM` with the
    k-th other one.

    **Multi-label** (``multi_label=True``; Hu et al., NeurIPS 2020, the TKML
    loss): ``y_true`` multi-hot rows ``(batch, n)``, ``s_y`` the lowest score
    of a positive label: every positive must be in the top k. With more than k
    positives the loss cannot reach 0 (a warning says so once, where the label
    values can be seen, i.e. outside compiled steps).

    Args:
        k: the k of top-k, ``1 <= k <`` number of classes.
        margin: ``>= 0``, default 1.
        multi_label: whether ``y_true`` holds multi-hot rows (default False:
            labels as for every keras-topk loss; dense rows use their argmax).
        reduction: Keras reduction, default "sum_over_batch_size".
        name: default "topk_calibrated_hinge".
        dtype: ignored for the computation (float32, float64 for float64 scores).

    Example:

    >>> import numpy as np, keras_topk
    >>> loss = keras_topk.losses.TopKCalibratedHinge(k=2, reduction=None)
    >>> scores = np.array([[2.0, 1.0, 0.5, -1.0], [0.1, 0.2, 3.0, 0.0]], "float32")
    >>> np.asarray(loss(np.array([1, 2]), scores)).tolist()
    [0.5, 0.0]
    """

    def __init__(
        self,
        k: int = 5,
        margin: float = 1.0,
        multi_label: bool = False,
        reduction: str | None = "sum_over_batch_size",
        name: str = "topk_calibrated_hinge",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            CalibratedHingeConfig(k=k, margin=margin, multi_label=multi_label),
            name=name,
            reduction=reduction,
            dtype=dtype,
        )


class _NoisedLoss(TopKLoss):
    """A loss that draws its noise from its own `NoiseState` (``noise_state``)."""

    def _make_state(self):
        self.noise_state = NoiseState(seed=self.seed, name=f"{self.name}_noise")

    def call(self, y_true, y_pred):
        if self.epsilon == 0.0:
            return per_sample_losses(y_true, y_pred, self.config)
        if not self.noise_state.threaded(y_pred):
            raise ValueError(
                f"The noised loss `{self.name}` ({type(self).__name__}) draws fresh noise at "
                "every step from its NoiseState, but this JAX step does not pass that state "
                "in and out, so every step would draw the same noise. In `model.fit`, add "
                "`callbacks=[keras_topk.callbacks.NoiseCallback()]` (it puts the state among the "
                "model's metrics, which the trainer threads). In your own jitted step, call "
                "the pure function with `noise=` or a `seed=` whose state you thread."
            )
        config: Any = self.config
        config = config.with_noise(("seed", self.noise_state.generator))
        return per_sample_losses(y_true, y_pred, config)


@keras.saving.register_keras_serializable(package="keras_topk")
class NoisedTopKHinge(_NoisedLoss):
    r"""The noised top-k hinge (Garcin, Servajean, Joly, Salmon, ICML 2022), balanced form.

    .. math::

        \phi(s) = \frac{1}{S}\sum_{t=1}^{S} (s + \epsilon Z_t)_{[k+1]},\quad Z_t \sim N(0, I_n),
        \qquad l_k(s, y) = \max\bigl(0,\ \mathrm{margin} + \phi(s) - s_y\bigr)

    `TopKCalibratedHinge` with ``s_[k+1]`` smoothed by Gaussian perturbation:
    its gradient ``(1/S) sum_t onehot(argument of (s + epsilon Z_t)_[k+1])``
    spreads over the classes near the (k+1)-th place, so more classes get a
    signal than the exact hinge's one. ``epsilon = 0`` is the exact hinge.

    **Randomness.** Z is drawn afresh at every call from the loss's
    `NoiseState` (``loss.noise_state``), a ``SeedGenerator`` seeded by
    ``seed``: two runs with the same seed draw the same noise. Pass
    ``keras_topk.callbacks.NoiseCallback()`` to ``fit``: it puts the state among
    the model's metrics, so that every backend's compiled step (TensorFlow
    ``jit_compile``, JAX, PyTorch) passes it in and out; under JAX a missing
    callback is a ``ValueError`` when the step is traced, never frozen noise.
    Evaluation calls draw too (the stream moves on). Under a distribution
    strategy every replica draws from the same stream (the noise is not
    correlated across samples within a replica). The state is saved with the
    model (``loss.noise_state``), so resumed training continues the stream.

    Args:
        k: the k of top-k, ``1 <= k <`` number of classes.
        margin: ``>= 0``, default 1.
        epsilon: noise scale ``>= 0``, default 1 (the reference's; the paper's
            CIFAR-100 runs use 0.2); 0 gives the exact hinge.
        n_samples: S, the number of perturbed copies, default 5.
        seed: int seed of the noise; None picks one at random.
        multi_label: multi-hot ``y_true``, ``s_y`` the lowest positive score
            (see `TopKCalibratedHinge`).
        reduction: Keras reduction, default "sum_over_batch_size".
        name: default "noised_topk_hinge".
        dtype: ignored for the computation.

    Example: with ``epsilon=0`` no noise is drawn (the exact hinge):

    >>> import numpy as np, keras_topk
    >>> loss = keras_topk.losses.NoisedTopKHinge(k=2, epsilon=0.0, seed=1, reduction=None)
    >>> np.asarray(loss(np.array([1]), np.array([[2.0, 1.0, 0.5, -1.0]], "float32"))).tolist()
    [0.5]
    """

    def __init__(
        self,
        k: int = 5,
        margin: float = 1.0,
        epsilon: float = 1.0,
        n_samples: int = 5,
        seed: int | None = None,
        multi_label: bool = False,
        reduction: str | None = "sum_over_batch_size",
        name: str = "noised_topk_hinge",
        dtype: Any = None,
    ) -> None:
        config = NoisedHingeConfig(
            k=k,
            margin=margin,
            multi_label=multi_label,
            epsilon=epsilon,
            n_samples=n_samples,
            seed=seed,
        )
        super().__init__(config, name=name, reduction=reduction, dtype=dtype)
        self._make_state()


@keras.saving.register_keras_serializable(package="keras_topk")
class LongTailTopKHinge(_NoisedLoss):
    r"""The noised top-k hinge for long-tailed classes (Garcin et al., ICML 2022), imbalanced form.

    .. math::

        m_c = \mathrm{max\_margin}\,\frac{n_c^{-1/4}}{\max_j n_j^{-1/4}},\qquad
        l_k(s, y) = \max\bigl(0,\ \mathrm{scale}\,(m_y + \phi(s) - s_y)\bigr)

    with ``n_c`` the training count of class c (the LDAM margins of Cao et
    al., 2019: rare classes get larger margins) and ``phi`` the noised
    (k+1)-th largest score of `NoisedTopKHinge` (``epsilon = 0``: the exact
    ``s_[k+1]``). The paper's runs (Pl@ntNet-300K) use ``epsilon=0.01``,
    ``max_margin=0.2``, ``scale=60`` with a cosine-normalised last layer
    (`keras_topk.layers.NormalizedDense`), whose scores lie in ``[-1, 1]``:
    ``scale`` plays the part of an inverse temperature. With an ordinary last
    layer use ``scale=1``. Randomness as for `NoisedTopKHinge` (pass
    `NoiseCallback` to ``fit`` when ``epsilon > 0``).

    Args:
        class_counts: the training count of every class, all positive (a
            class with no sample would get an infinite margin: an error).
        k: the k of top-k, ``1 <= k <`` number of classes.
        max_margin: the margin of the rarest class, ``>= 0``, default 0.2.
        scale: ``> 0``, default 50 (the reference's, for a cosine layer).
        epsilon: noise scale ``>= 0``, default 0.01 (the paper's long-tail runs).
        n_samples: S, default 5.
        seed: int seed of the noise; None picks one at random.
        reduction: Keras reduction, default "sum_over_batch_size".
        name: default "long_tail_topk_hinge".
        dtype: ignored for the computation.

    Example:

    >>> import numpy as np, keras_topk
    >>> loss = keras_topk.losses.LongTailTopKHinge([160, 10, 10], k=1, scale=10.0, epsilon=0.0,
    ...                                            reduction=None)
    >>> [round(v, 6) for v in np.asarray(loss(np.array([0, 1]), np.array(
    ...     [[0.3, 0.25, 0.0], [0.3, 0.25, 0.0]], "float32"))).tolist()]
    [0.5, 2.0]
    """

    def __init__(
        self,
        class_counts: Sequence[float],
        k: int = 5,
        max_margin: float = 0.2,
        scale: float = 50.0,
        epsilon: float = 0.01,
        n_samples: int = 5,
        seed: int | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "long_tail_topk_hinge",
        dtype: Any = None,
    ) -> None:
        config = LongTailHingeConfig(
            class_counts=class_counts,
            k=k,
            max_margin=max_margin,
            scale=scale,
            epsilon=epsilon,
            n_samples=n_samples,
            seed=seed,
        )
        super().__init__(config, name=name, reduction=reduction, dtype=dtype)
        self._make_state()
