"""The newer losses' arms: their grids, conditions, per-step noise, class counts, and the report."""

import numpy as np
import pytest

from examples import benchmark, compare_losses, report, study

NEW = (
    "calibrated_hinge",
    "noised_hinge",
    "long_tail_hinge",
    "hinge_alpha",
    "hinge_beta",
    "truncated_entropy",
    "topk_ce_lapsum",
)


def test_new_arms_have_the_same_budget_and_run_in_real_conditions():
    assert study.NEW_ARMS == NEW
    names = {c.name for c in compare_losses.benchmark_conditions()}
    for name in NEW:
        arm = study.ARM[name]
        assert len(arm.grid()) == 4 and len(arm.grid("quick")) == 2
        assert {s.lr for s in arm.grid()} == {0.01, 0.03}
        assert set(arm.conditions) <= names and "long-tailed" in arm.conditions
    # The original arms run everywhere; the default run includes the new ones.
    assert all(study.ARM[n].conditions is None for n in ("ce", "topk_ce", "smooth_svm"))
    assert set(NEW) <= set(compare_losses.DEFAULT_LOSSES)
    clean = compare_losses.Condition("clean", benchmark.Benchmark())
    few = compare_losses.Condition("few examples", benchmark.Benchmark())
    user = compare_losses.Condition("user", None)
    losses = ["ce", "calibrated_hinge", "hinge_alpha"]
    assert compare_losses._arms_in(clean, losses) == ["ce", "calibrated_hinge"]
    assert compare_losses._arms_in(few, losses) == ["ce"]
    assert compare_losses._arms_in(user, losses) == losses


class Recorder:
    """A loss-gradient function that records its inputs and returns zero gradients."""

    def __init__(self):
        self.calls = []

    def __call__(self, setting, scores, labels, weights, w, extra=None, static=()):
        self.calls.append((extra, static))
        return 0.0, np.zeros_like(scores)


def _fit(seed, setting, y=None):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 6, 40).astype(np.int32) if y is None else y
    x = rng.standard_normal((len(y), 3)).astype(np.float32)
    recorder = Recorder()
    trainer = study.FeatureTrainer(
        study.TrainerConfig(batch_size=16, max_epochs=2, patience=5), 6, recorder
    )
    trainer.fit(setting, (x, y), (x[:8], y[:8]), seed)
    return recorder.calls


def test_noise_is_new_at_every_step_and_reproducible_from_the_seed():
    setting = study.Setting.of("noised_hinge", 0.01, epsilon=0.2)
    a, again, other = _fit(3, setting), _fit(3, setting), _fit(4, setting)
    assert len(a) == 6  # 3 steps per epoch, 2 epochs
    noises = [extra for extra, _ in a]
    assert all(z.shape == (16, study.NOISE_SAMPLES, 6) and z.dtype == np.float32 for z in noises)
    assert all(not np.array_equal(noises[i], noises[j]) for i in range(6) for j in range(i))
    assert all(np.array_equal(z, z2) for z, (z2, _) in zip(noises, again))
    assert not np.array_equal(noises[0], other[0][0])
    # Standard normal draws (mean 0, variance 1 over 2,880 numbers).
    allz = np.concatenate([z.ravel() for z in noises])
    assert abs(allz.mean()) < 0.1 and abs(allz.var() - 1) < 0.1
    # Arms without a per-step input get none.
    assert {
        extra is None for extra, _ in _fit(3, study.Setting.of("hinge_alpha", 0.01, margin=1.0))
    } == {True}


def test_class_counts_come_from_the_training_labels_the_trainer_sees():
    y = np.array([0] * 20 + [1] * 10 + [2] * 5 + [4] * 5, np.int32)  # class 3 and 5 absent
    calls = _fit(0, study.Setting.of("long_tail_hinge", 0.01, max_margin=0.2), y)
    assert {static for _, static in calls} == {(("class_counts", (20, 10, 5, 1, 5, 1)),)}


def _reference_hinge(scores, labels, margins, k, noise=None, epsilon=0.0):
    """float64 NumPy: mean over the batch of max(0, m_y + mean_t (s + eps Z_t)_[k+1] - s_y)."""
    s = scores.astype(np.float64)
    if noise is None:
        kth = -np.sort(-s, axis=1)[:, k]
    else:
        noisy = s[:, None, :] + epsilon * noise.astype(np.float64)
        kth = (-np.sort(-noisy, axis=2))[:, :, k].mean(1)
    s_y = s[np.arange(len(labels)), labels]
    return np.maximum(0.0, margins[labels] + kth - s_y).mean()


def test_compiled_losses_match_numpy_references():
    rng = np.random.default_rng(1)
    b, n = 32, 12
    scores = rng.standard_normal((b, n)).astype(np.float32)
    labels = rng.integers(0, n, b).astype(np.int32)
    weights = np.ones(b, np.float32)
    grads = study._LossGradients()
    setting = study.Setting.of("calibrated_hinge", 0.01, margin=0.5)
    loss, _ = grads(setting, scores, labels, weights, 0.0)
    assert loss == pytest.approx(_reference_hinge(scores, labels, np.full(n, 0.5), 5), abs=1e-5)

    noise = rng.standard_normal((b, study.NOISE_SAMPLES, n)).astype(np.float32)
    setting = study.Setting.of("noised_hinge", 0.01, epsilon=1.0)
    loss, _ = grads(setting, scores, labels, weights, 0.0, extra=noise)
    expected = _reference_hinge(scores, labels, np.ones(n), 5, noise, 1.0)
    assert loss == pytest.approx(expected, abs=1e-5)

    counts = np.arange(1, n + 1) ** 2
    static = (("class_counts", tuple(int(c) for c in counts)),)
    setting = study.Setting.of("long_tail_hinge", 0.01, max_margin=1.0)
    loss, _ = grads(setting, scores, labels, weights, 0.0, static=static)
    margins = counts**-0.25 / (counts**-0.25).max()  # LDAM: the rarest class gets max_margin
    assert loss == pytest.approx(_reference_hinge(scores, labels, margins, 5), abs=1e-5)


class StubTrainer:
    """Validation scores by learning rate; every model ranks label 0 first (all test labels 0)."""

    def __init__(self, config, num_classes):
        self.num_classes = num_classes

    def fit(self, setting, train, validation, seed):
        info = {"validation_score": setting.lr, "final_validation_score": setting.lr}
        return {"early": None, "final": None}, {**info, "epoch": 1, "epochs_run": 2}

    def forward(self, params, x):
        scores = np.zeros((x.shape[0], self.num_classes), np.float32)
        scores[:, 0] = 2.0  # logits, not probabilities
        return scores


def test_an_arm_absent_from_a_condition_is_a_blank_cell_not_a_number(tmp_path):
    base = benchmark.Benchmark(groups=2, test_size=40, train_per_class=5)
    conditions = [
        compare_losses.Condition("long-tailed", base),  # the name decides where an arm runs
        compare_losses.Condition("few examples", base),
    ]
    losses = ["ce", "hinge_alpha"]
    grids = {loss: study.GRIDS["default"][loss] for loss in losses}
    _, per_seed, _, _, _ = compare_losses.run_study(
        conditions,
        losses,
        [0, 1],
        grids,
        study.TrainerConfig(),
        study.Store(str(tmp_path), {"test": 2}),
        compare_losses.Data(),
        progress_bar=False,
        trainer_factory=StubTrainer,
        widen_steps=0,
    )
    assert list(per_seed["early"]["long-tailed"]) == losses
    assert list(per_seed["early"]["few examples"]) == ["ce"]
    summary = report.summarize(per_seed["early"], losses)
    labels = study.LABELS
    gains = report.gains_table(summary, losses, labels).splitlines()
    assert gains[2].endswith("| +0.00 / +0.00 |")  # the same scores as CE
    assert gains[3].endswith("| — |")
    table = report.markdown_table(summary, losses, labels)
    assert "| few examples | TopKHingeAlpha |" not in table
    assert "| long-tailed | TopKHingeAlpha |" in table


def test_gain_rows_on_the_long_tail_leave_the_claims_alone():
    up = [0.01, 0.012, 0.011, 0.009, 0.013]
    per_seed = {
        "long-tailed": {
            "ce": [{m: 0.5 for m in report.METRICS} for _ in up],
            "hinge_beta": [
                {**{m: 0.5 for m in report.METRICS}, "macro1": 0.5 + g, "top1": 0.5 - g} for g in up
            ],
        }
    }
    verdicts = report.judge(per_seed, {}, 5)
    claims = [v for v in verdicts if not v["id"].startswith("G ")]
    assert [v["id"] for v in claims] == [c["id"] for c in report.CLAIMS]
    assert {v["verdict"] for v in claims} == {"not tested in this run"}
    rows = [v for v in verdicts if v["id"].startswith("G ")]
    assert [v["loss"] for v in rows] == ["hinge_beta"]
    checks = {c["metric"]: c for c in rows[0]["checks"]}
    assert list(checks) == ["macro1", "macro5", "top1", "top5"]
    assert checks["macro1"]["gain"][0] == pytest.approx(np.mean(up))
    assert checks["macro1"]["agrees"] == 1 and checks["top1"]["agrees"] == -1
    assert checks["top5"]["agrees"] == 0
    assert rows[0]["verdict"] == "above CE in 1, below in 1 of 4 (5 seeds)"
    table = report.verdict_table_by_protocol(
        {"early": verdicts, "fixed": verdicts}, report.PROTOCOL_NAMES
    )
    line = next(l for l in table.splitlines() if "G hinge_beta" in l)
    assert f"macro1: +{100 * np.mean(up):.2f} [" in line and "(above)" in line
