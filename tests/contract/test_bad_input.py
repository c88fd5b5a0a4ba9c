"""Bad input: a clear error that names the problem, or a documented, well-defined result.

The table below is the one in docs/bad-input.md. Each row runs on every
loss and metric it applies to (the registry's default-run cases). Rows of
kind "raises" expect an exception whose message contains the given text;
rows of kind "result" check the documented result. No row may end in a
silent NaN.
"""

import dataclasses
import math

import keras
import numpy as np
import pytest

import keras_topk
from tests.contract import registry

BACKEND = keras.backend.backend()
TF = BACKEND == "tensorflow"
N = registry.NUM_CLASSES
L, M = keras_topk.losses, keras_topk.metrics

PRIMARY = {c.cls.__name__: c for c in registry.CASES if c.default_run and c.bad_input_table}
LOSSES = [n for n, c in PRIMARY.items() if c.is_loss]
ALL = list(PRIMARY)


def _scores(dtype="float32"):
    return registry.scores_and_labels(num_samples=8, dtype=dtype)


def apply(obj, y, s, sample_weight=None):
    """A loss's value, or a metric's result after one update."""
    if isinstance(obj, keras.losses.Loss):
        return obj(y, s, sample_weight=sample_weight)
    obj.update_state(y, s, sample_weight=sample_weight)
    return obj.result()


def per_sample(obj, y, s):
    """Per-sample losses (reduction None), or per-sample metric hits (0/1)."""
    if isinstance(obj, keras.losses.Loss):
        return keras.ops.convert_to_numpy(
            type(obj).from_config({**obj.get_config(), "reduction": None})(y, s)
        )
    k = getattr(obj, "k", None) or obj.ks[0]
    return keras.ops.convert_to_numpy(keras_topk.metrics.topk_hits(y, s, k=k))


def _values(result):
    if isinstance(result, dict):  # by key: jax.jit returns dicts sorted by key
        return [float(result[key]) for key in sorted(result)]
    return np.atleast_1d(keras.ops.convert_to_numpy(result)).astype("float64").tolist()


def compiled(fn):
    """``fn`` compiled with XLA: ``tf.function(jit_compile=True)`` or ``jax.jit``."""
    if TF:
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    import jax

    return jax.jit(fn)


def stateless(obj):
    """``(y, s) -> value`` that traces without assigning variables (for jit/graphs)."""
    if isinstance(obj, keras.losses.Loss):
        return lambda y, s: obj(y, s)

    def metric(y, s):
        variables = [v.value for v in obj.variables]
        return obj.stateless_result(obj.stateless_update_state(variables, y, s))

    return metric


# --------------------------------------------------------------------------- #
# The table
# --------------------------------------------------------------------------- #


@dataclasses.dataclass
class Row:
    id: str
    targets: list  # names in PRIMARY, or (label, factory) pairs for construction rows
    act: object  # act(obj) for call rows; None for construction rows (the factory acts)
    raises: object = None  # exception type(s), for "raises" rows
    match: str = None  # text the message must contain
    check: object = None  # check(obj, result) for "result" rows
    backends: tuple = ("tensorflow", "jax", "torch")


def _build(cls, **kwargs):
    return lambda: cls(**kwargs)


def _construction(row_id, match, *targets):
    return Row(row_id, list(targets), None, raises=ValueError, match=match)


def _labels(values):
    return np.asarray(values)


def _with_labels(labels):
    def act(obj):
        s, _ = _scores()
        return apply(obj, labels, s)

    return act


def _labels_out_of_range_in_graph(obj):
    import tensorflow as tf

    s, y = _scores()
    y = y.copy()
    y[3] = N
    return tf.function(stateless(obj), jit_compile=False)(tf.constant(y), tf.constant(s))


def _labels_out_of_range_under_xla(obj):
    s, y = _scores()
    y = y.copy()
    y[3], y[5] = N, -1
    value = compiled(stateless(obj))(y, s)
    # Documented: no check can run, and the label counts as the nearest class.
    expected = stateless(obj)(np.clip(y, 0, N - 1), s)
    np.testing.assert_allclose(_values(value), _values(expected), rtol=1e-5, atol=1e-6)
    return value


def _unknown_class_axis(obj):
    import tensorflow as tf

    s, y = _scores()
    fn = tf.function(
        stateless(obj),
        input_signature=[tf.TensorSpec((None,), tf.int32), tf.TensorSpec((None, None), tf.float32)],
    )
    return fn(y, s)


def _check_finite(obj, result):
    values = _values(result)
    assert values and all(math.isfinite(v) for v in values), values
    if not isinstance(obj, keras.losses.Loss):
        assert all(0.0 <= v <= 1.0 for v in values)


def _empty_batch(obj):
    s = np.zeros((0, N), "float32")
    y = np.zeros((0,), "int32")
    state = getattr(obj, "state", None)
    before = None if state is None else float(keras.ops.convert_to_numpy(state.batch_accuracy))
    result = apply(obj, y, s)
    if state is not None:  # an empty batch leaves the schedule's state alone
        assert float(keras.ops.convert_to_numpy(state.batch_accuracy)) == before
    return result


def _check_empty(obj, result):
    if isinstance(obj, keras.losses.Loss):
        # Keras's reduction returns an empty per-sample tensor unreduced, as for
        # its own losses: nothing to average, and no NaN.
        assert tuple(keras.ops.shape(result)) == (0,)
    else:
        assert _values(result) and all(v == 0.0 for v in _values(result))


def _masked_classes(obj, one_hot=False):
    """Scores with classes masked by -inf, and the same with -1e20 instead."""
    s, y = _scores()
    masked = s.copy()
    masked[:, 7:] = -np.inf
    y = y % 7  # the labels are never masked
    if one_hot:  # 0 * log softmax(-inf) must not make a NaN
        y = registry.encode_labels(y, "onehot")
    reference = np.where(np.isinf(masked), np.float32(-1e20), masked)
    value = per_sample(obj, y, masked)
    np.testing.assert_allclose(value, per_sample(obj, y, reference), rtol=1e-6)
    if isinstance(obj, keras.losses.Loss):
        gradient = _gradient(obj, y, masked)
        assert np.all(np.isfinite(gradient)) and np.all(gradient[:, 7:] == 0.0)
    return value


def _gradient(loss, y, s):
    if TF:
        import tensorflow as tf

        x = tf.constant(s)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = loss(y, x)
        return tape.gradient(value, x).numpy()
    if BACKEND == "torch":
        import torch

        x = torch.tensor(s, requires_grad=True)
        loss(y, x).backward()
        return x.grad.numpy()
    import jax

    return np.asarray(jax.grad(lambda x: loss(y, x))(s))


def _nan_scores(obj):
    s, y = _scores()
    s[2, (y[2] + 1) % N] = np.nan  # another class's score
    s[5, y[5]] = np.nan  # the label's score
    if not isinstance(obj, keras.losses.Loss):
        # A NaN counts against the label: as +inf elsewhere, as -inf on the label.
        against = s.copy()
        against[2, (y[2] + 1) % N] = np.inf
        against[5, y[5]] = -np.inf
        np.testing.assert_array_equal(per_sample(obj, y, s), per_sample(obj, y, against))
    return per_sample(obj, y, s)


def _check_nan_scores(obj, values):
    rows = np.arange(len(values))
    if isinstance(obj, keras.losses.Loss):
        # The loss of those samples is NaN, as with Keras's own losses, so that
        # TerminateOnNaN stops the run; the other samples are untouched.
        assert np.all(np.isnan(values[[2, 5]])) and np.all(
            np.isfinite(values[(rows != 2) & (rows != 5)])
        )
    else:
        assert values[5] == 0.0 and np.all(np.isin(values, (0.0, 1.0)))


def _masked_label_class(obj):
    """Row 2's label class is -inf, row 4 is all -inf: the label cannot be reached."""
    s, y = _scores()
    s[2, y[2]] = -np.inf
    s[4, :] = -np.inf
    return per_sample(obj, y, s)


def _check_masked_label_class(obj, values):
    rows = np.arange(len(values))
    assert np.all(np.isfinite(values))
    if isinstance(obj, keras.losses.Loss):
        # Loss 0 (and no gradient, tests/contract/test_masks_and_non_finite.py): the
        # sample drops out as a masked step does.
        assert values[2] == 0.0 and values[4] == 0.0
    else:
        # The label ranks below every other class: a miss.
        assert values[2] == 0.0 and values[4] == 0.0 and np.all(np.isin(values, (0.0, 1.0)))
    s, y = _scores()
    others = (rows != 2) & (rows != 4)
    np.testing.assert_allclose(values[others], per_sample(obj, y, s)[others], rtol=1e-6, atol=1e-7)


def _plus_inf_scores(obj):
    """+inf (a float16 overflow): as NaN for a loss; the highest score for a metric."""
    s, y = _scores()
    s[2, (y[2] + 1) % N] = np.inf  # another class's score
    s[5, y[5]] = np.inf  # the label's score
    if isinstance(obj, keras.losses.Loss):
        return per_sample(obj, y, s)
    values = per_sample(obj, y, s)
    np.testing.assert_array_equal(
        values, per_sample(obj, y, np.where(np.isinf(s), np.finfo("float32").max, s))
    )
    # Shaped as _check_nan_scores expects of a metric: the label's +inf is a hit.
    assert values[5] == 1.0
    values = values.copy()
    values[5] = 0.0
    return values


def _k_at_least_classes(obj):
    s, y = _scores()
    return apply(obj, y, s)


ROWS = [
    # --- construction: ValueError naming the argument -------------------------------
    _construction(
        "k_below_1",
        "must be >= 1",
        ("SmoothTopKSVM", _build(L.SmoothTopKSVM, k=0)),
        ("TopKSVM", _build(L.TopKSVM, k=0)),
        ("TopKTransitionLoss", _build(L.TopKTransitionLoss, k=0)),
        ("TopKAccuracy", _build(M.TopKAccuracy, k=0)),
        ("MultiTopKAccuracy", _build(M.MultiTopKAccuracy, ks=(1, 0))),
    ),
    _construction(
        "k_not_an_integer",
        "must be an integer",
        ("SmoothTopKSVM", _build(L.SmoothTopKSVM, k=2.5)),
        ("TopKSVM", _build(L.TopKSVM, k="5")),
        ("TopKTransitionLoss", _build(L.TopKTransitionLoss, k=None)),
        ("TopKAccuracy", _build(M.TopKAccuracy, k=True)),
        ("MultiTopKAccuracy", _build(M.MultiTopKAccuracy, ks=(1, 2.5))),
    ),
    _construction(
        "nan_hyperparameter",
        "must be finite",
        ("SmoothTopKSVM.tau", _build(L.SmoothTopKSVM, tau=float("nan"))),
        ("SmoothTopKSVM.alpha", _build(L.SmoothTopKSVM, alpha=float("nan"))),
        ("TopKSVM.alpha", _build(L.TopKSVM, alpha=float("nan"))),
        ("TopKCrossEntropy.p_k", _build(L.TopKCrossEntropy, p_k=(float("nan"), 1.0))),
        (
            "TopKCrossEntropy.inverse_temperature",
            _build(L.TopKCrossEntropy, inverse_temperature=float("nan")),
        ),
        ("TopKCrossEntropy.art_lambda", _build(L.TopKCrossEntropy, art_lambda=float("nan"))),
        (
            "TopKTransitionLoss.weight",
            _build(L.TopKTransitionLoss, transition="constant", weight=float("nan")),
        ),
        (
            "TopKTransitionLoss.weight_start",
            _build(L.TopKTransitionLoss, weight_start=float("nan")),
        ),
        ("TopKTransitionLoss.momentum", _build(L.TopKTransitionLoss, momentum=float("nan"))),
    ),
    _construction(
        "infinite_hyperparameter",
        "must be finite",
        ("SmoothTopKSVM.tau", _build(L.SmoothTopKSVM, tau=float("inf"))),
        (
            "TopKCrossEntropy.inverse_temperature",
            _build(L.TopKCrossEntropy, inverse_temperature=float("inf")),
        ),
    ),
    _construction(
        "hyperparameter_out_of_range",
        "must be",
        ("SmoothTopKSVM.tau=0", _build(L.SmoothTopKSVM, tau=0.0)),
        ("TopKSVM.alpha<0", _build(L.TopKSVM, alpha=-1.0)),
        (
            "TopKCrossEntropy.inverse_temperature=0",
            _build(L.TopKCrossEntropy, inverse_temperature=0),
        ),
        ("TopKTransitionLoss.momentum=1", _build(L.TopKTransitionLoss, momentum=1.0)),
        ("TopKTransitionLoss.weight_end>1", _build(L.TopKTransitionLoss, weight_end=1.5)),
    ),
    _construction(
        "p_k_not_a_distribution",
        "`p_k` must",
        ("sums_to_1.1", _build(L.TopKCrossEntropy, p_k=(0.5, 0.6))),
        ("negative", _build(L.TopKCrossEntropy, p_k=(1.5, -0.5))),
        ("empty", _build(L.TopKCrossEntropy, p_k=())),
        ("a_number", _build(L.TopKCrossEntropy, p_k=5)),
    ),
    _construction(
        "unknown_option",
        "Unknown `",
        ("method", _build(L.TopKCrossEntropy, method="quicksort")),
        ("distribution", _build(L.TopKCrossEntropy, distribution="laplace")),
        ("top1_mode", _build(L.TopKCrossEntropy, top1_mode="ce")),
        ("transition", _build(L.TopKTransitionLoss, transition="cosine")),
        ("group", _build(L.TopKTransitionLoss, group="top")),
    ),
    _construction(
        "schedule_arguments_inconsistent",
        "transition",
        ("linear_without_steps", _build(L.TopKTransitionLoss, transition="linear")),
        ("constant_without_weight", _build(L.TopKTransitionLoss, transition="constant")),
        ("weight_without_constant", _build(L.TopKTransitionLoss, weight=0.5)),
    ),
    _construction(
        "m_not_above_K",
        "`m`=3 must lie strictly between",
        ("TopKCrossEntropy", _build(L.TopKCrossEntropy, p_k=(0.5, 0.0, 0.5), m=3)),
    ),
    _construction(
        "ks_repeated_or_empty",
        "`ks` must",
        ("repeated", _build(M.MultiTopKAccuracy, ks=(1, 5, 1))),
        ("empty", _build(M.MultiTopKAccuracy, ks=())),
        ("a_number", _build(M.MultiTopKAccuracy, ks=5)),
    ),
    _construction(
        "key_format_without_k",
        "`key_format`",
        ("no_field", _build(M.MultiTopKAccuracy, key_format="top_accuracy")),
        ("other_field", _build(M.MultiTopKAccuracy, key_format="{k}_{name}")),
    ),
    _construction(
        "unknown_reduction",
        "Invalid value for argument `reduction`",
        # Each loss with its case's arguments (LongTailTopKHinge needs class_counts).
        *[(n, _build(PRIMARY[n].cls, **{**PRIMARY[n].kwargs, "reduction": "avg"})) for n in LOSSES],
    ),
    # --- call / trace time: ValueError (eager or while tracing) ----------------------
    Row(
        "k_not_below_num_classes",
        [
            ("SmoothTopKSVM", _build(L.SmoothTopKSVM, k=N)),
            ("TopKSVM", _build(L.TopKSVM, k=N + 1)),
            ("TopKTransitionLoss", _build(L.TopKTransitionLoss, k=N)),
            ("TopKCrossEntropy", _build(L.TopKCrossEntropy, p_k=(1.0 / (N + 1),) * (N + 1))),
        ],
        lambda obj: apply(obj, _scores()[1], _scores()[0]),
        ValueError,
        "the number of classes",
    ),
    Row(
        "m_not_below_num_classes",
        [("TopKCrossEntropy", _build(L.TopKCrossEntropy, p_k=(0.5, 0.5), m=N))],
        lambda obj: apply(obj, _scores()[1], _scores()[0]),
        ValueError,
        f"`m`={N} must be smaller",
    ),
    Row(
        "labels_wrong_width",
        ALL,
        _with_labels(np.zeros((8, 3), "float32")),
        ValueError,
        "do not match",
    ),
    Row(
        "labels_wrong_rank",
        ALL,
        _with_labels(np.zeros((8, 1, 1), "int32")),
        ValueError,
        "do not match",
    ),
    Row(
        "labels_wrong_batch_size",
        ALL,
        _with_labels(np.zeros((7,), "int32")),
        ValueError,
        "disagree on the batch size",
    ),
    Row(
        "labels_out_of_range_eager",
        ALL,
        _with_labels(_labels([0, 1, 2, N, 4, 5, 6, 7])),
        ValueError,
        f"class indices in [0, {N})",
    ),
    Row(
        "labels_negative_eager",
        ALL,
        _with_labels(_labels([0, 1, 2, -1, 4, 5, 6, 7])),
        ValueError,
        f"class indices in [0, {N})",
    ),
    Row(
        "labels_fractional",
        ALL,
        _with_labels(_labels([0, 1, 2.5, 3, 4, 5, 6, 7]).astype("float32")),
        ValueError,
        "whole numbers",
    ),
    Row(
        "labels_nan",
        ALL,
        _with_labels(_labels([0, 1, np.nan, 3, 4, 5, 6, 7]).astype("float32")),
        ValueError,
        "whole numbers",
    ),
    Row("labels_bool", ALL, _with_labels(np.ones((8,), bool)), ValueError, "got dtype bool"),
    Row(
        "labels_strings",
        ALL,
        _with_labels(np.array(["cat"] * 8)),
        ValueError,
        "got dtype string",
        backends=("tensorflow",),
    ),
    Row(
        "scores_integer",
        ALL,
        lambda obj: apply(obj, _scores()[1], np.ones((8, N), "int32")),
        ValueError,
        "floating-point logits",
    ),
    Row(
        "scores_scalar",
        ALL,
        lambda obj: apply(obj, np.int32(0), np.float32(1.0)),
        ValueError,
        "must have a class axis",
    ),
    Row(
        "scores_unknown_num_classes",
        ALL,
        _unknown_class_axis,
        ValueError,
        "must be known",
        backends=("tensorflow",),
    ),
    # --- in a TensorFlow graph: the check runs with the step ----------------------
    Row(
        "labels_out_of_range_in_graph",
        ALL,
        _labels_out_of_range_in_graph,
        "InvalidArgumentError",
        f"Labels must be class indices in [0, {N})",
        backends=("tensorflow",),
    ),
    # --- documented results ------------------------------------------------------
    Row(
        "labels_out_of_range_under_xla",
        ALL,
        _labels_out_of_range_under_xla,
        check=_check_finite,
        backends=("tensorflow", "jax"),
    ),
    Row("empty_batch", ALL, _empty_batch, check=_check_empty),
    Row("masked_classes_minus_inf", ALL, _masked_classes, check=_check_finite),
    Row(
        "masked_classes_minus_inf_one_hot",
        ALL,
        lambda obj: _masked_classes(obj, one_hot=True),
        check=_check_finite,
    ),
    Row("masked_label_class", ALL, _masked_label_class, check=_check_masked_label_class),
    Row("nan_scores", ALL, _nan_scores, check=_check_nan_scores),
    Row("plus_inf_scores", ALL, _plus_inf_scores, check=_check_nan_scores),
    Row(
        "k_at_least_num_classes",
        [
            ("TopKAccuracy", _build(M.TopKAccuracy, k=N)),
            ("MultiTopKAccuracy", _build(M.MultiTopKAccuracy, ks=(N, 2 * N))),
        ],
        _k_at_least_classes,
        check=lambda obj, r: _values(r) == [1.0] * len(_values(r)),
    ),
]


def _params():
    params = []
    for row in ROWS:
        for target in row.targets:
            if isinstance(target, str):
                label, factory = target, PRIMARY[target].make
            else:
                label, factory = target
            marks = ()
            if BACKEND not in row.backends:
                marks = pytest.mark.skip(reason=f"{row.id} needs {' or '.join(row.backends)}")
            params.append(pytest.param(row, factory, id=f"{row.id}-{label}", marks=marks))
    return params


def test_the_table_has_at_least_15_kinds_of_bad_input():
    assert len(ROWS) >= 15
    assert len({row.id for row in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row,factory", _params())
def test_bad_input(row, factory):
    if row.act is None:  # construction: the factory must refuse
        with pytest.raises(row.raises) as error:
            factory()
        assert row.match in str(error.value)
        return
    obj = factory()
    if row.raises is not None:
        raises = row.raises
        if isinstance(raises, str):  # a TensorFlow error, resolved only under TensorFlow
            import tensorflow as tf

            raises = getattr(tf.errors, raises)
        with pytest.raises(raises) as error:
            row.act(obj)
        assert row.match in str(error.value), str(error.value)[:500]
        return
    row.check(obj, row.act(obj))
