"""The main job: the same model trained with cross-entropy and each keras-topk loss, over seeds.

    python -m examples.compare_losses            # the embedded benchmark (no download); README's numbers
    python -m examples.compare_losses --quick    # the same, smaller: a few minutes on 2 CPU cores
    python -m examples.compare_losses --dataset cifar100 --model ResNet50 --weights none   # a tfds dataset
    python -m examples.compare_losses --embeddings embeddings.npz                          # a linear head

The embedded benchmark (`examples.synthetic`): 20 classes in 2-D, each a
mixture of 4 Gaussian blobs at random places, overlapping heavily, 40% of the
training labels replaced by random classes, 3000 training examples, and an MLP
that can memorise them. Each seed draws a new problem, new initial weights and
a new batch order, shared by all losses (the comparison is paired by seed).

Writes to ``--output``: ``results.json`` (``{"results": {loss: {"top1": ..,
"top2": .., "top5": .., "top1_std": .., "top1_gain": .. (vs CE, paired)}}, ...}``),
``accuracy_vs_k.png``, ``training_curves.png`` and ``table.md``.
"""

import argparse
import dataclasses
import sys

from examples import cli, comparison, data, loss_factory, models, synthetic, training

# Defaults per source, then what --quick changes.
DEFAULTS = {
    "synthetic": dict(epochs=150, batch_size=250, learning_rate=3e-3, seeds=5, hidden="128,128"),
    "embeddings": dict(epochs=20, batch_size=500, learning_rate=10**-4.5, seeds=3, hidden=""),
    "tfds": dict(epochs=10, batch_size=128, learning_rate=1e-3, seeds=3, hidden=""),
}
QUICK = {
    "synthetic": dict(epochs=100, seeds=2, test_size=5000),
    "embeddings": dict(epochs=5, seeds=1),
    "tfds": dict(epochs=1, seeds=1),
}


def build_parser():
    defaults = "\n".join(
        f"  {source:<11} {', '.join(f'{k}={v!r}' for k, v in values.items())}; --quick: "
        + ", ".join(f"{k}={v!r}" for k, v in QUICK[source].items())
        for source, values in DEFAULTS.items()
    )
    parser = argparse.ArgumentParser(
        prog="python -m examples.compare_losses",
        description=__doc__.split("\n\n")[0],
        epilog="Defaults per data source (flags override them):\n" + defaults,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="fewer seeds, epochs and test examples (a few minutes)")
    parser.add_argument("--output", default="runs/compare_losses", help="default: %(default)s")
    parser.add_argument("--embeddings", default=None, metavar="FILE.npz",
                        help="train a head on embeddings written by examples.extract_embeddings")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (runs per loss)")
    parser.add_argument("--max-k", type=int, default=10, help="largest k of the accuracy-against-k plot")
    parser.add_argument("--curve-points", type=int, default=15,
                        help="test-set evaluations during training, for the training curves (default: %(default)s)")
    parser.add_argument("--hidden", default=None,
                        help="hidden layer sizes of the MLP on features (synthetic, embeddings), e.g. 128,128; '' = linear")
    loss_factory.add_loss_arguments(parser, multiple=True)
    training.add_training_arguments(parser, epochs=None, batch_size=None, learning_rate=None)
    group = parser.add_argument_group("embedded benchmark")
    for field in dataclasses.fields(synthetic.BlobsConfig):
        group.add_argument("--" + field.name.replace("_", "-"), type=field.type if callable(field.type) else float,
                           default=None, help=f"default: {field.default}")
    data.add_data_arguments(parser, dataset_default=None)
    models.add_model_arguments(parser, model_default="MobileNetV3Small", image_size_default=32)
    parser.set_defaults(weights="none")
    return parser


def resolve_defaults(args):
    source = "embeddings" if args.embeddings else "tfds" if args.dataset else "synthetic"
    if args.embeddings and args.dataset:
        raise data.ExampleError("Pass either --dataset or --embeddings, not both.")
    values = dict(DEFAULTS[source])
    if args.quick:
        values.update(QUICK[source])
    for key, value in values.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    fields = {}
    for field in dataclasses.fields(synthetic.BlobsConfig):
        value = getattr(args, field.name)
        fields[field.name] = field.default if value is None else type(field.default)(value)
    args.blobs = synthetic.BlobsConfig(**fields)
    return source


def main(argv=None):
    args = build_parser().parse_args(argv)
    training.require_tensorflow()
    source_kind = resolve_defaults(args)
    loss_names = loss_factory.parse_loss_list(args.losses)
    command = "python -m examples.compare_losses " + " ".join(sys.argv[1:] if argv is None else argv)
    return comparison.run(args, source_kind, loss_names, command.strip())


if __name__ == "__main__":
    cli.run(main)
