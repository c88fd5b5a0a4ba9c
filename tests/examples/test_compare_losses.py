import json

import keras
import numpy as np
import pytest

import keras_topk
from examples import compare_losses, extract_embeddings, train_head
from tests.examples import TINY_APPLICATION

TINY_BENCHMARK = [
    "--num-classes", "8", "--train-size", "256", "--test-size", "512", "--hidden", "16",
    "--epochs", "2", "--batch-size", "64", "--curve-points", "2", "--verbose", "0",
]


def check_results_file(output, losses, seeds):
    payload = json.loads((output / "results.json").read_text())
    results = payload["results"]
    assert list(results) == losses
    for name, values in results.items():
        tops = [values["top1"], values["top2"], values["top5"]]
        assert all(0.0 <= v <= 1.0 for v in tops) and tops == sorted(tops)
        per_seed = payload["per_seed"][name]
        assert len(per_seed) == seeds
        assert values["top5"] == pytest.approx(np.mean([run["top5"] for run in per_seed]))
        if name != "cross_entropy" and "cross_entropy" in results:
            gains = [run["top5"] - ref["top5"] for run, ref in zip(per_seed, payload["per_seed"]["cross_entropy"])]
            assert values["top5_gain"] == pytest.approx(np.mean(gains))
    for png in ("accuracy_vs_k.png", "training_curves.png"):
        assert (output / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (output / "table.md").read_text().startswith("| loss |")
    return payload


def test_compare_losses_on_the_embedded_benchmark(tmp_path, capsys):
    out = tmp_path / "cmp"
    compare_losses.main([*TINY_BENCHMARK, "--seeds", "2", "--output", str(out),
                         "--losses", "ce,topk_ce,smooth_svm,transition"])
    payload = check_results_file(
        out, ["cross_entropy", "topk_cross_entropy", "smooth_topk_svm", "topk_transition"], seeds=2)
    bayes = payload["reference"]["bayes_limit"]
    assert 0 < bayes["top1"] < bayes["top2"] < bayes["top5"] < 1
    during = payload["test_accuracy_during_training"]["topk_transition"]
    assert during["epoch"] == [1, 2] and len(during["top5"]) == 2
    curve = payload["accuracy_vs_k"]["cross_entropy"]
    assert curve["k"] == list(range(1, 11)) and curve["mean"][7] == pytest.approx(1.0)  # k = 8 classes
    printed = capsys.readouterr().out
    assert "| cross_entropy |" in printed and "| *bayes_limit* |" in printed

    # Paired by seed: a loss's result at a seed does not depend on what ran before it.
    alone = compare_losses.main([*TINY_BENCHMARK, "--seeds", "2", "--losses", "smooth_svm",
                                 "--output", str(tmp_path / "alone")])
    assert alone["smooth_topk_svm"]["top5"] == payload["results"]["smooth_topk_svm"]["top5"]
    assert alone["smooth_topk_svm"]["top1"] == payload["results"]["smooth_topk_svm"]["top1"]


@pytest.fixture(scope="module")
def embeddings_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("emb") / "cifar100-VGG16.npz"
    extract_embeddings.main(["--dataset", "cifar100", "--mock-data", "24", *TINY_APPLICATION,
                             "--batch-size", "8", "--dtype", "float32", "--verbose", "0", "--output", str(path)])
    return path


def test_extract_embeddings_writes_the_backbone_outputs(embeddings_file):
    with np.load(embeddings_file) as f:
        meta = json.loads(str(f["meta"]))
        x_train, y_train, x_eval, y_eval = (f[k] for k in ("x_train", "y_train", "x_eval", "y_eval"))
    assert meta["num_classes"] == 100 and meta["model"] == "VGG16" and meta["eval_split"] == "test"
    assert x_train.shape == (24, 512) and x_eval.shape == (24, 512) and x_train.dtype == np.float32
    assert y_train.shape == (24,) and y_train.dtype == np.int32 and 0 <= y_train.min() and y_train.max() < 100
    assert np.isfinite(x_train).all() and np.ptp(x_train) > 0


def test_train_head_trains_each_loss_and_saves_the_heads(embeddings_file, tmp_path):
    out = tmp_path / "heads"
    summaries = train_head.main(["--embeddings", str(embeddings_file), "--epochs", "2", "--batch-size", "8",
                                 "--losses", "ce,topk_ce", "--verbose", "0", "--output", str(out)])
    check_results_file(out, ["cross_entropy", "topk_cross_entropy"], seeds=1)
    assert set(summaries) == {"cross_entropy", "topk_cross_entropy"}
    head = keras.models.load_model(out / "topk_cross_entropy.keras")
    assert isinstance(head.loss, keras_topk.losses.TopKCrossEntropy)
    assert head.loss.m == 16  # --m auto: the paper's ImageNet setting with 100 > 16 classes
    assert head.count_params() == 512 * 100 + 100  # a linear head
    config = json.loads((out / "results.json").read_text())["config"]
    assert config["batch_size"] == 8 and config["learning_rate"] == pytest.approx(10**-4.5)


def test_compare_losses_on_embeddings(embeddings_file, tmp_path):
    out = tmp_path / "cmp"
    compare_losses.main(["--embeddings", str(embeddings_file), "--epochs", "1", "--batch-size", "8",
                         "--losses", "ce,smooth_svm", "--seeds", "2", "--verbose", "0", "--output", str(out)])
    payload = check_results_file(out, ["cross_entropy", "smooth_topk_svm"], seeds=2)
    assert "reference" not in payload


@pytest.mark.slow
def test_compare_losses_on_a_mock_tfds_dataset(tmp_path):
    out = tmp_path / "cmp"
    compare_losses.main(["--dataset", "cifar100", "--mock-data", "16", *TINY_APPLICATION, "--epochs", "1",
                         "--batch-size", "8", "--seeds", "1", "--losses", "ce,transition", "--verbose", "0",
                         "--output", str(out)])
    check_results_file(out, ["cross_entropy", "topk_transition"], seeds=1)


def test_compare_losses_rejects_bad_flags(tmp_path, capsys):
    from examples import cli

    with pytest.raises(SystemExit):
        cli.run(compare_losses.main, ["--losses", "ce,hinge", "--output", str(tmp_path)])
    assert "unknown: hinge" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.run(compare_losses.main, ["--losses", "topk_ce", "--p-k", "0.5,0.6", "--epochs", "1",
                                      "--num-classes", "8", "--output", str(tmp_path)])
    assert "p_k" in capsys.readouterr().err


def test_extract_embeddings_without_imagenet_says_how_to_provide_it(tmp_path, capsys):
    from examples import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.run(extract_embeddings.main, ["--dataset", "imagenet2012", "--data-dir", str(tmp_path), "--no-download",
                                          *TINY_APPLICATION, "--output", str(tmp_path / "e.npz")])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "imagenet2012" in message and "ILSVRC2012_img_val.tar" in message and "--mock-data N" in message
    assert not (tmp_path / "e.npz").exists()
