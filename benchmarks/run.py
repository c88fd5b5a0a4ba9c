"""Benchmarks of keras-topk: loss cost against softmax CE, the PyTorch reference, a training step, memory.

    python -m benchmarks.run                      # every suite, default grid (TensorFlow, CPU)
    python -m benchmarks.run --suite losses --xla on
    python -m benchmarks.run --quick --output /tmp/bench   # a tiny grid, seconds
    KERAS_BACKEND=jax python -m benchmarks.run --backend jax --suite losses --xla on
    KERAS_BACKEND=jax python -m benchmarks.run --backend jax --device gpu --suite losses --xla on

The last one is the GPU command: it needs JAX (with CUDA), Keras and keras-topk, and never imports
TensorFlow. Each suite writes ``OUTPUT/<suite>[.<backend>][.<device>].json`` (no suffix for
TensorFlow on the CPU); ``OUTPUT/results.md`` (every suite found in OUTPUT) and
``OUTPUT/cost_vs_n.png`` are rewritten after each suite.

Timing protocol (benchmarks/timing.py): interleaved calls, warm-ups excluded, the lower quartile of
each, several rounds; every loss case times Keras's softmax CE and a bare fused CE op in the same
rounds, and a case whose two CE figures disagree by more than 1.5x is retried, then refused: it is
written as refused, with no ratio, and the run exits with status 3. The load average is recorded
with every row.
"""

import argparse
import os
import shlex
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_OUTPUT = os.path.join("benchmarks", "results")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--suite",
        choices=("losses", "reference", "train_step", "memory", "all"),
        default="all",
        help="what to measure (default: all)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a tiny grid that runs in seconds (for tests)"
    )
    parser.add_argument(
        "--xla",
        choices=("on", "off", "both"),
        default="both",
        help="compile the losses with XLA, without, or both (default: both; without XLA the loss grid "
        "runs its ImageNet and number-of-classes groups, and memory its n=10450 rows; the reference "
        "and training-step suites use XLA unless 'off')",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed calls per round and case (default 10, 3 rounds; 5 calls for train_step)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of --repeats interleaved calls (default 3)"
    )
    parser.add_argument(
        "--groups",
        default=None,
        help="comma-separated loss-grid groups to run (imagenet, cifar100, classes, batch, m_and_k; default all)",
    )
    parser.add_argument(
        "--classes",
        default=None,
        help="comma-separated numbers of classes: run only the loss and memory cases of these sizes (default all)",
    )
    parser.add_argument(
        "--backend",
        choices=("tensorflow", "jax"),
        default=None,
        help="Keras backend (default: KERAS_BACKEND, else tensorflow); must agree with KERAS_BACKEND if both set",
    )
    parser.add_argument(
        "--device", choices=("cpu", "gpu"), default="cpu", help="where the steps run (default cpu)"
    )
    parser.add_argument(
        "--baseline-tolerance",
        type=float,
        default=None,
        help="refuse a case whose Keras CE and bare CE op differ by more than this factor (default "
        "1.5); the tests of the output format raise it, since tiny smoke grids time microseconds",
    )
    parser.add_argument(
        "--output", default=DEFAULT_OUTPUT, help=f"output directory (default {DEFAULT_OUTPUT})"
    )
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    env = os.environ.get("KERAS_BACKEND")
    if args.backend and env and env != args.backend:
        parser.error(f"--backend {args.backend} disagrees with KERAS_BACKEND={env}")
    return args


def wanted_size(args, case):
    return not args.classes or case.classes in {int(c) for c in args.classes.split(",")}


def select_backend(name):
    """Sets the Keras backend before Keras is first imported (it reads KERAS_BACKEND once)."""
    if name is None:
        return
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != name:
            raise SystemExit(
                f"Keras was already imported with the {keras.backend.backend()} backend, not {name}"
            )
        return
    os.environ["KERAS_BACKEND"] = name


def xla_modes(choice):
    return {"on": (True,), "off": (False,), "both": (True, False)}[choice]


def time_case(step, ce, bare, x, args, attempts=3):
    """Times a loss step against Keras's CE and the bare CE op; retries, then refuses, on a CE disagreement.

    Returns ``(timings, refusal or None, ce_vs_bare)``.
    """
    from benchmarks import timing

    for attempt in range(attempts):
        result = timing.lower_quartiles(
            {
                "loss": lambda: timing.block(step(x)),
                "ce": lambda: timing.block(ce(x)),
                "bare_ce": lambda: timing.block(bare(x)),
            },
            calls_per_round=args.repeats or 10,
            rounds=args.rounds,
            budget_s=5.0 if args.quick else 30.0,
        )
        try:
            agreement = timing.check_baseline(
                result["ce"]["p25_ms"],
                result["bare_ce"]["p25_ms"],
                tolerance=args.baseline_tolerance or timing.BASELINE_TOLERANCE,
            )
        except timing.BaselineDisagreement as err:
            refusal = f"{err} (after {attempt + 1} attempts)"
            continue
        return result, None, agreement
    return result, refusal, result["ce"]["p25_ms"] / result["bare_ce"]["p25_ms"]


def run_losses(args, log):
    from benchmarks import cases as grid
    from benchmarks import timing

    rows = []
    ce_steps = {}
    for xla in xla_modes(args.xla):
        log(f"losses, XLA {'on' if xla else 'off'}:")
        for case in grid.loss_grid(args.quick):
            if not xla and case.group not in grid.GROUPS_WITHOUT_XLA:
                continue
            if args.groups and case.group not in args.groups.split(","):
                continue
            if not wanted_size(args, case):
                continue
            row = {**case.as_dict(), "xla": xla}
            if case.skip:
                rows.append({**row, "skip": case.skip})
                log(f"  {case.label} (n={case.classes}): {case.skip}")
                continue
            scores, labels = timing.make_inputs(case.batch, case.classes)
            x = timing.to_device(scores)
            size = (case.batch, case.classes, xla)
            if size not in ce_steps:
                ce_steps[size] = (
                    timing.loss_step(grid.baseline(case).build(), labels, xla),
                    timing.bare_ce_step(labels, xla),
                )
            (ce, bare), step = ce_steps[size], timing.loss_step(case.build(), labels, xla)
            load = timing.load_average()
            result, refusal, agreement = time_case(step, ce, bare, x, args)
            loss_ms, ce_ms, bare_ms = (result[k]["p25_ms"] for k in ("loss", "ce", "bare_ce"))
            row.update(
                load_average=load,
                ce_ms=ce_ms,
                bare_ce_ms=bare_ms,
                ce_vs_bare=agreement,
                timing=result["loss"],
                ce_timing=result["ce"],
                bare_ce_timing=result["bare_ce"],
            )
            if refusal:
                rows.append({**row, "refused": refusal})
                log(f"  {case.label} (b={case.batch}, n={case.classes}): REFUSED: {refusal}")
                continue
            rows.append({**row, "ms": loss_ms, "ratio_to_ce": loss_ms / ce_ms})
            log(
                f"  {case.label} (b={case.batch}, n={case.classes}): {loss_ms:.3f} ms, CE {ce_ms:.3f} ms "
                f"(bare op {bare_ms:.3f}), x{loss_ms / ce_ms:.2f}; load {load[0]}"
            )
    return {"calls_per_round": args.repeats or 10, "rounds": args.rounds, "rows": rows}


def run_reference(args, log):
    from benchmarks import reference

    xla = args.xla != "off"
    log(f"reference, keras-topk with XLA {'on' if xla else 'off'}:")
    out = reference.run(
        args.quick, repeats=args.repeats or 10, xla=xla, log=log, rounds=args.rounds
    )
    return {"xla": xla, **out}


def run_train_step(args, log):
    from benchmarks import train_step

    xla = args.xla != "off"
    log(f"train_step, jit_compile={xla}:")
    return {"xla": xla, **train_step.run(args.quick, repeats=args.repeats or 5, xla=xla, log=log)}


def run_memory(args, log):
    from benchmarks import memory

    rows = []
    for xla in xla_modes(args.xla):
        log(f"memory, XLA {'on' if xla else 'off'}:")
        rows += memory.run(args.quick, xla=xla, log=log, keep=lambda case: wanted_size(args, case))[
            "rows"
        ]
    return {"rows": rows}


RUNNERS = {
    "losses": run_losses,
    "reference": run_reference,
    "train_step": run_train_step,
    "memory": run_memory,
}


def main(argv=None, log=None):
    args = parse_args(argv)
    log = log or (lambda text: print(text, flush=True))
    select_backend(args.backend)
    import keras

    from benchmarks import report, timing

    backend = keras.backend.backend()
    if backend not in ("tensorflow", "jax"):
        raise SystemExit(f"benchmarks run under the tensorflow or jax backend, not {backend!r}")
    timing.set_device(args.device)
    command = "python -m benchmarks.run " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    if backend != "tensorflow":
        command = f"KERAS_BACKEND={backend} " + command
    suites = report.SUITES if args.suite == "all" else (args.suite,)
    written = []
    refused = []
    for suite in suites:
        start = time.perf_counter()
        machine = report.machine_info()
        machine["device"] = args.device
        payload = RUNNERS[suite](args, log)
        machine["load_average_at_end"] = timing.load_average()
        payload = {
            "suite": suite,
            "command": command,
            "quick": args.quick,
            "machine": machine,
            "seconds": round(time.perf_counter() - start, 1),
            **payload,
        }
        refused += [r for r in payload.get("rows", []) if r.get("refused")]
        name = report.suite_file(suite, backend, args.device)
        written.append(report.write_suite(args.output, name, payload))
        report.plot_cost_vs_n(args.output)
        written.append(report.write_markdown(args.output))
        log(f"{suite}: {payload['seconds']} s -> {written[-2]}")
    log(f"wrote {os.path.join(args.output, 'results.md')}")
    if refused:
        log(
            f"REFUSED {len(refused)} case(s): Keras's CE and the bare op disagreed by more than "
            f"{timing.BASELINE_TOLERANCE}x; their rows hold no ratio. Rerun on a quieter machine."
        )
        raise SystemExit(3)
    return written


if __name__ == "__main__":
    main()
