"""Compiling, fitting (resumable) and evaluating, shared by the scripts."""

import importlib.util
import json
import os
import shutil

import keras
import numpy as np

import keras_topk
from examples.data import ExampleError

REPORT_KS = (1, 2, 5, 10)


def add_training_arguments(parser, epochs, batch_size, learning_rate):
    group = parser.add_argument_group("training")

    def default(value, otherwise="see below"):
        return f"default: {otherwise}" if value is None else "default: %(default)s"

    group.add_argument("--epochs", type=int, default=epochs, help=default(epochs))
    group.add_argument("--batch-size", type=int, default=batch_size, help=default(batch_size))
    group.add_argument("--learning-rate", type=float, default=learning_rate,
                       help="Adam's; " + default(learning_rate, "1e-4 to fine-tune pretrained weights, else 1e-3"
                                                 if epochs else "see below"))
    group.add_argument("--xla", choices=["auto", "on", "off"], default="auto",
                       help="XLA (jit_compile): auto = Keras's choice (on with a GPU, off on CPU-only machines)")
    group.add_argument("--mixed-precision", choices=["off", "mixed_float16", "mixed_bfloat16"], default="off",
                       help="Keras dtype policy (logits and losses stay float32)")
    group.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    group.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1, help="progress bars: 1 (default), 2 one line per epoch, 0 none")
    return parser


def jit_compile_of(xla):
    return {"auto": "auto", "on": True, "off": False}[xla]


def set_precision(policy):
    keras.mixed_precision.set_global_policy("float32" if policy == "off" else policy)


def topk_metric(ks=REPORT_KS):
    return keras_topk.metrics.MultiTopKAccuracy(ks=ks)


def compile_model(model, loss, learning_rate, xla="auto", ks=REPORT_KS):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=loss,
        metrics=[topk_metric(ks)],
        jit_compile=jit_compile_of(xla),
    )
    return model


def resumable_callbacks(output, monitor="val_top5_accuracy", tensorboard=True, checkpoint=True):
    """BackupAndRestore (resume after a crash), CSV history, TensorBoard, best checkpoint.

    ``output/backup`` holds the state after the last finished epoch (weights,
    optimizer, the transition loss's schedule, the epoch); a rerun of the same
    command with the same ``--output`` continues from there. It is removed when
    training finishes. ``history.csv`` is appended across resumed runs (one
    row per finished epoch) and started afresh otherwise.
    """
    backup_dir = os.path.join(output, "backup")
    history = os.path.join(output, "history.csv")
    resuming = os.path.isdir(backup_dir) and os.listdir(backup_dir)
    if not resuming and os.path.exists(history):
        os.remove(history)
    callbacks = [
        keras.callbacks.BackupAndRestore(backup_dir=backup_dir, delete_checkpoint=True),
        keras.callbacks.CSVLogger(history, append=True),
    ]
    if tensorboard and tensorboard_available():
        callbacks.append(keras.callbacks.TensorBoard(log_dir=os.path.join(output, "logs")))
    elif tensorboard:
        print("TensorBoard is not installed (pip install tensorboard): no TensorBoard logs.")
    if checkpoint:
        os.makedirs(os.path.join(output, "checkpoints"), exist_ok=True)
        callbacks.append(
            keras.callbacks.ModelCheckpoint(
                os.path.join(output, "checkpoints", "best.keras"),
                monitor=monitor,
                mode="max",
                save_best_only=True,
            )
        )
    return callbacks, bool(resuming)


def tensorboard_available():
    return importlib.util.find_spec("tensorboard") is not None


def topk_results(logs, ks=REPORT_KS, prefix=""):
    """``{"top1": .., "top2": ..}`` from Keras logs with ``top{k}_accuracy`` keys."""
    return {f"top{k}": float(logs[f"{prefix}top{k}_accuracy"]) for k in ks}


def label_ranks(model, x, y, batch_size=1024):
    """For every example, how many other classes score at least as high as its label."""
    scores = model.predict(x, batch_size=batch_size, verbose=0)
    ranks = keras_topk.metrics.label_rank(np.asarray(y), scores)
    return np.asarray(keras.ops.convert_to_numpy(ranks))


def accuracy_at_k(ranks, max_k):
    """Top-k accuracy for k = 1..max_k from the label ranks (ties count against the label)."""
    ranks = np.asarray(ranks)
    return [float(np.mean(ranks < k)) for k in range(1, max_k + 1)]


def snapshot_optimizer(model):
    """Builds the optimizer's state now and returns its initial values, for `restore_optimizer`."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    return [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]


def restore_optimizer(model, snapshot):
    """Puts the optimizer back to its state before training (step count, moments, learning rate)."""
    for variable, value in zip(model.optimizer.variables, snapshot):
        variable.assign(value)


def save_model(model, output, name="model", export=True):
    """``output/<name>.keras`` and, with TensorFlow, a SavedModel ``output/<name>_savedmodel``."""
    os.makedirs(output, exist_ok=True)
    path = os.path.join(output, f"{name}.keras")
    model.save(path)
    exported = None
    if export and keras.backend.backend() == "tensorflow":
        exported = os.path.join(output, f"{name}_savedmodel")
        if os.path.exists(exported):
            shutil.rmtree(exported)
        model.export(exported, verbose=False)
    return path, exported


def write_json(path, payload):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=False)
        f.write("\n")


def require_tensorflow():
    if keras.backend.backend() != "tensorflow":
        raise ExampleError(
            f"The examples use tf.data and tfds and run on the TensorFlow backend; KERAS_BACKEND is "
            f"{keras.backend.backend()!r}. Run them with KERAS_BACKEND=tensorflow."
        )
