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
    "settings_table_by_protocol",
    "verdict_table_by_protocol",
    "guidance",
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
    "macro1": ("macro top-1 (%)", True),
    "macro5": ("macro top-5 (%)", True),
    "train_top1": ("training top-1 on the training labels (%)", True),
    # Training top-1 on the noisy labels minus on the clean labels of the same examples.
    "memorisation": ("memorisation (points)", False),
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


WIDE_PREFIX = "mlp256: "  # the conditions of the over-parameterised head (examples.compare_losses)


def _on_wide_head(claim, note):
    """The claim checked on the over-parameterised MLP head's conditions (the papers' deep networks)."""

    def wide(condition):
        if condition.startswith("slope: "):
            return "slope: " + WIDE_PREFIX + condition[len("slope: ") :]
        return WIDE_PREFIX + condition

    return {
        **claim,
        "id": claim["id"] + " MLP",
        "claim": f"{claim['claim']}; {note}",
        "checks": [(wide(c), m, e) for c, m, e in claim["checks"] if not c.startswith("many")],
    }


_BY_ID = {c["id"]: c for c in CLAIMS}
CLAIMS += [
    _on_wide_head(_BY_ID["B1"], "a 256-unit MLP head that can memorise (their deep networks)"),
    _on_wide_head(_BY_ID["B1'"], "a 256-unit MLP head"),
    _on_wide_head(
        _BY_ID["P1"].copy()
        | {"claim": "TopKCrossEntropy gives better top-5 and better top-1 than CE"},
        "a 256-unit MLP head trained on the data (their CIFAR-100 networks)",
    ),
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


# Plain gains over CE of the newer losses (no paper claim to check): their paired intervals on the
# long-tailed condition, macro-averaged over the classes and plain.
GAIN_CONDITION = "long-tailed"
GAIN_METRICS = ("macro1", "macro5", "top1", "top5")
GAIN_LOSSES = {
    "calibrated_hinge": "Yang & Koyejo 2020",
    "noised_hinge": "Garcin et al. 2022",
    "long_tail_hinge": "Garcin et al. 2022 (LDAM margins)",
    "hinge_alpha": "Lapin et al. 2016",
    "hinge_beta": "Lapin et al. 2016",
    "truncated_entropy": "Lapin et al. 2016",
    "topk_ce_lapsum": "Struski et al. 2025 (LapSum)",
}


def gain_rows(per_seed, seeds):
    """Per newer loss that ran: its paired gains over CE on the long-tailed condition, no verdict.

    The row's ``verdict`` only counts the intervals above and below 0 (out of the metrics measured).
    """
    rows = []
    for loss, paper in GAIN_LOSSES.items():
        checks = []
        for metric in GAIN_METRICS:
            runs = per_seed.get(GAIN_CONDITION, {})
            if loss not in runs or "ce" not in runs:
                continue
            if any(r.get(metric) is None for r in runs[loss] + runs["ce"]):
                continue
            pair = gains(per_seed, GAIN_CONDITION, loss, metric)
            interval = paired_interval(*pair)
            checks.append(
                {
                    "condition": GAIN_CONDITION,
                    "metric": metric,
                    "expected": 0,
                    "gain": interval,
                    "agrees": direction(interval, METRICS[metric][1]),
                }
            )
        if not checks:
            continue
        up = sum(c["agrees"] > 0 for c in checks)
        down = sum(c["agrees"] < 0 for c in checks)
        rows.append(
            {
                "id": f"G {loss}",
                "paper": paper,
                "loss": loss,
                "claim": f"gain over CE on {GAIN_CONDITION} (measured, no claim)",
                "verdict": f"above CE in {up}, below in {down} of {len(checks)} ({seeds} seeds)",
                "checks": checks,
            }
        )
    return rows


def judge(per_seed, noise_ps, seeds):
    """A verdict per claim: reproduced, not reproduced, inconclusive, or not tested in this run.

    Then `gain_rows`: the newer losses' plain gains over CE, counted but not judged.
    """
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
    return verdicts + gain_rows(per_seed, seeds)


def _interval_text(interval, metric):
    mean, low, high = interval
    scale = 100.0 if metric.startswith(("top", "macro")) else 1.0
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
                + _mark(r)
                for r in v["checks"]
            )
            or "-"
        )
        lines.append(
            f"| **{v['id']}** {v['paper']}: {v['claim']} | {evidence} | **{v['verdict']}** |"
        )
    return "\n".join(lines)


def _mark(row):
    if row["expected"] == 0:  # a plain gain: the sign of the interval, no claim to agree with
        return " (above)" if row["agrees"] > 0 else " (below)" if row["agrees"] < 0 else ""
    return "" if row["agrees"] > 0 else " (against)" if row["agrees"] < 0 else " (?)"


def verdict_table_by_protocol(verdicts, protocol_names):
    """One row per claim and protocol: the evidence (paired gains, 95% intervals) and the verdict."""
    lines = [
        "| claim | protocol | loss vs CE: the evidence (paired gain, 95% interval) | verdict |",
        "|---|---|---|---|",
    ]
    protocols = list(verdicts)
    if not protocols:
        return ""
    for claim in verdicts[protocols[0]]:
        for j, p in enumerate(protocols):
            v = next((x for x in verdicts[p] if x["id"] == claim["id"]), None)
            if v is None:
                continue
            evidence = (
                "; ".join(
                    f"{r['condition']}, {r['metric']}: {_interval_text(r['gain'], r['metric'])}"
                    + _mark(r)
                    for r in v["checks"]
                )
                or "-"
            )
            text = f"{claim['paper']}: {claim['claim']}" if j == 0 else "(the same claim)"
            lines.append(
                f"| **{claim['id']}** {text} | {protocol_names[p]} | {evidence} | **{v['verdict']}** |"
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
        "| condition | loss | top-1 (%) | vs CE | top-5 (%) | vs CE | macro top-1 / top-5 (%) | "
        "memorisation (points) | candidates 90/95/99% | 99%: vs CE | conformal set at 99% |"
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
            macro = f"{100 * e['macro1']:.2f} / {100 * e['macro5']:.2f}" if "macro1" in e else "-"
            memo = f"{100 * e['memorisation']:.1f}" if "memorisation" in e else "-"
            lines.append(
                f"| {condition} | {labels[loss]} | {100 * e['top1']:.2f} | {gain('top1')} | "
                f"{100 * e['top5']:.2f} | {gain('top5')} | {macro} | {memo} | {cands} | "
                f"{gain('cand99')} | {size} |"
            )
        if bayes and condition in bayes:
            b = bayes[condition]
            lines.append(
                f"| {condition} | *Bayes limit* | {100 * b[0]:.2f} | | {100 * b[4]:.2f} | | | | | | |"
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
                if loss not in rows:  # the arm did not run in this condition
                    break
                gain = rows[loss].get(metric + "_gain")
                if gain is None:
                    parts.append("")
                    continue
                parts.append(f"{100 * gain[0]:+.2f}" + ("*" if direction(gain) != 0 else ""))
            cells.append(" / ".join(parts) if loss in rows else "—")
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


def settings_table_by_protocol(tuned, losses, labels, protocol_names, budgets=None):
    """Per protocol and loss: how often each setting won, and where the grid was widened."""
    lines = [
        "| protocol | loss | chosen settings (number of conditions) | grid widened (edge of the grid) |",
        "|---|---|---|---|",
    ]
    for p, by_condition in tuned.items():
        for loss in losses:
            counts, widened = {}, []
            for condition, rows in by_condition.items():
                if loss not in rows:
                    continue
                chosen = dict(rows[loss]["chosen"])
                chosen.pop("loss")
                text = ", ".join(f"{k}={_setting_value(v)}" for k, v in chosen.items())
                counts[text] = counts.get(text, 0) + 1
                added = rows[loss].get("widened") or []
                if added:
                    widened.append(
                        f"{condition}: lr " + ", ".join(f"{a['lr']:g}" for a in added) + " added"
                    )
            ranked = sorted(counts.items(), key=lambda kv: -kv[1])
            lines.append(
                f"| {protocol_names[p]} | {labels[loss]} | "
                + "; ".join(f"{text} ({n})" for text, n in ranked)
                + f" | {'; '.join(widened) or 'none'} |"
            )
    if budgets:
        lines += [
            "",
            "Epoch budget of the fixed schedule per condition (CE's early-stopping epoch in the pilot run):",
            "",
            "| condition | pilot epoch | budget (epochs) |",
            "|---|---|---|",
        ]
        lines += [f"| {c} | {b['pilot_epoch']} | {b['epochs']} |" for c, b in budgets.items()]
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


def _colors():
    from examples import study

    return {arm.name: arm.color for arm in study.ARMS}


COLORS = _colors()


def plot_gain_vs_p(path, per_seed, noise_ps, losses, labels, title):
    kinds = [k for k in noise_ps if noise_ps.get(k)]  # the wide head's kinds too
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


# --------------------------------------------------------------------------- #
# Plain-language guidance, written from the run's own numbers
# --------------------------------------------------------------------------- #

PROTOCOL_NAMES = {"early": "early stopping", "fixed": "fixed schedule, final model"}


def _significant(summary, loss, metric, sign):
    """``[(condition, gain), ...]`` where the loss's paired gain is significant with this sign."""
    out = []
    for condition, rows in summary.items():
        gain = rows.get(loss, {}).get(metric + "_gain")
        if gain is not None and direction(gain) == sign:
            out.append((condition, 100 * gain[0]))
    return out


def _pairs_text(pairs, limit=3):
    ranked = sorted(pairs, key=lambda cg: -abs(cg[1]))
    text = ", ".join(f"{c} {g:+.2f}" for c, g in ranked[:limit])
    return text + (f" and {len(ranked) - limit} more" if len(ranked) > limit else "")


def guidance(payload, labels):
    """Markdown: which loss for which situation, per protocol, from a results.json payload.

    Every number is the run's: counts of conditions where a loss's paired 95% interval lies above
    or below CE's, the largest such gains, the verdicts, and (with both protocols) how early-stopped
    CE compares with every loss trained to the end.
    """
    summary = payload["summary"]
    verdicts = payload.get("verdicts") or {}
    if summary and "early" not in summary and "fixed" not in summary:  # a run before the protocols
        summary, verdicts = {"early": summary}, {"early": verdicts}
    protocols = [p for p in ("early", "fixed") if p in summary]
    losses = [loss for loss in payload["config"]["losses"] if loss != "ce" and loss in labels]
    seeds = len(payload["config"]["seeds"])
    conditions = list(summary[protocols[0]])
    lines = [
        f"Written by the study from its own results (`{payload['command']}`: {len(conditions)} "
        f"conditions, {seeds} paired seeds, protocols: {', '.join(PROTOCOL_NAMES[p] for p in protocols)}). "
        "A gain counts where its paired 95% interval excludes 0; points of test accuracy.",
        "",
    ]
    for p in protocols:
        lines.append(f"**{PROTOCOL_NAMES[p].capitalize()}.**")
        lines.append("")
        for loss in losses:
            parts = []
            for metric, name in (("top5", "top-5"), ("top1", "top-1")):
                up = _significant(summary[p], loss, metric, 1)
                down = _significant(summary[p], loss, metric, -1)
                ran = sum(loss in rows for rows in summary[p].values())
                text = f"{name}: better than CE in {len(up)} of {ran} conditions"
                if up:
                    text += f" ({_pairs_text(up)})"
                text += f", worse in {len(down)}"
                if down:
                    text += f" ({_pairs_text(down)})"
                parts.append(text)
            if not any(loss in rows for rows in summary[p].values()):
                continue  # the arm ran in none of this run's conditions
            lines.append(f"- **{labels[loss]}**: " + "; ".join(parts) + ".")
        for v in verdicts.get(p, []):
            if v["id"].startswith("G "):  # a plain gain row: no claim, no verdict
                lines.append(
                    f"- **{labels.get(v['loss'], v['loss'])}** vs CE on {GAIN_CONDITION} "
                    f"(macro and plain top-1/top-5): {v['verdict']}."
                )
            elif v["verdict"] != "not tested in this run":
                lines.append(f"- Claim **{v['id']}** ({v['paper']}): {v['verdict']}.")
        lines.append("")
    if len(protocols) == 2:
        early, fixed = summary["early"], summary["fixed"]
        shared = [c for c in conditions if "ce" in early.get(c, {}) and c in fixed]
        for metric, name in (("top1", "top-1"), ("top5", "top-5")):
            beaten = [
                c
                for c in shared
                if all(
                    early[c]["ce"][metric] >= fixed[c][loss][metric]
                    for loss in fixed[c]
                    if metric in fixed[c][loss]
                )
            ]
            lines.append(
                f"- Early-stopped CE's {name} is at least every loss's fixed-schedule {name} "
                f"(CE's included) in {len(beaten)} of {len(shared)} conditions."
            )
        lines.append("")
    lines.append(_advice(summary, protocols, losses, labels, len(conditions)))
    return "\n".join(lines)


def _advice(summary, protocols, losses, labels, n_conditions):
    """The plain sentence per protocol: the loss with the most significant top-5 gains, or CE."""
    sentences = []
    lead = {
        "early": "If you can early-stop on a validation split of your training data",
        "fixed": "If you train to a fixed budget of epochs and keep the final model",
    }
    for p in protocols:
        score = {
            loss: len(_significant(summary[p], loss, "top5", 1))
            - len(_significant(summary[p], loss, "top5", -1))
            for loss in losses
        }
        best = max(losses, key=lambda loss: score[loss]) if losses else None
        if best is None or score[best] <= 0:
            sentences.append(
                f"{lead[p]}: start with CE; no top-k loss gained top-5 in more conditions than it "
                "lost it."
            )
            continue
        top1_down = len(_significant(summary[p], best, "top1", -1))
        sentences.append(
            f"{lead[p]}: {labels[best]} gained top-5 in "
            f"{len(_significant(summary[p], best, 'top5', 1))} of "
            f"{sum(best in rows for rows in summary[p].values())} conditions "
            f"(lost it in {len(_significant(summary[p], best, 'top5', -1))}), at the cost of top-1 "
            f"in {top1_down}; CE remains the reference to measure it against."
        )
    return " ".join(sentences)
