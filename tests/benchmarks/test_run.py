"""The benchmark entry point on its quick grid: files, structure and numbers that make sense (no timing bars)."""

import json
import math

import pytest

from benchmarks import run


def test_losses_suite_writes_json_markdown_and_plot(tmp_path):
    lines = []
    run.main(["--suite", "losses", "--quick", "--xla", "off", "--repeats", "2", "--output", str(tmp_path)], log=lines.append)

    payload = json.loads((tmp_path / "losses.json").read_text())
    assert payload["suite"] == "losses" and payload["quick"] is True
    assert payload["command"].startswith("python -m benchmarks.run ") or "KERAS_BACKEND=" in payload["command"]
    for field in ("cpu", "logical_cpus", "keras", "backend", "date_utc", "load_average_at_start", "load_average_at_end"):
        assert field in payload["machine"], field
    rows = payload["rows"]
    timed = [r for r in rows if "median_ms" in r]
    skipped = [r for r in rows if r.get("skip")]
    assert len(timed) == 3 and len(skipped) == 1
    for r in timed:
        assert r["xla"] is False and r["batch"] == 16
        assert r["median_ms"] > 0 and r["ce_ms"] > 0
        assert math.isclose(r["ratio_to_ce"], r["median_ms"] / r["ce_ms"])
        assert r["timing"]["runs"] == 2 and r["ce_timing"]["runs"] == 2
        assert r["timing"]["p25_ms"] <= r["median_ms"] <= r["timing"]["p75_ms"]
    assert {r["loss"] for r in timed} == {"topk_cross_entropy", "smooth_topk_svm"}
    assert len({r["key"] for r in rows}) == len(rows)

    md = (tmp_path / "results.md").read_text()
    assert "## Losses against softmax cross-entropy" in md
    table = [line for line in md.splitlines() if line.startswith("| TopKCrossEntropy") or line.startswith("| SmoothTopKSVM")]
    assert len(table) == 4
    assert all(line.count("|") == 7 for line in table)  # loss, b, n, then ms / CE ms / x CE for XLA off
    assert any("an example of a skipped case" in line for line in table)
    # Both n = 40 and n = 80 were timed for TopKCrossEntropy: the plot has a line to draw.
    assert (tmp_path / "cost_vs_n.png").stat().st_size > 1000
    assert "![cost against n](cost_vs_n.png)" in md
    assert any(line.startswith("losses: ") for line in lines)


def test_markdown_collects_every_suite_found(tmp_path):
    from benchmarks import report

    machine = {"cpu": "test cpu", "logical_cpus": 2, "backend": "tensorflow", "date_utc": "2000-01-01 00:00"}
    report.write_suite(tmp_path, "memory", {
        "suite": "memory", "command": "python -m benchmarks.run --suite memory", "machine": machine,
        "rows": [{"label": "softmax CE", "batch": 512, "classes": 10450, "xla": True, "baseline_mib": 700.0,
                  "process_peak_mib": 900.0, "steady_increment_mib": 150.0, "first_call_increment_mib": 180.0}],
    })
    report.write_suite(tmp_path, "train_step", {
        "suite": "train_step", "command": "python -m benchmarks.run --suite train_step", "machine": machine,
        "rows": [{"setting": "head", "label": "softmax CE", "batch": 512, "step_ms": 10.0, "ce_step_ms": 10.0,
                  "overhead_percent": 0.0}],
    })
    md = (tmp_path / "results.md")
    report.write_markdown(tmp_path)
    text = md.read_text()
    assert "## Peak memory" in text and "| softmax CE | 512 | 10450 | on | 900 | 150 | 180 | 700 |" in text
    assert "## One training step" in text and "| head | softmax CE | 512 | 10.0 | 10.0 | +0.0% | - | - |" in text
    assert "## Losses" not in text and "test cpu" in text


@pytest.mark.parametrize("argv", [["--suite", "nope"], ["--xla", "maybe"], ["--repeats", "0"]])
def test_bad_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit):
        run.parse_args(argv)
    assert "usage: python -m benchmarks.run" in capsys.readouterr().err
