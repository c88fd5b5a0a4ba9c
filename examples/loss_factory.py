"""Losses from command-line flags: cross-entropy or any keras-topk loss, with its parameters."""

import keras

import keras_topk
from examples.data import ExampleError

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
        raise ExampleError(f"--p-k {text!r}: expected comma-separated numbers, e.g. 0.2,0.2,0.2,0.2,0.2") from None


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
        parser.add_argument("--loss", choices=list(LOSS_KEYS), default="ce", help="default: %(default)s")
    group = parser.add_argument_group("loss parameters")
    group.add_argument("--k", type=int, default=5, help="k of smooth_svm, topk_svm and transition (default 5)")
    group.add_argument("--p-k", default="0.2,0.2,0.2,0.2,0.2", help="topk_ce: weights of k=1..K (default %(default)s)")
    group.add_argument("--topk-method", default="splitter_selection", help="topk_ce: relaxation network (default %(default)s)")
    group.add_argument("--inverse-temperature", type=float, default=1.0, help="topk_ce (default 1.0)")
    group.add_argument("--distribution", default="logistic_phi", help="topk_ce: comparator relaxation (default %(default)s)")
    group.add_argument("--art-lambda", type=float, default=0.5, help="topk_ce (default 0.5)")
    group.add_argument(
        "--m",
        default=m_default,
        help="topk_ce: rank only the label and the m-1 highest other scores (K < m < classes); "
        "an integer, 'none' (all classes) or 'auto' (16 when there are more than 16 classes) "
        "(default %(default)s)",
    )
    group.add_argument("--top1-mode", default="sm", choices=["sm", "sort", "smce"], help="topk_ce (default sm)")
    group.add_argument("--tau", type=float, default=1.0, help="smooth_svm temperature (default 1.0)")
    group.add_argument("--alpha", type=float, default=1.0, help="smooth_svm/topk_svm margin (default 1.0)")
    group.add_argument("--transition", default="adaptive", choices=["adaptive", "linear", "constant"],
                       help="transition schedule (default adaptive; linear ramps over the whole run)")
    group.add_argument("--transition-weight", type=float, default=None, help="transition: w of 'constant'")
    group.add_argument("--group", default="label", choices=["label", "predicted"], help="transition (default label)")
    group.add_argument("--momentum", type=float, default=0.99, help="transition: EMA momentum of 'adaptive'")
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
            return keras.losses.SparseCategoricalCrossentropy(from_logits=True, name="cross_entropy"), []
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
                    raise ExampleError("--transition linear needs the number of training steps, unknown here.")
                kwargs["transition_steps"] = int(total_steps)
            else:
                kwargs["momentum"] = args.momentum
            loss = keras_topk.losses.TopKTransitionLoss(**kwargs)
            callbacks = [] if args.transition == "constant" else [keras_topk.losses.TransitionCallback()]
            return loss, callbacks
    except ValueError as error:
        raise ExampleError(f"--loss {name}: {error}") from error
    raise ExampleError(f"Unknown loss {name!r}; choose one of {', '.join(LOSS_KEYS)}.")


def reset_loss_state(loss):
    """Puts a stateful loss (the transition schedule) back to its start, for a fresh run."""
    if isinstance(loss, keras_topk.losses.TopKTransitionLoss):
        state = loss.state
        initial = loss.weight if loss.transition == "constant" else loss.weight_start
        state.weight.assign(initial)
        state.steps.assign(0)
        state.accuracy.assign(0.0)
        state.batch_accuracy.assign(0.0)
