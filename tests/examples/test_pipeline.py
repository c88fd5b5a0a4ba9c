import argparse
import os

import numpy as np
import pytest
import tensorflow as tf

import keras_topk
from examples import common, images


def images_dataset(pixels, labels):
    return tf.data.Dataset.from_tensor_slices((pixels, labels))


def test_eval_pipeline_keeps_an_image_of_the_target_size_unchanged_and_preprocesses():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (5, 32, 32, 3)).astype(np.uint8)
    pipeline = images.image_pipeline(
        images_dataset(pixels, np.arange(5)),
        32,
        lambda x: x / 255.0 - 1,
        batch_size=2,
        training=False,
        crop_fraction=1.0,
    )
    batches = list(pipeline.as_numpy_iterator())
    assert [b[0].shape for b in batches] == [(2, 32, 32, 3), (2, 32, 32, 3), (1, 32, 32, 3)]
    out = np.concatenate([b[0] for b in batches])
    np.testing.assert_allclose(out, pixels / 255.0 - 1, atol=1e-5)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), np.arange(5))
    assert batches[0][1].dtype == np.int32


def test_eval_crop_is_central_and_train_crops_are_windows_of_the_resized_image():
    # A 40x40 image whose pixel value encodes its column; crop_fraction 0.8 keeps it at 40 and crops 32.
    columns = np.tile(np.arange(40, dtype=np.uint8)[None, :, None], (40, 1, 3))
    ds = images_dataset(columns[None], np.array([0]))
    evaluated = next(
        images.image_pipeline(
            ds, 32, lambda x: x, 1, training=False, crop_fraction=0.8
        ).as_numpy_iterator()
    )[0][0]
    np.testing.assert_allclose(evaluated[0, :, 0], np.arange(4, 36), atol=1e-4)
    for _ in range(5):
        trained = next(
            images.image_pipeline(
                ds, 32, lambda x: x, 1, training=True, crop_fraction=0.8
            ).as_numpy_iterator()
        )[0][0]
        row = trained[0, :, 0]
        step = np.diff(row)
        assert np.allclose(np.abs(step), 1, atol=1e-4) and np.all(
            step * step[0] > 0
        )  # a window, maybe flipped
        assert 0 <= row.min() and row.max() <= 39


def test_grayscale_images_become_rgb():
    gray = np.full((1, 8, 8, 1), 7, np.uint8)
    out = next(
        images.image_pipeline(
            images_dataset(gray, np.array([3])),
            8,
            lambda x: x,
            1,
            training=False,
            crop_fraction=1.0,
        ).as_numpy_iterator()
    )
    assert out[0].shape == (1, 8, 8, 3) and np.allclose(out[0], 7)


def test_every_family_has_its_preprocess_input():
    import keras

    assert images.preprocess_for("ResNet50") is keras.applications.resnet.preprocess_input
    assert (
        images.preprocess_for("MobileNetV3Small")
        is keras.applications.mobilenet_v3.preprocess_input
    )
    assert (
        images.preprocess_for("EfficientNetV2B0")
        is keras.applications.efficientnet_v2.preprocess_input
    )
    for name in images.application_names():
        assert callable(images.preprocess_for(name))


def parse_losses(*flags, m_default="none"):
    parser = common.add_loss_arguments(
        argparse.ArgumentParser(), multiple=True, m_default=m_default
    )
    return parser.parse_args(list(flags))


def test_loss_factory_passes_the_flags_to_each_loss():
    args = parse_losses(
        "--p-k",
        "0.5,0,0,0,0.5",
        "--inverse-temperature",
        "0.5",
        "--top1-mode",
        "smce",
        "--k",
        "3",
        "--tau",
        "0.1",
        "--alpha",
        "0.5",
        "--transition",
        "linear",
    )
    loss, callbacks = common.make_loss("topk_ce", args, num_classes=100)
    assert isinstance(loss, keras_topk.losses.TopKCrossEntropy) and not callbacks
    assert tuple(loss.p_k) == (0.5, 0, 0, 0, 0.5) and loss.inverse_temperature == 0.5
    assert loss.top1_mode == "smce" and loss.m is None
    svm, _ = common.make_loss("smooth_svm", args, 100)
    assert (svm.k, svm.tau, svm.alpha) == (3, 0.1, 0.5)
    transition, callbacks = common.make_loss("transition", args, 100, total_steps=40)
    assert (
        transition.transition == "linear"
        and transition.transition_steps == 40
        and transition.k == 3
    )
    assert isinstance(callbacks[0], keras_topk.callbacks.TransitionCallback)
    hard, _ = common.make_loss("topk_svm", args, 100)
    assert isinstance(hard, keras_topk.losses.TopKSVM) and hard.k == 3


@pytest.mark.parametrize(
    "m, classes, expected",
    [("auto", 1000, 16), ("auto", 10, None), ("none", 1000, None), ("32", 1000, 32)],
)
def test_m_resolution(m, classes, expected):
    loss, _ = common.make_loss("topk_ce", parse_losses("--m", m), num_classes=classes)
    assert loss.m == expected


def test_loss_factory_reports_bad_values_as_example_errors():
    with pytest.raises(images.ExampleError, match="p_k"):
        common.make_loss("topk_ce", parse_losses("--p-k", "0.3,0.3"), 10)
    with pytest.raises(images.ExampleError, match="--p-k"):
        common.make_loss("topk_ce", parse_losses("--p-k", "a,b"), 10)
    with pytest.raises(images.ExampleError, match="unknown: svm"):
        common.parse_loss_list("ce,svm")


def test_a_fresh_run_starts_a_new_history_and_a_resumed_one_appends(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,loss\n0,1.0\n")
    common.resumable_callbacks(str(tmp_path), tensorboard=False, checkpoint=False)
    assert not (tmp_path / "history.csv").exists()
    os.makedirs(tmp_path / "backup")
    (tmp_path / "backup" / "training_metadata.json").write_text('{"epoch": 1}')
    (tmp_path / "history.csv").write_text("epoch,loss\n0,1.0\n")
    _, resuming = common.resumable_callbacks(str(tmp_path), tensorboard=False, checkpoint=False)
    assert resuming and (tmp_path / "history.csv").exists()
