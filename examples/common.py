"""What the scripts share: errors as messages, losses from flags, compiling, fitting and saving."""

import importlib.util
import json
import os
import shutil
import sys

import keras

import keras_topk

__all__ = [
    "ExampleError",
    "run",
    "add_loss_arguments",
    "make_loss",
    "add_training_arguments",
    "compile_model",
    "resumable_callbacks",
    "save_model",
    "write_json",
    "require_tensorflow",
]


class ExampleError(Exception):
    """An error the scripts report as a message (no traceback) and exit status 2."""


def run(main, argv=None):
    """Runs a script's ``main``: user errors become a message and exit status 2, not a traceback."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # retracing notices when the scripts build one model per loss
    try:
        return main(argv)
    except ExampleError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


# --------------------------------------------------------------------------- #
# Losses from command-line flags
# --------------------------------------------------------------------------- #

# CLI name -> the key used in results.json, tables and plots.
LOSS_KEYS = {
    "ce": "cross_entropy",
    "topk_ce": "topk_cross_entropy",
    "smooth_svm": "smooth_topk_svm",
    "topk_svm": "topk_svm",
    "transition": "topk_transition",
}
DEFAULT_LOSSES = ("ce", "topk_ce", "smooth_svm", "transition")


def _floats(text):
    try:
        return tuple(float(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise ExampleError(
            f"--p-k {text!r}: expected comma-separated numbers, e.g. 0.2,0.2,0.2,0.2,0.2"
        ) from None


def parse_loss_list(text):
    names = [v.strip() for v in str(text).split(",") if v.strip()]
    unknown = [v for v in names if v not in LOSS_KEYS]
    if not names or unknown:
        raise ExampleError(
            f"--losses {text!r}: expected a comma-separated list of {', '.join(LOSS_KEYS)}; "
            f"unknown: {', '.join(unknown) or '(empty)'}."
        )
    return names


def add_loss_arguments(parser, multiple=False, m_default="none"):
    """Adds ``--loss`` (or ``--losses``) and every loss parameter to an argparse parser."""
    if multiple:
        parser.add_argument(
            "--losses",
            default=",".join(DEFAULT_LOSSES),
            help=f"comma-separated losses out of {', '.join(LOSS_KEYS)} (default: %(default)s)",
        )
    else:
        parser.add_argument(
            "--loss", choices=list(LOSS_KEYS), default="ce", help="default: %(default)s"
        )
    group = parser.add_argument_group("loss parameters")
    group.add_argument(
        "--k", type=int, default=5, help="k of smooth_svm, topk_svm and transition (default 5)"
    )
    group.add_argument(
        "--p-k",
        default="0.2,0.2,0.2,0.2,0.2",
        help="topk_ce: weights of k=1..K (default %(default)s)",
    )
    group.add_argument(
        "--topk-method",
        default="splitter_selection",
        help="topk_ce: relaxation network (default %(default)s)",
    )
    group.add_argument(
        "--inverse-temperature", type=float, default=1.0, help="topk_ce (default 1.0)"
    )
    group.add_argument(
        "--distribution",
        default="logistic_phi",
        help="topk_ce: comparator relaxation (default %(default)s)",
    )
    group.add_argument("--art-lambda", type=float, default=0.5, help="topk_ce (default 0.5)")
    group.add_argument(
        "--m",
        default=m_default,
        help="topk_ce: rank only the label and the m-1 highest other scores (K < m < classes); "
        "an integer, 'none' (all classes) or 'auto' (16 when there are more than 16 classes) "
        "(default %(default)s)",
    )
    group.add_argument(
        "--top1-mode", default="sm", choices=["sm", "sort", "smce"], help="topk_ce (default sm)"
    )
    group.add_argument(
        "--tau", type=float, default=1.0, help="smooth_svm temperature (default 1.0)"
    )
    group.add_argument(
        "--alpha", type=float, default=1.0, help="smooth_svm/topk_svm margin (default 1.0)"
    )
    group.add_argument(
        "--transition",
        default="adaptive",
        choices=["adaptive", "linear", "constant"],
        help="transition schedule (default adaptive; linear ramps over the whole run)",
    )
    group.add_argument(
        "--transition-weight", type=float, default=None, help="transition: w of 'constant'"
    )
    group.add_argument(
        "--group",
        default="label",
        choices=["label", "predicted"],
        help="transition (default label)",
    )
    group.add_argument(
        "--momentum", type=float, default=0.99, help="transition: EMA momentum of 'adaptive'"
    )
    return parser


def resolve_m(m, num_classes, top_k):
    text = str(m).lower() if m is not None else "none"
    if text == "none":
        return None
    if text == "auto":
        return 16 if num_classes > 16 and 16 > top_k else None
    try:
        return int(text)
    except ValueError:
        raise ExampleError(f"--m {m!r}: expected an integer, 'none' or 'auto'.") from None


def make_loss(name, args, num_classes, total_steps=None):
    """``(loss, callbacks)`` for CLI loss ``name``; callbacks go to ``model.fit``.

    ``total_steps`` (training steps of the whole run) is the length of the
    linear transition.
    """
    try:
        if name == "ce":
            return keras.losses.SparseCategoricalCrossentropy(
                from_logits=True, name="cross_entropy"
            ), []
        if name == "topk_ce":
            p_k = _floats(args.p_k)
            loss = keras_topk.losses.TopKCrossEntropy(
                p_k=p_k,
                method=args.topk_method,
                inverse_temperature=args.inverse_temperature,
                distribution=args.distribution,
                art_lambda=args.art_lambda,
                m=resolve_m(args.m, num_classes, len(p_k)),
                top1_mode=args.top1_mode,
            )
            return loss, []
        if name == "smooth_svm":
            return keras_topk.losses.SmoothTopKSVM(k=args.k, tau=args.tau, alpha=args.alpha), []
        if name == "topk_svm":
            return keras_topk.losses.TopKSVM(k=args.k, alpha=args.alpha), []
        if name == "transition":
            kwargs = dict(k=args.k, transition=args.transition, group=args.group)
            if args.transition == "constant":
                kwargs["weight"] = 1.0 if args.transition_weight is None else args.transition_weight
            elif args.transition == "linear":
                if not total_steps:
                    raise ExampleError(
                        "--transition linear needs the number of training steps, unknown here."
                    )
                kwargs["transition_steps"] = int(total_steps)
            else:
                kwargs["momentum"] = args.momentum
            loss = keras_topk.losses.TopKTransitionLoss(**kwargs)
            callbacks = (
                [] if args.transition == "constant" else [keras_topk.callbacks.TransitionCallback()]
            )
            return loss, callbacks
    except ValueError as error:
        raise ExampleError(f"--loss {name}: {error}") from error
    raise ExampleError(f"Unknown loss {name!r}; choose one of {', '.join(LOSS_KEYS)}.")


# --------------------------------------------------------------------------- #
# Compiling, fitting (resumable), saving
# --------------------------------------------------------------------------- #

REPORT_KS = (1, 2, 5, 10)


def add_training_arguments(parser, epochs, batch_size, learning_rate):
    group = parser.add_argument_group("training")

    def default(value, otherwise="see below"):
        return f"default: {otherwise}" if value is None else "default: %(default)s"

    group.add_argument("--epochs", type=int, default=epochs, help=default(epochs))
    group.add_argument("--batch-size", type=int, default=batch_size, help=default(batch_size))
    group.add_argument(
        "--learning-rate",
        type=float,
        default=learning_rate,
        help="Adam's; "
        + default(
            learning_rate,
            "1e-4 to fine-tune pretrained weights, else 1e-3" if epochs else "see below",
        ),
    )
    group.add_argument(
        "--xla",
        choices=["auto", "on", "off"],
        default="auto",
        help="XLA (jit_compile): auto = Keras's choice (on with a GPU, off on CPU-only machines)",
    )
    group.add_argument(
        "--mixed-precision",
        choices=["off", "mixed_float16", "mixed_bfloat16"],
        default="off",
        help="Keras dtype policy (logits and losses stay float32)",
    )
    group.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    group.add_argument(
        "--verbose",
        type=int,
        choices=[0, 1, 2],
        default=1,
        help="progress bars: 1 (default), 2 one line per epoch, 0 none",
    )
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
