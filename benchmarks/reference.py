"""keras-topk next to the PyTorch reference implementations, on the same inputs, in the same process.

The reference is ``difftopk`` (``TopKCrossEntropyLoss``; ``smooth_topk.SmoothHardTopKLoss``,
its port of the smooth top-k SVM) on PyTorch CPU with as many threads as
cores. Its sparse networks (splitter_selection, bitonic) run at their best on
torch-sparse (``torch_sparse.spmm``), which has no wheel for this torch:
``benchmarks/build_torch_sparse.sh`` builds it from source. Without it they run
through difftopk's own dense executor (tests/references/difftopk_reference.py),
which computes the same numbers with dense (b, n, n) layer matrices and is far
slower. Every row says which path ran ("sparse" or "dense"). Skipped when torch
or difftopk is missing.
"""

import contextlib
import io
import os

import numpy as np

from benchmarks import cases as grid
from benchmarks import timing


def available():
    try:
        from tests.references import difftopk_reference
    except ImportError:
        return False
    return difftopk_reference.available()


def reference_grid(quick=False):
    """(case, why not run) pairs: keras-topk case and its reference."""
    if quick:
        b, n = 16, 40
        return [
            (grid.topk_ce("reference", b, n, m=8), None),
            (grid.topk_ce("reference", b, n, method="bitonic", m=None), None),
            (grid.smooth_svm("reference", b, n, k=3), None),
        ]
    b, n = grid.IMAGENET["batch"], grid.IMAGENET["classes"]
    out = [(grid.topk_ce("reference", b, n, method=method), None) for method in grid.METHODS]
    # Without torch-sparse the reference's dense executor cannot rank all 1000 classes.
    too_big = (
        None
        if sparse_available()
        else "reference not run: its dense executor holds (b, n, n) = 512 x 1000 x 1000 float32 "
        "matrices (2 GB) per layer (its sparse path needs torch-sparse)"
    )
    for method in ("splitter_selection", "bitonic"):
        out.append((grid.topk_ce("reference", b, 100, method=method, m=None), None))
        out.append((grid.topk_ce("reference", b, n, method=method, m=None), too_big))
    out.append((grid.smooth_svm("reference", b, n, k=5, tau=1.0), None))
    out.append((grid.smooth_svm("reference", b, 100, k=5, tau=1.0), None))
    return out


def sparse_available():
    """Whether difftopk can run its sparse networks (torch-sparse importable)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import torch_sparse  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def reference_path(case):
    """ "sparse" or "dense" for difftopk's sorting networks; "-" where no network runs."""
    p = dict(case.params)
    if case.loss != "topk_cross_entropy" or p["method"] not in ("bitonic", "splitter_selection"):
        return "-"
    return "sparse" if sparse_available() else "dense"


def _torch_loss(case):
    import torch

    from tests.references import difftopk_reference

    p = dict(case.params)
    if case.loss == "topk_cross_entropy":
        if reference_path(case) == "sparse":
            with contextlib.redirect_stdout(io.StringIO()):
                from difftopk import losses as dl

                loss = dl.TopKCrossEntropyLoss(
                    p["method"],
                    1.0,
                    list(p["p_k"]),
                    case.classes,
                    m=p["m"],
                    distribution="logistic_phi",
                    art_lambda=0.5,
                    top1_mode="sm",
                )
        else:
            loss = difftopk_reference.reference_loss(
                case.classes, p["p_k"], p["method"], 1.0, "logistic_phi", 0.5, p["m"], "sm"
            )
        return lambda x, y: loss(x, y)
    if case.loss == "smooth_topk_svm":
        with contextlib.redirect_stdout(io.StringIO()):
            from difftopk import smooth_topk
        module = smooth_topk.SmoothHardTopKLoss(case.classes, p["k"], p["tau"])
        return lambda x, y: module(x, y)
    if case.loss == "cross_entropy":
        return torch.nn.functional.cross_entropy
    raise ValueError(case.loss)


def _torch_step(loss, scores, labels):
    import torch

    y = torch.tensor(labels, dtype=torch.long)

    def step():
        x = torch.tensor(scores, requires_grad=True)
        value = loss(x, y)
        value.backward()
        return float(value), x.grad.numpy()

    return step


def run(quick=False, repeats=10, xla=True, log=print, rounds=3):
    """Times keras-topk (compiled with ``xla``), the reference, and both CEs, interleaved per case."""
    if not available():
        log("reference: torch or difftopk not installed; skipped")
        return {"skipped": "torch or difftopk not installed", "rows": []}
    import torch

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    rows = []
    for case, skip in reference_grid(quick):
        row = {**case.as_dict(), "xla": xla}
        if skip:
            rows.append({**row, "skip": skip})
            log(f"  {case.label} (n={case.classes}): {skip}")
            continue
        scores, labels = timing.make_inputs(case.batch, case.classes)
        x = timing.to_device(scores)
        ours = timing.loss_step(case.build(), labels, xla)
        ce = timing.loss_step(grid.baseline(case).build(), labels, xla)
        bare = timing.bare_ce_step(labels, xla)
        ref = _torch_step(_torch_loss(case), scores, labels)
        ref_ce = _torch_step(_torch_loss(grid.baseline(case)), scores, labels)
        value_ours = float(np.asarray(timing.block(ours(x))[0]))
        value_ref = ref()[0]
        load = timing.load_average()
        result = timing.lower_quartiles(
            {
                "keras_topk": lambda: timing.block(ours(x)),
                "reference": ref,
                "keras_ce": lambda: timing.block(ce(x)),
                "bare_ce": lambda: timing.block(bare(x)),
                "torch_ce": ref_ce,
            },
            calls_per_round=repeats,
            rounds=rounds,
            budget_s=5.0 if quick else 40.0,
        )
        ms = {k: v["p25_ms"] for k, v in result.items()}
        path = reference_path(case)
        try:
            timing.check_baseline(ms["keras_ce"], ms["bare_ce"])
        except timing.BaselineDisagreement as err:
            rows.append(
                {
                    **row,
                    "refused": str(err),
                    "load_average": load,
                    "reference_path": path,
                    "timings": result,
                }
            )
            log(f"  {case.label} (b={case.batch}, n={case.classes}): REFUSED: {err}")
            continue
        rows.append(
            {
                **row,
                "load_average": load,
                "reference_path": path,
                "bare_ce_ms": ms["bare_ce"],
                "keras_topk_ms": ms["keras_topk"],
                "reference_ms": ms["reference"],
                "keras_ce_ms": ms["keras_ce"],
                "torch_ce_ms": ms["torch_ce"],
                "ratio_keras_to_reference": ms["keras_topk"] / ms["reference"],
                "speedup_over_reference": ms["reference"] / ms["keras_topk"],
                "keras_topk_loss": value_ours,
                "reference_loss": value_ref,
                "timings": result,
            }
        )
        log(
            f"  {case.label} (b={case.batch}, n={case.classes}): keras-topk {ms['keras_topk']:.2f} ms, "
            f"reference ({path}) {ms['reference']:.2f} ms ({ms['reference'] / ms['keras_topk']:.1f}x faster); "
            f"CE {ms['keras_ce']:.2f} / torch {ms['torch_ce']:.2f} ms; loss {value_ours:.5f} vs {value_ref:.5f}"
        )
    return {
        "torch_threads": threads,
        "torch_version": torch.__version__,
        "torch_sparse": sparse_available(),
        "rows": rows,
    }
