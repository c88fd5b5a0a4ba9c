"""The comparison engine of compare_losses and train_head: one model, every loss, several seeds.

For each loss the model is compiled once and re-initialised for every seed
(same initial weights, data and batch order for every loss at a given seed),
so the gains against cross-entropy are paired by seed.
"""

import dataclasses
import json
import os
import time

import keras
import numpy as np

import keras_topk
from examples import data, loss_factory, models, reporting, synthetic, training

TABLE_KS = (1, 2, 5)


def _hidden(text):
    try:
        return tuple(int(v) for v in str(text or "").split(",") if v.strip())
    except ValueError:
        raise data.ExampleError(f"--hidden {text!r}: expected comma-separated integers, e.g. 128,128") from None


class Source:
    """Training and test data of one seed, and a model builder."""

    def __init__(self, args, kind):
        self.args, self.kind = args, kind
        if kind == "embeddings":
            (self.x_train, self.y_train, self.x_test, self.y_test,
             self.num_classes, meta) = load_embeddings(args.embeddings)
            self.description = f"embeddings {args.embeddings} ({meta.get('model', '?')} on {meta.get('dataset', '?')})"
        elif kind == "tfds":
            self.images = data.prepare_image_data(args, models.preprocess_for(args.model), args.image_size,
                                                  args.batch_size, seed=args.seed)
            self.num_classes = self.images.num_classes
            self.description = f"tfds {args.dataset} ({'mock' if args.mock_data else 'real'}), {args.model}"
        else:
            self.num_classes = args.blobs.num_classes
            self.description = "embedded benchmark: " + ", ".join(
                f"{k}={v}" for k, v in dataclasses.asdict(args.blobs).items())
            b = args.blobs
            self.title = (f"embedded benchmark: {b.num_classes} classes x {b.blobs_per_class} blobs in {b.dim}-D, "
                          f"{b.train_size} training examples, {100 * b.label_noise:g}% label noise")
            self._tasks, self._bayes = {}, {}
        if not hasattr(self, "title"):
            self.title = self.description if len(self.description) < 100 else self.description[:97] + "..."

    def for_seed(self, seed):
        if self.kind == "synthetic":
            if seed not in self._tasks:
                x_train, y_train, x_test, y_test, blobs = synthetic.make_task(self.args.blobs, seed)
                self._tasks[seed] = (x_train, y_train), (x_test, y_test)
                self._bayes[seed] = synthetic.bayes_accuracy_at_k(blobs, x_test, self.args.max_k)
            return self._tasks[seed]
        if self.kind == "embeddings":
            return (self.x_train, self.y_train), (self.x_test, self.y_test)
        return self.images.train, self.images.eval

    def build_model(self):
        if self.kind == "tfds":
            return models.build_classifier(self.args.model, self.args.weights, self.args.image_size,
                                           self.num_classes)
        dim = self.x_train.shape[1] if self.kind == "embeddings" else self.args.blobs.dim
        return models.build_mlp(dim, self.num_classes, _hidden(self.args.hidden))

    def steps_per_epoch(self):
        if self.kind == "tfds":
            return self.images.steps_per_epoch
        size = self.x_train.shape[0] if self.kind == "embeddings" else self.args.blobs.train_size
        return -(-size // self.args.batch_size)

    def bayes_reference(self):
        if self.kind != "synthetic" or not self._bayes:
            return None
        curves = np.array(list(self._bayes.values()))
        return {"k": list(range(1, self.args.max_k + 1)), "mean": curves.mean(axis=0).tolist(),
                "std": curves.std(axis=0).tolist()}


def load_embeddings(path):
    """``(x_train, y_train, x_eval, y_eval, num_classes, meta)`` from an extract_embeddings file."""
    if not os.path.exists(path):
        raise data.ExampleError(f"--embeddings {path!r}: no such file (write one with python -m examples.extract_embeddings).")
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in ("x_train", "y_train", "x_eval", "y_eval") if k not in f]
        if missing:
            raise data.ExampleError(f"--embeddings {path!r} lacks {', '.join(missing)}: not an extract_embeddings file.")
        meta = json.loads(str(f["meta"])) if "meta" in f else {}
        arrays = [f[k] for k in ("x_train", "y_train", "x_eval", "y_eval")]
    x_train, y_train, x_eval, y_eval = arrays
    num_classes = int(meta.get("num_classes", max(y_train.max(), y_eval.max()) + 1))
    return (x_train.astype("float32"), y_train.astype("int32"), x_eval.astype("float32"),
            y_eval.astype("int32"), num_classes, meta)


def _ranks(model, test):
    if isinstance(test, tuple):
        return training.label_ranks(model, *test)
    scores = model.predict(test, verbose=0)
    labels = np.concatenate([np.asarray(y) for _, y in test])
    return np.asarray(keras.ops.convert_to_numpy(keras_topk.metrics.label_rank(labels, scores)))


class Runner:
    """One compiled model per loss, re-initialised for every seed.

    Reusing the compiled model keeps its traced (and XLA-compiled) train step:
    tracing the relaxed sorting network of TopKCrossEntropy takes far longer
    than a seed's training on this benchmark.
    """

    def __init__(self, loss_name, args, source):
        self.loss_name, self.args, self.source = loss_name, args, source
        self.model = self.callbacks = self.optimizer_state = None

    def prepare(self, seed):
        keras.utils.set_random_seed(seed)
        fresh = self.source.build_model()
        if self.model is None:
            self.model = fresh
            steps = self.args.epochs * (self.source.steps_per_epoch() or 1)
            loss, self.callbacks = loss_factory.make_loss(self.loss_name, self.args, self.source.num_classes,
                                                          total_steps=steps)
            training.compile_model(self.model, loss, self.args.learning_rate, xla=self.args.xla, ks=TABLE_KS)
            self.optimizer_state = training.snapshot_optimizer(self.model)
        else:
            self.model.set_weights(fresh.get_weights())
            training.restore_optimizer(self.model, self.optimizer_state)
            loss_factory.reset_loss_state(self.model.loss)
        return self.model


def train_one(runner, args, source, seed, verbose):
    """Trains the runner's model, re-initialised for ``seed``; returns metrics, accuracy at k, history.

    The test set is evaluated ``args.curve_points`` times during training for
    the training curves (not for model selection: the final model is reported).
    """
    train, test = source.for_seed(seed)
    model = runner.prepare(seed)
    freq = max(1, args.epochs // max(1, args.curve_points))
    keras.utils.set_random_seed(seed)
    if isinstance(train, tuple):
        history = model.fit(*train, batch_size=args.batch_size, epochs=args.epochs, validation_data=test,
                            validation_batch_size=4096, validation_freq=freq,
                            callbacks=runner.callbacks, verbose=verbose, shuffle=True)
    else:
        history = model.fit(train, epochs=args.epochs, validation_data=test, validation_freq=freq,
                            callbacks=runner.callbacks, verbose=verbose, shuffle=False)
    ranks = _ranks(model, test)
    curve = training.accuracy_at_k(ranks, args.max_k)
    metrics = {f"top{k}": curve[k - 1] for k in TABLE_KS}
    logged = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    logged["epoch"] = list(range(1, args.epochs + 1))
    logged["val_epoch"] = [e for e in logged["epoch"] if e % freq == 0]
    return metrics, curve, logged


def run(args, source_kind, loss_names, command, save_models=False):
    """Trains every loss over ``args.seeds`` seeds; writes results.json, plots and table.md to ``args.output``.

    ``args`` carries the loss parameters, the training settings (epochs,
    batch_size, learning_rate, xla, seed, seeds, max_k, verbose) and the
    source's own flags. With ``save_models``, the model of each loss's last
    seed is saved as ``<output>/<loss>.keras``. Returns the summaries.
    """
    if args.max_k < max(TABLE_KS):
        raise data.ExampleError(f"--max-k must be at least {max(TABLE_KS)}.")
    os.makedirs(args.output, exist_ok=True)
    training.set_precision(args.mixed_precision)
    fit_verbose = 2 if args.verbose == 2 else 0  # 1: one line per seed; 2: also one per epoch
    seeds = [args.seed + i for i in range(args.seeds)]

    with data.maybe_mock_data(args.mock_data):
        source = Source(args, source_kind)
        print(f"{source.description}\nlosses: {', '.join(loss_names)}; seeds {seeds}; {args.epochs} epochs, "
              f"batch {args.batch_size}, Adam lr {args.learning_rate:g}", flush=True)
        per_seed, curves, histories, timings = {}, {}, {}, {}
        for loss_name in loss_names:
            key = loss_factory.LOSS_KEYS[loss_name]
            per_seed[key], curves[key], histories[key] = [], [], []
            runner = Runner(loss_name, args, source)
            start = time.perf_counter()
            for seed in seeds:
                t0 = time.perf_counter()
                metrics, curve, history = train_one(runner, args, source, seed, fit_verbose)
                per_seed[key].append(metrics)
                curves[key].append(curve)
                histories[key].append(history)
                print(f"  {key:<20} seed {seed}: " + "  ".join(
                    f"top-{k} {100 * metrics[f'top{k}']:.2f}%" for k in TABLE_KS) +
                    f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
            timings[key] = time.perf_counter() - start
            if save_models:
                runner.model.save(os.path.join(args.output, f"{key}.keras"))
            keras.backend.clear_session()

    summaries = {key: reporting.summarize(runs) for key, runs in per_seed.items()}
    reporting.add_paired_gains(summaries, per_seed)
    k_axis = list(range(1, args.max_k + 1))
    curve_summary = {}
    for key, runs in curves.items():
        runs = np.array(runs)
        entry = {"k": k_axis, "mean": runs.mean(axis=0).tolist(), "std": runs.std(axis=0).tolist()}
        if "cross_entropy" in curves and key != "cross_entropy":
            diffs = 100 * (runs - np.array(curves["cross_entropy"]))
            entry["diff_mean"] = diffs.mean(axis=0).tolist()
            entry["diff_std"] = diffs.std(axis=0).tolist()
        curve_summary[key] = entry
    bayes = source.bayes_reference()
    reference = reference_curves = None
    if bayes:
        reference = {"bayes_limit": {f"top{k}": bayes["mean"][k - 1] for k in TABLE_KS}}
        reference_curves = {"Bayes limit": bayes}

    table = reporting.format_table(summaries, TABLE_KS, reference=reference)
    config = {
        "source": source.description,
        "losses": loss_names,
        "seeds": seeds,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "hidden": args.hidden if source_kind != "tfds" else None,
        "quick": getattr(args, "quick", False),
        "seconds_per_loss": {k: round(v, 1) for k, v in timings.items()},
        "command": command,
    }
    reporting.write_results(args.output, summaries, per_seed=per_seed, config=config,
                            reference=reference, curves=curve_summary, reference_curves=reference_curves,
                            training_curves=reporting.mean_test_curves(histories))
    reporting.plot_accuracy_vs_k(os.path.join(args.output, "accuracy_vs_k.png"), curve_summary,
                                 reference=reference_curves, title=source.title)
    reporting.plot_training_curves(os.path.join(args.output, "training_curves.png"), histories)
    with open(os.path.join(args.output, "table.md"), "w") as f:
        f.write(table + "\n")
    print("\nTest accuracy, mean ± std over seeds (gain vs CE: paired by seed)\n" + table)
    print(f"\nWrote {args.output}/results.json, accuracy_vs_k.png, training_curves.png, table.md")
    return summaries
