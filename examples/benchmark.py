"""The study's embedded benchmark: 100 classes in 20 superclasses of 5, from a known distribution.

Features are ``dim``-dimensional. Each superclass ``g`` has a centre
``c_g ~ N(0, group_spread^2 I)``; each class a centre ``c_g + N(0, class_spread^2 I)``,
so the 5 classes of a superclass are near each other and the superclasses far
apart (CIFAR-100's structure). A class is a mixture of ``blobs`` unit-variance
Gaussians: with ``blobs=1`` it is one Gaussian at its centre (then the Bayes
classifier is linear in ``x`` and a linear head can reach it); with more, each
blob sits at ``c_g + N(0, blob_spread^2 I)`` anywhere in its superclass, so a
class is multi-modal and a linear head cannot separate it (Sawada et al.'s
"class distributions too complex for the model").

Label ids are a random permutation of the classes, so that the reference
code's blocks of 5 consecutive ids (``label - label % 5 + U{0..4}``) are *not*
the superclasses, as in torchvision's alphabetical CIFAR-100 order. Training
labels get noise of one ``noise`` kind with probability ``p``:
``"superclass"`` (a class drawn uniformly from the label's superclass, Berrada
et al.'s condition), ``"block"`` (from the label's block of 5 ids, the
reference code), or ``"uniform"`` (any of the classes, the contrast). Test
labels are clean. The posterior ``p(y | x)`` is exact (uniform class prior,
mixtures of Gaussians of the same variance), so the Bayes limit of top-k
accuracy is known up to the Monte Carlo error of the test sample.
"""

import dataclasses

import numpy as np
from scipy.special import logsumexp

__all__ = ["Benchmark", "Problem", "add_noise", "bayes_accuracy_at_k", "make_problem", "make_task"]

NOISE_KINDS = ("none", "superclass", "block", "uniform")


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One condition of the benchmark (the distribution, the sizes, the noise)."""

    groups: int = 20
    per_group: int = 5
    dim: int = 16
    group_spread: float = 1.0
    class_spread: float = 0.4
    blobs: int = 1
    blob_spread: float = 0.45
    train_per_class: int = 30
    test_size: int = 20000
    noise: str = "none"
    p: float = 0.0
    long_tail: tuple = ()  # (most, fewest): training examples per class on a power law instead

    def train_counts(self):
        """Training examples of each label id: ``train_per_class``, or a power law ``long_tail``.

        The power law: the class of rank ``r = 1..n`` has ``round(most * r**-a)`` examples, ``a``
        set so that the last has ``fewest``; ranks follow the label ids (a random order of classes).
        """
        n = self.num_classes
        if not self.long_tail:
            return np.full(n, self.train_per_class, np.int64)
        most, fewest = self.long_tail
        a = np.log(most / fewest) / np.log(n)
        return np.round(most * np.arange(1, n + 1, dtype=np.float64) ** -a).astype(np.int64)

    def __post_init__(self):
        if self.noise not in NOISE_KINDS:
            raise ValueError(f"noise {self.noise!r}: expected one of {', '.join(NOISE_KINDS)}.")
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"p={self.p}: a probability in [0, 1].")
        if self.long_tail and not (
            len(self.long_tail) == 2 and self.long_tail[0] >= self.long_tail[1] >= 1
        ):
            raise ValueError(
                f"long_tail={self.long_tail}: expected (most, fewest), most >= fewest >= 1."
            )

    @property
    def num_classes(self):
        return self.groups * self.per_group


@dataclasses.dataclass
class Problem:
    centers: np.ndarray  # (classes, blobs, dim), indexed by label id
    superclass: np.ndarray  # (classes,) superclass of each label id

    def sample(self, rng, labels):
        blob = rng.integers(0, self.centers.shape[1], labels.shape[0])
        x = self.centers[labels, blob] + rng.standard_normal(
            (labels.shape[0], self.centers.shape[2])
        )
        return x.astype("float32")

    def log_posterior(self, x, chunk=4096):
        """``log p(y | x)`` for every label id, shape ``(size, classes)``."""
        x = np.asarray(x, dtype=np.float64)
        out = []
        flat = self.centers.reshape(-1, self.centers.shape[2])
        for start in range(0, x.shape[0], chunk):
            part = x[start : start + chunk]
            sq = (part**2).sum(1)[:, None] - 2 * part @ flat.T + (flat**2).sum(1)[None]
            joint = logsumexp(-0.5 * sq.reshape(part.shape[0], *self.centers.shape[:2]), axis=2)
            out.append(joint - logsumexp(joint, axis=1, keepdims=True))
        return np.concatenate(out)


def make_problem(config, rng):
    """Draws the class centres; label ids are a random permutation of (superclass, member)."""
    g, per, d = config.groups, config.per_group, config.dim
    group_centers = rng.normal(0.0, config.group_spread, (g, d))
    if config.blobs == 1:
        centers = np.repeat(group_centers, per, 0) + rng.normal(
            0.0, config.class_spread, (g * per, d)
        )
        centers = centers[:, None, :]
    else:
        centers = np.repeat(group_centers, per, 0)[:, None, :] + rng.normal(
            0.0, config.blob_spread, (g * per, config.blobs, d)
        )
    superclass = np.repeat(np.arange(g), per)
    order = rng.permutation(g * per)  # label id i is the class order[i]
    return Problem(centers=centers[order], superclass=superclass[order])


def add_noise(labels, superclass, noise, p, rng, per_group=5):
    """Training labels with noise: with probability ``p`` each label is redrawn (possibly unchanged).

    ``"superclass"``: uniformly from the label's superclass; ``"block"``: from
    ``label - label % per_group + U{0..per_group-1}`` (the reference code);
    ``"uniform"``: from all classes. The draws do not depend on ``p`` (one
    uniform number per label decides), so noise at a larger ``p`` adds to the
    labels flipped at a smaller one.
    """
    labels = np.asarray(labels)
    u = rng.random(labels.shape[0])
    pick = rng.random(labels.shape[0])
    if noise == "none" or p == 0.0:
        return labels.copy()
    num_classes = superclass.shape[0]
    if noise == "superclass":
        members = np.argsort(superclass, kind="stable").reshape(
            -1, per_group
        )  # ids of each superclass
        new = members[superclass[labels], (pick * per_group).astype(int)]
    elif noise == "block":
        new = labels - labels % per_group + (pick * per_group).astype(int)
    else:
        new = (pick * num_classes).astype(int)
    return np.where(u < p, new, labels).astype(labels.dtype)


def make_task(config, seed, with_clean=False):
    """One draw of a condition: ``(x_train, y_train_noisy, x_test, y_test, problem)``.

    A seed fixes the problem, the samples and the noise draws; conditions that
    differ only in ``noise``/``p`` share them (common random numbers). The test
    labels are drawn uniformly (a balanced test set, also under ``long_tail``).
    ``with_clean``: the clean training labels are appended to the tuple.
    """
    rng = np.random.default_rng([seed, config.dim, config.blobs, config.train_per_class])
    problem = make_problem(config, rng)
    n = config.num_classes
    if config.long_tail:
        y_train = np.repeat(np.arange(n, dtype=np.int32), config.train_counts())
    else:
        y_train = np.tile(np.arange(n, dtype=np.int32), config.train_per_class)
    y_train = rng.permutation(y_train)
    x_train = problem.sample(rng, y_train)
    y_test = rng.integers(0, n, config.test_size).astype(np.int32)
    x_test = problem.sample(rng, y_test)
    noisy = add_noise(
        y_train,
        problem.superclass,
        config.noise,
        config.p,
        np.random.default_rng([seed, 7]),
        config.per_group,
    )
    if with_clean:
        return x_train, noisy, x_test, y_test, problem, y_train
    return x_train, noisy, x_test, y_test, problem


def bayes_accuracy_at_k(problem, x_test, max_k):
    """Expected top-k accuracy of the Bayes classifier on ``x_test``, k = 1..max_k.

    The sum of the k largest posteriors is the probability that the label is
    among the Bayes top k given ``x``; its mean over ``x_test`` estimates the
    limit with less variance than counting hits on the drawn labels.
    """
    posterior = np.exp(problem.log_posterior(x_test))
    top = -np.sort(-posterior, axis=1)[:, :max_k]
    curve = np.mean(np.cumsum(top, axis=1), axis=0).tolist()
    return curve + [1.0] * (max_k - len(curve))
