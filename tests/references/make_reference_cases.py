"""Writes the committed reference cases that tests/references/test_reference_cases.py checks.

Runs the reference implementations themselves, so that the default test run
holds keras-topk to them without PyTorch:

- ``difftopk`` 0.2.0 (Petersen et al., ICML 2022) for TopKCrossEntropy:
  ``difftopk.TopKCrossEntropyLoss`` for every method, distribution and
  ``top1_mode``, with and without ``m``, n from 2 to 1000, float32. Its sparse
  networks (``bitonic``, ``splitter_selection``) need torch-sparse, which has no
  wheel for torch 2.13; as in tests/references/difftopk_reference.py they run on
  the reference's own dense executor, built from the reference's own network
  construction (``difftopk.networks.sparse_*_network``), which gives the same
  numbers. keras-topk's network builder is not used.
- smooth-topk (Berrada et al., ICLR 2018; github.com/oval-group/smooth-topk,
  not on PyPI) for the SVMs: ``topk.svm.SmoothTopkSVM`` / ``SmoothTop1SVM``
  (smooth loss with the reference's switch to the hard loss) and
  ``MaxTopkSVM`` / ``MaxTop1SVM`` (the hard loss), in float64 and float32,
  with rows on both sides of the hard switch.

Set-up (torch 2.13.0 CPU, the two references; smooth-topk from a checkout)::

    pip install -e ".[torch,test]" && pip install --no-deps difftopk==0.2.0 diffsort==0.2.0
    git clone https://github.com/oval-group/smooth-topk /tmp/smooth-topk
    python -m tests.references.make_reference_cases --smooth-topk /tmp/smooth-topk

Writes ``tests/references/cases/topk_cross_entropy.npz`` and
``smooth_topk_svm.npz`` (compressed): for case ``i`` the arrays ``i/x`` (scores),
``i/y`` (labels), ``i/value`` and ``i/grad``; ``meta`` holds a JSON string with
the reference versions and each case's parameters.
"""

import argparse
import contextlib
import io
import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import time
import types

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
CASES_DIR = HERE / "cases"

NETWORKS = ("splitter_selection", "bitonic", "odd_even")
DISTRIBUTIONS = ("logistic", "logistic_phi", "cauchy", "reciprocal", "gaussian", "optimal")
TOP1_MODES = ("sm", "sort", "smce")


def p_k_for(n, m):
    """A p_k that the reference accepts: K < m when m is given, K <= n."""
    limit = n if m is None else m - 1
    if limit >= 5:
        return (0.2,) * 5
    if limit >= 3:
        return (0.5, 0.0, 0.5)
    if limit == 2:
        return (0.5, 0.5)
    return (1.0,)


def topk_ce_grid():
    """The parameter sets, each a dict (b rows of scores per case)."""
    cases = []
    # Every network x distribution x top1_mode, with and without m, over small n.
    small_n = (2, 3, 5, 8, 13, 16, 21)
    i = 0
    for method in NETWORKS:
        for distribution in DISTRIBUTIONS:
            for top1_mode in TOP1_MODES:
                for m in (None, 6):
                    n = small_n[i % len(small_n)] if m is None else 12
                    beta = (1.0, 0.5, 2.0)[i % 3]
                    art_lambda = (0.5, 0.25)[i % 2]
                    cases.append(
                        dict(
                            method=method,
                            distribution=distribution,
                            top1_mode=top1_mode,
                            n=n,
                            m=m,
                            inverse_temperature=beta,
                            art_lambda=art_lambda,
                            b=4,
                        )
                    )
                    i += 1
    for method in ("neuralsort", "softsort"):
        for top1_mode in TOP1_MODES:
            for m in (None, 6):
                n = small_n[i % len(small_n)] if m is None else 12
                cases.append(
                    dict(
                        method=method,
                        distribution="logistic",
                        top1_mode=top1_mode,
                        n=n,
                        m=m,
                        inverse_temperature=(1.0, 0.5, 2.0)[i % 3],
                        art_lambda=0.5,
                        b=4,
                    )
                )
                i += 1
    # n from 2 to 1000 for every method (defaults otherwise).
    sweep = [(2, None), (3, None), (7, None), (64, None), (100, 16), (257, None), (1000, 16)]
    for method in NETWORKS + ("neuralsort", "softsort"):
        for n, m in sweep:
            if method == "odd_even" and n > 100 and m is None:
                continue  # n layers of dense (n x n) matrices: minutes for the reference
            cases.append(
                dict(
                    method=method,
                    distribution="logistic_phi",
                    top1_mode="sm",
                    n=n,
                    m=m,
                    inverse_temperature=1.0,
                    art_lambda=0.5,
                    b=2 if n > 100 else 4,
                )
            )
    # All 1000 classes without m where the reference can run it: the dense
    # executor needs (n x n) matrices per network layer (tens of GB at n = 1000).
    for method in ("neuralsort", "softsort"):
        cases.append(
            dict(
                method=method,
                distribution="logistic_phi",
                top1_mode="sm",
                n=1000,
                m=None,
                inverse_temperature=1.0,
                art_lambda=0.5,
                b=2,
            )
        )
    for case in cases:
        case["p_k"] = p_k_for(case["n"], case["m"])
    return cases


def svm_grid():
    cases = []
    kinds = (("smooth", 1.0), ("smooth", 0.1), ("smooth", 0.01), ("smooth", 1e-3), ("hard", None))
    for dtype in ("float64", "float32"):
        for k in (1, 2, 5):
            for kind, tau in kinds:
                for alpha in (1.0, 0.3):
                    for rows in ("normal", "switch"):
                        if kind == "hard" and rows == "switch":
                            continue
                        n = {1: 10, 2: 20, 5: 40}[k]
                        cases.append(
                            dict(
                                kind=kind,
                                k=k,
                                tau=tau,
                                alpha=alpha,
                                dtype=dtype,
                                rows=rows,
                                n=n,
                                b=8,
                            )
                        )
    # Larger n, the default settings.
    for n in (2, 1000):
        for dtype in ("float64", "float32"):
            cases.append(
                dict(kind="smooth", k=1, tau=1.0, alpha=1.0, dtype=dtype, rows="normal", n=n, b=4)
            )
    cases.append(
        dict(kind="smooth", k=5, tau=1.0, alpha=1.0, dtype="float32", rows="normal", n=1000, b=4)
    )
    cases.append(
        dict(kind="smooth", k=5, tau=0.1, alpha=1.0, dtype="float64", rows="switch", n=1000, b=8)
    )
    return cases


def svm_rows(rng, case):
    """Scores; for "switch", rows whose gap between the k-th and (k+1)-th largest
    score lies just below, just above and far from the reference's switch
    (gap >= k * tau * log(1000))."""
    b, n, k, tau = case["b"], case["n"], case["k"], case["tau"]
    x = rng.normal(size=(b, n))
    if case["rows"] == "normal":
        return x * (1.0 if tau is None else max(1.0, 0.1 / tau))
    threshold = k * tau * math.log(1e3)
    factors = np.array([0.5, 0.99, 0.999, 1.001, 1.01, 2.0, 0.9, 1.1])[:b]
    rows = []
    for factor in factors:
        row = rng.normal(size=n) * 0.3 * threshold
        order = np.argsort(-row)
        top, rest = order[:k], order[k:]
        # the k highest sit above the rest by exactly factor * threshold
        row[top] = row[top] - row[top].min() + row[rest].max() + factor * threshold
        rows.append(row)
    return np.stack(rows)


@contextlib.contextmanager
def quiet():
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def run_topk_ce(case, seed):
    import torch

    from tests.references import difftopk_reference

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(case["b"], case["n"])).astype(np.float32)
    y = rng.integers(0, case["n"], case["b"])
    out = dict(x=x, y=y.astype(np.int64))
    # float32 as the reference runs, then the same code in float64 on the same
    # (float32-valued) inputs: its network matrices cast to float64, and float64
    # as torch's default dtype for the tensors it creates itself.
    # (Not for neuralsort: difftopk's NeuralSort builds torch.FloatTensor constants.)
    dtypes = (
        ((torch.float32, ""),)
        if case["method"] == "neuralsort"
        else ((torch.float32, ""), (torch.float64, "64"))
    )
    for dtype, suffix in dtypes:
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with quiet():
                loss = difftopk_reference.reference_loss(
                    case["n"],
                    case["p_k"],
                    case["method"],
                    case["inverse_temperature"],
                    case["distribution"],
                    case["art_lambda"],
                    case["m"],
                    case["top1_mode"],
                )
                net = getattr(loss, "top_k_net", None)
                if net is not None:
                    net.sorting_network = [
                        [a.to(dtype) for a in layer] for layer in net.sorting_network
                    ]
                scores = torch.tensor(x, dtype=dtype, requires_grad=True)
                value = loss(scores, torch.tensor(y, dtype=torch.long))
                value.backward()
        finally:
            torch.set_default_dtype(previous)
        assert value.dtype == dtype and scores.grad.dtype == dtype
        out["value" + suffix] = value.detach().numpy()
        out["grad" + suffix] = scores.grad.numpy()
    return out


def import_smooth_topk(path):
    """smooth-topk's ``topk`` package from a checkout. It imports ``range`` from
    the Python-2 compatibility package ``future``; on Python 3 that is the built-in."""
    if "future.builtins" not in sys.modules:
        try:
            import future.builtins  # noqa: F401
        except ImportError:
            future = types.ModuleType("future")
            future.builtins = types.ModuleType("future.builtins")
            future.builtins.range = range
            sys.modules["future"], sys.modules["future.builtins"] = future, future.builtins
    sys.path.insert(0, str(path))
    with quiet():
        import topk.svm
        import topk.utils
    return topk


def run_svm(case, seed, topk):
    import torch

    rng = np.random.default_rng(seed)
    dtype = case["dtype"]
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    x = svm_rows(rng, case).astype(dtype)
    y = rng.integers(0, case["n"], case["b"])
    # the label must not decide the switch rows' structure: keep it random
    n, k, tau, alpha = case["n"], case["k"], case["tau"], case["alpha"]
    with quiet():
        if case["kind"] == "hard":
            module = (
                topk.svm.MaxTop1SVM(n, alpha=alpha)
                if k == 1
                else topk.svm.MaxTopkSVM(n, alpha=alpha, k=k)
            )
        elif k == 1:
            module = topk.svm.SmoothTop1SVM(n, alpha=alpha, tau=tau)
        else:
            module = topk.svm.SmoothTopkSVM(n, alpha=alpha, tau=tau, k=k)
    module = module.to(torch_dtype)
    labels = torch.tensor(y, dtype=torch.long)
    # Per-sample values: the module on one row at a time (it averages over its batch).
    values = []
    for i in range(case["b"]):
        with quiet(), torch.no_grad():
            values.append(
                float(module(torch.tensor(x[i : i + 1], dtype=torch_dtype), labels[i : i + 1]))
            )
    scores = torch.tensor(x, dtype=torch_dtype, requires_grad=True)
    with quiet():
        mean = module(scores, labels)
        mean.backward()
    out = dict(
        x=x,
        y=y.astype(np.int64),
        value=np.asarray(values, dtype=dtype),
        grad=scores.grad.numpy().astype(dtype),
        mean=np.asarray(float(mean), dtype=dtype),
    )
    if case["kind"] == "smooth":
        with torch.no_grad():
            _, hard = topk.utils.detect_large(
                torch.tensor(x, dtype=torch_dtype), k, tau, module.thresh
            )
        out["hard"] = hard.numpy()
    out["grad_fd"] = finite_differences(module, case, x.astype(np.float64), y, topk)
    return out


def per_sample(module, case, x, y, topk):
    """The module's per-sample losses (what its forward averages), float64."""
    import torch

    if case["kind"] == "hard":
        return module.F(x, y)
    smooth, hard = topk.utils.detect_large(x, case["k"], case["tau"], module.thresh)
    out = torch.zeros(x.shape[0], dtype=x.dtype)
    if smooth.any():
        out[smooth] = module.F_s(x[smooth].clone(), y[smooth])
    if hard.any():
        out[hard] = module.F_h(x[hard].clone(), y[hard])
    return out


def finite_differences(module, case, x, y, topk):
    """d mean / d x by central differences of the reference's own forward, in
    float64 (a check on its hand-written backward, which approximates)."""
    import torch

    module = module.to(torch.float64)
    b, n = x.shape
    # the step is small against the scale of the loss's curvature (k tau), and
    # far below the rows' distance to the hard switch (0.1% of k tau log 1000)
    h = 1e-5 * case["k"] * (case["tau"] or 1.0)
    grad = np.zeros_like(x)
    with quiet(), torch.no_grad():
        for i in range(b):
            rows = np.repeat(x[i : i + 1], 2 * n, axis=0)
            rows[np.arange(n), np.arange(n)] += h
            rows[n + np.arange(n), np.arange(n)] -= h
            labels = torch.full((2 * n,), int(y[i]), dtype=torch.long)
            f = per_sample(module, case, torch.tensor(rows), labels, topk).numpy()
            grad[i] = (f[:n] - f[n:]) / (2 * h) / b
        check = per_sample(module, case, torch.tensor(x), torch.tensor(y), topk).numpy()
        full = np.mean(check)
        assert abs(full - float(module(torch.tensor(x), torch.tensor(y)))) <= 1e-12 * max(
            1.0, abs(full)
        )
    return grad


def versions(smooth_topk_path):
    import importlib.metadata

    import torch

    def dist(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    commit = None
    if smooth_topk_path is not None:
        try:
            commit = subprocess.run(
                ["git", "-C", str(smooth_topk_path), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            commit = None
    return dict(
        difftopk=dist("difftopk"),
        diffsort=dist("diffsort"),
        torch=torch.__version__,
        numpy=np.__version__,
        python=platform.python_version(),
        smooth_topk="github.com/oval-group/smooth-topk",
        smooth_topk_commit=commit,
        torch_sparse=dist("torch-sparse"),
    )


def write(path, meta, results):
    arrays = {"meta": np.array(json.dumps(meta, indent=1, sort_keys=True))}
    for i, result in enumerate(results):
        for key, value in result.items():
            arrays[f"{i}/{key}"] = np.asarray(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    print(f"wrote {path} ({len(results)} cases, {path.stat().st_size / 1024:.0f} KiB)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--smooth-topk",
        type=pathlib.Path,
        required=True,
        help="a checkout of github.com/oval-group/smooth-topk",
    )
    parser.add_argument("--output", type=pathlib.Path, default=CASES_DIR)
    parser.add_argument("--only", choices=("topk_cross_entropy", "smooth_topk_svm"))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    info = versions(args.smooth_topk)
    if args.only in (None, "topk_cross_entropy"):
        from tests.references import difftopk_reference

        if not difftopk_reference.available():
            sys.exit(
                "difftopk and torch are needed: pip install --no-deps difftopk==0.2.0 diffsort==0.2.0"
            )
        cases = topk_ce_grid()
        results = []
        for i, case in enumerate(cases):
            t0 = time.perf_counter()
            results.append(run_topk_ce(case, seed=1000 + i))
            print(
                f"{i + 1}/{len(cases)} {case['method']} n={case['n']} m={case['m']}: "
                f"{time.perf_counter() - t0:.1f} s",
                file=sys.stderr,
                flush=True,
            )
            case["network_path"] = (
                "dense executor (difftopk's sparse network, first four matrices per layer)"
                if case["method"] in ("bitonic", "splitter_selection")
                else ("dense (odd_even)" if case["method"] == "odd_even" else "-")
            )
        meta = dict(
            reference="difftopk.TopKCrossEntropyLoss",
            dtype="float32 inputs x",
            value="the reference's batch mean, float32",
            grad="d value / d x, float32",
            value64="the same code in float64 on the same x (not for neuralsort)",
            grad64="its gradient, float64",
            versions=info,
            cases=cases,
            command="python -m tests.references.make_reference_cases",
        )
        write(args.output / "topk_cross_entropy.npz", meta, results)
    if args.only in (None, "smooth_topk_svm"):
        topk = import_smooth_topk(args.smooth_topk)
        cases = svm_grid()
        results = [run_svm(case, 5000 + i, topk) for i, case in enumerate(cases)]
        meta = dict(
            reference="smooth-topk topk.svm (SmoothTopkSVM, SmoothTop1SVM, MaxTopkSVM, MaxTop1SVM)",
            value="per-sample: the module on each row alone",
            mean="the module on the batch",
            grad="d mean / d x from the module's own backward",
            grad_fd="d mean / d x by central differences of the module's forward, float64",
            hard="rows the reference computes with the hard loss (its detect_large, thresh 1e3)",
            versions=info,
            cases=cases,
            command="python -m tests.references.make_reference_cases",
        )
        write(args.output / "smooth_topk_svm.npz", meta, results)


if __name__ == "__main__":
    main()
