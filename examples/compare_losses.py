"""The main job: when does each top-k loss beat cross-entropy? A small replication study.

    python -m examples.compare_losses                  # the embedded benchmark, 5 paired seeds (README's numbers)
    python -m examples.compare_losses --quick          # a smoke run: 2 seeds, 4 conditions, a small grid
    python -m examples.compare_losses --embeddings emb.npz     # your features (examples.extract_embeddings)
    python -m examples.compare_losses --dataset cifar100 --model ResNet50 --weights imagenet  # embeds, then the same

The embedded benchmark (`examples.benchmark`) has the papers' structure: 100
classes in 20 superclasses of 5, from a known distribution (so the Bayes limit
is known). Its conditions: training-label noise within superclasses and within
blocks of 5 label ids (Berrada et al.) at p = 0.2..0.8, uniform noise as the
contrast, few and many training examples, and multi-modal classes too complex
for a linear head (Sawada et al.), also with a small MLP. A linear head on the
features is the papers' ImageNet protocol (Petersen et al.).

Every loss, CE included, is tuned on a validation split of the *training*
data with the same budget (4 runs; `examples.study.GRIDS`), and every run
stops early on that split. Each seed draws a new problem, sample, noise,
split, initialisation and batch order, shared by all losses, so the gains over
CE are paired by seed; the output gives 95% paired t-intervals and a verdict
per paper claim. Every finished (condition, loss, seed) is saved under
``--output/cells``: rerun the same command to continue an interrupted study.

Writes to ``--output``: ``results.json``, ``table.md`` (every condition and loss), ``gains.md`` (the
gains over CE, one row per condition), ``verdicts.md``, ``settings.md`` and ``tuned_settings.json`` (the
tuning), ``gain_vs_p.png``, ``accuracy_vs_k.png``, ``candidates.png``.
"""

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time

import numpy as np

from examples import benchmark, common, report, study

DEFAULT_LOSSES = common.DEFAULT_LOSSES
NOISE_PS = (0.2, 0.4, 0.6, 0.8)
TUNING_SEED = 1000
MAX_K = 20


@dataclasses.dataclass(frozen=True)
class Condition:
    name: str
    benchmark: object = None  # a benchmark.Benchmark; None: the user's data
    hidden: int = 0


def benchmark_conditions(quick=False, test_size=None):
    base = benchmark.Benchmark(test_size=test_size or (5000 if quick else 20000))
    complex_ = dataclasses.replace(base, blobs=4, blob_spread=0.6)
    if quick:
        return [
            Condition("clean", base),
            Condition("superclass p=0.6", dataclasses.replace(base, noise="superclass", p=0.6)),
            Condition("block p=0.6", dataclasses.replace(base, noise="block", p=0.6)),
            Condition("complex/linear", complex_),
        ]
    conditions = [Condition("clean", base)]
    for kind in ("superclass", "block"):
        conditions += [
            Condition(f"{kind} p={p:g}", dataclasses.replace(base, noise=kind, p=p))
            for p in NOISE_PS
        ]
    conditions += [
        Condition(f"uniform p={p:g}", dataclasses.replace(base, noise="uniform", p=p))
        for p in (0.4, 0.8)
    ]
    conditions += [
        Condition("few examples", dataclasses.replace(base, train_per_class=8)),
        Condition("many examples", dataclasses.replace(base, train_per_class=120)),
        Condition("complex/linear", complex_),
        Condition("complex/MLP", complex_, hidden=64),
    ]
    return conditions


def noise_ps_of(conditions):
    """``{kind: [(p, condition name), ...]}`` including the clean condition as p = 0."""
    names = {c.name for c in conditions}
    out = {}
    for kind in ("superclass", "block", "uniform"):
        ps = [(0.0, "clean")] if "clean" in names else []
        ps += [
            (c.benchmark.p, c.name)
            for c in conditions
            if c.benchmark is not None and c.benchmark.noise == kind and c.benchmark.p > 0
        ]
        if len(ps) > 1:
            out[kind] = ps
    return out


# --------------------------------------------------------------------------- #
# Data of a condition and seed
# --------------------------------------------------------------------------- #


class Data:
    """Training (with a validation split), test data and the Bayes limit, per condition and seed."""

    def __init__(self, user=None):
        self.user = user  # (x_train, y_train, x_test, y_test, num_classes) of the user's data
        self._cache = {}

    def num_classes(self, condition):
        return self.user[4] if condition.benchmark is None else condition.benchmark.num_classes

    def get(self, condition, seed, validation_fraction=0.2):
        key = (condition.name, seed)
        if key not in self._cache:
            if any(name != condition.name for name, _ in self._cache):
                self._cache.clear()  # one condition at a time
            if condition.benchmark is None:
                x, y, x_test, y_test, _ = self.user
                problem = None
            else:
                x, y, x_test, y_test, problem = benchmark.make_task(condition.benchmark, seed)
            train, val = study.split_validation(x, y, validation_fraction, seed)
            self._cache[key] = (train, val, (x_test, y_test), problem)
        return self._cache[key]


def load_user_embeddings(path, standardize=True):
    if not os.path.exists(path):
        raise common.ExampleError(
            f"--embeddings {path!r}: no such file (write one with "
            "python -m examples.extract_embeddings)."
        )
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in ("x_train", "y_train", "x_eval", "y_eval") if k not in f]
        if missing:
            raise common.ExampleError(
                f"--embeddings {path!r} lacks {', '.join(missing)}: not an extract_embeddings file."
            )
        meta = json.loads(str(f["meta"])) if "meta" in f else {}
        x, y, xt, yt = (f[k] for k in ("x_train", "y_train", "x_eval", "y_eval"))
    x, xt = x.astype(np.float32), xt.astype(np.float32)
    if (
        standardize
    ):  # with the training statistics: one learning-rate grid fits any embedding's scale
        mean, std = x.mean(0), x.std(0) + 1e-6
        x, xt = (x - mean) / std, (xt - mean) / std
    num_classes = int(meta.get("num_classes", max(y.max(), yt.max()) + 1))
    return (x, y.astype(np.int32), xt, yt.astype(np.int32), num_classes), meta


# --------------------------------------------------------------------------- #
# Cells
# --------------------------------------------------------------------------- #


def evaluate_scores(scores, labels, num_classes):
    """Top-k accuracy curve, candidates for each coverage, and conformal (APS) set sizes."""
    ranks = study.label_ranks(scores, labels)
    curve = study.accuracy_at_k(ranks, max(num_classes, MAX_K))  # 1.0 from k = num_classes on
    out = {"curve": curve[:MAX_K], "top1": curve[0], "top5": curve[4], "top10": curve[9]}
    for cov in report.COVERAGES:
        key = f"{round(100 * cov)}"
        out["cand" + key] = next(k + 1 for k, a in enumerate(curve) if a >= cov - 1e-12)
    try:
        from keras_topk import conformal
    except ImportError:  # keras_topk without its conformal module: no set sizes
        return out
    found = conformal.candidates_for_coverage(scores, labels, coverages=report.COVERAGES)
    for cov in report.COVERAGES:
        out[f"cand{round(100 * cov)}"] = int(found[cov])
    half = len(labels) // 2  # calibrate on one half of the test set, measure on the other
    for cov in report.COVERAGES:
        try:
            sets = conformal.calibrate(
                scores[:half],
                labels[:half],
                alpha=round(1 - cov, 6),
                method="aps",
                from_logits=True,
            )
        except ValueError:  # too few test examples to calibrate at this coverage
            continue
        measured = conformal.evaluate_sets(sets.predict(scores[half:]), labels[half:])
        out[f"set{round(100 * cov)}"] = float(measured["mean_size"])
        out[f"set{round(100 * cov)}_coverage"] = float(measured["coverage"])
    return out


class Progress:
    """A one-line progress bar over the whole study (stderr), with the time left."""

    def __init__(self, total, enabled=True):
        self.total, self.done, self.enabled, self.start = total, 0, enabled, time.perf_counter()
        self.tty = sys.stderr.isatty()  # in a log file: one line per 5% instead of a redrawn bar

    def update(self, text, worked=True):
        self.done += 1
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        left = ""
        if worked and self.done < self.total:
            left = f", ~{elapsed / self.done * (self.total - self.done) / 60:.0f} min left"
        filled = int(30 * self.done / max(1, self.total))
        line = (
            f"[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} cells, "
            f"{elapsed / 60:.1f} min{left} | {text[:60]:<60}"
        )
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if self.done >= self.total else ""))
        elif self.done == self.total or self.done % max(1, self.total // 20) == 0:
            sys.stderr.write(line.rstrip() + "\n")
        sys.stderr.flush()


def run_study(
    conditions,
    losses,
    seeds,
    grids,
    trainer_config,
    store,
    data,
    progress_bar=True,
    trainer_factory=study.FeatureTrainer,
):
    """Tunes every loss per condition, then trains every (condition, loss, seed); returns the cells."""
    total = sum(len(grids[loss]) + len(seeds) for _ in conditions for loss in losses)
    total += sum(len(seeds) for c in conditions if c.benchmark is not None)
    progress = Progress(total, progress_bar)
    tuned, per_seed, curves, bayes = {}, {}, {}, {}
    for condition in conditions:
        num_classes = data.num_classes(condition)
        trainer = trainer_factory(
            dataclasses.replace(trainer_config, hidden=condition.hidden), num_classes
        )
        tuned[condition.name], per_seed[condition.name], curves[condition.name] = {}, {}, {}
        for loss in losses:

            def validation_run(setting, index):
                key = (
                    "tune",
                    condition.name,
                    loss,
                    index,
                    json.dumps(setting.as_dict(), sort_keys=True),
                )
                cell = store.get(*key) or store.put(tuning_cell(setting), *key)
                progress.update(f"{condition.name}: tuning {loss} {setting.describe()}")
                return cell["validation_score"]

            def tuning_cell(setting):
                train, val, _, _ = data.get(condition, TUNING_SEED)
                return trainer.fit(setting, train, val, TUNING_SEED)[1]

            def test_cell(seed):
                train, val, (x_test, y_test), _ = data.get(condition, seed)
                params, info = trainer.fit(best, train, val, seed)
                return {
                    **info,
                    **evaluate_scores(trainer.forward(params, x_test), y_test, num_classes),
                }

            grid = list(grids[loss])
            best, scores = study.tune(grid, lambda s: validation_run(s, grid.index(s)))
            tuned[condition.name][loss] = {
                "chosen": best.as_dict(),
                "grid": [{**s.as_dict(), "validation_score": v} for s, v in zip(grid, scores)],
            }
            runs = []
            for seed in seeds:
                key = (
                    "run",
                    condition.name,
                    loss,
                    seed,
                    json.dumps(best.as_dict(), sort_keys=True),
                )
                cell = store.get(*key) or store.put(test_cell(seed), *key)
                progress.update(f"{condition.name}: {loss} seed {seed}")
                runs.append(cell)
            per_seed[condition.name][loss] = runs
            curves[condition.name][loss] = [r["curve"] for r in runs]
        if condition.benchmark is not None:
            limits = []
            for seed in seeds:
                cell = store.get("bayes", condition.name, seed)
                if cell is None:
                    _, _, (x_test, _), problem = data.get(condition, seed)
                    cell = store.put(
                        {"curve": benchmark.bayes_accuracy_at_k(problem, x_test, MAX_K)},
                        "bayes",
                        condition.name,
                        seed,
                    )
                progress.update(f"{condition.name}: Bayes limit seed {seed}", worked=False)
                limits.append(cell["curve"])
            bayes[condition.name] = np.mean(limits, axis=0).tolist()
    return tuned, per_seed, curves, bayes


# --------------------------------------------------------------------------- #
# Command line
# --------------------------------------------------------------------------- #


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m examples.compare_losses",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run (2 seeds, 4 conditions, 2 settings per loss): checks that it works, decides nothing",
    )
    parser.add_argument("--output", default="runs/compare_losses", help="default: %(default)s")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="discard the finished cells in --output and start afresh",
    )
    parser.add_argument(
        "--seeds", type=int, default=None, help="paired seeds (default 5; --quick 2; user data 3)"
    )
    parser.add_argument(
        "--losses",
        default=",".join(DEFAULT_LOSSES),
        help=f"comma-separated, out of {', '.join(study.LOSS_NAMES)} (default: %(default)s)",
    )
    parser.add_argument(
        "--conditions",
        default=None,
        help="comma-separated condition names of the benchmark to run (default: all)",
    )
    parser.add_argument(
        "--grid",
        choices=["default", "full"],
        default="default",
        help="the tuning grid: default (4 runs per loss) or full (more settings; slower)",
    )
    parser.add_argument(
        "--embeddings",
        default=None,
        metavar="FILE.npz",
        help="your features, from examples.extract_embeddings",
    )
    parser.add_argument(
        "--dataset",
        default=None,
        help="a tfds dataset: embeds it once with --model (into --output/embeddings), then as --embeddings",
    )
    parser.add_argument(
        "--model", default="ResNet50", help="with --dataset: the keras.applications backbone"
    )
    parser.add_argument(
        "--weights", default="imagenet", help="with --dataset: 'imagenet', 'none' or a file"
    )
    parser.add_argument(
        "--image-size", type=int, default=224, help="with --dataset (default: %(default)s)"
    )
    parser.add_argument(
        "--mock-data", type=int, default=None, metavar="N", help="with --dataset: tfds mock data"
    )
    parser.add_argument(
        "--hidden",
        type=int,
        default=0,
        help="with your data: hidden units of an MLP head (0: linear)",
    )
    parser.add_argument(
        "--test-size",
        type=int,
        default=None,
        help="benchmark test examples (default 20000; --quick 5000)",
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help="default 40 (--quick 20), early stopping decides",
    )
    parser.add_argument(
        "--patience", type=int, default=6, help="epochs without a better validation score"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _user_data(args):
    if args.dataset:
        from examples import extract_embeddings

        path = os.path.join(
            args.output,
            "embeddings",
            f"{args.dataset}-{args.model}{'-mock' if args.mock_data else ''}.npz",
        )
        if not os.path.exists(path):
            extract_embeddings.main(
                [
                    "--dataset",
                    args.dataset,
                    "--model",
                    args.model,
                    "--weights",
                    args.weights,
                    "--image-size",
                    str(args.image_size),
                    "--output",
                    path,
                    "--verbose",
                    "0",
                ]
                + (["--mock-data", str(args.mock_data)] if args.mock_data else [])
            )
        args.embeddings = path
    user, meta = load_user_embeddings(args.embeddings)
    return user, meta


def main(argv=None):
    args = build_parser().parse_args(argv)
    losses = [v.strip() for v in args.losses.split(",") if v.strip()]
    unknown = [v for v in losses if v not in study.LOSS_NAMES]
    if not losses or unknown:
        raise common.ExampleError(
            f"--losses {args.losses!r}: unknown {', '.join(unknown) or '(empty)'}; "
            f"choose out of {', '.join(study.LOSS_NAMES)}."
        )
    if "ce" not in losses:
        losses.insert(0, "ce")  # the reference of every comparison
    if args.embeddings and args.dataset:
        raise common.ExampleError("Pass either --dataset or --embeddings, not both.")
    user_kind = bool(args.embeddings or args.dataset)
    seeds = list(range(args.seeds or (2 if args.quick else 3 if user_kind else 5)))
    output = args.output
    trainer_config = study.TrainerConfig(
        batch_size=args.batch_size,
        patience=args.patience,
        max_epochs=args.max_epochs or (20 if args.quick else 40),
    )
    grids = study.QUICK_GRIDS if args.quick else study.GRIDS[args.grid]
    if user_kind:
        user, meta = _user_data(args)
        data = Data(user)
        conditions = [
            Condition(
                f"embeddings {meta.get('model', '')} {meta.get('dataset', '')}".strip(),
                None,
                args.hidden,
            )
        ]
        source = {"embeddings": args.embeddings, "meta": meta}
    else:
        data = Data()
        conditions = benchmark_conditions(args.quick, args.test_size)
        if args.conditions:
            wanted = [v.strip() for v in args.conditions.split(",") if v.strip()]
            missing = [w for w in wanted if w not in {c.name for c in conditions}]
            if missing:
                raise common.ExampleError(
                    f"--conditions: unknown {missing}; the benchmark's are "
                    f"{', '.join(c.name for c in conditions)}."
                )
            conditions = [c for c in conditions if c.name in wanted]
        source = {"benchmark": "examples.benchmark"}
    config = {
        "source": source,
        "conditions": [
            {
                "name": c.name,
                "hidden": c.hidden,
                "benchmark": dataclasses.asdict(c.benchmark) if c.benchmark else None,
            }
            for c in conditions
        ],
        "losses": losses,
        "seeds": seeds,
        "tuning_seed": TUNING_SEED,
        "grids": {loss: [s.as_dict() for s in grids[loss]] for loss in losses},
        "trainer": dataclasses.asdict(trainer_config),
        "quick": args.quick,
    }
    if args.fresh and os.path.isdir(os.path.join(output, "cells")):
        shutil.rmtree(os.path.join(output, "cells"))
    store = study.Store(output, config)
    smoke = (
        (
            "SMOKE RUN (--quick): 2 seeds, 4 conditions, a 2-setting grid. It shows that the study runs; "
            "its numbers decide nothing. The study is the default run."
        )
        if args.quick
        else None
    )
    if smoke:
        print(smoke)
    print(
        f"{len(conditions)} conditions x {len(losses)} losses x {len(seeds)} seeds, "
        f"{sum(len(grids[l]) for l in losses)} tuning runs per condition; cells in {store.root} "
        "(rerun the same command to resume)",
        flush=True,
    )
    start = time.perf_counter()
    tuned, per_seed, curves, bayes = run_study(
        conditions,
        losses,
        seeds,
        grids,
        trainer_config,
        store,
        data,
        progress_bar=not args.no_progress,
    )
    seconds = time.perf_counter() - start
    labels = study.LABELS
    summary = report.summarize(per_seed, losses)
    noise_ps = noise_ps_of(conditions)
    verdicts = report.judge(per_seed, noise_ps, len(seeds)) if not user_kind else []
    table = report.markdown_table(summary, losses, labels, bayes)
    verdict_md = report.verdict_table(verdicts) if verdicts else ""

    print(f"\nChosen settings (validation split of the training data, seed {TUNING_SEED}):")
    for name, rows in tuned.items():
        print(
            f"  {name}: "
            + "; ".join(
                f"{labels[l]} {study.Setting.from_dict(v['chosen']).describe()}"
                for l, v in rows.items()
            )
        )
    print(
        "\nTest results, mean over seeds; vs CE: paired gain with 95% t-interval (points; candidates in classes)"
    )
    print(table)
    if verdict_md:
        print(f"\nVerdicts per paper claim ({len(seeds)} paired seeds):")
        print(verdict_md)
    if smoke:
        print("\n" + smoke)

    title = f"{len(seeds)} paired seeds" + (" (smoke run)" if args.quick else "")
    report.plot_gain_vs_p(
        os.path.join(output, "gain_vs_p.png"), per_seed, noise_ps, losses, labels, title
    )
    k_conditions = [
        c.name
        for c in conditions
        if c.name in ("clean", "superclass p=0.8", "block p=0.8", "complex/linear", "complex/MLP")
    ] or [conditions[0].name]
    report.plot_accuracy_vs_k(
        os.path.join(output, "accuracy_vs_k.png"), curves, k_conditions, losses, labels, bayes
    )
    report.plot_candidates(os.path.join(output, "candidates.png"), summary, losses, labels)
    with open(os.path.join(output, "table.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(output, "verdicts.md"), "w") as f:
        f.write(verdict_md + "\n")
    with open(os.path.join(output, "gains.md"), "w") as f:
        f.write(report.gains_table(summary, losses, labels) + "\n")
    with open(os.path.join(output, "settings.md"), "w") as f:
        f.write(report.settings_table(tuned, losses, labels) + "\n")
    with open(os.path.join(output, "tuned_settings.json"), "w") as f:
        json.dump(tuned, f, indent=1)
    command = "python -m examples.compare_losses " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    payload = {
        "command": command.strip(),
        "config": config,
        "seconds": round(seconds, 1),
        "tuned": tuned,
        "summary": summary,
        "verdicts": verdicts,
        "bayes_limit": bayes,
        "per_seed": per_seed,
    }
    with open(os.path.join(output, "results.json"), "w") as f:
        json.dump(payload, f, indent=1, default=float)
    print(
        f"\nWrote {output}/results.json, table.md, gains.md, verdicts.md, settings.md, tuned_settings.json, gain_vs_p.png, "
        f"accuracy_vs_k.png, candidates.png ({seconds / 60:.1f} min)"
    )
    return payload


if __name__ == "__main__":
    common.run(main)
