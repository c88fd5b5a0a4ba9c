"""Fine-tune a ``keras.applications`` model on a tfds dataset with cross-entropy or a keras-topk loss.

    python -m examples.finetune --dataset cifar100 --model ResNet50 --loss topk_ce --image-size 224
    python -m examples.finetune --dataset imagenet2012 --data-dir DIR --model EfficientNetB0 --loss smooth_svm --k 5
    python -m examples.finetune --mock-data 64 --model MobileNetV3Small --weights none --image-size 32  # offline

A run is resumable: ``--output`` keeps a backup after every finished epoch
(``keras.callbacks.BackupAndRestore``: weights, optimizer, the transition
loss's schedule, the epoch), and running the same command again after an
interruption continues from there. At the end it prints top-1/2/5/10
accuracy on the evaluation split and saves ``model.keras`` and a SavedModel
(``model_savedmodel/``, ``model.export``) under ``--output``, with
``metrics.json``, ``history.csv``, TensorBoard logs (``logs/``) and the best
checkpoint by validation top-5 accuracy (``checkpoints/best.keras``).

The saved model takes images already passed through the family's
``keras.applications.<family>.preprocess_input`` (recorded in ``config.json``).
"""

import argparse
import os
import sys

from examples import common, images


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m examples.finetune",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--output",
        default=None,
        help="output folder (default: runs/finetune/<dataset>-<model>-<loss>)",
    )
    parser.add_argument(
        "--freeze-backbone", action="store_true", help="train only the classifier head"
    )
    parser.add_argument(
        "--dropout", type=float, default=0.2, help="before the classifier (default: %(default)s)"
    )
    parser.add_argument("--no-export", action="store_true", help="skip the SavedModel export")
    images.add_data_arguments(parser)
    images.add_model_arguments(parser)
    common.add_loss_arguments(parser)
    common.add_training_arguments(parser, epochs=10, batch_size=64, learning_rate=None)
    parser.set_defaults(learning_rate=None)
    return parser


def main(argv=None, callbacks=()):
    """Runs the fine-tuning; ``callbacks`` are added after the script's own (tests use this)."""
    args = build_parser().parse_args(argv)
    common.require_tensorflow()
    output = args.output or os.path.join(
        "runs", "finetune", f"{args.dataset}-{args.model}-{args.loss}"
    )
    pretrained = str(args.weights).lower() != "none"
    learning_rate = args.learning_rate or (
        1e-4 if pretrained and not args.freeze_backbone else 1e-3
    )
    common.set_precision(args.mixed_precision)
    import keras  # after the dtype policy, which the layers read when built

    keras.utils.set_random_seed(args.seed)
    with images.maybe_mock_data(args.mock_data):
        data = images.prepare_image_data(
            args,
            images.preprocess_for(args.model),
            args.image_size,
            args.batch_size,
            seed=args.seed,
        )
        model = images.build_classifier(
            args.model,
            args.weights,
            args.image_size,
            data.num_classes,
            dropout=args.dropout,
            freeze_backbone=args.freeze_backbone,
        )
        loss, loss_callbacks = common.make_loss(
            args.loss, args, data.num_classes, total_steps=args.epochs * data.steps_per_epoch
        )
        common.compile_model(model, loss, learning_rate, xla=args.xla)
        fit_callbacks, resuming = common.resumable_callbacks(output)
        print(
            f"{args.model} ({args.weights} weights) on {args.dataset} "
            f"({'mock, ' if args.mock_data else ''}{data.train_size} training examples, "
            f"{data.num_classes} classes, eval split {data.eval_split!r}); loss {args.loss}, "
            f"{args.epochs} epochs, batch {args.batch_size}, Adam lr {learning_rate:g}; output {output}"
            + ("; resuming from the last finished epoch" if resuming else ""),
            flush=True,
        )
        common.write_json(
            os.path.join(output, "config.json"),
            {
                "argv": sys.argv[1:] if argv is None else list(argv),
                "model": args.model,
                "preprocess": f"keras.applications.{images.family(args.model).__name__.rsplit('.', 1)[-1]}"
                ".preprocess_input",
                "image_size": args.image_size,
                "num_classes": data.num_classes,
                "dataset": args.dataset,
                "loss": args.loss,
            },
        )
        model.fit(
            data.train,
            epochs=args.epochs,
            validation_data=data.eval,
            callbacks=list(loss_callbacks) + fit_callbacks + list(callbacks),
            verbose=args.verbose,
            shuffle=False,  # the pipeline shuffles
        )
        logs = model.evaluate(data.eval, return_dict=True, verbose=args.verbose)
    results = common.topk_results(logs)
    print(
        f"{data.eval_split} accuracy: "
        + "  ".join(f"top-{k[3:]} {100 * v:.2f}%" for k, v in results.items())
    )
    path, exported = common.save_model(model, output, export=not args.no_export)
    common.write_json(os.path.join(output, "metrics.json"), {"split": data.eval_split, **results})
    print(f"Saved {path}" + (f" and {exported}" if exported else ""))
    return results


if __name__ == "__main__":
    common.run(main)
