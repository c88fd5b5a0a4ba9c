"""The embedded benchmark: overlapping multi-modal classes with label noise, and its Bayes limit.

Each class is a mixture of several isotropic Gaussian blobs whose centres are
drawn uniformly in a box, so that the blobs of different classes overlap
heavily (Sawada et al.: class distributions too complex for the model). A
fraction of the *training* labels is replaced by a uniformly random class
(Berrada et al.: label noise); test labels are clean. Because the generating
distribution is known, the exact posterior ``p(y | x)`` gives the best top-k
accuracy any classifier can reach on the test set (the Bayes limit).
"""

import dataclasses

import numpy as np
from scipy.special import logsumexp


@dataclasses.dataclass(frozen=True)
class BlobsConfig:
    num_classes: int = 20
    dim: int = 2
    blobs_per_class: int = 4
    blob_std: float = 0.5
    box: float = 3.0
    train_size: int = 3000
    test_size: int = 20000
    label_noise: float = 0.4


@dataclasses.dataclass
class Blobs:
    centers: np.ndarray  # (classes, blobs, dim)
    log_weights: np.ndarray  # (classes, blobs): mixture weights within each class
    blob_std: float

    def sample(self, rng, size):
        classes, blobs, dim = self.centers.shape
        labels = rng.integers(0, classes, size)
        # Gumbel-max picks each example's blob from its class's mixture weights.
        blob = np.argmax(self.log_weights[labels] + rng.gumbel(size=(size, blobs)), axis=1)
        x = self.centers[labels, blob] + self.blob_std * rng.standard_normal((size, dim))
        return x.astype("float32"), labels.astype("int32")

    def log_posterior(self, x):
        """``log p(y | x)`` for every class (uniform class prior), shape ``(size, classes)``."""
        x = np.asarray(x, dtype=np.float64)
        diff = x[:, None, None, :] - self.centers[None]
        log_density = -0.5 * np.sum(diff**2, axis=-1) / self.blob_std**2 + self.log_weights[None]
        joint = logsumexp(log_density, axis=2)
        return joint - logsumexp(joint, axis=1, keepdims=True)


def make_blobs(config, rng):
    centers = rng.uniform(-config.box, config.box, (config.num_classes, config.blobs_per_class, config.dim))
    weights = rng.dirichlet(np.full(config.blobs_per_class, 2.0), size=config.num_classes)
    return Blobs(centers=centers, log_weights=np.log(weights), blob_std=float(config.blob_std))


def flip_labels(labels, fraction, num_classes, rng):
    """Replaces ``fraction`` of the labels by a uniformly random class (possibly the same one)."""
    labels = labels.copy()
    flip = rng.random(labels.shape[0]) < fraction
    labels[flip] = rng.integers(0, num_classes, int(flip.sum()))
    return labels


def make_task(config, seed):
    """One draw of the benchmark: a new class layout, training and test sets.

    Returns ``(x_train, y_train_noisy, x_test, y_test, blobs)``.
    """
    rng = np.random.default_rng(seed)
    blobs = make_blobs(config, rng)
    x_train, y_train = blobs.sample(rng, config.train_size)
    x_test, y_test = blobs.sample(rng, config.test_size)
    y_train = flip_labels(y_train, config.label_noise, config.num_classes, rng)
    return x_train, y_train, x_test, y_test, blobs


def bayes_accuracy_at_k(blobs, x_test, max_k):
    """Expected top-k accuracy of the Bayes classifier on ``x_test`` for k = 1..max_k.

    The expectation over the test labels given ``x`` (the sum of the k largest
    posteriors) has less variance than counting hits on the drawn labels.
    """
    posterior = np.exp(blobs.log_posterior(x_test))
    top = -np.sort(-posterior, axis=1)[:, :max_k]
    curve = [float(v) for v in np.mean(np.cumsum(top, axis=1), axis=0)]
    return curve + [1.0] * (max_k - len(curve))  # k >= number of classes
