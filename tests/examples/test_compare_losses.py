import json
import runpy

import keras
import numpy as np
import pytest

import keras_topk
from examples import common, compare_losses, extract_embeddings, study, train_head
from tests.examples import TINY_APPLICATION

# The --quick study made smaller still: two losses whose compiled gradients trace in seconds, 3 epochs.
TINY_QUICK = [
    "--quick",
    "--losses",
    "ce,transition",
    "--test-size",
    "1000",
    "--max-epochs",
    "3",
    "--no-progress",
]


@pytest.mark.slow  # ~1 min: three conditions, two protocols, a wide head (CI runs --quick itself)
def test_quick_study_end_to_end(tmp_path, capsys):
    out = tmp_path / "quick"
    conditions = ["clean", "long-tailed", "mlp256: superclass p=0.6"]
    payload = compare_losses.main(
        [*TINY_QUICK, "--conditions", ",".join(conditions), "--output", str(out)]
    )
    printed = capsys.readouterr().out
    assert (
        printed.startswith("SMOKE RUN (--quick)") and "decide nothing" in printed.splitlines()[-3]
    )
    assert [c.name for c in compare_losses.benchmark_conditions(quick=True)] == [
        "clean",
        "superclass p=0.6",
        "block p=0.6",
        "complex/linear",
        "long-tailed",
        "mlp256: superclass p=0.6",
    ]
    assert payload["protocols"] == ["early", "fixed"]
    for protocol in ("early", "fixed"):
        per_seed = payload["per_seed"][protocol]
        assert list(per_seed) == conditions
        for condition in conditions:
            runs = per_seed[condition]
            assert list(runs) == ["ce", "transition"] and all(len(r) == 2 for r in runs.values())
            budget = payload["budgets"][condition]["epochs"]
            assert budget == min(30, max(10, 4 * payload["budgets"][condition]["pilot_epoch"]))
            for run in runs["ce"] + runs["transition"]:
                curve = run["curve"]
                assert (
                    curve == sorted(curve) and run["top1"] == curve[0] and run["top5"] == curve[4]
                )
                if run["cand90"] <= len(curve):  # else beyond the curve's 20 classes
                    assert curve[run["cand90"] - 1] >= 0.9 and (
                        run["cand90"] == 1 or curve[run["cand90"] - 2] < 0.9
                    )
                else:
                    assert curve[-1] < 0.9
                assert 0.0 < run["set99"] <= 100 and run["set99_coverage"] >= 0.95
                assert run["epochs_run"] == budget  # both protocols come from whole-schedule runs
                if protocol == "fixed":
                    assert run["epoch"] == budget
                else:
                    assert 1 <= run["epoch"] <= budget
                expected = run["train_top1"] - run["train_top1_clean"]
                assert run["memorisation"] == pytest.approx(expected)
                if condition in ("clean", "long-tailed"):
                    assert run["memorisation"] == 0.0  # no noise: the two label sets are one
                assert ("macro1" in run) == (condition == "long-tailed")
            gain = payload["summary"][protocol][condition]["transition"]["top5_gain"]
            expected = np.mean(
                [a["top5"] - b["top5"] for a, b in zip(runs["transition"], runs["ce"])]
            )
            assert gain[0] == pytest.approx(expected)
            tuned = payload["tuned"][protocol][condition]["transition"]
            best = max(tuned["grid"], key=lambda g: g["validation_score"])
            assert tuned["chosen"] == {k: v for k, v in best.items() if k != "validation_score"}
            assert tuned["widened"] == []  # --quick does not widen its 2-rate grids
    bayes = payload["bayes_limit"]["clean"]
    assert (
        0.5 < bayes[0] < bayes[4] < 1.0
    )  # the known limit of this distribution (about 62% and 96%)
    for protocol in ("early", "fixed"):
        # No claim's loss and conditions are all in this run (no p = 0.8, SVM, complex classes).
        assert {v["verdict"] for v in payload["verdicts"][protocol]} == {"not tested in this run"}
    assert not (out / "gain_vs_p.png").exists()  # no noise kind has two values of p here
    for name in ("accuracy_vs_k", "candidates"):
        for suffix in ("", "_fixed"):
            assert (out / f"{name}{suffix}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "table.md").read_text()
    assert table.startswith("### Early stopping\n\n| condition | loss |")
    assert "### Fixed schedule, final model" in table and "Bayes limit" in table
    verdicts_md = (out / "verdicts.md").read_text()
    assert verdicts_md.count("| early stopping |") == verdicts_md.count("| fixed schedule") > 0
    assert json.loads((out / "tuned_settings.json").read_text()) == payload["tuned"]
    guidance = (out / "guidance.md").read_text()
    for protocol, heading in (("early", "**Early stopping.**"), ("fixed", "**Fixed schedule")):
        section = guidance.split(heading)[1].split("**TopKTransitionLoss**: top-5: ")[1]
        # Conditions where the paired 95% interval of the top-5 gain lies above 0, counted here.
        up = sum(
            payload["summary"][protocol][c]["transition"]["top5_gain"][1] > 0 for c in conditions
        )
        assert section.startswith(f"better than CE in {up} of 3 conditions")


def test_an_interrupted_study_resumes_where_it_stopped(tmp_path, monkeypatch):
    flags = [*TINY_QUICK, "--losses", "ce", "--conditions", "clean,complex/linear"]
    whole = compare_losses.main([*flags, "--output", str(tmp_path / "whole")])
    # Per condition: the pilot, 2 tuning runs, and 2 seeds of each protocol's chosen setting.
    total = sum(
        1 + 2 + 2 * len({str(whole["tuned"][p][c]["ce"]["chosen"]) for p in ("early", "fixed")})
        for c in ("clean", "complex/linear")
    )

    real_fit, calls, cut = study.FeatureTrainer.fit, [], [True]

    def fit(self, *args, **kwargs):
        calls.append(args[0])
        if cut[0] and len(calls) == 5:
            cut[0] = False
            raise KeyboardInterrupt("simulated interruption")
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(study.FeatureTrainer, "fit", fit)
    with pytest.raises(KeyboardInterrupt):
        compare_losses.main([*flags, "--output", str(tmp_path / "cut")])
    assert len(calls) == 5
    calls.clear()
    resumed = compare_losses.main([*flags, "--output", str(tmp_path / "cut")])
    assert len(calls) == total - 4  # the 4 finished cells are not trained again
    assert resumed["per_seed"] == whole["per_seed"] and resumed["tuned"] == whole["tuned"]
    calls.clear()
    compare_losses.main([*flags, "--output", str(tmp_path / "cut")])
    assert calls == []  # all done: the report is rebuilt from the cells
    compare_losses.main([*flags, "--fresh", "--output", str(tmp_path / "cut")])
    assert len(calls) == total


@pytest.fixture(scope="module")
def embeddings_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("emb") / "cifar100-VGG16.npz"
    extract_embeddings.main(
        [
            "--dataset",
            "cifar100",
            "--mock-data",
            "24",
            *TINY_APPLICATION,
            "--batch-size",
            "8",
            "--dtype",
            "float32",
            "--verbose",
            "0",
            "--output",
            str(path),
        ]
    )
    return path


def test_extract_embeddings_writes_the_backbone_outputs(embeddings_file):
    with np.load(embeddings_file) as f:
        meta = json.loads(str(f["meta"]))
        x_train, y_train, x_eval, y_eval = (
            f[k] for k in ("x_train", "y_train", "x_eval", "y_eval")
        )
    assert meta["num_classes"] == 100 and meta["model"] == "VGG16" and meta["eval_split"] == "test"
    assert x_train.shape == (24, 512) and x_eval.shape == (24, 512) and x_train.dtype == np.float32
    assert (
        y_train.shape == (24,)
        and y_train.dtype == np.int32
        and 0 <= y_train.min()
        and y_train.max() < 100
    )
    assert np.isfinite(x_train).all() and np.ptp(x_train) > 0


def test_train_head_trains_each_loss_and_saves_the_heads(embeddings_file, tmp_path):
    out = tmp_path / "heads"
    results = train_head.main(
        [
            "--embeddings",
            str(embeddings_file),
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--losses",
            "ce,topk_ce",
            "--verbose",
            "0",
            "--output",
            str(out),
        ]
    )
    assert list(results) == ["cross_entropy", "topk_cross_entropy"]
    for row in results.values():
        values = [row[f"top{k}"] for k in (1, 2, 5, 10)]
        assert values == sorted(values) and all(0.0 <= v <= 1.0 for v in values)
    head = keras.models.load_model(out / "topk_cross_entropy.keras")
    assert isinstance(head.loss, keras_topk.losses.TopKCrossEntropy)
    assert head.loss.m == 16  # --m auto: the paper's ImageNet setting with 100 > 16 classes
    assert head.count_params() == 512 * 100 + 100  # a linear head
    payload = json.loads((out / "results.json").read_text())
    assert payload["config"]["batch_size"] == 8 and payload["config"][
        "learning_rate"
    ] == pytest.approx(10**-4.5)
    # The saved head scores the evaluation embeddings as reported.
    with np.load(embeddings_file) as f:
        x_eval, y_eval = f["x_eval"], f["y_eval"]
    top5 = np.mean(study.label_ranks(head.predict(x_eval, verbose=0), y_eval) < 5)
    assert top5 == pytest.approx(results["topk_cross_entropy"]["top5"])


def test_the_study_tunes_on_your_embeddings(embeddings_file, tmp_path, capsys):
    out = tmp_path / "cmp"
    payload = compare_losses.main(
        [
            "--embeddings",
            str(embeddings_file),
            "--losses",
            "ce",
            "--seeds",
            "2",
            "--max-epochs",
            "2",
            "--no-progress",
            "--output",
            str(out),
        ]
    )
    (condition,) = payload["per_seed"]["early"]
    for protocol in ("early", "fixed"):
        runs = payload["per_seed"][protocol][condition]["ce"]
        assert condition == "embeddings VGG16 cifar100" and len(runs) == 2
        assert all(0.0 <= r["macro5"] <= 1.0 and "memorisation" not in r for r in runs)
        assert len(payload["tuned"][protocol][condition]["ce"]["grid"]) >= 4
    assert payload["verdicts"] == {}
    assert "Chosen settings" in capsys.readouterr().out


@pytest.mark.slow  # ~1 min: a backbone over mock images, then the study
def test_the_study_embeds_a_tfds_dataset_first(tmp_path):
    out = tmp_path / "cmp"
    flags = [
        "--dataset",
        "cifar100",
        "--mock-data",
        "40",
        *TINY_APPLICATION,
        "--losses",
        "ce",
        "--seeds",
        "2",
        "--max-epochs",
        "2",
        "--no-progress",
        "--output",
        str(out),
    ]
    payload = compare_losses.main(flags)
    assert (out / "embeddings" / "cifar100-VGG16-mock.npz").exists()
    assert list(payload["per_seed"]["fixed"]) == ["embeddings VGG16 cifar100"]


def test_bad_flags_are_messages(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        common.run(compare_losses.main, ["--losses", "ce,hinge", "--output", str(tmp_path)])
    assert exit_info.value.code == 2 and "unknown hinge" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        common.run(compare_losses.main, ["--conditions", "noisy", "--output", str(tmp_path)])
    assert "superclass p=0.4" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        common.run(
            compare_losses.main,
            ["--embeddings", str(tmp_path / "none.npz"), "--output", str(tmp_path)],
        )
    assert "no such file" in capsys.readouterr().err


def test_extract_embeddings_without_imagenet_says_how_to_provide_it(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        common.run(
            extract_embeddings.main,
            [
                "--dataset",
                "imagenet2012",
                "--data-dir",
                str(tmp_path),
                "--no-download",
                *TINY_APPLICATION,
                "--output",
                str(tmp_path / "e.npz"),
            ],
        )
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert (
        "imagenet2012" in message
        and "ILSVRC2012_img_val.tar" in message
        and "--mock-data N" in message
    )
    assert not (tmp_path / "e.npz").exists()


@pytest.mark.slow  # ~1 min: three losses compiled and fitted
def test_quickstart_runs_and_prints_each_loss(capsys):
    runpy.run_module("examples.quickstart", run_name="__main__")
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == [
        "cross-entropy",
        "TopKCrossEntropy",
        "SmoothTopKSVM",
    ]
    for line in lines:
        top1, top5 = (float(v.rstrip("%")) for v in line.split()[2::2])
        assert 20 < top1 < top5 <= 100
