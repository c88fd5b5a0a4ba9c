"""A SavedModel that serves the scores, the loss and the top-k predictions.

``model.export(path)`` writes a SavedModel with the forward pass only. A
consumer that wants to *evaluate* the model (the training loss on its own
labels, for monitoring or for a parity check) would otherwise need Python,
Keras and keras_topk. `export_with_loss` adds the loss as an endpoint, so
that ``tf.saved_model.load(path)`` alone gives the same values, in any
TensorFlow runtime (Python, C++, TF Serving), with no keras_topk import.

TensorFlow backend only: the SavedModel is a TensorFlow graph. TensorFlow
is imported when the function is called, not when keras_topk is, so that
keras_topk stays importable under JAX without TensorFlow.
"""

import os
from typing import Any

import keras

from keras_topk import _config

__all__ = ["export_with_loss"]


def export_with_loss(
    model: keras.Model,
    filepath: str | os.PathLike,
    loss: keras.losses.Loss | None = None,
    k: int = 5,
    label_spec: Any = None,
    input_signature: Any = None,
    verbose: bool = False,
) -> list[str]:
    """Writes a SavedModel with ``serve``, ``loss``, ``weighted_loss`` and ``top_k`` endpoints.

    Endpoints (each also a signature, for TF Serving; ``serve`` is
    ``serving_default``):

    - ``serve(x)``: the model's scores, ``model(x, training=False)``.
    - ``loss(y_true, x)``: the loss of the batch, reduced as the loss reduces
      (``"sum_over_batch_size"``: the mean), the value ``model.evaluate``
      reports for that batch.
    - ``weighted_loss(y_true, x, sample_weight)``: the same with a weight per
      sample, shape ``(batch,)``.
    - ``top_k(x)``: ``{"values", "indices"}``, the ``k`` highest scores of
      each sample and their classes (int32), highest first.

    Called from Python, ``loss`` and ``weighted_loss`` return the scalar; their
    signatures (what TF Serving answers) name it after the loss,
    ``{loss.name: value}`` (e.g. ``"smooth_topk_svm"``), where a bare tensor
    would be named ``"output_0"``.

    The loss is traced with its current state: a `TopKTransitionLoss` is
    exported at its current weight ``w`` (its state variables are saved with
    the model's weights).

    Args:
        model: a built Keras model with one input and one output of scores
            ``(batch, num_classes)``.
        filepath: the directory to write.
        loss: the loss to export; default ``model.loss`` (the compiled loss).
            A ``keras.losses.Loss`` instance, or anything ``keras.losses.get``
            accepts.
        k: the number of top classes the ``top_k`` endpoint returns.
        label_spec: the ``tf.TensorSpec`` of ``y_true``; default integer
            labels ``tf.TensorSpec((None,), tf.int32)``. For one-hot or soft
            labels use ``tf.TensorSpec((None, num_classes), tf.float32)``.
        input_signature: the ``tf.TensorSpec`` of ``x``; default from
            ``model.inputs``.
        verbose: print the endpoints once written.

    Returns:
        The names of the endpoints written.

    Example:

    >>> import tempfile, numpy as np, keras, keras_topk, tensorflow as tf
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6)])
    >>> model.compile("adam", loss=keras_topk.losses.SmoothTopKSVM(k=2))
    >>> path = tempfile.mkdtemp()
    >>> keras_topk.export.export_with_loss(model, path, k=2)
    ['serve', 'loss', 'weighted_loss', 'top_k']
    >>> reloaded = tf.saved_model.load(path)   # no keras_topk needed from here
    >>> x, y = np.ones((3, 4), "float32"), np.array([0, 1, 5], "int32")
    >>> bool(np.isclose(reloaded.loss(y, x), model.loss(y, model(x)), rtol=1e-6))
    True
    >>> reloaded.top_k(x)["indices"].shape
    TensorShape([3, 2])
    >>> list(reloaded.signatures["loss"].structured_outputs)
    ['smooth_topk_svm']
    """
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "export_with_loss writes a TensorFlow SavedModel and needs the TensorFlow "
            f"backend (KERAS_BACKEND=tensorflow); the backend is {keras.backend.backend()!r}. "
            "Under JAX, `model.export(path)` exports the forward pass."
        )
    import tensorflow as tf

    if loss is None:
        loss = getattr(model, "loss", None)
        if loss is None:
            raise ValueError("The model is not compiled with a loss: compile it, or pass `loss=`.")
    if isinstance(loss, (str, dict)):
        loss = keras.losses.get(loss)
    if isinstance(loss, (list, tuple)) or not callable(loss):
        raise ValueError(
            "`loss` must be a single loss (a keras.losses.Loss instance) for a model with "
            f"one output; got {loss!r}."
        )
    k = _config.check_int("k", k, minimum=1)
    if not model.built:
        raise ValueError("The model must be built (called once, or given an Input) before export.")

    if input_signature is None:
        inputs = getattr(model, "inputs", None)
        if not inputs or len(inputs) != 1:
            raise ValueError(
                "Pass `input_signature=tf.TensorSpec(...)`: the input shape cannot be read "
                "from the model (export_with_loss supports models with one input)."
            )
        input_signature = tf.TensorSpec(inputs[0].shape, inputs[0].dtype, name="x")
    outputs = getattr(model, "outputs", None)
    if outputs and outputs[0].shape[-1] is not None:
        _config.check_k_fits_classes("k", k, int(outputs[0].shape[-1]), strict=False)
    if label_spec is None:
        label_spec = tf.TensorSpec((None,), tf.int32, name="y_true")
    weight_spec = tf.TensorSpec((None,), tf.float32, name="sample_weight")

    def serve(x: Any) -> Any:
        return model(x, training=False)

    def loss_fn(y_true: Any, x: Any) -> Any:
        return loss(y_true, serve(x))

    def weighted_loss_fn(y_true: Any, x: Any, sample_weight: Any) -> Any:
        return loss(y_true, serve(x), sample_weight=sample_weight)

    def top_k(x: Any) -> dict[str, Any]:
        values, indices = keras.ops.top_k(serve(x), k, sorted=True)
        return {"values": values, "indices": keras.ops.cast(indices, "int32")}

    output_name = str(getattr(loss, "name", None) or getattr(loss, "__name__", None) or "loss")
    archive = keras.export.ExportArchive()
    archive.track(model)
    # A loss that holds state (TopKTransitionLoss's schedule) reads variables
    # the model does not own; the archive must save them too.
    state = getattr(loss, "state", None)
    state_variables = list(getattr(state, "variables", []))
    if state_variables:
        archive.add_variable_collection("loss_variables", state_variables)
    archive.add_endpoint("serve", serve, input_signature=[input_signature])
    archive.add_endpoint("loss", loss_fn, input_signature=[label_spec, input_signature])
    archive.add_endpoint(
        "weighted_loss",
        weighted_loss_fn,
        input_signature=[label_spec, input_signature, weight_spec],
    )
    archive.add_endpoint("top_k", top_k, input_signature=[input_signature])

    def loss_signature(y_true: Any, x: Any) -> dict[str, Any]:
        return {output_name: loss_fn(y_true, x)}

    def weighted_loss_signature(y_true: Any, x: Any, sample_weight: Any) -> dict[str, Any]:
        return {output_name: weighted_loss_fn(y_true, x, sample_weight)}

    _sign_with(
        archive,
        {
            "loss": tf.function(loss_signature, input_signature=[label_spec, input_signature]),
            "weighted_loss": tf.function(
                weighted_loss_signature,
                input_signature=[label_spec, input_signature, weight_spec],
            ),
        },
    )
    archive.write_out(filepath, verbose=verbose)
    return ["serve", "loss", "weighted_loss", "top_k"]


def _sign_with(archive: Any, signatures: dict[str, Any]) -> None:
    """Makes ``archive`` write ``signatures[name]`` as the signature of endpoint ``name``.

    ``write_out`` makes every endpoint a signature too, and TensorFlow names a
    signature's bare tensor output ``"output_0"``; an endpoint that returned
    ``{name: tensor}`` would return that dict to Python callers as well. So
    the endpoints stay as they are and their signatures return the dict.
    Keras 3.7 to 3.15 read each endpoint's signature through the archive's
    ``_get_concrete_fn`` (recent versions make ``keras.export.ExportArchive``
    a factory of backend classes, so the instance's method is replaced rather
    than subclassed); tests/contract/test_export.py holds the names.
    """
    endpoint_function = archive._get_concrete_fn

    def concrete_function(endpoint: str) -> Any:
        if endpoint in signatures:
            return signatures[endpoint]
        return endpoint_function(endpoint)

    archive._get_concrete_fn = concrete_function
