"""Models of the examples: ``keras.applications`` backbones, classifier heads, small MLPs."""

import os
import types

import keras

from examples.data import ExampleError


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
    group.add_argument("--model", default=model_default, help="a keras.applications name: ResNet50, MobileNetV3Small, "
                       "EfficientNetB0, ConvNeXtTiny, ... (default: %(default)s)")
    group.add_argument("--weights", default="imagenet",
                       help="'imagenet' (downloaded once by Keras), 'none' (random init) or the path of a backbone "
                       "weights file without top (default: %(default)s)")
    group.add_argument("--image-size", type=int, default=image_size_default, help="input side in pixels (default: %(default)s)")
    return parser
