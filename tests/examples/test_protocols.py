"""The study's two protocols: early stopping picks an epoch on validation data only; the fixed
schedule evaluates the model after its last epoch."""

import numpy as np
import pytest

from examples import benchmark, compare_losses, study


def small_task(seed=0):
    config = benchmark.Benchmark(
        groups=4, per_group=5, dim=6, train_per_class=12, test_size=300, noise="block", p=0.5
    )
    x, y, xt, yt, _ = benchmark.make_task(config, seed)
    return x, y, xt, yt


def test_fixed_schedule_evaluates_the_final_epoch_and_early_stopping_its_chosen_epoch():
    x, y, _, _ = small_task()
    train, val = study.split_validation(x, y, 0.25, seed=0)
    config = study.TrainerConfig(
        hidden=32, batch_size=32, max_epochs=12, patience=2, lr_schedule="cosine", run_to_end=True
    )
    trainer = study.FeatureTrainer(config, num_classes=20)
    seen = {}
    snapshots, info = trainer.fit(
        study.Setting.of("ce", 0.05),
        train,
        val,
        seed=0,
        on_epoch=lambda epoch, params: seen.__setitem__(epoch, params),
    )
    assert sorted(seen) == list(range(1, 13)) and info["epochs_run"] == 12
    # The final snapshot is the last epoch's parameters, whatever the validation scores said.
    for got, want in zip(snapshots["final"], seen[12]):
        np.testing.assert_array_equal(got, want)
    # Early stopping, recomputed from every epoch's validation score: the best epoch up to the
    # first `patience` epochs without a better one.
    scores = {
        e: study.validation_score(study.label_ranks(trainer.forward(p, val[0]), val[1]))
        for e, p in seen.items()
    }
    best, best_epoch = -1.0, 0
    for epoch in range(1, 13):
        if scores[epoch] > best:
            best, best_epoch = scores[epoch], epoch
        elif epoch - best_epoch >= 2:
            break
    assert info["epoch"] == best_epoch < 12  # the case tests something: it stopped early
    assert info["stopped"] == epoch and info["final_validation_score"] == pytest.approx(scores[12])
    for got, want in zip(snapshots["early"], seen[best_epoch]):
        np.testing.assert_array_equal(got, want)
    # Adam's rate followed the cosine to 0 over the whole schedule (12 epochs of 6 steps).
    assert trainer.learning_rate(0.05, 0, 72) == 0.05
    assert trainer.learning_rate(0.05, 36, 72) == pytest.approx(0.025)
    assert trainer.learning_rate(0.05, 72, 72) == pytest.approx(0.0, abs=1e-12)


class Spy(study.FeatureTrainer):
    """The real trainer, keeping every array it is given to fit on."""

    arrays = []

    def fit(self, setting, train, validation, seed, on_epoch=None):
        Spy.arrays += [train[0], train[1], validation[0], validation[1]]
        return super().fit(setting, train, validation, seed, on_epoch)


def run_on(test_x, test_y, tmp_path, name):
    x, y, _, _ = small_task()
    data = compare_losses.Data((x, y, test_x, test_y, 20))
    store = study.Store(str(tmp_path / name), {"test": name})
    return compare_losses.run_study(
        [compare_losses.Condition("user", None, hidden=16)],
        ["ce"],
        [0, 1],
        {"ce": [study.Setting.of("ce", lr) for lr in (0.01, 0.1)]},
        study.TrainerConfig(batch_size=32, max_epochs=4, patience=2),
        store,
        data,
        progress_bar=False,
        trainer_factory=Spy,
        widen_steps=0,
    )


def test_neither_protocol_sees_the_test_data_before_it_evaluates(tmp_path):
    _, _, xt, yt = small_task()
    Spy.arrays = []
    first = run_on(xt, yt, tmp_path, "a")
    # Nothing the trainer fitted on or validated on is (or shares memory with) the test data.
    for array in Spy.arrays:
        assert not np.shares_memory(array, xt) and not np.shares_memory(array, yt)
        assert array.shape[0] != xt.shape[0]
    # Another test set: every choice (settings, epochs, budgets) is the same; only the scores move.
    rng = np.random.default_rng(3)
    second = run_on(
        rng.normal(size=xt.shape).astype(np.float32), rng.permutation(yt), tmp_path, "b"
    )
    tuned_a, per_seed_a, _, _, budgets_a = first
    tuned_b, per_seed_b, _, _, budgets_b = second
    assert tuned_a == tuned_b and budgets_a == budgets_b
    for protocol in ("early", "fixed"):
        runs_a, runs_b = per_seed_a[protocol]["user"]["ce"], per_seed_b[protocol]["user"]["ce"]
        assert [r["epoch"] for r in runs_a] == [r["epoch"] for r in runs_b]
        assert [r["train_top1"] for r in runs_a] == [r["train_top1"] for r in runs_b]
        assert [r["top1"] for r in runs_a] != [r["top1"] for r in runs_b]
