"""The benchmark entry point on its quick grid: files, structure and numbers that make sense (no timing bars)."""

import json
import math
import os
import subprocess
import sys

import pytest

from benchmarks import run, timing

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_losses_suite_writes_json_markdown_and_plot(tmp_path):
    lines = []
    run.main(
        # The output format is under test here, not the baseline check (its own test below): a
        # smoke grid on a busy machine may see Keras's CE and the bare op differ by more than 1.5x.
        [
            "--suite",
            "losses",
            "--quick",
            "--xla",
            "off",
            "--repeats",
            "2",
            "--rounds",
            "2",
            "--baseline-tolerance",
            "1000",
            "--output",
            str(tmp_path),
        ],
        log=lines.append,
    )

    payload = json.loads((tmp_path / "losses.json").read_text())
    assert payload["suite"] == "losses" and payload["quick"] is True
    assert (
        payload["command"].startswith("python -m benchmarks.run ")
        or "KERAS_BACKEND=" in payload["command"]
    )
    for field in (
        "cpu",
        "logical_cpus",
        "keras",
        "backend",
        "date_utc",
        "load_average_at_start",
        "load_average_at_end",
        "device",
    ):
        assert field in payload["machine"], field
    rows = payload["rows"]
    timed = [r for r in rows if "ms" in r or r.get("refused")]
    skipped = [r for r in rows if r.get("skip")]
    assert len(timed) == 3 and len(skipped) == 1
    timed = [r for r in rows if "ms" in r]
    for r in timed:
        assert r["xla"] is False and r["batch"] == 16
        assert r["ms"] > 0 and r["ce_ms"] > 0 and r["bare_ce_ms"] > 0
        assert math.isclose(r["ratio_to_ce"], r["ms"] / r["ce_ms"])
        assert math.isclose(r["ce_vs_bare"], r["ce_ms"] / r["bare_ce_ms"], rel_tol=1e-6)
        assert len(r["load_average"]) == 3
        # Two rounds of two interleaved calls each; the figure is the lower quartile.
        assert (
            r["timing"]["runs"] == 4
            and r["ce_timing"]["runs"] == 4
            and r["bare_ce_timing"]["runs"] == 4
        )
        assert len(r["timing"]["round_p25_ms"]) == 2
        assert r["timing"]["min_ms"] <= r["ms"] == r["timing"]["p25_ms"] <= r["timing"]["median_ms"]
    assert {r["loss"] for r in timed} == {"topk_cross_entropy", "smooth_topk_svm"}
    assert len({r["key"] for r in rows}) == len(rows)

    md = (tmp_path / "results.md").read_text()
    assert "## Losses against softmax cross-entropy" in md
    table = [
        line
        for line in md.splitlines()
        if line.startswith("| TopKCrossEntropy") or line.startswith("| SmoothTopKSVM")
    ]
    assert len(table) == 4
    assert all(
        line.count("|") == 7 for line in table
    )  # loss, b, n, then ms / CE ms / x CE for XLA off
    assert any("an example of a skipped case" in line for line in table)
    # Both n = 40 and n = 80 were timed for TopKCrossEntropy: the plot has a line to draw.
    assert (tmp_path / "cost_vs_n.png").stat().st_size > 1000
    assert "![cost against n](cost_vs_n.png)" in md
    assert any(line.startswith("losses: ") for line in lines)


def test_markdown_collects_every_suite_found(tmp_path):
    from benchmarks import report

    machine = {
        "cpu": "test cpu",
        "logical_cpus": 2,
        "backend": "tensorflow",
        "date_utc": "2000-01-01 00:00",
    }
    report.write_suite(
        tmp_path,
        "memory",
        {
            "suite": "memory",
            "command": "python -m benchmarks.run --suite memory",
            "machine": machine,
            "rows": [
                {
                    "label": "softmax CE",
                    "batch": 512,
                    "classes": 10450,
                    "xla": True,
                    "baseline_mib": 700.0,
                    "process_peak_mib": 900.0,
                    "steady_increment_mib": 150.0,
                    "first_call_increment_mib": 180.0,
                }
            ],
        },
    )
    report.write_suite(
        tmp_path,
        "train_step",
        {
            "suite": "train_step",
            "command": "python -m benchmarks.run --suite train_step",
            "machine": machine,
            "rows": [
                {
                    "setting": "head",
                    "label": "softmax CE",
                    "batch": 512,
                    "step_ms": 10.0,
                    "ce_step_ms": 10.0,
                    "overhead_percent": 0.0,
                }
            ],
        },
    )
    md = tmp_path / "results.md"
    report.write_markdown(tmp_path)
    text = md.read_text()
    assert (
        "## Peak memory" in text
        and "| softmax CE | 512 | 10450 | on | 900 | 150 | 180 | 700 |" in text
    )
    assert (
        "## One training step" in text
        and "| head | softmax CE | 512 | 10.0 | 10.0 | +0.0% | - | - |" in text
    )
    assert "## Losses" not in text and "test cpu" in text


@pytest.mark.parametrize(
    "argv",
    [
        ["--suite", "nope"],
        ["--xla", "maybe"],
        ["--repeats", "0"],
        ["--rounds", "0"],
        ["--device", "tpu"],
    ],
)
def test_bad_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit):
        run.parse_args(argv)
    assert "usage: python -m benchmarks.run" in capsys.readouterr().err


def test_lower_quartiles_interleaves_rotates_and_takes_the_quiet_calls():
    order = []
    # "slow" sleeps 5 ms on its first timed calls and 1 ms after: the lower quartile sees the 1 ms calls.
    state = {"slow": 0}

    def slow():
        order.append("slow")
        state["slow"] += 1
        import time

        time.sleep(0.005 if state["slow"] <= 4 else 0.001)

    def fast():
        order.append("fast")

    result = timing.lower_quartiles(
        {"slow": slow, "fast": fast}, calls_per_round=4, rounds=3, warmups=2, budget_s=60
    )
    timed = order[4:]  # two warm-ups each, excluded
    assert len(timed) == 24
    # One call of each per pass, in varying orders: neither always follows the other.
    passes = [tuple(timed[i : i + 2]) for i in range(0, 24, 2)]
    assert all(sorted(p) == ["fast", "slow"] for p in passes)
    assert {("slow", "fast"), ("fast", "slow")} <= set(passes)
    assert result["slow"]["runs"] == 12 and len(result["slow"]["round_p25_ms"]) == 3
    assert (
        0.9 <= result["slow"]["p25_ms"] < 2.5 < result["slow"]["p75_ms"]
        or result["slow"]["p25_ms"] < 2.5
    )
    assert result["fast"]["p25_ms"] < result["slow"]["p25_ms"]
    assert result["slow"]["first_call_s"] >= 0.0


@pytest.mark.parametrize(
    "keras_ms, bare_ms, ok",
    [
        (1.0, 1.0, True),
        (1.4, 1.0, True),
        (1.0, 1.4, True),
        (1.6, 1.0, False),
        (1.0, 1.6, False),
        (0.0, 1.0, False),
    ],
)
def test_check_baseline_refuses_beyond_one_and_a_half(keras_ms, bare_ms, ok):
    if ok:
        assert math.isclose(timing.check_baseline(keras_ms, bare_ms), keras_ms / bare_ms)
    else:
        with pytest.raises(timing.BaselineDisagreement):
            timing.check_baseline(keras_ms, bare_ms)


def test_a_disagreeing_baseline_refuses_the_row_and_fails_the_run(tmp_path, monkeypatch):
    def disagree(keras_ms, bare_ms, tolerance=1.5):
        raise timing.BaselineDisagreement("made to disagree")

    monkeypatch.setattr(timing, "check_baseline", disagree)
    with pytest.raises(SystemExit) as exit_info:
        run.main(
            [
                "--suite",
                "losses",
                "--quick",
                "--xla",
                "on",
                "--repeats",
                "1",
                "--rounds",
                "1",
                "--output",
                str(tmp_path),
            ],
            log=lambda text: None,
        )
    assert exit_info.value.code == 3
    rows = json.loads((tmp_path / "losses.json").read_text())["rows"]
    refused = [r for r in rows if r.get("refused")]
    assert len(refused) == 3 and all("ratio_to_ce" not in r and "ms" not in r for r in refused)
    assert "after 3 attempts" in refused[0]["refused"]
    assert "CE disagrees with the bare op" in (tmp_path / "results.md").read_text()


def test_jax_backend_runs_the_grid_without_importing_tensorflow(tmp_path):
    pytest.importorskip("jax")
    code = (
        "import sys; from benchmarks import run; "
        f"run.main(['--backend', 'jax', '--device', 'cpu', '--suite', 'losses', '--quick', '--xla', 'on', "
        f"'--repeats', '2', '--rounds', '1', '--output', {str(tmp_path)!r}]); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow'); "
        "print('TF_MODULES', len(bad), bad[:3])"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TF_MODULES 0 []" in proc.stdout
    payload = json.loads((tmp_path / "losses.jax.json").read_text())
    assert payload["machine"]["backend"] == "jax" and payload["machine"]["device"] == "cpu"
    assert payload["command"].startswith("KERAS_BACKEND=jax python -m benchmarks.run --backend jax")
    timed = [r for r in payload["rows"] if "ms" in r]
    assert len(timed) == 3 and all(r["xla"] is True and r["bare_ce_ms"] > 0 for r in timed)
    md = (tmp_path / "results.md").read_text()
    assert "## Losses against softmax cross-entropy (JAX backend)" in md


def test_backend_flag_must_agree_with_keras_backend(monkeypatch, capsys):
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    with pytest.raises(SystemExit):
        run.parse_args(["--backend", "jax"])
    assert "disagrees with KERAS_BACKEND" in capsys.readouterr().err
