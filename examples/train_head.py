"""Train only the classifier head on stored embeddings, with each loss: the paper's ImageNet protocol.

    python -m examples.extract_embeddings --dataset imagenet2012 --data-dir DIR --model ResNet50
    python -m examples.train_head --embeddings runs/embeddings/imagenet2012-ResNet50.npz

Petersen et al. (2022) fine-tune ImageNet classifiers by training a linear
head on the frozen backbone's embeddings: Adam, learning rate 10^-4.5, batch
500, 20 epochs, TopKCrossEntropy with m = 16 (only the label and the 15
highest other scores are ranked), P_K = (0.2, 0.2, 0.2, 0.2, 0.2). These are
the defaults here (``--m auto``: 16 when there are more than 16 classes).
Each loss trains the same linear head from the same initialisation; the
script prints top-1/2/5 accuracy on the evaluation split, writes
``results.json``, ``table.md`` and plots, and saves each head as
``<output>/<loss>.keras``.
"""

import argparse
import sys

from examples import cli, comparison, loss_factory, training


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m examples.train_head",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--embeddings", required=True, metavar="FILE.npz", help="from examples.extract_embeddings")
    parser.add_argument("--output", default="runs/train_head", help="default: %(default)s")
    parser.add_argument("--seeds", type=int, default=1, help="runs per loss (default: %(default)s)")
    parser.add_argument("--hidden", default="", help="hidden layers of the head, e.g. 512 (default: linear)")
    parser.add_argument("--max-k", type=int, default=10, help="largest k of the accuracy-against-k plot")
    parser.add_argument("--curve-points", type=int, default=20, help="evaluations during training, for the curves")
    loss_factory.add_loss_arguments(parser, multiple=True, m_default="auto")
    training.add_training_arguments(parser, epochs=20, batch_size=500, learning_rate=10**-4.5)
    parser.set_defaults(mock_data=None)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    training.require_tensorflow()
    loss_names = loss_factory.parse_loss_list(args.losses)
    command = "python -m examples.train_head " + " ".join(sys.argv[1:] if argv is None else argv)
    return comparison.run(args, "embeddings", loss_names, command.strip(), save_models=True)


if __name__ == "__main__":
    cli.run(main)
