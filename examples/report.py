"""The study's statistics, verdicts, tables and plots.

Every comparison is paired by seed: a seed draws the problem, the samples, the
noise, the validation split, the initial weights and the batch order, the same
for every loss, so the gain of a loss over cross-entropy (CE) is computed seed
by seed and summarised with a paired t-interval.
"""

import math

import numpy as np
from scipy import stats

__all__ = [
    "CLAIMS",
    "gains_table",
    "judge",
    "settings_table",
    "markdown_table",
    "paired_interval",
    "plot_accuracy_vs_k",
    "plot_candidates",
    "plot_gain_vs_p",
    "slope_interval",
    "summarize",
    "verdict_table",
]

COVERAGES = (0.9, 0.95, 0.99)
# metric -> (label, True when larger is better)
METRICS = {
    "top1": ("top-1 (%)", True),
    "top5": ("top-5 (%)", True),
    "top10": ("top-10 (%)", True),
    "cand90": ("candidates for 90%", False),
    "cand95": ("candidates for 95%", False),
    "cand99": ("candidates for 99%", False),
    "set90": ("conformal set size at 90%", False),
    "set95": ("conformal set size at 95%", False),
    "set99": ("conformal set size at 99%", False),
}


def paired_interval(values, reference, level=0.95):
    """Mean of ``values - reference`` (paired) and its two-sided t-interval ``(mean, low, high)``.

    With one pair the interval is unbounded.
    """
    diff = np.asarray(values, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    n = diff.shape[0]
    mean = float(diff.mean())
    if n < 2:
        return mean, -math.inf, math.inf
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * diff.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half


def slope_interval(ps, gains_by_p, level=0.95):
    """The least-squares slope of the gain against p, per seed, and its t-interval over seeds.

    ``gains_by_p``: array ``(len(ps), seeds)`` of paired gains.
    """
    ps = np.asarray(ps, dtype=np.float64)
    gains = np.asarray(gains_by_p, dtype=np.float64)
    centred = ps - ps.mean()
    slopes = centred @ (gains - gains.mean(axis=0)) / (centred @ centred)
    return paired_interval(slopes, np.zeros_like(slopes), level)


def direction(interval, larger_is_better=True):
    """+1 if the interval lies above 0 (better than CE), -1 if below (worse), 0 if it contains 0."""
    _, low, high = interval
    sign = 1 if low > 0 else -1 if high < 0 else 0
    return sign if larger_is_better else -sign


# --------------------------------------------------------------------------- #
# The papers' claims, as checks on the study's conditions
# --------------------------------------------------------------------------- #

# Each check: (condition, metric, expected direction for the claim's loss vs CE: +1 better, -1 worse).
# A condition "slope: <kind>" is the per-seed slope of the gain against p over that noise kind.
CLAIMS = [
    {
        "id": "B1",
        "paper": "Berrada et al. 2018",
        "loss": "smooth_svm",
        "claim": "SmoothTopKSVM beats CE at top-5 and top-1 under noise within superclasses, more so as p grows",
        "checks": [
            ("superclass p=0.8", "top5", 1),
            ("superclass p=0.8", "top1", 1),
            ("slope: superclass", "top5", 1),
            ("slope: superclass", "top1", 1),
        ],
    },
    {
        "id": "B1'",
        "paper": "Berrada et al. 2018 (their code's groups)",
        "loss": "smooth_svm",
        "claim": "the same with noise within blocks of 5 label ids (label - label % 5 + U{0..4})",
        "checks": [
            ("block p=0.8", "top5", 1),
            ("block p=0.8", "top1", 1),
            ("slope: block", "top5", 1),
            ("slope: block", "top1", 1),
        ],
    },
    {
        "id": "B2",
        "paper": "Berrada et al. 2018",
        "loss": "smooth_svm",
        "claim": "with few training examples SmoothTopKSVM wins at top-5; with many, CE does",
        "checks": [("few examples", "top5", 1), ("many examples", "top5", -1)],
    },
    {
        "id": "P1",
        "paper": "Petersen et al. 2022",
        "loss": "topk_ce",
        "claim": "TopKCrossEntropy (relaxed k) gives better top-5 and better top-1 than CE for a linear head",
        "checks": [
            ("clean", "top5", 1),
            ("clean", "top1", 1),
            ("many examples", "top5", 1),
            ("many examples", "top1", 1),
        ],
    },
    {
        "id": "S1",
        "paper": "Sawada et al. 2020",
        "loss": "transition",
        "claim": "when classes are too complex for the model, TopKTransitionLoss needs fewer candidates "
        "for 99% accuracy than CE and is better at large k",
        "checks": [
            ("complex/linear", "cand99", 1),
            ("complex/linear", "top10", 1),
            ("complex/MLP", "cand99", 1),
            ("complex/MLP", "top10", 1),
        ],
    },
]


def gains(per_seed, condition, loss, metric):
    """Paired per-seed values ``(loss, ce)`` of ``metric`` in ``condition``, or None."""
    runs = per_seed.get(condition, {})
    if loss not in runs or "ce" not in runs:
        return None
    return [r[metric] for r in runs[loss]], [r[metric] for r in runs["ce"]]


def check_interval(per_seed, condition, loss, metric, noise_ps=None):
    if condition.startswith("slope: "):
        kind = condition[len("slope: ") :]
        ps = [p for p in (noise_ps or {}).get(kind, [])]
        rows = []
        for _p, name in ps:
            pair = gains(per_seed, name, loss, metric)
            if pair is None:
                return None
            rows.append(np.subtract(*pair))
        if len(rows) < 3:
            return None
        return slope_interval([p for p, _ in ps], rows)
    pair = gains(per_seed, condition, loss, metric)
    return None if pair is None else paired_interval(*pair)


def judge(per_seed, noise_ps, seeds):
    """A verdict per claim: reproduced, not reproduced, inconclusive, or not tested in this run."""
    verdicts = []
    for claim in CLAIMS:
        rows, signs = [], []
        for condition, metric, expected in claim["checks"]:
            interval = check_interval(per_seed, condition, claim["loss"], metric, noise_ps)
            if interval is None:
                continue
            sign = direction(interval, METRICS[metric][1]) * expected
            rows.append(
                {
                    "condition": condition,
                    "metric": metric,
                    "expected": expected,
                    "gain": interval,
                    "agrees": sign,
                }
            )
            signs.append(sign)
        if not rows:
            verdict = "not tested in this run"
        elif any(s < 0 for s in signs):
            verdict = "not reproduced"
        elif all(s > 0 for s in signs):
            verdict = "reproduced"
        else:
            verdict = f"inconclusive at {seeds} seeds"
        verdicts.append(
            {
                **{k: claim[k] for k in ("id", "paper", "loss", "claim")},
                "verdict": verdict,
                "checks": rows,
            }
        )
    return verdicts


def _interval_text(interval, metric):
    mean, low, high = interval
    scale = 100.0 if metric.startswith("top") else 1.0
    if math.isinf(low):
        return f"{scale * mean:+.2f}"
    return f"{scale * mean:+.2f} [{scale * low:+.2f}, {scale * high:+.2f}]"


def verdict_table(verdicts):
    lines = [
        "| claim | loss vs CE: the evidence (paired gain, 95% interval) | verdict |",
        "|---|---|---|",
    ]
    for v in verdicts:
        evidence = (
            "; ".join(
                f"{r['condition']}, {r['metric']}: {_interval_text(r['gain'], r['metric'])}"
                + ("" if r["agrees"] > 0 else " (against)" if r["agrees"] < 0 else " (?)")
                for r in v["checks"]
            )
            or "-"
        )
        lines.append(
            f"| **{v['id']}** {v['paper']}: {v['claim']} | {evidence} | **{v['verdict']}** |"
        )
    return "\n".join(lines)


def summarize(per_seed, losses):
    """Per condition and loss: the mean of each metric and the paired gain over CE with its interval."""
    out = {}
    for condition, runs in per_seed.items():
        out[condition] = {}
        for loss in losses:
            if loss not in runs:
                continue
            entry = {}
            for metric in METRICS:
                values = [r[metric] for r in runs[loss] if r.get(metric) is not None]
                if len(values) != len(runs[loss]):
                    continue
                entry[metric] = float(np.mean(values))
                if loss != "ce" and "ce" in runs:
                    entry[metric + "_gain"] = paired_interval(
                        values, [r[metric] for r in runs["ce"]]
                    )
            out[condition][loss] = entry
    return out


def markdown_table(summary, losses, labels, bayes=None):
    """Rows (condition, loss): top-1, top-5 and candidates for 99%, with the paired gain over CE."""
    header = (
        "| condition | loss | top-1 (%) | vs CE | top-5 (%) | vs CE | candidates 90/95/99% | "
        "99%: vs CE | conformal set at 99% |"
    )
    lines = [header, "|---" * (header.count("|") - 1) + "|"]
    for condition, rows in summary.items():
        for loss in losses:
            e = rows.get(loss)
            if not e:
                continue
            gain = lambda m: _interval_text(e[m + "_gain"], m) if m + "_gain" in e else ""  # noqa: E731
            cands = "/".join(f"{e[m]:.1f}" for m in ("cand90", "cand95", "cand99") if m in e)
            size = f"{e['set99']:.1f}" if "set99" in e else "-"
            lines.append(
                f"| {condition} | {labels[loss]} | {100 * e['top1']:.2f} | {gain('top1')} | "
                f"{100 * e['top5']:.2f} | {gain('top5')} | {cands} | {gain('cand99')} | {size} |"
            )
        if bayes and condition in bayes:
            b = bayes[condition]
            lines.append(
                f"| {condition} | *Bayes limit* | {100 * b[0]:.2f} | | {100 * b[4]:.2f} | | | | |"
            )
    return "\n".join(lines)


def gains_table(summary, losses, labels):
    """One row per condition: each loss's paired top-1 and top-5 gain over CE (points), * where the 95% interval
    excludes 0."""
    others = [l for l in losses if l != "ce"]
    header = (
        "| condition | CE top-1 / top-5 (%) | "
        + " | ".join(f"{labels[l]} top-1 / top-5" for l in others)
        + " |"
    )
    lines = [header, "|---" * (len(others) + 2) + "|"]
    for condition, rows in summary.items():
        if "ce" not in rows:
            continue
        cells = []
        for loss in others:
            parts = []
            for metric in ("top1", "top5"):
                gain = rows.get(loss, {}).get(metric + "_gain")
                if gain is None:
                    parts.append("")
                    continue
                parts.append(f"{100 * gain[0]:+.2f}" + ("*" if direction(gain) != 0 else ""))
            cells.append(" / ".join(parts))
        ce = rows["ce"]
        lines.append(
            f"| {condition} | {100 * ce['top1']:.1f} / {100 * ce['top5']:.1f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def settings_table(tuned, losses, labels):
    """How often each setting won the tuning, over the conditions."""
    lines = ["| loss | chosen settings (number of conditions) |", "|---|---|"]
    for loss in losses:
        counts = {}
        for rows in tuned.values():
            if loss in rows:
                chosen = dict(rows[loss]["chosen"])
                chosen.pop("loss")
                text = ", ".join(f"{k}={_setting_value(v)}" for k, v in chosen.items())
                counts[text] = counts.get(text, 0) + 1
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])
        lines.append(
            f"| {labels[loss]} | " + "; ".join(f"{text} ({n})" for text, n in ranked) + " |"
        )
    return "\n".join(lines)


def _setting_value(v):
    if isinstance(v, (list, tuple)):
        return "(" + ",".join(f"{x:g}" for x in v) + ")"
    return f"{v:g}" if isinstance(v, float) else str(v)


# --------------------------------------------------------------------------- #
# Plots
# --------------------------------------------------------------------------- #


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


COLORS = {
    "ce": "black",
    "topk_ce": "tab:blue",
    "smooth_svm": "tab:red",
    "transition": "tab:green",
    "topk_svm": "tab:orange",
}


def plot_gain_vs_p(path, per_seed, noise_ps, losses, labels, title):
    kinds = [k for k in ("superclass", "block", "uniform") if noise_ps.get(k)]
    if not kinds:
        return None
    plt = _plt()
    fig, axes = plt.subplots(
        2, len(kinds), figsize=(4.2 * len(kinds), 6.4), squeeze=False, sharey="row"
    )
    for col, kind in enumerate(kinds):
        for row, metric in enumerate(("top1", "top5")):
            ax = axes[row][col]
            ax.axhline(0, color="black", lw=0.8)
            for i, loss in enumerate(l for l in losses if l != "ce"):
                pts = [
                    (p, check_interval(per_seed, name, loss, metric)) for p, name in noise_ps[kind]
                ]
                pts = [(p, iv) for p, iv in pts if iv is not None]
                if not pts:
                    continue
                x = np.array([p for p, _ in pts]) + (i - 1) * 0.012
                mean = np.array([100 * iv[0] for _, iv in pts])
                low = np.array(
                    [100 * iv[1] if np.isfinite(iv[1]) else 100 * iv[0] for _, iv in pts]
                )
                high = np.array(
                    [100 * iv[2] if np.isfinite(iv[2]) else 100 * iv[0] for _, iv in pts]
                )
                ax.errorbar(
                    x,
                    mean,
                    yerr=[mean - low, high - mean],
                    marker="o",
                    ms=4,
                    capsize=3,
                    color=COLORS.get(loss),
                    label=labels[loss],
                )
            ax.set_title(f"{kind} noise: {metric.replace('top', 'top-')} gain over CE", fontsize=10)
            ax.set_xlabel("p (fraction of training labels redrawn)")
            if col == 0:
                ax.set_ylabel("points (paired, 95% interval)")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_accuracy_vs_k(path, curves, conditions, losses, labels, bayes, max_k=10):
    """Accuracy against k per loss (top row) and its paired gain over CE (bottom row)."""
    conditions = [c for c in conditions if c in curves]
    if not conditions:
        return None
    plt = _plt()
    fig, axes = plt.subplots(
        2, len(conditions), figsize=(4.2 * len(conditions), 6.6), squeeze=False
    )
    ks = np.arange(1, max_k + 1)
    for col, condition in enumerate(conditions):
        ax, dax = axes[0][col], axes[1][col]
        for loss in losses:
            if loss not in curves[condition]:
                continue
            runs = 100 * np.array(curves[condition][loss])[:, :max_k]
            ax.plot(ks, runs.mean(0), marker="o", ms=3, color=COLORS.get(loss), label=labels[loss])
            if loss != "ce" and "ce" in curves[condition]:
                ce = 100 * np.array(curves[condition]["ce"])[:, :max_k]
                ivs = [paired_interval(runs[:, j], ce[:, j]) for j in range(max_k)]
                mean = np.array([iv[0] for iv in ivs])
                low = np.array([iv[1] if np.isfinite(iv[1]) else iv[0] for iv in ivs])
                high = np.array([iv[2] if np.isfinite(iv[2]) else iv[0] for iv in ivs])
                dax.plot(ks, mean, marker="o", ms=3, color=COLORS.get(loss), label=labels[loss])
                dax.fill_between(ks, low, high, color=COLORS.get(loss), alpha=0.15)
        if bayes and condition in bayes:
            ax.plot(
                ks,
                100 * np.array(bayes[condition][:max_k]),
                ls="--",
                color="gray",
                label="Bayes limit",
            )
        ax.set_title(condition, fontsize=10)
        ax.set_xlabel("k")
        ax.set_ylabel("top-k accuracy (%)")
        ax.grid(alpha=0.3)
        dax.axhline(0, color="black", lw=0.8)
        dax.set_xlabel("k")
        dax.set_ylabel("gain over CE (points, 95% interval)")
        dax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_candidates(path, summary, losses, labels, metric="cand99"):
    """Candidates needed for 99% accuracy per condition and loss (mean over seeds)."""
    conditions = [
        c for c, rows in summary.items() if any(metric in rows.get(l, {}) for l in losses)
    ]
    if not conditions:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(min(13.0, max(6.0, 0.8 * len(conditions) + 1)), 4.6))
    width = 0.8 / len(losses)
    x = np.arange(len(conditions))
    for i, loss in enumerate(losses):
        means = [summary[c].get(loss, {}).get(metric, np.nan) for c in conditions]
        ax.bar(
            x + (i - (len(losses) - 1) / 2) * width,
            means,
            width,
            color=COLORS.get(loss),
            label=labels[loss],
        )
        for c, xi, mean in zip(conditions, x + (i - (len(losses) - 1) / 2) * width, means):
            gain = summary[c].get(loss, {}).get(metric + "_gain")
            if (
                gain is not None and direction(gain, METRICS[metric][1]) != 0
            ):  # differs from CE at 95%
                ax.annotate(
                    "+" if direction(gain, METRICS[metric][1]) > 0 else "-",
                    (xi, mean),
                    ha="center",
                    va="bottom",
                    fontsize=9,
                    fontweight="bold",
                    color=COLORS.get(loss),
                )
    ax.set_title(
        f"{METRICS[metric][0]}, mean over seeds; + / -: fewer / more than CE (paired 95% interval)",
        fontsize=10,
    )
    ax.set_xticks(x)
    ax.set_xticklabels(conditions, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel(METRICS[metric][0] + " (fewer is better)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
