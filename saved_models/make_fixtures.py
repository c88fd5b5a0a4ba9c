"""Writes the saved-model fixtures that tests/contract/test_saved_models.py loads.

    python -m saved_models.make_fixtures        # from the repository root, TensorFlow backend

One tiny model per keras_topk loss (a Dense head, 12 features -> 10 classes),
compiled with the loss and both keras_topk metrics, trained for one epoch so
that the optimizer (Adam) and the loss's state exist, and written as

- ``fixtures/<name>.keras``: ``model.save``;
- ``fixtures/<name>_savedmodel/``: ``keras_topk.export.export_with_loss``
  (endpoints ``serve``, ``loss``, ``weighted_loss``, ``top_k``);
- ``fixtures/<name>.npz``: the inputs and what the model gave at saving time:
  scores, ``evaluate`` values, the loss with sample weights, top-k indices,
  the loss's config, the optimizer's step count, and the weights after one
  more epoch of training (to check that training resumes from the same state).

The fixtures stand for files that users have saved. The tests fail when a
change to keras_topk stops loading them or changes what they compute. Re-run
this script only when such a change is intended, and say so in the release
notes: users' files change the same way.
"""

import argparse
import json
import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_topk  # noqa: E402
from keras_topk.export import export_with_loss  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")
NUM_FEATURES, NUM_CLASSES, NUM_SAMPLES, BATCH_SIZE, SEED = 12, 10, 32, 16, 7
TOP_K = 3


def make_losses():
    """``{fixture name: loss}``, one per keras_topk loss class, non-default arguments."""
    L = keras_topk.losses
    return {
        "smooth_topk_svm": L.SmoothTopKSVM(k=3, tau=0.5, alpha=0.8),
        "topk_svm": L.TopKSVM(k=2, alpha=0.5),
        "topk_cross_entropy": L.TopKCrossEntropy(p_k=(0.5, 0.0, 0.5), m=6),
        "topk_transition": L.TopKTransitionLoss(k=3, momentum=0.5, group="predicted"),
    }


def make_metrics():
    return [keras_topk.metrics.TopKAccuracy(k=2), keras_topk.metrics.MultiTopKAccuracy(ks=(1, 3))]


def make_data():
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(NUM_SAMPLES, NUM_FEATURES)).astype("float32")
    teacher = rng.normal(size=(NUM_FEATURES, NUM_CLASSES))
    y = np.argmax(x @ teacher + rng.normal(scale=2.0, size=(NUM_SAMPLES, NUM_CLASSES)), axis=-1)
    sample_weight = rng.uniform(0.0, 2.0, size=NUM_SAMPLES).astype("float32")
    return x, y.astype("int32"), sample_weight


def callbacks_for(loss):
    if isinstance(loss, keras_topk.losses.TopKTransitionLoss):
        return [keras_topk.losses.TransitionCallback()]
    return []


def write_fixture(name, loss, directory):
    x, y, sample_weight = make_data()
    keras.utils.set_random_seed(SEED)
    model = keras.Sequential(
        [keras.Input((NUM_FEATURES,)), keras.layers.Dense(NUM_CLASSES)], name=f"{name}_model"
    )
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss, metrics=make_metrics())
    model.fit(
        x,
        y,
        batch_size=BATCH_SIZE,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=callbacks_for(loss),
    )

    model.save(os.path.join(directory, f"{name}.keras"))
    export_with_loss(model, os.path.join(directory, f"{name}_savedmodel"), k=TOP_K)

    scores = keras.ops.convert_to_numpy(model(x, training=False))
    evaluation = model.evaluate(x, y, batch_size=BATCH_SIZE, verbose=0, return_dict=True)
    record = {
        "x": x,
        "y": y,
        "sample_weight": sample_weight,
        "scores": scores,
        "weighted_loss": np.float32(
            keras.ops.convert_to_numpy(loss(y, scores, sample_weight=sample_weight))
        ),
        "top_k_indices": np.argsort(-scores, axis=-1, kind="stable")[:, :TOP_K].astype("int32"),
        "loss_class": np.array(type(loss).__name__),
        "loss_config": np.array(json.dumps(loss.get_config())),
        "iterations": np.int64(keras.ops.convert_to_numpy(model.optimizer.iterations)),
        "keras_version": np.array(keras.__version__),
    }
    for key, value in evaluation.items():
        record[f"evaluate/{key}"] = np.float32(value)
    state = getattr(loss, "state", None)
    if state is not None:
        for variable in state.variables:
            record[f"state/{variable.name}"] = keras.ops.convert_to_numpy(variable)

    # One more epoch from the saved state: a reloaded model must land here.
    model.fit(
        x,
        y,
        batch_size=BATCH_SIZE,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=callbacks_for(loss),
    )
    for i, weight in enumerate(model.get_weights()):
        record[f"resumed/{i}"] = weight
    np.savez(os.path.join(directory, f"{name}.npz"), **record)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=FIXTURES, help="fixture folder (default: %(default)s)")
    args = parser.parse_args(argv)
    if keras.backend.backend() != "tensorflow":
        raise SystemExit("The fixtures include SavedModels: run with KERAS_BACKEND=tensorflow.")
    os.makedirs(args.output, exist_ok=True)
    for name, loss in make_losses().items():
        for stale in (f"{name}.keras", f"{name}.npz"):
            if os.path.exists(os.path.join(args.output, stale)):
                os.remove(os.path.join(args.output, stale))
        shutil.rmtree(os.path.join(args.output, f"{name}_savedmodel"), ignore_errors=True)
        write_fixture(name, loss, args.output)
        print(f"wrote {name}")


if __name__ == "__main__":
    main()
