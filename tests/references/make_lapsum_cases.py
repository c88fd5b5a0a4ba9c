"""Writes tests/references/cases/lapsum.npz from the LapSum paper's own pure-PyTorch soft top-k.

The reference is the ``SoftTopK`` and ``LogSoftTopK`` autograd functions of the
tutorial notebooks of github.com/gmum/LapSum (Struski et al., ICML 2025, MIT;
``tutorial_notebooks/soft_topk.ipynb`` and ``log-soft_topk.ipynb``). Its
compiled extension is not on PyPI. This script reads the notebooks from a
checkout and runs their code cell that defines the function; nothing of the
reference is copied into keras-topk. It records, per case, the reference's
output ``p`` (or ``log p``) and the vector-Jacobian products of its
hand-written backward for scores, ``k`` and ``alpha``, in float64 and float32.

Quirks of the reference (the tests follow the mathematics, which agrees):

- ``descending=False`` selects the *largest* scores (``p_i = F((r_i - b) / alpha)``
  increases with ``r_i``); ``descending=True`` the smallest. The cases use False.
- ``alpha`` divides the scores: smaller ``alpha`` is closer to the hard top-k.
  (The compiled extension instead takes the sign of ``alpha`` for the direction
  and overwrites a tensor ``alpha``'s ``.data`` with ``-|alpha|``.)
- ``SoftTopK.backward`` shifts the input scores ``r`` in place by a per-row
  constant (``r.sub_(...)``); ``p`` is shift invariant, so the results are
  right but the caller's tensor changes. The script passes clones.
- In float32 it overflows once a scaled score ``r / alpha`` exceeds about 88
  (``exp`` of the unshifted sorted scores): the "one_huge" float32 cases
  (a score of 200, ``alpha`` 0.7) come out NaN. keras-topk shifts each row by
  its maximum first; the tests hold those cases to the float64 reference.
- ``k`` must be a tensor of one value per row and ``alpha`` a tensor of the
  scores' dtype.

Set-up (torch 2.x CPU; the checkout's commit is recorded in ``meta``)::

    git clone https://github.com/gmum/LapSum /tmp/LapSum
    python -m tests.references.make_lapsum_cases --lapsum /tmp/LapSum

Writes ``tests/references/cases/lapsum.npz``: for case ``i`` the arrays
``i/x`` (scores), ``i/k`` (one k per row), ``i/v`` (the upstream gradient),
``i/out``, ``i/grad_x``, ``i/grad_k``, ``i/grad_alpha``; ``meta`` is a JSON
string with the reference commit and each case's ``alpha``, ``log``, ``dtype``.
"""

import argparse
import json
import pathlib
import subprocess

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
CASES_DIR = HERE / "cases"
NOTEBOOKS = {False: "soft_topk.ipynb", True: "log-soft_topk.ipynb"}


def load_reference(checkout, log):
    """The notebook's function ``soft_top_k`` or ``log_soft_top_k``."""
    import torch

    path = pathlib.Path(checkout) / "tutorial_notebooks" / NOTEBOOKS[log]
    cells = json.loads(path.read_text())["cells"]
    name = "log_soft_top_k" if log else "soft_top_k"
    namespace = {"torch": torch, "np": np}
    exec("from math import log", namespace)
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and f"def {name}(" in source:
            exec(compile(source, str(path), "exec"), namespace)
            return namespace[name]
    raise RuntimeError(f"no `def {name}(` in {path}")


def rows_for(kind, rng, n):
    if kind == "random":
        return rng.normal(size=(4, n)) * 2.0
    if kind == "ties":
        return np.round(rng.normal(size=(4, n)), 0)
    if kind == "wide":
        return rng.normal(size=(4, n)) * 30.0
    if kind == "one_huge":
        x = rng.normal(size=(4, n))
        x[:, 0] = 200.0
        return x
    raise ValueError(kind)


def grid():
    """Each setting twice, float64 then float32 (cases 2j and 2j + 1 share their inputs)."""
    cases = []
    for log in (False, True):
        for n, kind, alpha, ks in [
            (2, "random", 0.5, (0.5, 1.0, 1.5, 0.1)),
            (7, "random", 1.0, (1.0, 2.0, 3.5, 6.0)),
            (7, "ties", 0.3, (1.0, 2.0, 3.0, 4.0)),
            (20, "random", 0.1, (1.0, 5.0, 10.0, 19.5)),
            (20, "wide", 2.0, (0.2, 3.0, 12.0, 17.0)),
            (50, "one_huge", 0.7, (1.0, 1.5, 25.0, 40.0)),
            (1000, "random", 0.05, (1.0, 5.0, 500.0, 900.0)),
        ]:
            for dtype in ("float64", "float32"):
                cases.append(dict(n=n, rows=kind, alpha=alpha, k=list(ks), log=log, dtype=dtype))
    return cases


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lapsum", required=True, help="a checkout of github.com/gmum/LapSum")
    parser.add_argument("--out", default=str(CASES_DIR / "lapsum.npz"))
    args = parser.parse_args()
    import torch

    commit = subprocess.run(
        ["git", "-C", args.lapsum, "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    functions = {log: load_reference(args.lapsum, log) for log in (False, True)}
    arrays, meta = {}, {"reference": "github.com/gmum/LapSum", "commit": commit, "cases": []}
    meta["torch"] = torch.__version__
    for i, case in enumerate(grid()):
        dtype = getattr(torch, case["dtype"])
        # The float32 and float64 cases of a setting share their inputs.
        rng = np.random.default_rng(24 + i // 2)
        # Inputs representable in float32, so that both dtypes see the same numbers.
        x = rows_for(case["rows"], rng, case["n"]).astype(np.float32).astype(np.float64)
        k = np.asarray(case["k"], dtype=np.float64)
        v = rng.normal(size=x.shape).astype(np.float32).astype(np.float64)
        r = torch.tensor(x, dtype=dtype, requires_grad=True)
        kt = torch.tensor(k, dtype=dtype, requires_grad=True)
        at = torch.tensor(case["alpha"], dtype=dtype, requires_grad=True)
        # The reference's backward shifts its input in place: give it a clone.
        out = functions[case["log"]](r.clone(), kt, at, False)
        out.backward(torch.tensor(v, dtype=dtype))
        prefix = f"{i}/"
        arrays[prefix + "x"] = np.asarray(x, dtype=case["dtype"])
        arrays[prefix + "k"] = k.astype(case["dtype"])
        arrays[prefix + "v"] = v.astype(case["dtype"])
        arrays[prefix + "out"] = out.detach().numpy()
        arrays[prefix + "grad_x"] = r.grad.numpy()
        arrays[prefix + "grad_k"] = kt.grad.numpy()
        arrays[prefix + "grad_alpha"] = at.grad.numpy()
        meta["cases"].append(case)
    CASES_DIR.mkdir(exist_ok=True)
    np.savez_compressed(args.out, meta=json.dumps(meta), **arrays)
    print(f"wrote {len(meta['cases'])} cases to {args.out}")


if __name__ == "__main__":
    main()
