"""Machine description, and the JSON / Markdown / PNG outputs of the benchmarks."""

import datetime
import json
import os
import platform
import subprocess

SUITES = ("losses", "reference", "train_step", "memory")


def machine_info():
    import keras
    import numpy as np

    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "numpy": np.__version__,
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
    }
    # Versions from the installed distributions: importing TensorFlow (or difftopk) to read its
    # version would load it into a JAX run.
    from importlib import metadata

    for module, dist in (
        ("tensorflow", ("tensorflow", "tensorflow-cpu")),
        ("jax", ("jax",)),
        ("jaxlib", ("jaxlib",)),
        ("torch", ("torch",)),
        ("difftopk", ("difftopk",)),
        ("torch_sparse", ("torch-sparse", "torch_sparse")),
    ):
        for name in dist:
            try:
                info[module] = metadata.version(name)
                break
            except metadata.PackageNotFoundError:
                continue
    return info


def _cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown"


def _memory_gib():
    try:
        with open("/proc/meminfo") as f:
            return round(int(f.readline().split()[1]) / 1024.0 / 1024.0, 1)
    except OSError:
        return None


def suite_file(suite, backend="tensorflow", device="cpu"):
    """File stem of a suite's JSON: ``losses`` (TensorFlow, CPU), ``losses.jax``, ``losses.jax.gpu``."""
    return (
        suite
        + ("" if backend == "tensorflow" else f".{backend}")
        + ("" if device == "cpu" else f".{device}")
    )


VARIANTS = (("tensorflow", "cpu"), ("jax", "cpu"), ("tensorflow", "gpu"), ("jax", "gpu"))


def write_suite(out_dir, suite, payload):
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{suite}.json")
    with open(path, "w") as f:
        json.dump(payload, f, indent=1, sort_keys=False)
        f.write("\n")
    return path


def load_suites(out_dir):
    """``{file stem: payload}`` for every suite and backend/device variant found, in a fixed order."""
    out = {}
    for backend, device in VARIANTS:
        for suite in SUITES:
            name = suite_file(suite, backend, device)
            path = os.path.join(out_dir, f"{name}.json")
            if os.path.exists(path):
                with open(path) as f:
                    out[name] = json.load(f)
    return out


def _variant_title(name):
    parts = name.split(".")
    if len(parts) == 1:
        return ""
    return (
        " ("
        + ", ".join(
            {"jax": "JAX backend", "gpu": "GPU", "tensorflow": "TensorFlow"}.get(p, p)
            for p in parts[1:]
        )
        + ")"
    )


def _f(v, digits=2):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.{digits}f}"


def _machine_line(payload):
    m = payload.get("machine", {})
    versions = ", ".join(
        f"{k} {m[k]}" for k in ("tensorflow", "jax", "keras", "torch", "difftopk") if k in m
    )
    return (
        f"{m.get('cpu', '?')}, {m.get('logical_cpus', '?')} logical CPUs, {m.get('memory_gib', '?')} GiB; "
        f"backend {m.get('backend', '?')}; {versions}; run {m.get('date_utc', '?')} UTC, "
        f"device {m.get('device', 'cpu')}; load average (1, 5, 15 min) at start {m.get('load_average_at_start')}, "
        f"at end {m.get('load_average_at_end')}; command `{payload.get('command', '')}`"
    )


def losses_table(payload, groups=None):
    rows = payload["rows"]
    modes = sorted({r["xla"] for r in rows if "xla" in r}, reverse=True)
    by_key = {}
    for r in rows:
        by_key.setdefault(r["key"], {})[r.get("xla")] = r
    head = "| loss | b | n |" + "".join(
        f" XLA {'on' if x else 'off'}: ms | CE ms (bare op) | x CE |" for x in modes
    )
    lines = [head, "|---|---|---|" + "---|---|---|" * len(modes)]
    for _key, per_mode in by_key.items():
        first = next(iter(per_mode.values()))
        if groups and first["group"] not in groups:
            continue
        cells = f"| {first['label']} | {first['batch']} | {first['classes']} |"
        if first.get("skip"):
            lines.append(cells + f" {first['skip']} |" + " |" * (3 * len(modes) - 1))
            continue
        for x in modes:
            r = per_mode.get(x)
            if r is not None and r.get("refused"):
                cells += f" refused | {_f(r['ce_ms'])} ({_f(r['bare_ce_ms'])}) | CE disagrees with the bare op |"
            elif r is None or "ms" not in r:
                cells += " - | - | - |"
            else:
                cells += (
                    f" {_f(r['ms'])} | {_f(r['ce_ms'])} ({_f(r['bare_ce_ms'])}) |"
                    f" **{_f(r['ratio_to_ce'], 1)}** |"
                )
        lines.append(cells)
    return "\n".join(lines)


def reference_table(payload):
    lines = [
        "| loss | b | n | keras-topk ms | reference ms | reference path | keras-topk / reference | speedup |"
        " Keras CE ms (bare op) | torch CE ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in payload["rows"]:
        cells = f"| {r['label']} | {r['batch']} | {r['classes']} |"
        if r.get("skip"):
            lines.append(cells + f" {r['skip']} | | | | | | |")
            continue
        if r.get("refused"):
            lines.append(cells + f" refused: {r['refused']} | | | | | | |")
            continue
        lines.append(
            cells
            + f" {_f(r['keras_topk_ms'])} | {_f(r['reference_ms'])} | {r.get('reference_path', 'dense')} |"
            f" {r['ratio_keras_to_reference']:.3f} | **{_f(r['speedup_over_reference'], 1)}x** |"
            f" {_f(r['keras_ce_ms'])} ({_f(r.get('bare_ce_ms'))}) | {_f(r['torch_ce_ms'])} |"
        )
    return "\n".join(lines)


def train_table(payload):
    lines = [
        "| setting | loss | b | step ms | CE step ms | step vs CE | loss alone ms (CE alone) | loss's extra cost, % of CE step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in payload["rows"]:
        alone = (
            f"{_f(r['loss_alone_ms'])} ({_f(r['ce_alone_ms'])})" if "loss_alone_ms" in r else "-"
        )
        extra = (
            f"{r['loss_extra_percent_of_ce_step']:+.3f}%"
            if "loss_extra_percent_of_ce_step" in r
            else "-"
        )
        lines.append(
            f"| {r['setting']} | {r['label']} | {r['batch']} | {_f(r['step_ms'])} | {_f(r['ce_step_ms'])} |"
            f" {r['overhead_percent']:+.1f}% | {alone} | {extra} |"
        )
    return "\n".join(lines)


def memory_table(payload):
    lines = [
        "| loss | b | n | XLA | process peak MiB | step peak - baseline MiB | first call (compiling) peak - baseline MiB | baseline MiB | XLA temp + output MiB (JAX) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in payload["rows"]:
        cells = (
            f"| {r['label']} | {r['batch']} | {r['classes']} | {'on' if r.get('xla') else 'off'} |"
        )
        if "error" in r:
            lines.append(cells + " failed | | | |")
            continue
        lines.append(
            cells + f" {_f(r['process_peak_mib'])} | {_f(r.get('steady_increment_mib'))} |"
            f" {_f(r.get('first_call_increment_mib'))} | {_f(r['baseline_mib'])} |"
            f" {_f(xla_working_mib(r))} |"
        )
    return "\n".join(lines)


def xla_working_mib(row):
    """The compiled step's working memory by XLA's buffer assignment (temp + output), or None."""
    if "xla_temp_mib" not in row:
        return None
    return row["xla_temp_mib"] + row["xla_output_mib"]


GROUP_TITLES = {
    "imagenet": "ImageNet setting (b = 512, n = 1000): every loss and method",
    "cifar100": "CIFAR-100 as the paper trains it (all 100 classes ranked, smce, inverse temperature 0.5)",
    "classes": "Number of classes (b = 512)",
    "batch": "Batch size (n = 1000)",
    "m_and_k": "m and K (TopKCrossEntropy), k (SmoothTopKSVM); b = 512, n = 1000",
    "quick": "Quick grid",
}


def write_markdown(out_dir):
    suites = load_suites(out_dir)
    parts = [
        "# keras-topk benchmarks",
        "",
        "Written by `python -m benchmarks.run` (see `benchmarks/`); the JSON files next to this one hold "
        "every number with its spread (median, p75, per-round lower quartiles), number of calls and first-call "
        "(compile) time. Each figure is the lower quartile of repeated forward+backward steps (loss value and "
        "gradient with respect to the scores, float32, batch mean), warm-ups excluded, timed interleaved with "
        "Keras's softmax CE and a bare fused CE op in the same rounds; a case whose two CE figures disagree by "
        "more than 1.5x is refused. Every ratio compares measurements from the same process and rounds.",
    ]
    for name, p in suites.items():
        suite, title = p["suite"], _variant_title(name)
        if suite == "losses":
            parts += ["", f"## Losses against softmax cross-entropy{title}", "", _machine_line(p)]
            groups = []
            for r in p["rows"]:
                if r["group"] not in groups:
                    groups.append(r["group"])
            for g in groups:
                parts += ["", f"### {GROUP_TITLES.get(g, g)}{title}", "", losses_table(p, [g])]
            if name == "losses" and os.path.exists(os.path.join(out_dir, "cost_vs_n.png")):
                parts += ["", "![cost against n](cost_vs_n.png)"]
        elif suite == "reference":
            parts += [
                "",
                f"## Side by side with the PyTorch reference (difftopk){title}",
                "",
                _machine_line(p),
            ]
            if p.get("skipped"):
                parts += ["", f"Skipped: {p['skipped']}."]
            else:
                how = (
                    "torch-sparse (built by benchmarks/build_torch_sparse.sh): its sparse networks ran"
                    if p.get("torch_sparse")
                    else "no torch-sparse: its sparse networks ran through its dense executor, far slower than "
                    "its best; the speedups on those rows overstate keras-topk's lead"
                )
                parts += [
                    "",
                    f"keras-topk compiled with XLA={'on' if p.get('xla', True) else 'off'}; the reference on PyTorch "
                    f"{p.get('torch_version')} with {p.get('torch_threads')} threads, {how}.",
                    "",
                    reference_table(p),
                ]
        elif suite == "train_step":
            parts += [
                "",
                f"## One training step (train_on_batch, SGD){title}",
                "",
                _machine_line(p),
                "",
                train_table(p),
            ]
        elif suite == "memory":
            parts += [
                "",
                f"## Peak memory (resident set size), one fresh process per row{title}",
                "",
                _machine_line(p),
                "",
                memory_table(p),
            ]
    path = os.path.join(out_dir, "results.md")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")
    return path


def plot_cost_vs_n(out_dir):
    suites = load_suites(out_dir)
    if "losses" not in suites:
        return None
    # CE, m=16 and all classes for each method, against n: the TensorFlow CPU run.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in suites["losses"]["rows"] if "ms" in r]
    xla = any(r["xla"] for r in rows)
    rows = [r for r in rows if r["xla"] == xla]
    b = 16 if any(r["group"] == "quick" for r in rows) else 512
    series = {}
    for r in rows:
        if r["batch"] != b or r["group"] not in ("imagenet", "classes", "quick"):
            continue
        label = r["label"].replace(f"all {r['classes']} classes", "all classes")
        if "m=" in label:
            label = label.split(", m=")[0] + ", m (16; 50 at n=10450)" if b == 512 else label
        series.setdefault(label, {})[r["classes"]] = r
        series.setdefault("softmax CE", {})[r["classes"]] = {"ms": r["ce_ms"], "ratio_to_ce": 1.0}
    keep = {k: v for k, v in series.items() if len(v) >= 2}
    if not keep:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, points in sorted(keep.items()):
        ns = sorted(points)
        axes[0].plot(ns, [points[n]["ms"] for n in ns], marker="o", label=label)
        axes[1].plot(ns, [points[n]["ratio_to_ce"] for n in ns], marker="o", label=label)
    for ax, ylabel in zip(
        axes, ("forward+backward, ms (lower quartile)", "x softmax CE (same run)")
    ):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("number of classes n")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7, loc="upper left")
    m = suites["losses"].get("machine", {})
    fig.suptitle(
        f"Loss cost against n, b={b}, XLA {'on' if xla else 'off'}, {m.get('backend', '')} on {m.get('cpu', '')}",
        fontsize=10,
    )
    fig.tight_layout()
    path = os.path.join(out_dir, "cost_vs_n.png")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
