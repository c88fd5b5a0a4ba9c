import dataclasses
import math

import numpy as np
import pytest

from examples import benchmark, compare_losses, report, study

# --------------------------------------------------------------------------- #
# Statistics
# --------------------------------------------------------------------------- #


def test_paired_interval_matches_a_hand_computed_case():
    # Differences 0.1, 0.2, -0.05: mean 1/12, sample sd 0.1258306 (variance 0.0316667 / 2),
    # standard error 0.0726483, t(0.975, df=2) = 4.3026527, half-width 0.3125807.
    mean, low, high = report.paired_interval([0.5, 0.7, 0.4], [0.4, 0.5, 0.45])
    assert mean == pytest.approx(1 / 12)
    assert low == pytest.approx(1 / 12 - 0.3125807, abs=1e-6)
    assert high == pytest.approx(1 / 12 + 0.3125807, abs=1e-6)
    # One pair: no interval.
    assert report.paired_interval([1.0], [0.5]) == (0.5, -math.inf, math.inf)


def test_slope_interval_of_exactly_linear_gains_is_the_slope():
    ps = [0.0, 0.2, 0.4, 0.8]
    gains = np.array(
        [[0.01 + 0.05 * p + s * 0.01 for s in range(5)] for p in ps]
    )  # same slope, offsets differ
    mean, low, high = report.slope_interval(ps, gains)
    assert (
        mean == pytest.approx(0.05) and low == pytest.approx(0.05) and high == pytest.approx(0.05)
    )


def per_seed_with(gains, metric_values=None):
    """A fake study: CE at 0.5 everywhere, SmoothTopKSVM at 0.5 + the given per-seed gains."""
    out = {}
    for condition, by_metric in gains.items():
        ce, svm = [], []
        for seed in range(5):
            ce.append({m: 0.5 for m in report.METRICS})
            svm.append({m: 0.5 + by_metric.get(m, [0.0] * 5)[seed] for m in report.METRICS})
        out[condition] = {"ce": ce, "smooth_svm": svm}
    return out


def test_verdicts_reproduced_not_reproduced_and_inconclusive():
    up = [0.010, 0.012, 0.011, 0.009, 0.013]
    noisy = [0.02, -0.03, 0.01, -0.01, 0.005]
    down = [-x for x in up]
    claim = {c["id"]: c for c in report.CLAIMS}[
        "B2"
    ]  # few examples: SVM better at top-5; many: worse
    cases = {
        "reproduced": {"few examples": {"top5": up}, "many examples": {"top5": down}},
        "not reproduced": {"few examples": {"top5": up}, "many examples": {"top5": up}},
        "inconclusive at 5 seeds": {
            "few examples": {"top5": noisy},
            "many examples": {"top5": down},
        },
    }
    for expected, gains in cases.items():
        verdicts = {v["id"]: v for v in report.judge(per_seed_with(gains), {}, 5)}
        assert verdicts["B2"]["verdict"] == expected, expected
        assert verdicts["B2"]["claim"] == claim["claim"]
        assert verdicts["P1"]["verdict"] == "not tested in this run"  # no TopKCrossEntropy runs


def test_slope_checks_use_the_clean_condition_as_p_zero():
    conditions = compare_losses.benchmark_conditions()
    noise_ps = compare_losses.noise_ps_of(conditions)
    assert noise_ps["superclass"][0] == (0.0, "clean")
    assert [p for p, _ in noise_ps["block"]] == [0, 0.4, 0.8]
    assert noise_ps["mlp256: block"] == [
        (0.0, "mlp256: clean"),
        (0.4, "mlp256: block p=0.4"),
        (0.8, "mlp256: block p=0.8"),
    ]
    growing = {"clean": {"top5": [0.001 * s for s in range(5)]}}
    for p, name in noise_ps["superclass"][1:]:
        growing[name] = {"top5": [0.05 * p + 0.001 * s for s in range(5)], "top1": [0.04 * p] * 5}
    verdicts = {v["id"]: v for v in report.judge(per_seed_with(growing), noise_ps, 5)}
    assert verdicts["B1"]["verdict"] == "reproduced"
    slopes = [r for r in verdicts["B1"]["checks"] if r["condition"] == "slope: superclass"]
    assert slopes[0]["gain"][0] == pytest.approx(0.05)


def test_fewer_candidates_count_as_better():
    assert report.direction((-2.0, -3.0, -1.0), larger_is_better=False) == 1
    assert report.direction((2.0, 1.0, 3.0), larger_is_better=False) == -1
    assert report.direction((0.5, -1.0, 2.0), larger_is_better=True) == 0


# --------------------------------------------------------------------------- #
# Ranks and the trainer
# --------------------------------------------------------------------------- #


def test_label_ranks_count_ties_against_the_label():
    scores = np.array([[3.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 2.0, 1.0, 5.0]])
    np.testing.assert_array_equal(study.label_ranks(scores, np.array([0, 2, 2])), [0, 3, 2])
    assert study.accuracy_at_k(np.array([0, 0, 1, 3, 9]), 4) == [0.4, 0.6, 0.6, 0.8]


def test_mlp_backward_matches_finite_differences():
    trainer = study.FeatureTrainer(study.TrainerConfig(hidden=6), num_classes=4)
    rng = np.random.default_rng(0)
    params = [p.astype(np.float64) for p in trainer.init(3, seed=0)]
    params[1] += 0.1  # no ReLU exactly at its kink
    x, target = rng.normal(size=(5, 3)), rng.normal(size=(5, 4))

    def objective(ps):
        return float(np.sum(trainer.forward(ps, x) * target))

    grads = trainer._backward(params, x, target)
    for i, p in enumerate(params):
        for index in np.ndindex(p.shape):
            bumped = [q.copy() for q in params]
            bumped[i][index] += 1e-6
            lowered = [q.copy() for q in params]
            lowered[i][index] -= 1e-6
            numeric = (objective(bumped) - objective(lowered)) / 2e-6
            assert grads[i][index] == pytest.approx(numeric, abs=1e-5)


def test_trainer_learns_separable_classes_and_stops_early():
    config = benchmark.Benchmark(
        groups=2, per_group=5, dim=8, class_spread=3.0, train_per_class=40, test_size=500
    )
    x, y, xt, yt, _ = benchmark.make_task(config, seed=0)
    train, val = study.split_validation(x, y, 0.2, seed=0)
    trainer = study.FeatureTrainer(
        study.TrainerConfig(max_epochs=60, patience=3, batch_size=64), 10
    )
    snapshots, info = trainer.fit(study.Setting.of("ce", 0.1), train, val, seed=0)
    params = snapshots["early"]
    accuracy = study.accuracy_at_k(study.label_ranks(trainer.forward(params, xt), yt), 1)[0]
    assert accuracy > 0.9 and info["validation_score"] > 0.9
    assert info["epochs_run"] - info["epoch"] <= 3 and info["epochs_run"] < 60


# --------------------------------------------------------------------------- #
# Tuning (on a stubbed trainer)
# --------------------------------------------------------------------------- #


def test_tune_picks_the_best_validation_setting_and_the_first_of_ties():
    settings = [study.Setting.of("ce", lr) for lr in (0.1, 0.2, 0.3, 0.4)]
    scores = {0.1: 0.5, 0.2: 0.7, 0.3: 0.6, 0.4: 0.7}
    best, seen = study.tune(settings, lambda s: scores[s.lr])
    assert best.lr == 0.2 and seen == [0.5, 0.7, 0.6, 0.7]


class StubTrainer:
    """Validation scores from a table; test scores that put the label first iff the setting is 'good'.

    The early-stopping snapshot and the final one differ: the best epoch's validation score
    favours lr 0.03, the final epoch's lr 0.1; test scores rank the label first only for the
    final parameters of lr 0.1 and the early ones of lr 0.03.
    """

    calls = []

    def __init__(self, config, num_classes):
        self.num_classes = num_classes

    def fit(self, setting, train, validation, seed):
        StubTrainer.calls.append((setting, seed))
        best = {0.01: 0.2, 0.03: 0.9, 0.1: 0.4}[setting.lr]
        final = {0.01: 0.1, 0.03: 0.3, 0.1: 0.5}[setting.lr]
        info = {
            "validation_score": best,
            "final_validation_score": final,
            "epoch": 1,
            "epochs_run": 3,
        }
        return {"early": ("early", setting.lr), "final": ("final", setting.lr)}, info

    def forward(self, params, x):
        snapshot, lr = params
        good = (snapshot, lr) in (("early", 0.03), ("final", 0.1))
        scores = np.zeros((x.shape[0], self.num_classes), np.float32)
        scores[:, 0] = 2.0 if good else -1.0  # the stub's labels are all 0
        return scores


def test_each_protocol_trains_every_seed_with_the_setting_it_chose_on_validation(tmp_path):
    StubTrainer.calls = []
    grid = {"ce": [study.Setting.of("ce", lr) for lr in (0.01, 0.03, 0.1)]}
    user = (
        np.zeros((50, 2), np.float32),
        np.zeros(50, np.int32),
        np.zeros((10, 2), np.float32),
        np.zeros(10, np.int32),
        4,
    )
    condition = compare_losses.Condition("user", None)
    store = study.Store(str(tmp_path), {"test": 1})
    tuned, per_seed, _, _, budgets = compare_losses.run_study(
        [condition],
        ["ce"],
        [0, 1, 2],
        grid,
        study.TrainerConfig(),
        store,
        compare_losses.Data(user),
        progress_bar=False,
        trainer_factory=StubTrainer,
        widen_steps=0,
    )
    # Early stopping tunes on the best epoch's score, the fixed schedule on the final epoch's.
    assert tuned["early"]["user"]["ce"]["chosen"] == {"loss": "ce", "lr": 0.03}
    assert tuned["fixed"]["user"]["ce"]["chosen"] == {"loss": "ce", "lr": 0.1}
    assert [g["validation_score"] for g in tuned["early"]["user"]["ce"]["grid"]] == [0.2, 0.9, 0.4]
    assert [g["validation_score"] for g in tuned["fixed"]["user"]["ce"]["grid"]] == [0.1, 0.3, 0.5]
    # The pilot (CE at 0.01), the 3 tuning runs, then each seed with each protocol's setting.
    assert StubTrainer.calls[0][0].lr == 0.01 and budgets["user"]["pilot_epoch"] == 1
    assert [(s.lr, seed) for s, seed in StubTrainer.calls[4:]] == [
        (lr, seed) for seed in (0, 1, 2) for lr in (0.03, 0.1)
    ]
    # Each protocol is scored on its own snapshot: the stub ranks the label first only there.
    for protocol in ("early", "fixed"):
        assert [run["top1"] for run in per_seed[protocol]["user"]["ce"]] == [1.0, 1.0, 1.0]
        assert all(run["cand99"] == 1 for run in per_seed[protocol]["user"]["ce"])
    assert [r["epoch"] for r in per_seed["fixed"]["user"]["ce"]] == [3, 3, 3]
    assert [r["epoch"] for r in per_seed["early"]["user"]["ce"]] == [1, 1, 1]


def test_widening_adds_the_next_rate_beyond_the_edge_for_every_loss():
    scores = {0.003: 0.1, 0.01: 0.2, 0.03: 0.5, 0.1: 0.7, 0.3: 0.9, 1.0: 0.8}
    grid = [study.Setting.of("ce", lr) for lr in (0.003, 0.01, 0.03, 0.1)]
    best, widened, seen, added = study.tune_widening(grid, lambda s: scores[s.lr])
    assert best.lr == 0.3 and [s.lr for s in added] == [0.3, 1.0]
    assert seen == [scores[s.lr] for s in widened] and widened[:4] == grid
    # A top-k loss: the rate beyond the edge with the chosen loss settings, the lower edge too.
    grid = [
        study.Setting.of("smooth_svm", lr, tau=t, alpha=1.0)
        for lr in (0.01, 0.03)
        for t in (1, 0.1)
    ]
    chosen = study.Setting.of("smooth_svm", 0.01, tau=0.1, alpha=1.0)
    assert study.widen(grid, chosen) == study.Setting.of("smooth_svm", 0.003, tau=0.1, alpha=1.0)
    interior = [study.Setting.of("ce", lr) for lr in (0.003, 0.01, 0.03)]
    assert study.widen(interior, interior[1]) is None


def test_the_long_tail_follows_its_power_law():
    config = benchmark.Benchmark(long_tail=(150, 3))
    counts = config.train_counts()
    a = np.log(50) / np.log(100)
    assert counts[0] == 150 and counts[-1] == 3 and counts[9] == round(150 * 10**-a)
    x, y, xt, yt, _ = benchmark.make_task(dataclasses.replace(config, test_size=4000), seed=0)
    np.testing.assert_array_equal(np.bincount(y, minlength=100), counts)
    test_counts = np.bincount(yt, minlength=100)  # balanced: uniform labels, 40 expected per class
    assert test_counts.min() > 15 and test_counts.max() < 70


def test_store_keeps_each_study_configuration_apart(tmp_path):
    store = study.Store(str(tmp_path), {"seeds": [0, 1]})
    store.put({"x": 1}, "run", "clean", "ce", 0)
    assert study.Store(str(tmp_path), {"seeds": [0, 1]}).get("run", "clean", "ce", 0) == {"x": 1}
    other = study.Store(str(tmp_path), {"seeds": [0, 1, 2]})
    assert other.get("run", "clean", "ce", 0) is None and other.root != store.root


def test_settings_round_trip_and_every_loss_has_the_same_budget():
    # The arms' grids are the grids of the study before they became a list of arms.
    assert [s.lr for s in study.GRIDS["default"]["ce"]] == [0.003, 0.01, 0.03, 0.1]
    assert study.GRIDS["default"]["transition"] == [
        study.Setting.of("transition", lr, schedule=s)
        for lr in (0.01, 0.03)
        for s in ("adaptive", "linear")
    ]
    for grids in (study.GRIDS["default"], study.QUICK_GRIDS):
        assert len({len(g) for g in grids.values()}) == 1
        for grid in grids.values():
            for setting in grid:
                assert study.Setting.from_dict(setting.as_dict()) == setting
    assert dataclasses.asdict(study.TrainerConfig())["batch_size"] == 256
