"""Writes the committed reference cases of the top-k hinge family (test_hinge_reference_cases.py).

Two references, so that the default test run holds keras-topk to them without PyTorch:

- ``pytopk`` 0.1.0 (Garcin et al., ICML 2022; PyPI, MIT; repository
  garcinc/noised-topk) for the calibrated hinge: its own
  ``pytopk.functional.bal_noised_topk_loss`` (exact form: ``epsilon = 0``;
  noised form) and ``imbal_noised_topk_loss`` with the margins of its own
  ``pytopk.noised_losses.ImbalNoisedTopK(...).m_list`` (long-tail form), run
  with ``softtopk = pytopk.noised_topk._noised_topk`` in float64 on a noise
  tensor ``Z`` of layout ``(B, n, S)`` that is stored with the case, so that
  keras-topk sees the same Z. Values and gradients by torch autograd (the
  reference's own backward, which builds its counts in float32).
- mlapin/libsdca (C++, MIT; Lapin, Hein, Schiele) for the baselines. No
  Python build of it runs here, and XCurve (the other implementation) pulls
  CUDA builds of torch, so the formulas of libsdca's primal losses are
  transcribed below, line by line, as an independent NumPy float64
  implementation: ``l2_hinge_topk::regularized_loss``
  (src/solve/l2_hinge_topk.h, top-k hinge alpha), ``l2_topk_hinge::
  regularized_loss`` (src/solve/l2_topk_hinge.h, top-k hinge beta) and
  ``grad_topk_softmax_nonconvex`` (src/matlab/mex_gd.cpp, the truncated top-k
  entropy, value and its hand-written gradient). libsdca has no gradient of
  the two hinges; their subgradients here are written from the formulas
  (the k largest of ``s + 1 - e_y`` get ``1/k``, the label ``-1``), not by
  autodiff. libsdca sets the label's entry of ``s + 1 - s_y - e_y`` to 0 before
  taking the k largest: the same as the papers' definition, since that entry
  is ``s_y - s_y = 0``. (XCurve's ``HingeTopKLoss`` sets the label's *score*
  to 0 instead of excluding it, which is not the paper's loss; not used.)

Scores are tie-free (float64 normal draws, every gap checked), n from 2 to 1000.

    pip install -e ".[torch,test]" pytopk==0.1.0
    python -m tests.references.make_hinge_reference_cases

Writes ``tests/references/cases/topk_hinge_family.npz`` (pytopk) and
``lapin_losses.npz`` (libsdca's formulas): for case ``i`` the arrays ``i/x``,
``i/y``, ``i/value`` (batch mean), ``i/grad`` (of the batch mean) and, for
the noised forms, ``i/z`` (B, n, S); ``meta`` holds a JSON string with the
reference versions and each case's parameters.
"""

import json
import pathlib
import platform

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
CASES_DIR = HERE / "cases"
SIZES = (2, 3, 5, 10, 100, 1000)


def tie_free_scores(rng, b, n, scale=2.0):
    while True:
        x = rng.normal(scale=scale, size=(b, n))
        gaps = np.diff(np.sort(x, axis=-1), axis=-1)
        if n == 1 or gaps.min() > 1e-9:
            return x


def hinge_grid():
    cases = []
    i = 0
    for n in SIZES:
        for k in (1, 2, 5):
            if k >= n:
                continue
            b = 2 if n == 1000 else 8
            cases.append(dict(kind="exact", n=n, k=k, b=b, epsilon=0.0, n_samples=1))
            epsilon, samples = ((1.0, 5), (0.2, 10), (0.5, 4))[i % 3]
            cases.append(dict(kind="noised", n=n, k=k, b=b, epsilon=epsilon, n_samples=samples))
            lt = ((0.01, 0.2, 50.0, 5), (0.0, 0.5, 1.0, 5), (1.0, 0.3, 10.0, 3))[i % 3]
            cases.append(
                dict(
                    kind="long_tail",
                    n=n,
                    k=k,
                    b=b,
                    epsilon=lt[0],
                    max_margin=lt[1],
                    scale=lt[2],
                    n_samples=lt[3],
                )
            )
            i += 1
    return cases


def run_pytopk(cases, seed=0):
    import pytopk
    import torch
    from pytopk import functional, noised_losses, noised_topk

    rng = np.random.default_rng(seed)
    arrays = {}
    for i, case in enumerate(cases):
        b, n, k = case["b"], case["n"], case["k"]
        x = tie_free_scores(rng, b, n)
        y = rng.integers(0, n, b)
        z = rng.normal(size=(b, n, case["n_samples"]))
        s = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        yt = torch.tensor(y, dtype=torch.int64)
        zt = torch.tensor(z, dtype=torch.float64)
        if case["kind"] == "long_tail":
            counts = rng.integers(1, 500, n)
            case["class_counts"] = counts.tolist()
            module = noised_losses.ImbalNoisedTopK(
                k=k,
                epsilon=case["epsilon"],
                max_m=case["max_margin"],
                cls_num_list=counts.tolist(),
                scale=case["scale"],
                n_sample=case["n_samples"],
            )
            m_list = torch.as_tensor(module.m_list, dtype=torch.float64)
            arrays[f"{i}/margins"] = m_list.numpy()
            value = functional.imbal_noised_topk_loss(
                s, yt, k, m_list, case["epsilon"], noised_topk._noised_topk, zt, case["scale"]
            )
        else:
            value = functional.bal_noised_topk_loss(
                s, yt, k, case["epsilon"], noised_topk._noised_topk, zt
            )
        value.backward()
        arrays[f"{i}/x"] = x
        arrays[f"{i}/y"] = y.astype(np.int32)
        arrays[f"{i}/z"] = z
        arrays[f"{i}/value"] = np.asarray(value.item())
        arrays[f"{i}/grad"] = s.grad.numpy()
    versions = {"pytopk": getattr(pytopk, "__version__", "0.1.0"), "torch": torch.__version__}
    return arrays, versions


# --------------------------------------------------------------------------- #
# libsdca's primal losses, transcribed (see the module docstring)
# --------------------------------------------------------------------------- #


def libsdca_hinge_topk(scores, label, k):
    """l2_hinge_topk::regularized_loss: max{0, sum of the k largest} / k (alpha)."""
    scores = scores + (1.0 - scores[label])
    scores[label] = 0.0
    largest = np.sort(scores)[::-1][:k]
    return max(0.0, largest.sum()) / k


def libsdca_topk_hinge(scores, label, k):
    """l2_topk_hinge::regularized_loss: sum of the positive among the k largest / k (beta)."""
    scores = scores + (1.0 - scores[label])
    scores[label] = 0.0
    largest = np.sort(scores)[::-1][:k]
    return largest[largest > 0].sum() / k


def libsdca_topk_softmax_nonconvex(scratch, label, k):
    """grad_topk_softmax_nonconvex (mex_gd.cpp): the value and gradient for one sample."""
    n = scratch.size
    idx = list(range(n))
    idx[0], idx[label] = idx[label], idx[0]
    # nth_element over idx[1:] by descending score: a full sort gives the same partition.
    idx[1:] = sorted(idx[1:], key=lambda j: -scratch[j])
    scores = np.empty(n)
    scores[0] = scratch[label]
    for ix in range(k, n):
        scores[ix] = scratch[idx[ix]]
    big_m = scores[k]
    tail = np.exp(scores[k + 1 :] - big_m)
    s = tail.sum()
    a = big_m - scores[0]
    b = np.exp(-a)
    objective = a + np.log1p(b + s)
    grad = np.zeros(n)
    coeff = 1.0 / (1.0 + s + b)
    grad[idx[k]] = coeff
    grad[label] = -(1.0 + s) * coeff
    for ix in range(k + 1, n):
        grad[idx[ix]] = tail[ix - k - 1] * coeff
    return objective, grad


def hinge_subgradient(scores, label, k, kind):
    """Subgradient of alpha/beta from the formulas (not autodiff)."""
    a = scores + 1.0
    a[label] = scores[label]
    top = np.argsort(-a)[:k]
    grad = np.zeros_like(scores)
    if kind == "alpha":
        if a[top].mean() - scores[label] > 0:
            grad[top] += 1.0 / k
            grad[label] -= 1.0
    else:
        for j in top:
            if a[j] - scores[label] > 0:
                grad[j] += 1.0 / k
                grad[label] -= 1.0 / k
    return grad


def lapin_grid():
    cases = []
    for kind in ("alpha", "beta", "entropy"):
        for n in SIZES:
            for k in (1, 2, 3, 5, 10):
                if k >= n:
                    continue
                cases.append(dict(kind=kind, n=n, k=k, b=2 if n >= 100 else 8))
    return cases


def run_lapin(cases, seed=1):
    rng = np.random.default_rng(seed)
    arrays = {}
    for i, case in enumerate(cases):
        b, n, k, kind = case["b"], case["n"], case["k"], case["kind"]
        # Scores far enough apart that no hinge sits at its kink.
        x = tie_free_scores(rng, b, n)
        y = rng.integers(0, n, b)
        values, grads = [], []
        for row, label in zip(x, y):
            if kind == "entropy":
                value, grad = libsdca_topk_softmax_nonconvex(row.copy(), int(label), k)
            else:
                loss = libsdca_hinge_topk if kind == "alpha" else libsdca_topk_hinge
                value = loss(row.copy(), int(label), k)
                grad = hinge_subgradient(row.copy(), int(label), k, kind)
            values.append(value)
            grads.append(grad)
        arrays[f"{i}/x"] = x
        arrays[f"{i}/y"] = y.astype(np.int32)
        arrays[f"{i}/value"] = np.asarray(values)
        arrays[f"{i}/grad"] = np.asarray(grads)
    return arrays


def main():
    CASES_DIR.mkdir(exist_ok=True)
    cases = hinge_grid()
    arrays, versions = run_pytopk(cases)
    versions["python"] = platform.python_version()
    meta = {"versions": versions, "cases": cases}
    np.savez_compressed(CASES_DIR / "topk_hinge_family.npz", meta=json.dumps(meta), **arrays)
    lapin = lapin_grid()
    meta = {
        "versions": {
            "libsdca": "formulas transcribed from mlapin/libsdca master",
            "numpy": np.__version__,
        },
        "cases": lapin,
    }
    np.savez_compressed(CASES_DIR / "lapin_losses.npz", meta=json.dumps(meta), **run_lapin(lapin))
    print(f"{len(cases)} pytopk cases, {len(lapin)} libsdca cases")


if __name__ == "__main__":
    main()
