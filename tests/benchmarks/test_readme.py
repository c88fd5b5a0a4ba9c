"""The benchmark summary of docs/benchmarks.md is written from the benchmark JSON, goals and verdicts included."""

from benchmarks import readme, report


def _row(key, ms, ce_ms, **extra):
    return {
        "key": key,
        "group": "imagenet",
        "label": key,
        "batch": 512,
        "classes": 1000,
        "xla": True,
        "ms": ms,
        "ce_ms": ce_ms,
        "bare_ce_ms": ce_ms,
        "ratio_to_ce": ms / ce_ms,
        **extra,
    }


def test_section_states_goals_verdicts_command_and_load(tmp_path):
    machine = {
        "cpu": "test cpu",
        "logical_cpus": 2,
        "date_utc": "2000-01-01 00:00",
        "load_average_at_start": [3.0, 2.0, 1.0],
        "load_average_at_end": [4.0, 3.0, 2.0],
    }
    rows = [
        _row(readme.IMAGENET_SS, 3.0, 1.0),  # 3x: misses TensorFlow's 2, meets JAX's 3
        _row("smooth_topk_svm(k=5,tau=1.0)@b=512,n=1000", 2.0, 1.0),
        {
            **_row("smooth_topk_svm(k=5,tau=1.0)@b=512,n=100", 1.0, 1.0),
            "refused": "made up",
            "ratio_to_ce": None,
        },
    ]
    del rows[2]["ratio_to_ce"]
    report.write_suite(
        tmp_path,
        "losses",
        {
            "suite": "losses",
            "command": "python -m benchmarks.run --x",
            "machine": machine,
            "rows": rows,
        },
    )
    report.write_suite(
        tmp_path,
        "losses.jax",
        {
            "suite": "losses",
            "command": "KERAS_BACKEND=jax python -m x",
            "machine": machine,
            "rows": rows[:1],
        },
    )
    text = readme.section(str(tmp_path))
    assert text.startswith(readme.BEGIN) and text.endswith(readme.END)
    line = next(l for l in text.splitlines() if l.startswith("| ImageNet: splitter_selection"))
    assert (
        "<= 2 (JAX <= 3)" in line
        and "| 3.0 (3.00 ms / CE 1.00 ms) | missed |" in line
        and line.endswith("| met |")
    )
    svm = next(l for l in text.splitlines() if l.startswith("| SmoothTopKSVM k=5, n=1000 |"))
    assert "| 2.0 (2.00 ms / CE 1.00 ms) | met |" in svm
    refused = next(l for l in text.splitlines() if l.startswith("| SmoothTopKSVM k=5, n=100 |"))
    assert "refused" in refused
    assert "`python -m benchmarks.run --x`" in text and "[3.0, 2.0, 1.0] at start" in text

    page = tmp_path / "benchmarks.md"
    page.write_text("before\n" + readme.BEGIN + "\nold\n" + readme.END + "\nafter\n")
    readme.main(["--results", str(tmp_path), "--page", str(page)])
    new = page.read_text()
    assert (
        new.startswith("before\n")
        and new.endswith("\nafter\n")
        and "old" not in new.split(readme.END)[0][-20:]
    )
    assert new.count(readme.BEGIN) == 1 and "| ImageNet: splitter_selection" in new


def test_floor_line_and_load_wording_follow_the_run(tmp_path):
    quiet = {
        "logical_cpus": 2,
        "load_average_at_start": [0.4, 0.5, 0.6],
        "load_average_at_end": [1.1, 1, 1],
    }
    busy = {**quiet, "load_average_at_end": [9.5, 8.0, 7.0]}
    floor = {**_row(readme.SELECTION, 3.0, 1.5), "label": "floor: selection"}
    for name, machine in (("losses", quiet), ("losses.jax", busy)):
        report.write_suite(
            tmp_path,
            name,
            {"suite": "losses", "command": "c", "machine": machine, "rows": [floor]},
        )
    text = readme.section(str(tmp_path))
    assert "2.0x CE under TensorFlow (3.00 ms) and 2.0x CE under JAX (3.00 ms)" in text
    tf_run, jax_run = (l for l in text.splitlines() if l.startswith("**") and "run: `c`" in l)
    assert "otherwise idle" in tf_run and "shared with other jobs" in jax_run
    # No floor row: no floor line.
    report.write_suite(
        tmp_path, "losses", {"suite": "losses", "command": "c", "machine": quiet, "rows": []}
    )
    report.write_suite(
        tmp_path, "losses.jax", {"suite": "losses", "command": "c", "machine": quiet, "rows": []}
    )
    assert "The floor of the ImageNet row" not in readme.section(str(tmp_path))


def test_memory_goal_rows_by_resident_set_and_by_xla_buffers(tmp_path):
    def mem_row(key, steady, temp=None):
        row = {"key": key, "xla": True, "steady_increment_mib": steady}
        if temp is not None:
            row.update(xla_temp_mib=temp, xla_output_mib=20.0)
        return row

    machine = {"logical_cpus": 2}
    report.write_suite(
        tmp_path,
        "memory",
        {
            "suite": "memory",
            "machine": machine,
            "rows": [mem_row(readme.CE_10450, 100.0), mem_row(readme.M50, 300.0)],
        },
    )
    report.write_suite(
        tmp_path,
        "memory.jax",
        {
            "suite": "memory",
            "machine": machine,
            "rows": [
                mem_row(readme.CE_10450, 50.0, temp=40.0),
                mem_row(readme.M50, 90.0, temp=41.0),
            ],
        },
    )
    lines = [
        l
        for l in readme.goal_table(report.load_suites(str(tmp_path))).splitlines()
        if "peak memory" in l
    ]
    assert len(lines) == 3
    tf_rss, jax_rss, jax_xla = lines
    assert "| 3.0x (300 MiB / CE 100 MiB) | missed | - | |" in tf_rss
    assert jax_rss.endswith("| - | | 1.8x (90 MiB / CE 50 MiB) | met |")
    # (41 + 20) / (40 + 20)
    assert "XLA's buffers" in jax_xla and "| 1.0x (61 MiB / CE 60 MiB) | met |" in jax_xla


def test_train_step_goal_rows_take_the_losss_own_share_of_the_resnet_step(tmp_path):
    def row(loss, share, setting="resnet50_224px"):
        return {
            "setting": setting,
            "loss": loss,
            "label": loss,
            "batch": 32,
            "ce_step_ms": 20000.0,
            "loss_extra_percent_of_ce_step": share,
        }

    rows = [row("cross_entropy", 0.0), row("a", 0.02), row("b", 7.5), row("c", 1.0, setting="head")]
    report.write_suite(tmp_path, "train_step", {"suite": "train_step", "machine": {}, "rows": rows})
    lines = [
        l
        for l in readme.goal_table(report.load_suites(str(tmp_path))).splitlines()
        if l.startswith("| ResNet50")
    ]
    assert len(lines) == 2
    assert "a: the loss's extra cost, % of CE's 20.0 s step | <= 5% | +0.020% | met |" in lines[0]
    assert "| +7.500% | missed |" in lines[1]


def test_notes_next_to_the_results_are_appended_by_default(tmp_path):
    report.write_suite(
        tmp_path, "losses", {"suite": "losses", "command": "c", "machine": {}, "rows": []}
    )
    (tmp_path / "notes.md").write_text("What this run shows: nothing.\n")
    page = tmp_path / "benchmarks.md"
    page.write_text(readme.BEGIN + "\n" + readme.END + "\n")
    readme.main(["--results", str(tmp_path), "--page", str(page)])
    assert "What this run shows: nothing.\n\n" + readme.END in page.read_text()


def test_the_plot_is_linked_relative_to_the_page(tmp_path):
    report.write_suite(
        tmp_path, "losses", {"suite": "losses", "command": "c", "machine": {}, "rows": []}
    )
    (tmp_path / "cost_vs_n.png").write_bytes(b"")
    docs = tmp_path / "docs"
    docs.mkdir()
    text = readme.section(str(tmp_path), str(docs))
    assert "![cost of each method against n, log-log](../cost_vs_n.png)" in text
    assert "## Performance" not in text
