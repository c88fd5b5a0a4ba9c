"""keras_topk.ops.lapsum_topk / log_lapsum_topk against the LapSum paper's own PyTorch code.

The cases (tests/references/cases/lapsum.npz) were written by
``python -m tests.references.make_lapsum_cases`` from the pure-PyTorch
``SoftTopK`` / ``LogSoftTopK`` of github.com/gmum/LapSum's tutorial notebooks
(commit in ``meta``), with their hand-written backward, so this runs without
PyTorch. Values, and the vector-Jacobian products for the scores, ``k`` and
``alpha``: float64 to 1e-10 (relative to the largest entry); float32 (the
reference sorts the whole row and scans it; keras-topk
selects the top 2k and sums the rest, so float32 rounding differs): float32
results are held to the reference's float64 run on the same inputs, to 1e-4 of
the largest entry plus 5 times the reference's own float32 error.
"""

import json
import pathlib

import numpy as np
import pytest
from keras import backend, ops

from keras_topk.ops import lapsum_topk, log_lapsum_topk
from tests.references import autodiff

DATA = np.load(pathlib.Path(__file__).resolve().parent / "cases" / "lapsum.npz")
META = json.loads(str(DATA["meta"]))
CASES = META["cases"]


def case_id(i):
    c = CASES[i]
    return f"{i}-{'log' if c['log'] else 'p'}-{c['dtype']}-{c['rows']}-n{c['n']}-a{c['alpha']}"


def test_the_cases_cover_the_grid():
    assert META["reference"] == "github.com/gmum/LapSum" and len(META["commit"]) == 40
    assert {c["log"] for c in CASES} == {False, True}
    assert {c["dtype"] for c in CASES} == {"float32", "float64"}
    assert {c["n"] for c in CASES} >= {2, 1000}
    # Real k, k above n / 2 and k near 0 are all exercised.
    ks = [k / c["n"] for c in CASES for k in c["k"]]
    assert min(ks) < 0.01 and max(ks) > 0.9 and any(k != int(k) for c in CASES for k in c["k"])


def _close(actual, expected, dtype, own_error=0.0):
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected)
    if dtype == "float32":
        # d log p / dk = 1 / S reaches 6e61 in one float64 case (the row's density
        # sum underflows): float32 can only say +-inf there, with the right sign.
        huge = np.abs(expected) > 1e30
        assert np.all(np.sign(actual[huge]) == np.sign(expected[huge]))
        assert np.all(np.abs(actual[huge]) > 1e30)
        actual, expected = actual[~huge], expected[~huge]
    tol = 1e-10 if dtype == "float64" else 1e-4
    scale = max(float(np.max(np.abs(expected))), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol * scale + 5.0 * own_error)


@pytest.mark.parametrize("i", range(len(CASES)), ids=case_id)
def test_lapsum_matches_the_reference(i):
    case = CASES[i]
    kept = backend.standardize_dtype(ops.convert_to_tensor(np.float64(1.0)).dtype)
    if case["dtype"] == "float64" and kept != "float64":
        pytest.skip("this backend computes float64 as float32 (JAX without x64)")
    x, k, v = (DATA[f"{i}/{name}"] for name in ("x", "k", "v"))
    alpha = np.asarray(case["alpha"], dtype=case["dtype"])
    fn = log_lapsum_topk if case["log"] else lapsum_topk
    names = ("out", "grad_x", "grad_k", "grad_alpha")
    expected = {name: DATA[f"{i}/{name}"] for name in names}
    own_error = dict.fromkeys(names, 0.0)
    if case["dtype"] == "float32":
        # Held to the reference's float64 run on the same inputs (case i - 1), to 1e-4
        # of the largest entry plus 5 times the reference's own float32 error; where
        # the reference overflows in float32 (a scaled score above ~88, see the
        # generator), to 1e-4 alone.
        assert CASES[i - 1]["dtype"] == "float64" and CASES[i - 1]["n"] == case["n"]
        exact = {name: DATA[f"{i - 1}/{name}"] for name in names}
        for name in names:
            error = np.abs(expected[name] - exact[name])
            own_error[name] = float(
                np.max(error[np.isfinite(error) & (np.abs(exact[name]) < 1e30)], initial=0.0)
            )
        expected = exact
    out = np.asarray(fn(x, k, alpha))
    assert np.all(np.isfinite(out))
    if case["log"]:
        _close(np.exp(out), np.exp(expected["out"]), case["dtype"])
        # log p = x - log 2 below the root: float32 x = (s - b) / alpha carries an
        # absolute error of ~1e-7 of max |s / alpha| (285 in the "one_huge" rows).
        atol = 1e-12 if case["dtype"] == "float64" else 2e-7 * np.max(np.abs(x)) / case["alpha"]
        np.testing.assert_allclose(out, expected["out"], rtol=1e-6, atol=atol)
    else:
        _close(out, expected["out"], case["dtype"], own_error["out"])
    vt = ops.convert_to_tensor(v)
    grad_x = autodiff.grad(lambda s: fn(s, k, alpha) * vt, x)
    grad_k = autodiff.grad(lambda kk: fn(x, kk, alpha) * vt, k)
    grad_alpha = autodiff.grad(lambda a: fn(x, k, a) * vt, alpha)
    for name, value in (("grad_x", grad_x), ("grad_k", grad_k), ("grad_alpha", grad_alpha)):
        _close(value, expected[name], case["dtype"], own_error[name])
