"""Benchmarks of keras-topk: loss cost against softmax CE, the PyTorch reference, a training step, memory.

    python -m benchmarks.run                      # every suite, default grid (about 20 min on 2 cores)
    python -m benchmarks.run --suite losses --xla on
    python -m benchmarks.run --quick --output /tmp/bench   # a tiny grid, seconds
    KERAS_BACKEND=jax python -m benchmarks.run --quick

Each suite writes ``OUTPUT/<suite>.json``; ``OUTPUT/results.md`` (every suite
found in OUTPUT) and ``OUTPUT/cost_vs_n.png`` are rewritten after each suite.
"""

import argparse
import os
import shlex
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_OUTPUT = os.path.join("benchmarks", "results")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--suite", choices=("losses", "reference", "train_step", "memory", "all"), default="all",
        help="what to measure (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="a tiny grid that runs in seconds (for tests)")
    parser.add_argument(
        "--xla", choices=("on", "off", "both"), default="both",
        help="compile the losses with XLA, without, or both (default: both; without XLA the loss grid "
        "runs its ImageNet and number-of-classes groups, and memory its n=10450 rows; the reference "
        "and training-step suites use XLA unless 'off')",
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds per case (default 20; 5 for train_step)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help=f"output directory (default {DEFAULT_OUTPUT})")
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    return args


def xla_modes(choice):
    return {"on": (True,), "off": (False,), "both": (True, False)}[choice]


def run_losses(args, log):
    from benchmarks import cases as grid
    from benchmarks import timing

    repeats = args.repeats or 20
    rows = []
    ce_steps = {}
    for xla in xla_modes(args.xla):
        log(f"losses, XLA {'on' if xla else 'off'}:")
        for case in grid.loss_grid(args.quick):
            if not xla and case.group not in grid.GROUPS_WITHOUT_XLA:
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
                ce_steps[size] = timing.loss_step(grid.baseline(case).build(), labels, xla)
            ce, step = ce_steps[size], timing.loss_step(case.build(), labels, xla)
            result = timing.interleaved_medians(
                {"loss": lambda: timing.block(step(x)), "ce": lambda: timing.block(ce(x))},
                repeats=repeats,
                budget_s=5.0 if args.quick else 20.0,
            )
            loss_ms, ce_ms = result["loss"]["median_ms"], result["ce"]["median_ms"]
            rows.append(
                {
                    **row,
                    "median_ms": loss_ms,
                    "ce_ms": ce_ms,
                    "ratio_to_ce": loss_ms / ce_ms,
                    "timing": result["loss"],
                    "ce_timing": result["ce"],
                }
            )
            log(f"  {case.label} (b={case.batch}, n={case.classes}): {loss_ms:.2f} ms, CE {ce_ms:.2f} ms, "
                f"x{loss_ms / ce_ms:.1f}")
    return {"repeats": repeats, "rows": rows}


def run_reference(args, log):
    from benchmarks import reference

    xla = args.xla != "off"
    log(f"reference, keras-topk with XLA {'on' if xla else 'off'}:")
    out = reference.run(args.quick, repeats=args.repeats or 20, xla=xla, log=log)
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
        rows += memory.run(args.quick, xla=xla, log=log)["rows"]
    return {"rows": rows}


RUNNERS = {"losses": run_losses, "reference": run_reference, "train_step": run_train_step, "memory": run_memory}


def main(argv=None, log=None):
    args = parse_args(argv)
    log = log or (lambda text: print(text, flush=True))
    import keras

    from benchmarks import report

    if keras.backend.backend() not in ("tensorflow", "jax"):
        raise SystemExit(f"benchmarks run under the tensorflow or jax backend, not {keras.backend.backend()!r}")
    command = "python -m benchmarks.run " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    if keras.backend.backend() != "tensorflow":
        command = f"KERAS_BACKEND={keras.backend.backend()} " + command
    suites = report.SUITES if args.suite == "all" else (args.suite,)
    written = []
    for suite in suites:
        start = time.perf_counter()
        machine = report.machine_info()
        payload = RUNNERS[suite](args, log)
        machine["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
        payload = {
            "suite": suite,
            "command": command,
            "quick": args.quick,
            "machine": machine,
            "seconds": round(time.perf_counter() - start, 1),
            **payload,
        }
        written.append(report.write_suite(args.output, suite, payload))
        report.plot_cost_vs_n(args.output)
        written.append(report.write_markdown(args.output))
        log(f"{suite}: {payload['seconds']} s -> {written[-2]}")
    log(f"wrote {os.path.join(args.output, 'results.md')}")
    return written


if __name__ == "__main__":
    main()
