"""Writes the summary of docs/benchmarks.md (between its markers) from the JSON of one benchmark run.

    python -m benchmarks.readme [--results benchmarks/results] [--page docs/benchmarks.md]

Every figure comes from ``RESULTS/<suite>[.<backend>].json`` as ``python -m benchmarks.run`` wrote it;
the section names the command, the machine and the load average of each run.
"""

import argparse
import os
import re

from benchmarks import report

BEGIN = (
    "<!-- section:performance:begin (benchmarks helper owns everything up to the end marker) -->"
)
END = "<!-- section:performance:end -->"

IMAGENET_SS = "topk_cross_entropy(p_k=(0.2,)*5,method=splitter_selection,m=16)@b=512,n=1000"

# (setting, row key, goal in x CE for TensorFlow, goal for JAX or None)
GOALS = (
    ("ImageNet: splitter_selection, m=16, p_k=(0.2,)*5", IMAGENET_SS, 2.0, 3.0),
    (
        "CIFAR-100, all 100 classes, smce, inverse temperature 0.5, splitter_selection",
        "topk_cross_entropy(p_k=(0.2,)*5,method=splitter_selection,m=None,top1_mode=smce,inverse_temperature=0.5)"
        "@b=512,n=100",
        3.0,
        None,
    ),
    (
        "the same with bitonic",
        "topk_cross_entropy(p_k=(0.2,)*5,method=bitonic,m=None,top1_mode=smce,inverse_temperature=0.5)@b=512,n=100",
        3.0,
        None,
    ),
    (
        "all 1000 classes ranked, splitter_selection",
        "topk_cross_entropy(p_k=(0.2,)*5,method=splitter_selection,m=None)@b=512,n=1000",
        20.0,
        None,
    ),
    (
        "all 1000 classes ranked, bitonic",
        "topk_cross_entropy(p_k=(0.2,)*5,method=bitonic,m=None)@b=512,n=1000",
        20.0,
        None,
    ),
    ("SmoothTopKSVM k=5, n=100", "smooth_topk_svm(k=5,tau=1.0)@b=512,n=100", 3.0, None),
    ("SmoothTopKSVM k=5, n=1000", "smooth_topk_svm(k=5,tau=1.0)@b=512,n=1000", 3.0, None),
    ("SmoothTopKSVM k=5, n=10450", "smooth_topk_svm(k=5,tau=1.0)@b=512,n=10450", 5.0, None),
)


def _rows(payload, xla=True):
    return {r["key"]: r for r in payload.get("rows", []) if r.get("xla", True) == xla}


def _cell(row, goal):
    if row is None:
        return "not run", "-"
    if row.get("refused"):
        return "refused (CE vs bare op)", "-"
    if "ratio_to_ce" not in row:
        return row.get("skip", "not run"), "-"
    ratio = row["ratio_to_ce"]
    return (
        f"{ratio:.1f} ({row['ms']:.2f} ms / CE {row['ce_ms']:.2f} ms)",
        "met" if ratio <= goal else "missed",
    )


SELECTION = "selection(count=15)@b=512,n=1000"


def _quiet(payload):
    """What the load average says about the milliseconds (the ratios are interleaved either way)."""
    m = payload.get("machine", {})
    loads = [m.get("load_average_at_start") or [0], m.get("load_average_at_end") or [0]]
    cpus = m.get("logical_cpus") or 1
    if max(load[0] for load in loads) <= cpus:
        return "The machine was otherwise idle: the milliseconds are the machine's own."
    return (
        "The machine was shared with other jobs, so absolute milliseconds are inflated; the ratios come "
        "from interleaved calls and passed the CE check."
    )


def floor_line(suites):
    """The cost of the exact top-15 selection alone, which bounds every m=16 row from below."""
    cells = []
    for name, title in (("losses", "TensorFlow"), ("losses.jax", "JAX")):
        row = _rows(suites.get(name, {})).get(SELECTION)
        if row and "ratio_to_ce" in row:
            cells.append(f"{row['ratio_to_ce']:.1f}x CE under {title} ({row['ms']:.2f} ms)")
    if not cells:
        return None
    return (
        "**The floor of the ImageNet row.** With m = 16, TopKCrossEntropy first picks the label and the 15 "
        "highest other scores, exactly (the reference's `torch.topk`), before any relaxed ranking. That "
        "selection alone (`top_k` over 1000 classes plus the gather's gradient, the `floor:` row below) takes "
        + " and ".join(cells)
        + " in the same run, before any network runs."
    )


def _load(payload):
    m = payload.get("machine", {})
    return f"{m.get('load_average_at_start')} at start, {m.get('load_average_at_end')} at end"


def goal_table(suites):
    tf_rows = _rows(suites.get("losses", {}))
    jax_rows = _rows(suites.get("losses.jax", {}))
    lines = [
        "| setting (b = 512, XLA on) | goal, x CE | TensorFlow: x CE | | JAX (jit): x CE | |",
        "|---|---|---|---|---|---|",
    ]
    for setting, key, goal, jax_goal in GOALS:
        tf_cell, tf_verdict = _cell(tf_rows.get(key), goal)
        jax_goal = jax_goal or goal
        jax_cell, jax_verdict = _cell(jax_rows.get(key), jax_goal)
        goals = f"<= {goal:g}" + (f" (JAX <= {jax_goal:g})" if jax_goal != goal else "")
        lines.append(
            f"| {setting} | {goals} | {tf_cell} | {tf_verdict} | {jax_cell} | {jax_verdict} |"
        )
    for name in ("memory", "memory.jax"):
        lines += _memory_goal_rows(name, suites.get(name))
    lines += _train_goal_rows(suites.get("train_step"))
    return "\n".join(lines)


M50 = "topk_cross_entropy(p_k=(0.2,)*5,method=splitter_selection,m=50)@b=512,n=10450"
CE_10450 = "cross_entropy()@b=512,n=10450"


def _memory_goal_rows(name, memory):
    """The memory goal (n=10450, m=50: at most 2x CE's), by the RSS increment and, under JAX, by XLA."""
    if not memory:
        return []
    by = {r["key"]: r for r in memory["rows"] if r.get("xla") and "error" not in r}
    ce, ours = by.get(CE_10450), by.get(M50)
    if not (ce and ours):
        return []
    backend = "JAX" if name.endswith(".jax") else "TensorFlow"

    def row(what, ours_mib, ce_mib):
        ratio = ours_mib / ce_mib
        cell = f"{ratio:.1f}x ({ours_mib:.0f} MiB / CE {ce_mib:.0f} MiB) | {'met' if ratio <= 2 else 'missed'}"
        cells = f"{cell} | - | |" if backend == "TensorFlow" else f"- | | {cell} |"
        return f"| peak memory, n=10450, m=50: {what} | <= 2x CE's | {cells}"

    out = []
    if ce.get("steady_increment_mib") and ours.get("steady_increment_mib") is not None:
        out.append(
            row(
                "resident-set increment of a step",
                ours["steady_increment_mib"],
                ce["steady_increment_mib"],
            )
        )
    ce_xla, ours_xla = report.xla_working_mib(ce), report.xla_working_mib(ours)
    if ce_xla and ours_xla is not None:
        out.append(row("XLA's buffers for the step (temp + output)", ours_xla, ce_xla))
    return out


def _train_goal_rows(train):
    """ResNet50, one training step: each loss's own extra cost as a share of CE's step (at most 5%)."""
    if not train:
        return []
    out = []
    for r in train["rows"]:
        if r["setting"] != "resnet50_224px" or r["loss"] == "cross_entropy":
            continue
        if "loss_extra_percent_of_ce_step" not in r:
            continue
        share = r["loss_extra_percent_of_ce_step"]
        out.append(
            f"| ResNet50 step (b = {r['batch']}, 224 px), {r['label']}: the loss's extra cost, % of CE's "
            f"{r['ce_step_ms'] / 1000:.1f} s step | <= 5% | {share:+.3f}% | {'met' if share <= 5 else 'missed'} | - | |"
        )
    return out


def section(results_dir, page_dir="docs"):
    """The summary, from BEGIN to END; links are relative to ``page_dir``, the page's folder."""
    suites = report.load_suites(results_dir)
    parts = [
        BEGIN,
        "",
        "`python -m benchmarks.run` times forward+backward (value and gradient with respect to the scores, "
        "float32, batch mean) of each loss against softmax cross-entropy in the same process: calls interleaved "
        "one by one, warm-ups excluded, three rounds, each figure the **lower quartile** of its calls (the quiet "
        "ones). Keras's CE is checked against a bare fused op (`tf.nn.sparse_softmax_cross_entropy_with_logits` "
        "under XLA; a `jax.nn.log_softmax` CE under JAX) in the same rounds, and a case whose two CE figures "
        "differ by more than 1.5x is refused rather than reported. The load average is recorded with every row. "
        "Full tables, spreads and first-call (compile) times: "
        "`benchmarks/results/results.md` (the full results, below) and the JSON next to it; "
        "`python -m benchmarks.readme` rewrites this summary from them, with the commentary written for the run "
        "(`notes.md` next to them).",
        "",
        "On a GPU machine with JAX (and no TensorFlow): "
        "`KERAS_BACKEND=jax python -m benchmarks.run --backend jax --device gpu --suite losses --xla on`.",
    ]
    for name, title in (
        ("losses", "TensorFlow"),
        ("losses.jax", "JAX backend"),
        ("memory", "Memory (TensorFlow)"),
        ("memory.jax", "Memory (JAX)"),
        ("reference", "Reference"),
        ("train_step", "Training step"),
    ):
        if name in suites:
            p = suites[name]
            m = p["machine"]
            parts += [
                "",
                f"**{title}** run: `{p['command']}` on {m.get('cpu')}, {m.get('logical_cpus')} logical CPUs, "
                f"{m.get('date_utc')} UTC; load average (1, 5, 15 min) {_load(p)}. {_quiet(p)}",
            ]
    parts += ["", "Goals (issue 16) against this run:", "", goal_table(suites)]
    floors = floor_line(suites)
    if floors:
        parts += ["", floors]
    if "losses" in suites:
        parts += [
            "",
            "ImageNet setting, every method (TensorFlow, XLA on):",
            "",
            report.losses_table(suites["losses"], ["imagenet"]),
        ]
    if "losses.jax" in suites:
        parts += [
            "",
            "The same under the JAX backend (jit):",
            "",
            report.losses_table(suites["losses.jax"], ["imagenet"]),
        ]
    if os.path.exists(os.path.join(results_dir, "cost_vs_n.png")):
        rel = os.path.relpath(os.path.join(results_dir, "cost_vs_n.png"), page_dir).replace(
            os.sep, "/"
        )
        parts += ["", f"![cost of each method against n, log-log]({rel})"]
    if "reference" in suites:
        p = suites["reference"]
        parts += ["", "Against the PyTorch reference (difftopk):", "", report.reference_table(p)]
    parts += ["", END]
    return "\n".join(parts)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.readme", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--results", default=os.path.join("benchmarks", "results"))
    parser.add_argument("--page", default=os.path.join("docs", "benchmarks.md"))
    parser.add_argument(
        "--extra",
        default=None,
        help="a Markdown file appended before the end marker (default: RESULTS/notes.md, if present)",
    )
    args = parser.parse_args(argv)
    if args.extra is None and os.path.exists(os.path.join(args.results, "notes.md")):
        args.extra = os.path.join(args.results, "notes.md")
    with open(args.page) as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{args.page} has no benchmark summary markers")
    new = section(args.results, os.path.dirname(os.path.abspath(args.page)))
    if args.extra:
        with open(args.extra) as f:
            new = new.replace("\n" + END, "\n" + f.read().rstrip() + "\n\n" + END)
    text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: new, text, flags=re.S)
    with open(args.page, "w") as f:
        f.write(text)
    print(f"rewrote the benchmark summary of {args.page}")


if __name__ == "__main__":
    main()
