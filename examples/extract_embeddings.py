"""Embeddings of a frozen ``keras.applications`` backbone over a tfds dataset, to a .npz file.

    python -m examples.extract_embeddings --dataset imagenet2012 --data-dir DIR --model ResNet50
    python -m examples.train_head --embeddings runs/embeddings/imagenet2012-ResNet50.npz

The first step of the paper's ImageNet protocol (Petersen et al. 2022): the
backbone runs once over the training and evaluation splits (no augmentation:
resize, central crop, the family's ``preprocess_input``), and
`examples.train_head` then trains only the classifier head on the stored
embeddings with each loss, which takes minutes instead of days.

The file holds ``x_train``, ``y_train``, ``x_eval``, ``y_eval`` (embeddings
float16 or float32, labels int32) and ``meta`` (a JSON string: dataset,
splits, model, image size, number of classes). Embeddings are streamed to
disk while they are computed, so the splits need not fit in memory.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

from examples import common, images


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m examples.extract_embeddings",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--output",
        default=None,
        help="the .npz file (default: runs/embeddings/<dataset>-<model>.npz)",
    )
    parser.add_argument("--batch-size", type=int, default=128, help="default: %(default)s")
    parser.add_argument(
        "--dtype",
        choices=["float16", "float32"],
        default="float16",
        help="of the stored embeddings (default: %(default)s, half the disk)",
    )
    parser.add_argument(
        "--xla", choices=["auto", "on", "off"], default="auto", help="XLA for the backbone"
    )
    parser.add_argument(
        "--mixed-precision", choices=["off", "mixed_float16", "mixed_bfloat16"], default="off"
    )
    parser.add_argument(
        "--verbose", type=int, choices=[0, 1], default=1, help="progress bars (default 1)"
    )
    images.add_data_arguments(parser, dataset_default="imagenet2012")
    images.add_model_arguments(parser)
    return parser


def embed_split(backbone, dataset, dtype, target_batches, verbose, tmp_dir, label):
    """Runs the backbone over ``dataset``; returns ``(embeddings memmap, labels)``.

    The embeddings go to a raw file batch by batch and come back as a
    read-only memmap, so memory holds one batch at a time.
    """
    import keras

    path = os.path.join(tmp_dir, f"{label}.bin")
    labels, rows, width, step = [], 0, None, -1
    progbar = keras.utils.Progbar(target_batches, unit_name="batch") if verbose else None
    with open(path, "wb") as f:
        for step, (images, batch_labels) in enumerate(dataset):
            features = np.asarray(backbone.predict_on_batch(images), dtype=dtype)
            width = features.shape[1]
            f.write(np.ascontiguousarray(features).tobytes())
            labels.append(np.asarray(batch_labels, dtype=np.int32))
            rows += features.shape[0]
            if progbar:
                progbar.update(step + 1)
    if progbar:
        progbar.update(step + 1, finalize=True)
    if not rows:
        raise common.ExampleError(f"The {label} split is empty.")
    embeddings = np.memmap(path, dtype=dtype, mode="r", shape=(rows, width))
    return embeddings, np.concatenate(labels)


def main(argv=None):
    args = build_parser().parse_args(argv)
    common.require_tensorflow()
    output = args.output or os.path.join("runs", "embeddings", f"{args.dataset}-{args.model}.npz")
    common.set_precision(args.mixed_precision)
    with images.maybe_mock_data(args.mock_data):
        info = images.dataset_info(args.dataset, args.data_dir)
        num_classes = images.num_classes_of(info)
        eval_split = args.eval_split or images.default_eval_split(args.dataset, info)
        splits = {"train": args.train_split, "eval": eval_split}
        raws = {
            label: images.load_split(
                args.dataset,
                split,
                data_dir=args.data_dir,
                download=not args.no_download,
                manual_dir=args.manual_dir,
            )
            for label, split in splits.items()
        }
        backbone = images.build_backbone(args.model, args.weights, args.image_size)
        backbone.trainable = False
        backbone.compile(jit_compile=common.jit_compile_of(args.xla))
        preprocess = images.preprocess_for(args.model)
        print(
            f"{args.model} ({args.weights} weights, {backbone.output_shape[-1]}-D embeddings) over "
            f"{args.dataset} {args.train_split!r} and {eval_split!r} -> {output}",
            flush=True,
        )
        os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
        arrays = {}
        with tempfile.TemporaryDirectory(dir=os.path.dirname(output) or ".") as tmp_dir:
            for label, split in splits.items():
                raw = raws[label]
                size = images.split_size(info, split) if not args.mock_data else None
                pipeline = images.image_pipeline(
                    raw, args.image_size, preprocess, args.batch_size, training=False
                )
                start = time.perf_counter()
                x, y = embed_split(
                    backbone,
                    pipeline,
                    args.dtype,
                    -(-size // args.batch_size) if size else None,
                    args.verbose,
                    tmp_dir,
                    label,
                )
                print(
                    f"{split}: {x.shape[0]} examples in {time.perf_counter() - start:.0f} s",
                    flush=True,
                )
                arrays[f"x_{label}"], arrays[f"y_{label}"] = x, y
            meta = {
                "dataset": args.dataset,
                "train_split": args.train_split,
                "eval_split": eval_split,
                "model": args.model,
                "weights": args.weights,
                "image_size": args.image_size,
                "num_classes": num_classes,
                "mock_data": args.mock_data,
                "command": "python -m examples.extract_embeddings "
                + " ".join(sys.argv[1:] if argv is None else argv),
            }
            # np.savez streams each array into the zip, memmaps included.
            np.savez(output, meta=np.array(json.dumps(meta)), **arrays)
            shapes = {key: value.shape for key, value in arrays.items()}
            arrays.clear()  # drops the memmaps before their files go
    print(
        f"Wrote {output}: x_train {shapes['x_train']}, x_eval {shapes['x_eval']}, {num_classes} classes"
    )
    return output


if __name__ == "__main__":
    common.run(main)
