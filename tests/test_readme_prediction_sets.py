"""docs/prediction-sets.md: the snippet runs, and the table is the script's output."""

import contextlib
import io
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join("docs", "prediction-sets.md")


def section():
    with open(os.path.join(ROOT, PAGE), encoding="utf-8") as f:
        return f.read()


def test_the_snippet_runs_and_its_sets_cover(tmp_path, monkeypatch):
    (code,) = re.findall(r"```python\n(.*?)```", section(), flags=re.S)
    for needle in (
        "CandidatesForCoverage",
        "conformal.calibrate",
        "predict_sets",
        "evaluate_sets",
        "predict_indices",
        'method="topk"',
    ):
        assert needle in code, needle
    monkeypatch.chdir(tmp_path)
    namespace = {}
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(code, PAGE, "exec"), namespace)
    printed = output.getvalue().splitlines()
    assert 1 <= float(printed[0]) <= 30
    from keras_topk import conformal

    masks, y_test = namespace["masks"], namespace["y_test"]
    report = conformal.evaluate_sets(masks, y_test)
    assert printed[1] == str(report)
    # One calibration set of 1000: within 4 binomial standard errors of 0.9.
    assert abs(report["coverage"] - 0.9) < 4 * (0.09 / 1000) ** 0.5
    assert namespace["topk"].k_hat >= 1 and report["mean_size"] < 30


# ~20 s (5000 simulated splits): CI's slow step.
@pytest.mark.slow
def test_the_coverage_table_is_what_the_script_prints():
    from tests import test_conformal

    rows = re.findall(
        r"^\| ((?:topk|aps|raps)[^|]*) \| ([0-9.]+) \| ([0-9.]+) \+- ([0-9.]+) \| "
        r"([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \|$",
        section(),
        flags=re.M,
    )
    assert len(rows) == 15
    computed = test_conformal.coverage_table()
    for row, (name, alpha, mean, error, lower, upper, size, _) in zip(rows, computed):
        assert row == (
            name,
            str(alpha),
            f"{mean:.4f}",
            f"{error:.4f}",
            f"{lower:.3f}",
            f"{upper:.3f}",
            f"{size:.2f}",
        )


def test_the_long_tail_figures_are_what_the_script_prints():
    from tests import test_conformal

    figures = {}
    for method in ("aps", "raps"):
        coverage, sizes = test_conformal.simulate(
            test_conformal.draw_long_tail, method, True, (0.1,), 8, 500, 500, seed=3
        )[0.1]
        figures[method] = (f"{coverage.mean():.4f}", f"{sizes.mean():.2f}")
    text = " ".join(section().split())
    assert (
        f"mean size {figures['raps'][1]} against {figures['aps'][1]} for APS (coverage "
        f"{figures['raps'][0]} and {figures['aps'][0]};"
    ) in text
