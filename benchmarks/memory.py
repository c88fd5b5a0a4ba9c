"""Peak memory of one loss step, each configuration in a fresh process.

The worker (``python -m benchmarks.memory --worker CASE_JSON``) imports the
backend, allocates the inputs and reads its resident set size (the baseline);
then it compiles and runs the step once, and runs it three more times. Linux
lets a process reset its own peak RSS (``/proc/self/clear_refs``), so the peak
of the first call (compilation included) and of the steady-state calls are
each measured from the baseline. The process peak is the largest of the
three peaks (imports included): what a job's memory limit sees. (``ru_maxrss``
would not do: after fork and exec it keeps the parent's size.)
"""

import json
import os
import subprocess
import sys

from benchmarks import cases as grid

MIB = 1024.0 * 1024.0


def memory_grid(quick=False, xla=True):
    if quick:
        return [grid.cross_entropy("memory", 16, 40), grid.topk_ce("memory", 16, 40, m=8)]
    if not xla:
        return [grid.cross_entropy("memory", 512, 10450), grid.topk_ce("memory", 512, 10450)]
    b = 512
    out = []
    for n in (1000, 10450):
        out.append(grid.cross_entropy("memory", b, n))
        out.append(grid.topk_ce("memory", b, n))
        out.append(grid.topk_ce("memory", b, n, method="bitonic"))
        out.append(grid.smooth_svm("memory", b, n, k=5))
    out.append(grid.topk_ce("memory", b, 1000, m=None))
    out.append(grid.topk_ce("memory", b, 1000, method="bitonic", m=None))
    # LapSum ranking all classes (issue 24): goal <= 2x CE's memory at n = 10,450.
    out.append(grid.topk_ce("memory", b, 10450, method="lapsum", m=None))
    out.append(grid.cross_entropy("memory", 64, 100000))
    out.append(grid.topk_ce("memory", 64, 100000, method="lapsum", m=None))
    return out


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def worker(case_json, xla):
    import keras_topk  # noqa: F401
    from benchmarks import timing

    spec = json.loads(case_json)
    case = grid.Case(
        spec["group"],
        spec["loss"],
        tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in spec["params"]),
        spec["batch"],
        spec["classes"],
    )
    scores, labels = timing.make_inputs(case.batch, case.classes)
    x = timing.to_device(scores)
    step = timing.loss_step(case.build(), labels, xla)
    baseline = _status_kib("VmRSS")
    import_peak = _status_kib("VmHWM")
    resettable = _reset_peak()
    timing.block(step(x))
    first = _status_kib("VmHWM")
    if resettable:
        _reset_peak()
    for _ in range(3):
        timing.block(step(x))
    steady = _status_kib("VmHWM")
    out = {
        "baseline_mib": baseline / 1024.0,
        "first_call_peak_mib": first / 1024.0 if resettable else None,
        "steady_peak_mib": steady / 1024.0 if resettable else None,
        "import_peak_mib": import_peak / 1024.0,
        "process_peak_mib": max(import_peak, first, steady) / 1024.0,
        "peak_reset": resettable,
    }
    if resettable:
        out["first_call_increment_mib"] = out["first_call_peak_mib"] - out["baseline_mib"]
        out["steady_increment_mib"] = out["steady_peak_mib"] - out["baseline_mib"]
    out.update(compiled_buffers_mib(step, x))
    print("MEMORY_RESULT " + json.dumps(out))


def compiled_buffers_mib(step, x):
    """XLA's own buffer assignment for the compiled step (JAX with jit only), in MiB.

    The resident set size also counts what a process keeps after the first
    call (compiled code, the allocator's cached blocks, compilation's own
    peak), so its increments barely tell one step from another. XLA knows the
    step's working memory exactly: ``temp`` (intermediates, live at once at
    worst) plus ``output`` (value and gradient). Empty where it cannot be read.
    """
    if not hasattr(step, "lower"):
        return {}
    try:
        analysis = step.lower(x).compile().memory_analysis()
    except Exception:  # a backend without the analysis: the RSS figures stand alone
        return {}
    if analysis is None:
        return {}
    return {
        "xla_temp_mib": analysis.temp_size_in_bytes / MIB,
        "xla_output_mib": analysis.output_size_in_bytes / MIB,
        "xla_argument_mib": analysis.argument_size_in_bytes / MIB,
    }


def run(quick=False, xla=True, log=print, timeout_s=600, keep=None):
    rows = []
    for case in memory_grid(quick, xla):
        if keep is not None and not keep(case):
            continue
        spec = case.as_dict()
        spec["params"] = [[k, list(v) if isinstance(v, tuple) else v] for k, v in case.params]
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.memory",
            "--worker",
            json.dumps(spec),
            "--xla",
            "on" if xla else "off",
        ]
        row = {**case.as_dict(), "xla": xla}
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            )
        except subprocess.TimeoutExpired:
            rows.append({**row, "error": f"timed out after {timeout_s} s"})
            log(f"  {case.label} (n={case.classes}): timed out")
            continue
        lines = [l for l in proc.stdout.splitlines() if l.startswith("MEMORY_RESULT ")]
        if proc.returncode != 0 or not lines:
            rows.append({**row, "error": (proc.stderr or proc.stdout)[-2000:]})
            log(f"  {case.label} (n={case.classes}): failed (exit {proc.returncode})")
            continue
        result = json.loads(lines[-1][len("MEMORY_RESULT ") :])
        rows.append({**row, **result})
        log(
            f"  {case.label} (b={case.batch}, n={case.classes}): process peak {result['process_peak_mib']:.0f} MiB, "
            f"steady-state step +{result.get('steady_increment_mib', float('nan')):.0f} MiB, "
            f"first call (compiling) +{result.get('first_call_increment_mib', float('nan')):.0f} MiB"
        )
    return {"rows": rows}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", required=True)
    parser.add_argument("--xla", choices=("on", "off"), default="on")
    args = parser.parse_args()
    worker(args.worker, args.xla == "on")
