"""Multi-device training on JAX: keras.distribution.DataParallel with model.fit.

``DataParallel`` replicates the weights on every device and splits each
batch along its first axis; ``fit``, the losses, the metrics and
``TransitionCallback`` run unchanged (the step is one jitted program over the
global batch, so the losses reduce over the global batch, as on one device).
On several machines, call ``jax.distributed.initialize()`` first on each of
them: ``jax.devices()`` then lists the devices of all processes.

Try it on one CPU with two simulated devices::

    XLA_FLAGS=--xla_force_host_platform_device_count=2 KERAS_BACKEND=jax \\
        python docs/recipes/jax_data_parallel.py

It trains a Dense classifier with every loss of keras_topk.losses, once on
all devices and once on one, and prints both; ``--out FILE`` writes them as
JSON (``tests/distribute/test_jax_data_parallel.py`` compares them).
``--dtype float64`` trains in float64 (``jax_enable_x64``), where the two runs
agree to rounding (1e-9 in the test). In float32 a step agrees to about 1e-7,
but ``TopKCrossEntropy``'s trajectory amplifies the rounding: 1.5e-2 in the
weights after 8 steps at learning rate 0.5 (the other losses: 6e-8).
"""

import argparse
import functools
import json
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_topk  # noqa: E402

NUM_FEATURES = 12
NUM_CLASSES = 10
GLOBAL_BATCH = 64


# The arguments of the losses that need some: the long-tail hinge its training counts, and the
# noised hinges their exact form (epsilon = 0): their noise is a random stream that a run on several
# devices does not draw in the same order as one process, so only the exact form compares equal.
LOSS_ARGUMENTS = {
    "LongTailTopKHinge": dict(class_counts=[10] * NUM_CLASSES, epsilon=0.0),
    "NoisedTopKHinge": dict(epsilon=0.0),
}


def public_classes(module, base):
    """``{name: class}`` of the public subclasses of ``base`` that ``module`` exports."""
    names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    found = {}
    for name in names:
        obj = getattr(module, name)
        if isinstance(obj, type) and issubclass(obj, base):
            found[name] = obj
    return found


def make_data(num_samples, seed=0):
    """Features and integer labels with learnable structure (a noisy linear teacher)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_samples, NUM_FEATURES)).astype("float32")
    teacher = np.random.default_rng(99).normal(size=(NUM_FEATURES, NUM_CLASSES))
    logits = x @ teacher + rng.normal(scale=2.0, size=(num_samples, NUM_CLASSES))
    return x, np.argmax(logits, axis=-1).astype("int32")


def make_metrics():
    return [
        keras_topk.metrics.TopKAccuracy(k=3),
        keras_topk.metrics.MultiTopKAccuracy(ks=(1, 5)),
    ]


class _StepLosses(keras.callbacks.Callback):
    """Records the running mean of the loss that fit logs after each step."""

    def __init__(self):
        super().__init__()
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        self.values.append(float(logs["loss"]))


def train(distribution, make_loss, x, y, epochs=2, learning_rate=0.5):
    """Trains a Dense classifier with ``fit``, under ``distribution`` (None: one device)."""

    def run():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((NUM_FEATURES,)), keras.layers.Dense(NUM_CLASSES)])
        loss = make_loss()
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate), loss=loss, metrics=make_metrics()
        )
        callbacks = [steps := _StepLosses()]
        if isinstance(loss, keras_topk.losses.TopKTransitionLoss):
            callbacks.append(keras_topk.callbacks.TransitionCallback())
        history = model.fit(
            x,
            y,
            batch_size=GLOBAL_BATCH,
            epochs=epochs,
            shuffle=False,
            verbose=0,
            callbacks=callbacks,
        )
        return {
            "losses": steps.values,
            "logs": {k: float(v[-1]) for k, v in history.history.items()},
            "weights": [np.asarray(w).tolist() for w in model.get_weights()],
            "transition_weight": getattr(loss, "current_weight", None),
        }

    if distribution is None:
        return run()
    with distribution.scope():
        # Model, optimizer and metric variables are created, and fit runs,
        # under the distribution: weights replicated, batches split.
        return run()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loss", default="all", help="a class of keras_topk.losses, or 'all'")
    parser.add_argument("--steps", type=int, default=4, help="steps per epoch (2 epochs)")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    args = parser.parse_args(argv)
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
        keras.config.set_floatx("float64")

    devices = jax.devices()
    distribution = keras.distribution.DataParallel(devices=devices)
    available = {
        name: functools.partial(cls, **LOSS_ARGUMENTS.get(name, {}))
        for name, cls in public_classes(keras_topk.losses, keras.losses.Loss).items()
    }
    names = sorted(available) if args.loss == "all" else [args.loss]
    x, y = make_data(GLOBAL_BATCH * args.steps)
    x = x.astype(args.dtype)
    results = {"devices": len(devices), "all_devices": {}, "one_device": {}}
    for name in names:
        # Default arguments (k = 5 of 10 classes); TopKTransitionLoss is adaptive.
        results["all_devices"][name] = train(distribution, available[name], x, y)
        results["one_device"][name] = train(None, available[name], x, y)
        print(f"{name}: {len(devices)} devices {results['all_devices'][name]['logs']}", flush=True)
        print(f"{name}: 1 device  {results['one_device'][name]['logs']}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f)


if __name__ == "__main__":
    main()
