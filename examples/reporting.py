"""Tables, results.json and plots of the comparisons (matplotlib, Agg backend)."""

import os

import numpy as np

from examples.training import write_json


def summarize(per_seed):
    """``[{"top1": a, ...}, ...]`` over seeds -> ``{"top1": mean, "top1_std": std, ...}``."""
    keys = list(per_seed[0])
    summary = {}
    for key in keys:
        values = np.array([run[key] for run in per_seed], dtype=float)
        summary[key] = float(values.mean())
    for key in keys:
        values = np.array([run[key] for run in per_seed], dtype=float)
        summary[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return summary


def add_paired_gains(summaries, per_seed, baseline="cross_entropy"):
    """Adds ``top{k}_gain`` / ``top{k}_gain_std``: the change against ``baseline``, paired by seed.

    Runs with the same seed share the data and the initial weights, so the
    spread of the per-seed differences is what tells a real gain from noise.
    """
    if baseline not in per_seed:
        return summaries
    base = per_seed[baseline]
    for name, runs in per_seed.items():
        if name == baseline:
            continue
        for key in base[0]:
            diffs = np.array([run[key] - ref[key] for run, ref in zip(runs, base)], dtype=float)
            summaries[name][f"{key}_gain"] = float(diffs.mean())
            summaries[name][f"{key}_gain_std"] = float(diffs.std(ddof=1)) if len(diffs) > 1 else 0.0
    return summaries


def format_table(summaries, ks=(1, 2, 5), reference=None, baseline="cross_entropy"):
    """A Markdown table: one row per loss, ``mean ± std`` over seeds in percent, and the gain against CE."""
    with_gain = any(f"top{ks[0]}_gain" in s for s in summaries.values())
    header = "| loss | " + " | ".join(f"top-{k} (%)" for k in ks)
    if with_gain:
        header += " | " + " | ".join(f"top-{k} vs CE" for k in ks)
    lines = [header + " |", "|" + "---|" * (1 + len(ks) * (2 if with_gain else 1))]
    for name, summary in summaries.items():
        cells = [f"{100 * summary[f'top{k}']:.2f} ± {100 * summary.get(f'top{k}_std', 0.0):.2f}" for k in ks]
        if with_gain:
            for k in ks:
                if f"top{k}_gain" in summary:
                    gain, std = 100 * summary[f"top{k}_gain"], 100 * summary[f"top{k}_gain_std"]
                    cells.append(f"{gain:+.2f} ± {std:.2f}")
                else:
                    cells.append("")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name, values in (reference or {}).items():
        cells = [f"{100 * values[f'top{k}']:.2f}" for k in ks] + ([""] * len(ks) if with_gain else [])
        lines.append(f"| *{name}* | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mean_test_curves(histories):
    """``{loss: {"epoch": [...], "top1": [...], ...}}``: the test accuracies logged during training, mean over seeds."""
    out = {}
    for name, runs in histories.items():
        keys = [k for k in runs[0] if k.startswith("val_top") and k.endswith("_accuracy")]
        if not keys:
            continue
        length = min(len(h[keys[0]]) for h in runs)
        entry = {"epoch": list(runs[0].get("val_epoch", range(1, length + 1)))[:length]}
        for key in keys:
            entry[key[len("val_"):-len("_accuracy")]] = np.mean([h[key][:length] for h in runs], axis=0).tolist()
        out[name] = entry
    return out


def write_results(output, summaries, per_seed=None, config=None, reference=None, curves=None,
                  reference_curves=None, training_curves=None):
    """``output/results.json``: ``{"results": {loss: {"top1": .., "top1_std": .., ...}}, ...}``."""
    payload = {"results": summaries}
    if reference:
        payload["reference"] = reference
    if reference_curves:
        payload["reference_accuracy_vs_k"] = reference_curves
    if per_seed:
        payload["per_seed"] = per_seed
    if curves:
        payload["accuracy_vs_k"] = curves
    if training_curves:
        payload["test_accuracy_during_training"] = training_curves
    if config:
        payload["config"] = config
    path = os.path.join(output, "results.json")
    write_json(path, payload)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy_vs_k(path, curves, reference=None, title=None, baseline="cross_entropy"):
    """Top-k accuracy against k per loss (mean over seeds, band = ± std), and the gap to CE.

    ``curves``: ``{loss: {"k": [...], "mean": [...], "std": [...]}}``.
    """
    plt = _pyplot()
    has_baseline = baseline in curves and len(curves) > 1
    fig, axes = plt.subplots(1, 2 if has_baseline else 1, figsize=(10 if has_baseline else 5.5, 3.8), dpi=100)
    axes = np.atleast_1d(axes)
    for name, curve in curves.items():
        k, mean, std = (np.asarray(curve[key], dtype=float) for key in ("k", "mean", "std"))
        (line,) = axes[0].plot(k, 100 * mean, marker="o", markersize=3, label=name)
        axes[0].fill_between(k, 100 * (mean - std), 100 * (mean + std), color=line.get_color(), alpha=0.15)
        if has_baseline and name != baseline:
            base = np.asarray(curves[baseline]["mean"], dtype=float)
            diffs = np.asarray(curve.get("diff_mean", 100 * (mean - base)), dtype=float)
            axes[1].plot(k, diffs, marker="o", markersize=3, color=line.get_color(), label=name)
            if "diff_std" in curve:
                d_std = np.asarray(curve["diff_std"], dtype=float)
                axes[1].fill_between(k, diffs - d_std, diffs + d_std, color=line.get_color(), alpha=0.15)
    if reference:
        for name, curve in reference.items():
            axes[0].plot(curve["k"], 100 * np.asarray(curve["mean"]), "k--", linewidth=1, label=name)
    axes[0].set_xlabel("k")
    axes[0].set_ylabel("top-k accuracy (%)")
    axes[0].set_title("test accuracy, mean ± std over seeds", fontsize=9)
    axes[0].grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if has_baseline:
        axes[1].axhline(0, color="gray", linewidth=1)
        axes[1].set_xlabel("k")
        axes[1].set_ylabel("top-k accuracy minus CE's (points)")
        axes[1].set_title("gain over cross-entropy, paired by seed", fontsize=9)
        axes[1].grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_training_curves(path, histories, keys=("loss", "val_top1_accuracy", "val_top5_accuracy")):
    """Per loss, the mean over seeds of each logged key against the epoch.

    ``histories``: ``{loss: [history_dict_of_seed, ...]}``, Keras histories with
    optional ``epoch`` / ``val_epoch`` lists (the epochs of the entries). The
    training losses of different losses are on different scales: each curve
    is its own loss.
    """
    plt = _pyplot()
    keys = [key for key in keys if any(key in h for runs in histories.values() for h in runs)]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), dpi=100)
    axes = np.atleast_1d(axes)
    for name, runs in histories.items():
        for ax, key in zip(axes, keys):
            series = [np.asarray(h[key], dtype=float) for h in runs if key in h]
            if not series:
                continue
            length = min(len(s) for s in series)
            mean = np.mean([s[:length] for s in series], axis=0)
            epochs = runs[0].get("val_epoch" if key.startswith("val_") else "epoch", range(1, length + 1))
            scale = 100 if "accuracy" in key else 1
            ax.plot(np.asarray(list(epochs)[:length]), scale * mean, label=name)
    for ax, key in zip(axes, keys):
        ax.set_xlabel("epoch")
        label = key.replace("val_", "test ") if key.startswith("val_") else "training " + key
        ax.set_title(label + (" (%)" if "accuracy" in key else " (each its own loss)"), fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
