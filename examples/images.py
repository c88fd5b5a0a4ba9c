"""Images: tfds loading (with a clear message when the data is missing), the tf.data pipeline, and
``keras.applications`` backbones and classifiers."""

import contextlib
import dataclasses
import math
import os
import types

import keras
import tensorflow as tf

from examples.common import ExampleError

# Datasets whose tfds builder cannot download the images itself.
MANUAL_DOWNLOAD = {
    "imagenet2012": (
        "ImageNet cannot be downloaded automatically: register at https://image-net.org, download "
        "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar, put both in the manual directory "
        "({manual_dir}) and run this command again (tfds then extracts and prepares them once, "
        "which takes hours and ~300 GB)."
    ),
}
EVAL_SPLIT = {
    "imagenet2012": "validation",
    "imagenet2012_subset": "validation",
    "imagenette": "validation",
}


class DataUnavailableError(ExampleError):
    """The tfds dataset is not on this machine and could not be downloaded."""


def _tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ExampleError(
            "These examples need tensorflow-datasets: pip install -e '.[examples]'"
        ) from error
    return tfds


@contextlib.contextmanager
def maybe_mock_data(num_examples):
    """``tfds.testing.mock_data(num_examples=N)`` when N is given, else nothing.

    Under the mock every tfds split holds N random examples shaped like the
    real dataset's features, and nothing is read or downloaded.
    """
    if not num_examples:
        yield
        return
    tfds = _tfds()
    with tfds.testing.mock_data(num_examples=int(num_examples)):
        yield


def manual_dir_of(data_dir, manual_dir):
    if manual_dir:
        return manual_dir
    tfds = _tfds()
    root = data_dir or tfds.core.constants.DATA_DIR
    return f"{root}/downloads/manual"


def provision_message(name, split, data_dir, manual_dir, error):
    """What to do when ``tfds.load`` failed: where the data goes, how to get it there."""
    tfds = _tfds()
    shown_dir = data_dir or f"{tfds.core.constants.DATA_DIR} (tfds's default; set --data-dir)"
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    lines = [
        f"Could not load the tfds dataset {name!r} (split {split!r}) from --data-dir {shown_dir}:",
        f"  {type(error).__name__}: {reason[:300]}",
        "How to provide the data:",
    ]
    if name in MANUAL_DOWNLOAD:
        lines.append(
            "  - " + MANUAL_DOWNLOAD[name].format(manual_dir=manual_dir_of(data_dir, manual_dir))
        )
        lines.append("    Pass --manual-dir DIR if the archives are elsewhere.")
    else:
        lines.append(
            "  - with internet access, this command downloads and prepares it once under --data-dir "
            "(omit --no-download);"
        )
        lines.append(
            "  - without it (as here), prepare it on a machine that has internet: "
            f"python -c \"import tensorflow_datasets as tfds; tfds.builder('{name}', "
            "data_dir='DIR').download_and_prepare()\", copy DIR to this machine and pass --data-dir DIR;"
        )
    lines.append(
        "  - to try the script without any data, pass --mock-data N (N random examples per split)."
    )
    return "\n".join(lines)


def dataset_info(name, data_dir=None):
    """The builder's ``DatasetInfo`` (from the dataset's code; nothing is downloaded)."""
    tfds = _tfds()
    try:
        return tfds.builder(name, data_dir=data_dir).info
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ExampleError(
            f"Unknown tfds dataset {name!r}: {str(error).splitlines()[0]}"
        ) from error


def num_classes_of(info, label_key="label"):
    try:
        return int(info.features[label_key].num_classes)
    except (KeyError, AttributeError) as error:
        raise ExampleError(
            f"Dataset {info.name!r} has no ClassLabel feature {label_key!r}: these examples need "
            "an (image, label) classification dataset."
        ) from error


def default_eval_split(name, info):
    splits = set(info.splits.keys()) if info.splits else set()
    for candidate in ("test", "validation"):
        if candidate in splits:
            return candidate
    return EVAL_SPLIT.get(name, "test")


def split_size(info, split):
    """Number of examples of ``split`` from the metadata, or None (e.g. under mock_data)."""
    try:
        return int(info.splits[split].num_examples) or None
    except (KeyError, ValueError, TypeError):
        return None


def load_split(name, split, data_dir=None, download=True, manual_dir=None, shuffle_files=False):
    """``tfds.load(name, split=..., as_supervised=True)`` or a `DataUnavailableError`."""
    tfds = _tfds()
    kwargs = {}
    if manual_dir:
        kwargs["download_and_prepare_kwargs"] = {
            "download_config": tfds.download.DownloadConfig(manual_dir=manual_dir)
        }
    try:
        return tfds.load(
            name,
            split=split,
            data_dir=data_dir,
            as_supervised=True,
            download=download,
            shuffle_files=shuffle_files,
            **kwargs,
        )
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ExampleError(
            f"Unknown tfds dataset {name!r}: {str(error).splitlines()[0]}"
        ) from error
    except Exception as error:  # noqa: BLE001 - tfds raises many kinds (network, manual dir, missing files)
        raise DataUnavailableError(
            provision_message(name, split, data_dir, manual_dir, error)
        ) from error


def count_examples(dataset):
    """Counts a (small) dataset by iterating it; for when the metadata has no size."""
    return int(dataset.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1).numpy())


def should_cache(info, split, cache):
    """Whether to keep the decoded images in memory: yes for small fixed-size images."""
    if cache != "auto":
        return cache
    try:
        shape = info.features["image"].shape
    except (KeyError, AttributeError, TypeError):
        shape = None
    size = split_size(info, split) if info else None
    if size is None:  # mock data: tiny
        return "memory"
    if shape is None or any(d is None for d in shape):
        return "none"
    return "memory" if size * math.prod(shape) < 2 * 1024**3 else "none"


def _resize_short_side(image, target):
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    scale = tf.cast(target, tf.float32) / tf.minimum(h, w)
    size = tf.cast(tf.math.ceil(tf.stack([h * scale, w * scale])), tf.int32)
    return tf.image.resize(image, tf.maximum(size, target), antialias=True)


def image_pipeline(
    dataset,
    image_size,
    preprocess,
    batch_size,
    training,
    cache="none",
    crop_fraction=0.875,
    shuffle_buffer=10_000,
    seed=None,
    drop_remainder=False,
):
    """Batches of ``(preprocessed float32 images, int32 labels)``.

    Images are resized so that their short side is ``image_size / crop_fraction``,
    then cropped to ``image_size`` (randomly with a random horizontal flip for
    training, centrally for evaluation), and passed through the model family's
    ``keras.applications.<family>.preprocess_input``. Decoded images are cached
    (``cache``: "none", "memory" or a file path prefix) before resizing, so the
    augmentation differs every epoch.
    """
    dataset = dataset.map(lambda image, label: (image, tf.cast(label, tf.int32)))
    if cache and cache != "none":
        dataset = dataset.cache("" if cache == "memory" else cache)
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    resize_to = max(int(math.ceil(image_size / crop_fraction)), image_size)

    def transform(image, label):
        image = tf.cast(image, tf.float32)
        if image.shape[-1] == 1:  # grayscale datasets (mnist, ...): the applications want RGB
            image = tf.image.grayscale_to_rgb(image)
        image = _resize_short_side(image, resize_to)
        if training:
            image = tf.image.random_crop(image, [image_size, image_size, 3])
            image = tf.image.random_flip_left_right(image)
        else:
            shape = tf.shape(image)
            top, left = (shape[0] - image_size) // 2, (shape[1] - image_size) // 2
            image = tf.image.crop_to_bounding_box(image, top, left, image_size, image_size)
        image = tf.ensure_shape(image, [image_size, image_size, 3])
        return preprocess(image), label

    dataset = dataset.map(transform, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    options = tf.data.Options()
    options.deterministic = not training
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def add_data_arguments(parser, dataset_default="cifar100", dataset_required=False):
    group = parser.add_argument_group("data (tensorflow-datasets)")
    group.add_argument(
        "--dataset",
        default=None if dataset_required else dataset_default,
        help="tfds name: cifar100, imagenet2012, cifar10, ... (an (image, label) dataset; default: %(default)s)",
    )
    group.add_argument(
        "--data-dir", default=None, help="tfds data_dir (default: tfds's, ~/tensorflow_datasets)"
    )
    group.add_argument(
        "--manual-dir",
        default=None,
        help="where manually downloaded archives are (ImageNet; default DATA_DIR/downloads/manual)",
    )
    group.add_argument(
        "--no-download",
        action="store_true",
        help="fail at once if the dataset is not prepared under --data-dir, instead of downloading it",
    )
    group.add_argument(
        "--mock-data",
        type=int,
        default=None,
        metavar="N",
        help="offline: run on tfds.testing.mock_data with N random examples per split",
    )
    group.add_argument(
        "--train-split",
        default="train",
        help="tfds split, slicing allowed: train[:10%%] (default: train)",
    )
    group.add_argument(
        "--eval-split",
        default=None,
        help="default: test, or validation where there is no test split",
    )
    group.add_argument(
        "--cache",
        default="auto",
        help="cache decoded images: auto (in memory if they fit in 2 GB), memory, none, or a file prefix",
    )
    return parser


@dataclasses.dataclass
class ImageData:
    train: object  # tf.data.Dataset of (images, labels) batches, or None
    eval: object
    num_classes: int
    train_size: object  # int, or None without a training split
    eval_split: str
    batch_size: int

    @property
    def steps_per_epoch(self):
        return -(-self.train_size // self.batch_size) if self.train_size else None


def prepare_image_data(
    args, preprocess, image_size, batch_size, with_train=True, augment=True, seed=None
):
    """Loads ``--dataset`` (train and eval splits) through the tf.data pipeline."""
    info = dataset_info(args.dataset, args.data_dir)
    num_classes = num_classes_of(info)
    eval_split = args.eval_split or default_eval_split(args.dataset, info)
    load = dict(data_dir=args.data_dir, download=not args.no_download, manual_dir=args.manual_dir)
    train = train_size = None
    if with_train:
        raw = load_split(args.dataset, args.train_split, shuffle_files=True, **load)
        train_size = split_size(info, args.train_split) if not args.mock_data else None
        if train_size is None:
            train_size = count_examples(raw)
        train = image_pipeline(
            raw,
            image_size,
            preprocess,
            batch_size,
            training=augment,
            cache=should_cache(info, args.train_split, args.cache),
            seed=seed,
        )
    raw_eval = load_split(args.dataset, eval_split, **load)
    evaluation = image_pipeline(
        raw_eval,
        image_size,
        preprocess,
        batch_size,
        training=False,
        cache=should_cache(info, eval_split, args.cache),
    )
    return ImageData(
        train=train,
        eval=evaluation,
        num_classes=num_classes,
        train_size=train_size,
        eval_split=eval_split,
        batch_size=batch_size,
    )


# --------------------------------------------------------------------------- #
# Models
# --------------------------------------------------------------------------- #


class WeightsUnavailableError(ExampleError):
    """Pretrained weights could not be fetched (no internet) or read."""


def application_names():
    return sorted(
        name
        for name, value in vars(keras.applications).items()
        if name[:1].isupper() and callable(value)
    )


def application(name):
    """The ``keras.applications`` constructor called ``name`` (e.g. "ResNet50")."""
    constructor = getattr(keras.applications, name, None)
    if not (name[:1].isupper() and callable(constructor)):
        raise ExampleError(
            f"Unknown --model {name!r}; choose one of keras.applications: {', '.join(application_names())}."
        )
    return constructor


def family(name):
    """The module of the model's family, e.g. ``keras.applications.resnet`` for ResNet50."""
    module = getattr(keras.applications, application(name).__module__.rsplit(".", 1)[-1], None)
    if not isinstance(module, types.ModuleType) or not hasattr(module, "preprocess_input"):
        raise ExampleError(f"Found no preprocess_input for --model {name!r}.")
    return module


def preprocess_for(name):
    """``keras.applications.<family>.preprocess_input`` of the model: images in [0, 255] in."""
    return family(name).preprocess_input


def resolve_weights(weights):
    """``--weights`` "imagenet", "none" or a file path -> the ``weights=`` argument."""
    if weights is None or str(weights).lower() == "none":
        return None
    if weights == "imagenet":
        return "imagenet"
    if not os.path.exists(weights):
        raise WeightsUnavailableError(
            f"--weights {weights!r}: no such file. Pass 'imagenet', 'none' or the path of a "
            "Keras weights file of the backbone without its top (the '..._notop.h5' file)."
        )
    return weights


def weights_message(name, error):
    return "\n".join(
        [
            f"Could not get the ImageNet weights of {name}:",
            f"  {type(error).__name__}: {str(error).strip().splitlines()[0][:400] if str(error).strip() else ''}",
            "This machine may have no internet access. Either:",
            "  - download the file named in the URL above (the backbone without top, '..._notop.h5') on "
            "a machine with internet and put it in ~/.keras/models/ here (Keras's cache, found by name; "
            "KERAS_HOME moves it), or pass its path: --weights PATH;",
            "  - or train from scratch: --weights none.",
        ]
    )


def build_backbone(name, weights, image_size):
    """The application without its top, global-average pooled: images -> embeddings."""
    constructor = application(name)
    weights = resolve_weights(weights)
    try:
        return constructor(
            include_top=False,
            weights=weights,
            input_shape=(image_size, image_size, 3),
            pooling="avg",
        )
    except WeightsUnavailableError:
        raise
    except ValueError as error:
        raise ExampleError(f"--model {name} with --image-size {image_size}: {error}") from error
    except Exception as error:  # noqa: BLE001 - get_file raises a bare Exception on network errors
        if weights is None:
            raise
        raise WeightsUnavailableError(weights_message(name, error)) from error


def build_classifier(name, weights, image_size, num_classes, dropout=0.2, freeze_backbone=False):
    """Backbone + dropout + a float32 ``Dense`` of logits (mixed precision keeps the logits float32)."""
    backbone = build_backbone(name, weights, image_size)
    backbone.trainable = not freeze_backbone
    inputs = keras.Input((image_size, image_size, 3), name="image")
    # A frozen backbone also keeps its BatchNorm statistics (inference mode).
    features = backbone(inputs, training=False) if freeze_backbone else backbone(inputs)
    if dropout:
        features = keras.layers.Dropout(dropout, name="dropout")(features)
    logits = keras.layers.Dense(num_classes, dtype="float32", name="logits")(features)
    return keras.Model(inputs, logits, name=f"{name}_classifier")


def build_mlp(input_dim, num_classes, hidden=(), name="mlp"):
    """``Dense`` layers with ReLU, then linear logits; ``hidden=()`` is a linear classifier."""
    layers = [keras.Input((input_dim,), name="features")]
    for i, units in enumerate(hidden):
        layers.append(keras.layers.Dense(units, activation="relu", name=f"hidden{i}"))
    layers.append(keras.layers.Dense(num_classes, dtype="float32", name="logits"))
    return keras.Sequential(layers, name=name)


def add_model_arguments(parser, model_default="ResNet50", image_size_default=224):
    group = parser.add_argument_group("model (keras.applications)")
    group.add_argument(
        "--model",
        default=model_default,
        help="a keras.applications name: ResNet50, MobileNetV3Small, "
        "EfficientNetB0, ConvNeXtTiny, ... (default: %(default)s)",
    )
    group.add_argument(
        "--weights",
        default="imagenet",
        help="'imagenet' (downloaded once by Keras), 'none' (random init) or the path of a backbone "
        "weights file without top (default: %(default)s)",
    )
    group.add_argument(
        "--image-size",
        type=int,
        default=image_size_default,
        help="input side in pixels (default: %(default)s)",
    )
    return parser
