"""The main job: when does each top-k loss beat cross-entropy? A small replication study.

    python -m examples.compare_losses                  # the embedded benchmark, 5 paired seeds (README's numbers)
    python -m examples.compare_losses --quick          # a smoke run: 2 seeds, 6 conditions, a small grid
    python -m examples.compare_losses --embeddings emb.npz     # your features (examples.extract_embeddings)
    python -m examples.compare_losses --dataset cifar100 --model ResNet50 --weights imagenet  # embeds, then the same
    python -m examples.compare_losses --protocol early # one protocol only (default: both)

The embedded benchmark (`examples.benchmark`) has the papers' structure: 100
classes in 20 superclasses of 5, from a known distribution (so the Bayes limit
is known). Its conditions: training-label noise within superclasses and within
blocks of 5 label ids (Berrada et al.) at p = 0.4 and 0.8, few and many
training examples, multi-modal classes too complex for a linear head (Sawada
et al.), also with a small MLP, and long-tailed training counts (a power law
from 150 down to 3 examples per class, a balanced test set). A linear head on
the features is the papers' ImageNet protocol (Petersen et al.); a 256-unit
MLP head, which can memorise noisy labels, runs the clean and noisy conditions
again (their networks trained from scratch).

Two protocols from the same training runs (Adam, its rate on a cosine over the
condition's epoch budget, 4x the epoch early stopping picks for CE in a pilot):
*early stopping* evaluates the epoch picked on a validation split of the
*training* data; the *fixed schedule* (the papers' protocol) evaluates the
model after the last epoch, with no selection by epoch. Every loss, CE
included, is tuned per protocol on that split with the same budget (4 runs;
`examples.study.ARMS`), widened where the chosen rate sits on the grid's edge.
The newer losses (calibrated, noised and long-tail top-k hinges, Lapin et al.'s
alpha/beta hinges and truncated entropy, TopKCrossEntropy with LapSum) run only
where they decide something within the run's time (their `Arm.conditions`): all
on the long-tailed condition, the noised hinge also under block noise at p = 0.8,
the calibrated hinge also on clean labels; the verdicts add their plain gains
over CE on the long-tailed condition.
Each seed draws a new problem, sample, noise, split, initialisation and batch
order, shared by all losses, so the gains over CE are paired by seed; the
output gives 95% paired t-intervals and a verdict per paper claim and protocol.
Every finished cell is saved under ``--output/cells``: rerun the same command
to continue an interrupted study.

Writes to ``--output``: ``results.json``, ``table.md`` (every condition and loss), ``gains.md`` (the
gains over CE, one row per condition), ``verdicts.md`` (claim x protocol), ``guidance.md`` (which
loss for which situation, written from the run's numbers), ``settings.md`` and
``tuned_settings.json`` (the tuning), ``gain_vs_p.png``, ``accuracy_vs_k.png``,
``candidates.png`` (and ``*_fixed.png`` for the fixed schedule).
"""

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
import zipfile

import numpy as np

from examples import benchmark, common, report, study

# The original arms run in every condition; the newer ones where their `Arm.conditions` say.
DEFAULT_LOSSES = tuple(common.DEFAULT_LOSSES) + study.NEW_ARMS
NOISE_PS = (0.4, 0.8)
TUNING_SEED = 1000
MAX_K = 20
PROTOCOLS = ("early", "fixed")
PROTOCOL_NAMES = {"early": "early stopping", "fixed": "fixed schedule, final model"}
WIDE = 256  # hidden units of the over-parameterised MLP head (the memorising regime)
WIDE_PREFIX = f"mlp{WIDE}: "
# The fixed schedule's length: FIXED_FACTOR times the epoch early stopping picks for CE in a
# pilot run of the condition, within these bounds (default run; --quick).
FIXED_FACTOR = 4
BUDGET_BOUNDS = {False: (20, 100), True: (10, 30)}


@dataclasses.dataclass(frozen=True)
class Condition:
    name: str
    benchmark: object = None  # a benchmark.Benchmark; None: the user's data
    hidden: int = 0
    macro: bool = False  # also macro-averaged top-k over the classes (PerClassTopKAccuracy)


def benchmark_conditions(quick=False, test_size=None):
    base = benchmark.Benchmark(test_size=test_size or (5000 if quick else 20000))
    complex_ = dataclasses.replace(base, blobs=4, blob_spread=0.6)
    long_tail = Condition("long-tailed", dataclasses.replace(base, long_tail=(150, 3)), macro=True)

    def noisy(kind, p, hidden=0):
        prefix = WIDE_PREFIX if hidden else ""
        return Condition(
            f"{prefix}{kind} p={p:g}", dataclasses.replace(base, noise=kind, p=p), hidden
        )

    if quick:
        return [
            Condition("clean", base),
            noisy("superclass", 0.6),
            noisy("block", 0.6),
            Condition("complex/linear", complex_),
            long_tail,
            noisy("superclass", 0.6, WIDE),
        ]
    conditions = [Condition("clean", base)]
    for kind in ("superclass", "block"):
        conditions += [noisy(kind, p) for p in NOISE_PS]
    conditions += [
        Condition("few examples", dataclasses.replace(base, train_per_class=8)),
        Condition("many examples", dataclasses.replace(base, train_per_class=120)),
        Condition("complex/linear", complex_),
        Condition("complex/MLP", complex_, hidden=64),
        long_tail,
        Condition(WIDE_PREFIX + "clean", base, WIDE),
    ]
    for kind in ("superclass", "block"):
        conditions += [noisy(kind, p, WIDE) for p in NOISE_PS]
    return conditions


def noise_ps_of(conditions):
    """``{kind: [(p, condition name), ...]}`` including the clean condition of the head as p = 0.

    The wide head's kinds carry its prefix (``"mlp256: superclass"``).
    """
    names = {c.name for c in conditions}
    out = {}
    for prefix in ("", WIDE_PREFIX):
        for kind in ("superclass", "block", "uniform"):
            ps = [(0.0, prefix + "clean")] if prefix + "clean" in names else []
            ps += [
                (c.benchmark.p, c.name)
                for c in conditions
                if c.benchmark is not None
                and c.benchmark.noise == kind
                and c.benchmark.p > 0
                and c.name.startswith(prefix)
                and (prefix or not c.name.startswith(WIDE_PREFIX))
            ]
            if len(ps) > 1:
                out[prefix + kind] = ps
    return out


# --------------------------------------------------------------------------- #
# Data of a condition and seed
# --------------------------------------------------------------------------- #


class Data:
    """Training (with a validation split), test data and the Bayes limit, per condition and seed.

    ``get`` returns ``(train, validation, test, problem, clean)``: ``clean`` holds the clean labels
    of the training split (None for the user's data, whose clean labels are unknown).
    """

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
                problem, clean = None, None
            else:
                x, y, x_test, y_test, problem, y_clean = benchmark.make_task(
                    condition.benchmark, seed, with_clean=True
                )
                # The same split of the clean labels: the split draws from the seed alone.
                (_, clean), _ = study.split_validation(x, y_clean, validation_fraction, seed)
            train, val = study.split_validation(x, y, validation_fraction, seed)
            self._cache[key] = (train, val, (x_test, y_test), problem, clean)
        return self._cache[key]


SPLITS = ("x_train", "y_train", "x_eval", "y_eval")


def _bad(path, text):
    return common.ExampleError(f"--embeddings {path!r}: {text}")


def _read_npz(path):
    """The four arrays and the meta string of an embeddings file; a message for anything unreadable."""
    if os.path.isdir(path):
        raise _bad(path, "is a directory, not an .npz file.")
    if not os.path.exists(path):
        raise _bad(path, "no such file (write one with python -m examples.extract_embeddings).")
    if os.path.getsize(path) == 0:
        raise _bad(path, "the file is empty.")
    try:
        with np.load(path, allow_pickle=False) as f:
            if not hasattr(f, "files"):  # np.load read a bare .npy array
                raise _bad(
                    path,
                    "holds one array, not an .npz archive of x_train, y_train, x_eval, y_eval.",
                )
            missing = [k for k in SPLITS if k not in f.files]
            if missing:
                raise _bad(path, f"lacks {', '.join(missing)}: not an extract_embeddings file.")
            arrays = {k: f[k] for k in SPLITS}
            meta_text = f["meta"] if "meta" in f.files else None
    except common.ExampleError:
        raise
    except (
        ValueError
    ) as error:  # object arrays (allow_pickle=False) and text that is not an archive
        reason = (
            "holds an object array (pickled Python objects); save numeric arrays."
            if "Object arrays" in str(error)
            else "not an .npz archive (np.load found no zip archive nor .npy array in it)."
        )
        raise _bad(path, reason) from None
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise _bad(path, f"not a readable .npz archive ({error}).") from None
    return arrays, meta_text


def _parse_meta(path, meta_text):
    if meta_text is None:
        return {}
    try:
        meta = json.loads(str(meta_text))
    except (json.JSONDecodeError, TypeError) as error:
        raise _bad(path, f"its meta is not valid JSON ({error}).") from None
    if not isinstance(meta, dict):
        raise _bad(path, f"its meta is a JSON {type(meta).__name__}, not an object.")
    return meta


def _check_features(path, name, x):
    if x.dtype.kind not in "fiu" or x.dtype.kind == "b":
        raise _bad(path, f"{name} has dtype {x.dtype}; features must be numbers.")
    if x.ndim != 2:
        raise _bad(path, f"{name} has shape {x.shape}; features must be 2-D (examples, features).")
    if x.shape[0] == 0:
        raise _bad(path, f"{name} is empty (0 examples).")
    if x.shape[1] == 0:
        raise _bad(path, f"{name} has 0 features.")
    bad = ~np.isfinite(x.astype(np.float64))
    if bad.any():
        raise _bad(
            path,
            f"{name} has {int(bad.sum())} non-finite values (NaN or inf), e.g. at row "
            f"{int(np.argwhere(bad)[0][0])}.",
        )


def _check_labels(path, name, y, rows):
    if y.dtype.kind not in "fiu":
        raise _bad(path, f"{name} has dtype {y.dtype}; labels must be integer class ids.")
    if y.ndim != 1:
        raise _bad(
            path, f"{name} has shape {y.shape}; labels must be 1-D (one class id per example)."
        )
    if y.shape[0] != rows:
        raise _bad(path, f"{name} has {y.shape[0]} labels for {rows} feature rows.")
    if y.dtype.kind == "f":
        finite = np.isfinite(y)
        if not finite.all() or (y != np.round(y)).any():
            bad = y[~finite | (y != np.round(np.where(finite, y, 0)))][0]
            raise _bad(path, f"{name} holds {bad!r}, not a whole number; labels are class ids.")
    if y.min() < 0:
        raise _bad(path, f"{name} holds the negative label {y.min()!r}; class ids start at 0.")
    return y.astype(np.int64)


def arrays_digest(arrays):
    """sha256 of the arrays' names, dtypes, shapes and bytes: a cell key that changes with the data."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def load_user_embeddings(path, standardize=True):
    """``((x_train, y_train, x_eval, y_eval, num_classes), meta)`` from an extract_embeddings file.

    Every problem with the file is an ``ExampleError`` naming the file and what is wrong (the script prints
    it as one ``error:`` line and exits with status 2). ``meta["sha256"]`` is the digest of the arrays.
    """
    arrays, meta_text = _read_npz(path)
    meta = _parse_meta(path, meta_text)
    x, xt = arrays["x_train"], arrays["x_eval"]
    _check_features(path, "x_train", x)
    _check_features(path, "x_eval", xt)
    if x.shape[1] != xt.shape[1]:
        raise _bad(
            path,
            f"x_train has {x.shape[1]} features per example and x_eval {xt.shape[1]}; "
            "both splits need the same width.",
        )
    y = _check_labels(path, "y_train", arrays["y_train"], x.shape[0])
    yt = _check_labels(path, "y_eval", arrays["y_eval"], xt.shape[0])
    largest = int(max(y.max(), yt.max()))
    if "num_classes" in meta:
        num_classes = meta["num_classes"]
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise _bad(path, f"meta num_classes is {num_classes!r}; expected an integer >= 2.")
        if largest >= num_classes:
            raise _bad(
                path,
                f"holds the label {largest}, out of range for meta num_classes = {num_classes} "
                f"(ids 0..{num_classes - 1}).",
            )
    else:
        num_classes = largest + 1
    if len(np.unique(y)) < 2:
        raise _bad(
            path, f"y_train has one class only ({int(y[0])}); a classifier needs at least two."
        )
    if len(y) < 5:
        raise _bad(
            path, f"y_train has {len(y)} examples; the study needs at least 5 (a validation split)."
        )
    x, xt = x.astype(np.float32), xt.astype(np.float32)
    if (
        standardize
    ):  # with the training statistics: one learning-rate grid fits any embedding's scale
        mean, std = x.mean(0), x.std(0) + 1e-6
        x, xt = (x - mean) / std, (xt - mean) / std
    meta = {**meta, "sha256": arrays_digest(arrays)}
    return (x, y.astype(np.int32), xt, yt.astype(np.int32), num_classes), meta


# --------------------------------------------------------------------------- #
# Cells
# --------------------------------------------------------------------------- #


SET_COVERAGES = (0.99,)  # conformal sets cost a third of a second each on 20,000 examples


def evaluate_scores(scores, labels, num_classes, macro=False):
    """Top-k accuracy curve, candidates for each coverage, conformal (APS) set sizes at 99%.

    ``macro``: also ``macro1``/``macro5``, top-1/top-5 averaged over the classes
    (``keras_topk.metrics.PerClassTopKAccuracy``).
    """
    ranks = study.label_ranks(scores, labels)
    curve = study.accuracy_at_k(ranks, max(num_classes, MAX_K))  # 1.0 from k = num_classes on
    out = {"curve": curve[:MAX_K], "top1": curve[0], "top5": curve[4], "top10": curve[9]}
    if macro:
        import keras_topk

        for k in (1, 5):
            metric = keras_topk.metrics.PerClassTopKAccuracy(k=k, num_classes=num_classes)
            metric.update_state(labels, scores)
            out[f"macro{k}"] = float(metric.result())
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
    for cov in SET_COVERAGES:
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


def epoch_budget(pilot_epoch, quick=False):
    """The fixed schedule's length from the epoch early stopping picked for CE in the pilot run."""
    low, high = BUDGET_BOUNDS[bool(quick)]
    return int(min(high, max(low, FIXED_FACTOR * pilot_epoch)))


def evaluate_model(trainer, params, condition, data, seed, num_classes):
    """Test metrics of one trained head, and its training accuracy (memorisation)."""
    train, _, (x_test, y_test), _, clean = data.get(condition, seed)
    out = evaluate_scores(trainer.forward(params, x_test), y_test, num_classes, condition.macro)
    ranks = study.label_ranks(trainer.forward(params, train[0]), train[1])
    out["train_top1"] = float(np.mean(ranks < 1))  # against the (noisy) training labels
    if clean is not None:
        clean_top1 = float(np.mean(study.label_ranks(trainer.forward(params, train[0]), clean) < 1))
        out["train_top1_clean"] = clean_top1
        # Memorisation: how far the head fits the noisy labels beyond the true ones, on the same examples.
        out["memorisation"] = out["train_top1"] - clean_top1
    return out


def _arms_in(condition, losses):
    """The losses that run in ``condition``: an arm's ``conditions`` limit it on the benchmark."""
    if condition.benchmark is None:
        return list(losses)
    return [
        loss for loss in losses if loss not in study.ARM or study.ARM[loss].runs_in(condition.name)
    ]


SNAPSHOT = {"early": "early", "fixed": "final"}  # the parameters each protocol evaluates
TUNING_SCORE = {"early": "validation_score", "fixed": "final_validation_score"}


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
    protocols=PROTOCOLS,
    quick=False,
    widen_steps=2,
):
    """Tunes every loss per condition and protocol, then trains every (condition, loss, seed).

    One training run serves both protocols: Adam's rate follows a cosine decay over the
    condition's epoch budget; *early stopping* evaluates the parameters of the epoch it picks on
    the validation split (patience as configured), the *fixed schedule* the parameters after the
    last epoch. Tuning picks each protocol's setting on the validation split: early stopping by
    its best epoch's score, the fixed schedule by the final epoch's score (never the epoch).
    A chosen learning rate on the edge of its grid gets up to ``widen_steps`` more rates beyond
    it (`study.tune_widening`). Returns ``(tuned, per_seed, curves, bayes, budgets)``, the first
    three keyed by protocol.
    """
    protocols = tuple(p for p in PROTOCOLS if p in protocols)
    total = sum(
        sum(len(grids[loss]) + len(seeds) for loss in _arms_in(condition, losses)) + 1
        for condition in conditions
    )
    total += sum(len(seeds) for c in conditions if c.benchmark is not None)
    progress = Progress(total, progress_bar)
    tuned = {p: {} for p in protocols}
    per_seed = {p: {} for p in protocols}
    curves = {p: {} for p in protocols}
    bayes, budgets = {}, {}
    for condition in conditions:
        num_classes = data.num_classes(condition)
        # The pilot: CE at a middle rate, constant, stopped early; the budget follows from its epoch.
        pilot_config = dataclasses.replace(
            trainer_config, hidden=condition.hidden, lr_schedule="constant", run_to_end=False
        )
        pilot = store.get("pilot", condition.name)
        if pilot is None:
            train, val, _, _, _ = data.get(condition, TUNING_SEED)
            _, info = trainer_factory(pilot_config, num_classes).fit(
                study.Setting.of("ce", 0.01), train, val, TUNING_SEED
            )
            pilot = store.put(info, "pilot", condition.name)
        progress.update(f"{condition.name}: pilot (CE stopped at epoch {pilot['epoch']})")
        budget = epoch_budget(pilot["epoch"], quick)
        budgets[condition.name] = {"pilot_epoch": pilot["epoch"], "epochs": budget}
        trainer = trainer_factory(
            dataclasses.replace(
                trainer_config,
                hidden=condition.hidden,
                max_epochs=budget,
                lr_schedule="cosine",
                run_to_end="fixed" in protocols,
            ),
            num_classes,
        )
        for p in protocols:
            tuned[p][condition.name], per_seed[p][condition.name] = {}, {}
            curves[p][condition.name] = {}
        for loss in _arms_in(condition, losses):
            seen = {}

            def tuning_cell(setting):
                if setting not in seen:
                    key = (
                        "tune",
                        condition.name,
                        loss,
                        json.dumps(setting.as_dict(), sort_keys=True),
                    )
                    cell = store.get(*key)
                    if cell is None:
                        train, val, _, _, _ = data.get(condition, TUNING_SEED)
                        cell = store.put(trainer.fit(setting, train, val, TUNING_SEED)[1], *key)
                    seen[setting] = cell
                    progress.update(f"{condition.name}: tuning {loss} {setting.describe()}")
                return seen[setting]

            chosen = {}
            for p in protocols:
                best, grid, scores, added = study.tune_widening(
                    list(grids[loss]), lambda s: tuning_cell(s)[TUNING_SCORE[p]], widen_steps
                )
                chosen[p] = best
                tuned[p][condition.name][loss] = {
                    "chosen": best.as_dict(),
                    "grid": [{**s.as_dict(), "validation_score": v} for s, v in zip(grid, scores)],
                    "widened": [s.as_dict() for s in added],
                }
            runs = {p: [] for p in protocols}
            for seed in seeds:
                for setting in dict.fromkeys(chosen.values()):  # a setting both chose runs once
                    wanted = [p for p in protocols if chosen[p] == setting]
                    key = (
                        "run",
                        condition.name,
                        loss,
                        seed,
                        json.dumps(setting.as_dict(), sort_keys=True),
                    )
                    cell = store.get(*key)
                    if cell is None or any(p not in cell for p in wanted):
                        train, val, _, _, _ = data.get(condition, seed)
                        snapshots, info = trainer.fit(setting, train, val, seed)
                        cell = {"info": info}
                        for p in wanted:
                            cell[p] = evaluate_model(
                                trainer, snapshots[SNAPSHOT[p]], condition, data, seed, num_classes
                            )
                            cell[p]["epoch"] = info["epoch"] if p == "early" else info["epochs_run"]
                        store.put(cell, *key)
                    for p in wanted:
                        runs[p].append({**cell[p], "epochs_run": cell["info"]["epochs_run"]})
                progress.update(f"{condition.name}: {loss} seed {seed}")
            for p in protocols:
                per_seed[p][condition.name][loss] = runs[p]
                curves[p][condition.name][loss] = [r["curve"] for r in runs[p]]
        if condition.benchmark is not None:
            limits = []
            for seed in seeds:
                cell = store.get("bayes", condition.name, seed)
                if cell is None:
                    _, _, (x_test, _), problem, _ = data.get(condition, seed)
                    cell = store.put(
                        {"curve": benchmark.bayes_accuracy_at_k(problem, x_test, MAX_K)},
                        "bayes",
                        condition.name,
                        seed,
                    )
                progress.update(f"{condition.name}: Bayes limit seed {seed}", worked=False)
                limits.append(cell["curve"])
            bayes[condition.name] = np.mean(limits, axis=0).tolist()
    return tuned, per_seed, curves, bayes, budgets


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
        help="a smoke run (2 seeds, 6 conditions, 2 settings per loss): checks that it works, decides nothing",
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
        "--protocol",
        choices=["early", "fixed", "both"],
        default="both",
        help="early: evaluate the epoch early stopping picks on the validation split; fixed: train "
        "the whole schedule and evaluate the final model (the papers' protocol); both (default) "
        "from the same runs",
    )
    parser.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help="of the pilot run that sets each condition's epoch budget (default 40, --quick 20)",
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
    protocols = PROTOCOLS if args.protocol == "both" else (args.protocol,)
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
                macro=True,
            )
        ]
        # Keyed by the arrays' digest (meta["sha256"]), not the path: a rewritten file gets new cells.
        source = {"meta": meta}
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
        "protocols": list(protocols),
        "budget": {"factor": FIXED_FACTOR, "bounds": BUDGET_BOUNDS[bool(args.quick)]},
        "quick": args.quick,
    }
    if args.fresh and os.path.isdir(os.path.join(output, "cells")):
        shutil.rmtree(os.path.join(output, "cells"))
    store = study.Store(output, config)
    smoke = (
        (
            f"SMOKE RUN (--quick): 2 seeds, {len(conditions)} conditions, a 2-setting grid. It shows "
            "that the study runs; its numbers decide nothing. The study is the default run."
        )
        if args.quick
        else None
    )
    if smoke:
        print(smoke)
    print(
        f"{len(conditions)} conditions x {len(losses)} losses x {len(seeds)} seeds, protocols: "
        f"{', '.join(PROTOCOL_NAMES[p] for p in protocols)}; "
        f"{sum(len(grids[l]) for c in conditions for l in _arms_in(c, losses))} tuning runs "
        f"(each arm in its conditions); cells in {store.root} "
        "(rerun the same command to resume)",
        flush=True,
    )
    start = time.perf_counter()
    tuned, per_seed, curves, bayes, budgets = run_study(
        conditions,
        losses,
        seeds,
        grids,
        trainer_config,
        store,
        data,
        progress_bar=not args.no_progress,
        protocols=protocols,
        quick=args.quick,
        widen_steps=0 if args.quick else 2,  # a quick grid has 2 rates: every choice is an edge
    )
    seconds = time.perf_counter() - start
    labels = study.LABELS
    noise_ps = noise_ps_of(conditions)
    summary = {p: report.summarize(per_seed[p], losses) for p in protocols}
    verdicts = (
        {p: report.judge(per_seed[p], noise_ps, len(seeds)) for p in protocols}
        if not user_kind
        else {}
    )
    tables = {p: report.markdown_table(summary[p], losses, labels, bayes) for p in protocols}
    gains = {p: report.gains_table(summary[p], losses, labels) for p in protocols}
    verdict_md = report.verdict_table_by_protocol(verdicts, PROTOCOL_NAMES) if verdicts else ""
    settings_md = report.settings_table_by_protocol(tuned, losses, labels, PROTOCOL_NAMES, budgets)

    print(
        f"\nEpoch budgets of the fixed schedule ({FIXED_FACTOR} x CE's early-stopping epoch in a pilot):"
    )
    print(
        "  "
        + "; ".join(f"{n}: {b['epochs']} (pilot {b['pilot_epoch']})" for n, b in budgets.items())
    )
    for p in protocols:
        print(
            f"\nChosen settings, {PROTOCOL_NAMES[p]} (validation split of the training data, seed {TUNING_SEED}):"
        )
        for name, rows in tuned[p].items():
            print(
                f"  {name}: "
                + "; ".join(
                    f"{labels[l]} {study.Setting.from_dict(v['chosen']).describe()}"
                    + (" (grid widened)" if v["widened"] else "")
                    for l, v in rows.items()
                )
            )
    for p in protocols:
        print(
            f"\nTest results, {PROTOCOL_NAMES[p]}: mean over seeds; vs CE: paired gain with 95% "
            "t-interval (points; candidates in classes; memorisation: training top-1 on the noisy "
            "labels minus on the clean ones, points)"
        )
        print(tables[p])
    if verdict_md:
        print(f"\nVerdicts per paper claim and protocol ({len(seeds)} paired seeds):")
        print(verdict_md)
    if smoke:
        print("\n" + smoke)

    title = f"{len(seeds)} paired seeds" + (" (smoke run)" if args.quick else "")
    plots = []
    k_conditions = [
        c.name
        for c in conditions
        if c.name
        in (
            "clean",
            "superclass p=0.8",
            "block p=0.8",
            "complex/linear",
            WIDE_PREFIX + "block p=0.8",
        )
    ] or [conditions[0].name]
    for p in protocols:
        suffix = "" if p == protocols[0] else f"_{p}"
        ptitle = f"{PROTOCOL_NAMES[p]}, {title}"
        written = [
            report.plot_gain_vs_p(
                os.path.join(output, f"gain_vs_p{suffix}.png"),
                per_seed[p],
                noise_ps,
                losses,
                labels,
                ptitle,
            ),
            report.plot_accuracy_vs_k(
                os.path.join(output, f"accuracy_vs_k{suffix}.png"),
                curves[p],
                k_conditions,
                losses,
                labels,
                bayes,
            ),
            report.plot_candidates(
                os.path.join(output, f"candidates{suffix}.png"), summary[p], losses, labels
            ),
        ]
        plots += [os.path.basename(path) for path in written if path]  # None: nothing to plot

    def sections(texts):
        return "\n\n".join(f"### {PROTOCOL_NAMES[p].capitalize()}\n\n{texts[p]}" for p in protocols)

    with open(os.path.join(output, "table.md"), "w") as f:
        f.write(sections(tables) + "\n")
    with open(os.path.join(output, "verdicts.md"), "w") as f:
        f.write(verdict_md + "\n")
    with open(os.path.join(output, "gains.md"), "w") as f:
        f.write(sections(gains) + "\n")
    with open(os.path.join(output, "settings.md"), "w") as f:
        f.write(settings_md + "\n")
    with open(os.path.join(output, "tuned_settings.json"), "w") as f:
        json.dump(tuned, f, indent=1)
    command = "python -m examples.compare_losses " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    payload = {
        "command": command.strip(),
        "config": config,
        "embeddings": args.embeddings,
        "seconds": round(seconds, 1),
        "protocols": list(protocols),
        "budgets": budgets,
        "tuned": tuned,
        "summary": summary,
        "verdicts": verdicts,
        "bayes_limit": bayes,
        "per_seed": per_seed,
    }
    with open(os.path.join(output, "results.json"), "w") as f:
        json.dump(payload, f, indent=1, default=float)
    with open(os.path.join(output, "guidance.md"), "w") as f:
        f.write(report.guidance(json.loads(json.dumps(payload, default=float)), labels) + "\n")
    print(
        f"\nWrote {output}/results.json, table.md, gains.md, verdicts.md, settings.md, guidance.md, "
        f"tuned_settings.json, {', '.join(plots)} ({seconds / 60:.1f} min)"
    )
    return payload


if __name__ == "__main__":
    common.run(main)
