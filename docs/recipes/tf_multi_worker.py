"""Multi-machine training: tf.distribute.MultiWorkerMirroredStrategy, custom training loop.

Keras 3's ``model.fit`` does not run under ``MultiWorkerMirroredStrategy``
(keras-team/keras#20585, open: TensorFlow's own multi-worker Keras tutorial
fails since TensorFlow 2.16 made Keras 3 the default), for keras_topk's losses
and for Keras's cross-entropy alike. A custom training loop with
``strategy.run`` works: each worker computes the loss of its share of the
global batch, the optimizer sums the gradients over the workers, and
``TopKTransitionLoss.advance()`` replaces ``TransitionCallback``.

Start one process per machine, each with its ``TF_CONFIG`` (the same cluster,
its own index), e.g. on two machines::

    TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                "task": {"type": "worker", "index": 0}}' python docs/recipes/tf_multi_worker.py
    TF_CONFIG='{... "task": {"type": "worker", "index": 1}}' python docs/recipes/tf_multi_worker.py

Without ``TF_CONFIG`` the same script trains in one process (one replica),
the baseline that ``tests/distribute/test_tf_multi_worker.py`` compares the
two-worker run with. ``--out FILE`` writes the per-step losses, the metrics,
the final weights and the transition weight ``w`` of every loss as JSON;
``--dtype float64`` trains in float64 (the test's setting, where the runs agree
to rounding; in float32, after 8 steps, the losses agree to 1e-6 and the
weights to 1e-5, TopKCrossEntropy's trajectory amplifying the rounding).
"""

import argparse
import functools
import json
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

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


def train(strategy, make_loss, x, y, steps, learning_rate=0.5):
    """Trains a Dense classifier for ``steps`` global batches; returns what it measured."""
    with strategy.scope():
        # Created in the scope: the weights, the optimizer slots, the metrics'
        # counts and the transition state become mirrored variables.
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((NUM_FEATURES,)), keras.layers.Dense(NUM_CLASSES)])
        optimizer = keras.optimizers.SGD(learning_rate)
        loss = make_loss()
        metrics = make_metrics()

    def dataset_fn(input_context):
        # Each worker reads every num_input_pipelines-th example, so that step t
        # of all workers together covers the global batch t of one process.
        batch = input_context.get_per_replica_batch_size(GLOBAL_BATCH)
        dataset = tf.data.Dataset.from_tensor_slices((x, y))
        dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        return dataset.batch(batch, drop_remainder=True)

    dataset = strategy.distribute_datasets_from_function(dataset_fn)

    @tf.function
    def train_step(xb, yb):
        def step_fn(xb, yb):
            with tf.GradientTape() as tape:
                scores = model(xb, training=True)
                # The mean over this replica's examples, which Keras's reduction
                # ("sum_over_batch_size", the default) already divides by
                # num_replicas_in_sync under tf.distribute: the optimizer sums
                # the replicas' gradients, so the sum is the gradient of the mean
                # over the global batch (each replica holds GLOBAL_BATCH /
                # num_replicas examples). With reduction="sum", divide yourself.
                value = loss(yb, scores)
            gradients = tape.gradient(value, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            for metric in metrics:
                metric.update_state(yb, scores)
            return value

        per_replica = strategy.run(step_fn, args=(xb, yb))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    losses = []
    for step, (xb, yb) in enumerate(dataset):
        if step == steps:
            break
        losses.append(float(train_step(xb, yb)))
        if isinstance(loss, keras_topk.losses.TopKTransitionLoss):
            # What TransitionCallback does in fit: move w after each optimizer step.
            loss.advance()

    results = {}
    for metric in metrics:
        value = metric.result()
        if isinstance(value, dict):
            results.update({k: float(v) for k, v in value.items()})
        else:
            results[metric.name] = float(value)
    return {
        "losses": losses,
        "metrics": results,
        "weights": [w.tolist() for w in model.get_weights()],
        "transition_weight": getattr(loss, "current_weight", None),
    }


def try_fit(strategy, make_loss, x, y, steps):
    """``model.fit`` under the strategy; returns the error it raises (None if it trains).

    Not a recipe: the record of keras-team/keras#20585 that ``--fit`` keeps
    checkable, so that the README's statement can be retired when Keras fixes it.
    """
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((NUM_FEATURES,)), keras.layers.Dense(NUM_CLASSES)])
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=make_loss())
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH, drop_remainder=True)
    try:
        model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
    except Exception as error:  # noqa: BLE001  (recorded, whatever it is)
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        return f"{type(error).__name__}: {lines[0][:120]} ... {lines[-1][-160:]}"
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loss", default="all", help="a class of keras_topk.losses, or 'all'")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument(
        "--timeout",
        type=int,
        default=120,
        help="seconds a collective may wait for the other workers",
    )
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument(
        "--fit",
        action="store_true",
        help="try model.fit instead (Keras's cross-entropy and every loss) and record the errors",
    )
    args = parser.parse_args(argv)
    keras.config.set_floatx(args.dtype)

    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=args.timeout
        )
    )
    available = {
        name: functools.partial(cls, **LOSS_ARGUMENTS.get(name, {}))
        for name, cls in public_classes(keras_topk.losses, keras.losses.Loss).items()
    }
    names = sorted(available) if args.loss == "all" else [args.loss]
    x, y = make_data(GLOBAL_BATCH * args.steps)
    x = x.astype(args.dtype)
    if args.fit:
        losses = {
            "keras.losses.SparseCategoricalCrossentropy": lambda: (
                keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            )
        }
        losses.update({name: available[name] for name in names})
        errors = {name: try_fit(strategy, make, x, y, args.steps) for name, make in losses.items()}
        for name, error in errors.items():
            print(f"fit with {name}: {error or 'trains'}", flush=True)
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"num_replicas": strategy.num_replicas_in_sync, "fit_errors": errors}, f)
        return

    results = {}
    for name in names:
        # Default arguments (k = 5 of 10 classes); TopKTransitionLoss is adaptive.
        results[name] = train(strategy, available[name], x, y, args.steps)
        print(name, "losses", np.round(results[name]["losses"], 6).tolist(), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"num_replicas": strategy.num_replicas_in_sync, "results": results}, f)


if __name__ == "__main__":
    main()
