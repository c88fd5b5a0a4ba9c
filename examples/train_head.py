"""Train only the classifier head on stored embeddings, with each loss: the paper's ImageNet protocol.

    python -m examples.extract_embeddings --dataset imagenet2012 --data-dir DIR --model ResNet50
    python -m examples.train_head --embeddings runs/embeddings/imagenet2012-ResNet50.npz

Petersen et al. (2022) fine-tune ImageNet classifiers by training a linear
head on the frozen backbone's embeddings: Adam, learning rate 10^-4.5, batch
500, 20 epochs, TopKCrossEntropy with m = 16 (only the label and the 15
highest other scores are ranked), P_K = (0.2, 0.2, 0.2, 0.2, 0.2). These are
the defaults here (``--m auto``: 16 when there are more than 16 classes), with
these fixed settings for every loss; ``python -m examples.compare_losses
--embeddings FILE`` tunes each loss on a validation split instead. Each loss
trains the same head from the same initialisation (``model.fit``); the script
prints top-1/2/5/10 accuracy on the evaluation split, writes
``results.json`` and ``table.md``, and saves each head as ``<output>/<loss>.keras``.
"""

import argparse
import os
import sys

from examples import common
from examples.compare_losses import load_user_embeddings


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m examples.train_head",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--embeddings", required=True, metavar="FILE.npz", help="from examples.extract_embeddings"
    )
    parser.add_argument("--output", default="runs/train_head", help="default: %(default)s")
    parser.add_argument(
        "--hidden", default="", help="hidden layers of the head, e.g. 512 (default: linear)"
    )
    common.add_loss_arguments(parser, multiple=True, m_default="auto")
    common.add_training_arguments(parser, epochs=20, batch_size=500, learning_rate=10**-4.5)
    return parser


def build_head(dim, num_classes, hidden):
    import keras

    layers = [keras.Input((dim,))]
    layers += [
        keras.layers.Dense(int(units), activation="relu")
        for units in hidden.split(",")
        if units.strip()
    ]
    return keras.Sequential(layers + [keras.layers.Dense(num_classes)], name="head")


def main(argv=None):
    args = build_parser().parse_args(argv)
    common.require_tensorflow()
    import keras

    loss_names = common.parse_loss_list(args.losses)
    (x, y, x_eval, y_eval, num_classes), meta = load_user_embeddings(
        args.embeddings, standardize=False
    )  # raw, as the paper
    print(
        f"{args.embeddings}: {x.shape[0]} training and {x_eval.shape[0]} evaluation embeddings of "
        f"{x.shape[1]} dimensions, {num_classes} classes; {args.epochs} epochs, batch {args.batch_size}, "
        f"Adam lr {args.learning_rate:g}",
        flush=True,
    )
    results = {}
    for name in loss_names:
        keras.utils.set_random_seed(
            args.seed
        )  # the same initial head and batch order for every loss
        model = build_head(x.shape[1], num_classes, args.hidden)
        steps = args.epochs * -(-x.shape[0] // args.batch_size)
        loss, callbacks = common.make_loss(name, args, num_classes, total_steps=steps)
        common.compile_model(model, loss, args.learning_rate, xla=args.xla)
        model.fit(
            x,
            y,
            batch_size=args.batch_size,
            epochs=args.epochs,
            callbacks=callbacks,
            verbose=2 if args.verbose == 2 else 0,
        )
        logs = model.evaluate(x_eval, y_eval, batch_size=4096, return_dict=True, verbose=0)
        key = common.LOSS_KEYS[name]
        results[key] = common.topk_results(logs)
        os.makedirs(args.output, exist_ok=True)
        model.save(os.path.join(args.output, f"{key}.keras"))
        print(
            f"  {key:<20} "
            + "  ".join(f"top-{k[3:]} {100 * v:.2f}%" for k, v in results[key].items()),
            flush=True,
        )
    table = [
        "| loss | " + " | ".join(f"top-{k} (%)" for k in common.REPORT_KS) + " |",
        "|---" * (len(common.REPORT_KS) + 1) + "|",
    ]
    table += [
        f"| {key} | " + " | ".join(f"{100 * v:.2f}" for v in row.values()) + " |"
        for key, row in results.items()
    ]
    with open(os.path.join(args.output, "table.md"), "w") as f:
        f.write("\n".join(table) + "\n")
    common.write_json(
        os.path.join(args.output, "results.json"),
        {
            "results": results,
            "embeddings": meta,
            "config": {
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "learning_rate": args.learning_rate,
                "hidden": args.hidden,
                "seed": args.seed,
                "losses": loss_names,
            },
            "command": "python -m examples.train_head "
            + " ".join(sys.argv[1:] if argv is None else argv),
        },
    )
    print("\n".join(table))
    return results


if __name__ == "__main__":
    common.run(main)
