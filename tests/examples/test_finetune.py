import csv
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import keras_topk
from examples import common, finetune
from tests.examples import TINY_APPLICATION

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def argv(output, *extra, examples=16):
    return [
        "--dataset",
        "cifar100",
        "--mock-data",
        str(examples),
        *TINY_APPLICATION,
        "--batch-size",
        "8",
        "--verbose",
        "0",
        "--output",
        str(output),
        *extra,
    ]


def history_epochs(output):
    with open(os.path.join(output, "history.csv")) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_finetune_end_to_end_saves_a_model_that_reloads_with_its_loss(tmp_path, capsys):
    out = tmp_path / "run"
    results = finetune.main(argv(out, "--epochs", "1", "--loss", "transition", "--k", "3"))
    printed = capsys.readouterr().out
    assert "test accuracy: top-1" in printed and "top-10" in printed
    assert set(results) == {"top1", "top2", "top5", "top10"}
    values = [results[f"top{k}"] for k in (1, 2, 5, 10)]
    assert all(0.0 <= v <= 1.0 for v in values) and values == sorted(values)
    assert json.loads((out / "metrics.json").read_text())["top5"] == results["top5"]
    assert (out / "model_savedmodel" / "saved_model.pb").exists()
    assert (out / "checkpoints" / "best.keras").exists()
    assert not (out / "backup").exists()  # removed once training finished
    assert history_epochs(out) == [0]

    # The saved model comes back with its loss and the loss's schedule state, no custom_objects.
    model = keras.models.load_model(out / "model.keras")
    assert isinstance(model.loss, keras_topk.losses.TopKTransitionLoss)
    assert model.loss.k == 3 and model.loss.transition == "adaptive"
    steps = int(keras.ops.convert_to_numpy(model.loss.state.steps))
    assert steps == 2  # 16 examples / batch 8, one epoch
    images = np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 3)).astype("float32")
    scores = model.predict(images, verbose=0)
    assert scores.shape == (4, 100) and scores.dtype == np.float32

    # The SavedModel export serves the same function.
    import tensorflow as tf

    exported = tf.saved_model.load(str(out / "model_savedmodel"))
    np.testing.assert_allclose(exported.serve(images).numpy(), scores, rtol=1e-4, atol=1e-4)


class Interrupt(keras.callbacks.Callback):
    """Raises at the end of epoch 0, after BackupAndRestore has written its backup."""

    def __init__(self):
        super().__init__()
        self.state = None

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            self.state = _training_state(self.model)
            raise KeyboardInterrupt("simulated crash")


class Record(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs, self.state_at_start = [], None

    def on_epoch_begin(self, epoch, logs=None):
        if not self.epochs:
            self.state_at_start = _training_state(self.model)
        self.epochs.append(epoch)


def _training_state(model):
    state = {
        "weights": [np.array(w) for w in model.get_weights()],
        "optimizer_steps": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
    }
    if isinstance(model.loss, keras_topk.losses.TopKTransitionLoss):
        state["schedule_steps"] = int(keras.ops.convert_to_numpy(model.loss.state.steps))
        state["schedule_weight"] = float(keras.ops.convert_to_numpy(model.loss.state.weight))
    return state


@pytest.mark.slow  # ~30 s: two runs, each tracing the model
def test_interrupted_finetune_resumes_after_the_last_finished_epoch(tmp_path):
    out = tmp_path / "run"
    args = argv(
        out, "--epochs", "2", "--loss", "transition", "--transition", "linear", "--no-export"
    )
    interrupt = Interrupt()
    with pytest.raises(KeyboardInterrupt):
        finetune.main(args, callbacks=[interrupt])
    meta = json.loads((out / "backup" / "training_metadata.json").read_text())
    assert meta["epoch"] == 1
    assert not (out / "model.keras").exists()

    record = Record()
    finetune.main(args, callbacks=[record])
    assert record.epochs == [1]  # epoch 0 is not trained again
    restored = record.state_at_start
    for before, after in zip(interrupt.state["weights"], restored["weights"]):
        np.testing.assert_array_equal(before, after)
    assert restored["optimizer_steps"] == interrupt.state["optimizer_steps"] == 2
    # The linear transition carries on from its step count (2 of 4 steps: w = 0.5).
    assert restored["schedule_steps"] == 2 and restored["schedule_weight"] == pytest.approx(0.5)
    assert history_epochs(out) == [0, 1]
    assert (out / "model.keras").exists() and not (out / "backup").exists()


@pytest.mark.slow
def test_finetune_killed_with_sigkill_resumes_without_losing_a_finished_epoch(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-m", "examples.finetune", *argv(out, "--no-export", "--loss", "ce")]
    log = tmp_path / "finetune.log"
    process = subprocess.Popen(
        command + ["--epochs", "1000"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    metadata = out / "backup" / "training_metadata.json"
    deadline = time.time() + 300
    try:
        while time.time() < deadline and process.poll() is None:
            if metadata.exists() and json.loads(metadata.read_text() or "{}").get("epoch", 0) >= 2:
                break
            time.sleep(0.05)
        else:
            pytest.fail(
                f"no backup of epoch 2 appeared (exit code {process.poll()}); the run's stderr "
                f"ends with:\n{log.read_text()[-3000:]}"
            )
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    saved_epoch = json.loads(metadata.read_text())["epoch"]
    finished_before = history_epochs(out)
    assert saved_epoch >= 2 and finished_before[:saved_epoch] == list(range(saved_epoch))

    record = Record()
    finetune.main(
        argv(out, "--no-export", "--loss", "ce", "--epochs", str(saved_epoch + 1)),
        callbacks=[record],
    )
    assert record.epochs == [saved_epoch]
    assert record.state_at_start["optimizer_steps"] == 2 * saved_epoch  # 2 steps per finished epoch
    assert history_epochs(out)[-1] == saved_epoch
    assert (out / "model.keras").exists()


def test_missing_dataset_exits_with_instructions(tmp_path, capsys):
    args = [
        "--dataset",
        "cifar100",
        "--data-dir",
        str(tmp_path / "tfds"),
        "--no-download",
        *TINY_APPLICATION,
        "--output",
        str(tmp_path / "out"),
    ]
    with pytest.raises(SystemExit) as exit_info:
        common.run(finetune.main, args)
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "Could not load the tfds dataset 'cifar100'" in message
    assert str(tmp_path / "tfds") in message
    assert (
        "download_and_prepare()" in message
        and "--data-dir DIR" in message
        and "--mock-data N" in message
    )
    assert "Traceback" not in message


def test_missing_imagenet_explains_the_manual_download(tmp_path, capsys):
    args = [
        "--dataset",
        "imagenet2012",
        "--data-dir",
        str(tmp_path / "tfds"),
        "--no-download",
        *TINY_APPLICATION,
        "--output",
        str(tmp_path / "out"),
    ]
    with pytest.raises(SystemExit):
        common.run(finetune.main, args)
    message = capsys.readouterr().err
    assert "ILSVRC2012_img_train.tar" in message and "ILSVRC2012_img_val.tar" in message
    assert str(tmp_path / "tfds" / "downloads" / "manual") in message and "--manual-dir" in message


def test_unreachable_imagenet_weights_exit_with_instructions(tmp_path, capsys, monkeypatch):
    from keras.src.utils import file_utils

    def offline(fname, origin=None, **kwargs):
        raise Exception(
            f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure in name resolution"
        )

    monkeypatch.setattr(file_utils, "get_file", offline)
    args = [
        "--dataset",
        "cifar100",
        "--mock-data",
        "8",
        "--model",
        "VGG16",
        "--weights",
        "imagenet",
        "--image-size",
        "32",
        "--output",
        str(tmp_path / "out"),
    ]
    with pytest.raises(SystemExit) as exit_info:
        common.run(finetune.main, args)
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "Could not get the ImageNet weights of VGG16" in message
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert (
        "~/.keras/models/" in message
        and "--weights PATH" in message
        and "--weights none" in message
    )


def test_unknown_model_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        common.run(
            finetune.main, ["--mock-data", "8", "--model", "ResNet51", "--output", str(tmp_path)]
        )
    message = capsys.readouterr().err
    assert "Unknown --model 'ResNet51'" in message and "ResNet50" in message
