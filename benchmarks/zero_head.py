"""Training a zero-initialised head: cross-entropy against the default TopKCrossEntropy.

A linear probe ``Dense(n, kernel_initializer="zeros")`` gives every sample a
row of tied scores at the first step. This trains it on synthetic data (``n``
Gaussian classes in 16 dimensions, noise 1.6: CE reaches a top-5 accuracy of
about 0.94 and a top-1 of about 0.5) with CE and with the default
``TopKCrossEntropy()`` on every ``method``, from the same data, initial
weights and optimizer, and prints the test top-5 accuracy and the largest
weight ``max |w|`` of the head after training:

    KERAS_BACKEND=tensorflow python -m benchmarks.zero_head
    KERAS_BACKEND=tensorflow python -m benchmarks.zero_head --methods splitter_selection

`tests/losses/test_topk_cross_entropy.py` runs `train` (slow test).
"""

import argparse
import time

import keras
import numpy as np

import keras_topk

OPTIMIZERS = {
    "adam": lambda: keras.optimizers.Adam(0.01),
    "sgd": lambda: keras.optimizers.SGD(0.1),
}


def data(classes=20, dim=16, train=2000, test=2000, noise=1.6, seed=0):
    """``((x, y), (x_test, y_test))``: Gaussian classes around random means."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(classes, dim))

    def draw(count):
        y = rng.integers(classes, size=count)
        x = means[y] + noise * rng.normal(size=(count, dim))
        return x.astype("float32"), y.astype("int32")

    return draw(train), draw(test)


def top5_accuracy(scores, labels):
    """Share of samples with fewer than 5 scores above the label's (ties count for the label)."""
    own = scores[np.arange(len(labels)), labels][:, None]
    return float(np.mean(np.sum(scores > own, axis=1) < 5))


def train(loss, optimizer, epochs=3, classes=20, seed=0, **data_args):
    """``(top-5 accuracy on the test split, max |w| of the head)`` after ``epochs`` from a zero head."""
    (x, y), (x_test, y_test) = data(classes=classes, seed=seed, **data_args)
    keras.utils.set_random_seed(seed)  # the same batches for every loss
    model = keras.Sequential(
        [keras.Input((x.shape[1],)), keras.layers.Dense(classes, kernel_initializer="zeros")]
    )
    model.compile(optimizer=optimizer, loss=loss)
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    scores = model.predict(x_test, verbose=0)
    kernel = keras.ops.convert_to_numpy(model.layers[0].kernel)
    return top5_accuracy(scores, y_test), float(np.max(np.abs(kernel)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(keras_topk.ops.METHODS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--classes", type=int, default=20)
    args = parser.parse_args()
    print(
        f"backend {keras.backend.backend()}, {args.classes} classes, {args.epochs} epochs, "
        "zero-initialised Dense head; Adam(0.01) and SGD(0.1)"
    )
    print("| loss | top-5, Adam | max abs w, Adam | top-5, SGD | max abs w, SGD | seconds |")
    print("|---|---|---|---|---|---|")
    rows = [("CE", lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True))]
    rows += [
        (
            f"TopKCrossEntropy(method={m!r})",
            lambda m=m: keras_topk.losses.TopKCrossEntropy(method=m),
        )
        for m in args.methods
    ]
    for label, make_loss in rows:
        start = time.perf_counter()
        cells = []
        for make_optimizer in OPTIMIZERS.values():
            top5, w = train(make_loss(), make_optimizer(), args.epochs, args.classes)
            cells += [f"{top5:.3f}", f"{w:.3g}"]
        print(f"| {label} | " + " | ".join(cells) + f" | {time.perf_counter() - start:.0f} |")


if __name__ == "__main__":
    main()
