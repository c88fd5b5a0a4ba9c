"""The top-k hinge family against the committed outputs of its references.

The cases (tests/references/cases/topk_hinge_family.npz, lapin_losses.npz) were
written by ``python -m tests.references.make_hinge_reference_cases``: the first
by pytopk 0.1.0 itself (Garcin et al.; the calibrated hinge, exact, noised and
long-tail forms, fed the stored noise Z), the second by a NumPy float64
transcription of mlapin/libsdca's primal losses (Lapin et al.: top-k hinge
alpha and beta, truncated top-k entropy, the latter's gradient as libsdca writes
it). Everything is float64, scores tie-free, n from 2 to 1000. Tolerances:

- values: the same maths on both sides, so 1e-12 relative; except that pytopk
  stores its LDAM margins in float32 (``m_list.astype(np.float32)``): the
  long-tail values are computed here with the reference's own stored margins
  (its float32 numbers), and then agree to 1e-12 too; with our float64
  margins they differ by up to ``scale * max_margin * 2^-24`` per sample,
  which the test checks as well.
- gradients: pytopk's backward builds its counts ``(1/S) sum_t onehot`` in
  float32 (``torch.zeros`` with the default dtype) even for float64 scores, so
  each count is off by up to 2^-24 relative unless S is a power of two:
  gradients are held to 1e-7 of the largest entry (the counts' float32
  rounding is 6e-8 of an entry of size 1). libsdca's gradients (float64) to
  1e-12 of the largest entry.

Deviations: libsdca sets the label's entry of ``s + 1 - s_y`` to 0 before
taking the k largest; that entry is ``s_y - s_y = 0`` in the papers' formula,
so it is the same loss, not a deviation. XCurve's ``HingeTopKLoss``, which sets
the label's *score* to 0 (a different loss), is not a reference here.
"""

import importlib

import numpy as np
import pytest

from keras_topk import losses
from tests.references import autodiff
from tests.references.committed import load

HINGE_META, HINGE = load("topk_hinge_family")
LAPIN_META, LAPIN = load("lapin_losses")


def hinge_id(i):
    c = HINGE_META["cases"][i]
    return f"{i}-{c['kind']}-n{c['n']}-k{c['k']}-eps{c['epsilon']}-S{c['n_samples']}"


def lapin_id(i):
    c = LAPIN_META["cases"][i]
    return f"{i}-{c['kind']}-n{c['n']}-k{c['k']}"


def test_the_cases_cover_the_grid():
    cases = HINGE_META["cases"]
    assert HINGE_META["versions"]["pytopk"] == "0.1.0"
    assert {c["kind"] for c in cases} == {"exact", "noised", "long_tail"}
    assert min(c["n"] for c in cases) == 2 and max(c["n"] for c in cases) == 1000
    assert {c["k"] for c in cases} == {1, 2, 5}
    assert any(c["kind"] == "long_tail" and c["epsilon"] > 0 for c in cases)
    assert {c["kind"] for c in LAPIN_META["cases"]} == {"alpha", "beta", "entropy"}
    assert max(c["n"] for c in LAPIN_META["cases"]) == 1000
    # Every hinge is active somewhere and inactive somewhere, so the cases test both branches.
    values = np.concatenate([np.ravel(r["grad"]) for r in HINGE])
    assert (values != 0).any() and (values == 0).any()


def _our_noise(ref):
    # The reference's layout is (B, n, S); ours (B, S, n).
    return np.transpose(ref["z"], (0, 2, 1))


@pytest.mark.parametrize("i", range(len(HINGE_META["cases"])), ids=hinge_id)
def test_hinge_reference_case(i):
    case, ref = HINGE_META["cases"][i], HINGE[i]
    x, y, k = ref["x"], ref["y"], case["k"]
    if case["kind"] == "exact":
        fn = lambda v: losses.topk_calibrated_hinge(y, v, k=k)  # noqa: E731
    elif case["kind"] == "noised":
        fn = lambda v: losses.noised_topk_hinge(  # noqa: E731
            y, v, k=k, epsilon=case["epsilon"], n_samples=case["n_samples"], noise=_our_noise(ref)
        )
    else:
        kwargs = dict(
            class_counts=case["class_counts"],
            k=k,
            max_margin=case["max_margin"],
            scale=case["scale"],
            epsilon=case["epsilon"],
            n_samples=case["n_samples"],
            noise=_our_noise(ref),
        )
        # Our float64 margins against the reference's float32 ones (module docstring).
        np.testing.assert_allclose(
            losses.ldam_margins(case["class_counts"], case["max_margin"]),
            ref["margins"],
            rtol=2.0**-23,
        )
        value = np.mean(np.asarray(losses.long_tail_topk_hinge(y, x, **kwargs)))
        bound = case["scale"] * case["max_margin"] * 2.0**-23
        np.testing.assert_allclose(value, ref["value"], rtol=1e-12, atol=bound)
        # With the reference's own margins: the same numbers exactly.
        fn = lambda v: _with_margins(y, v, kwargs, ref["margins"])  # noqa: E731
    value, grad = autodiff.value_and_grad(fn, x)
    assert value.dtype == np.float64
    b = x.shape[0]
    np.testing.assert_allclose(value.mean(), ref["value"], rtol=1e-12, atol=1e-15)
    # Ours is the gradient of the sum, the reference's of the batch mean.
    scale = max(np.abs(ref["grad"]).max(), 1e-300)
    np.testing.assert_allclose(grad / b, ref["grad"], rtol=0, atol=1e-7 * scale)
    if case["kind"] == "exact" or case["n_samples"] in (1, 2, 4, 8):
        np.testing.assert_allclose(grad / b, ref["grad"], rtol=0, atol=1e-14 * scale)


def _with_margins(y, v, kwargs, margins):
    """The long-tail loss with the given per-class margins (the reference's float32 ones)."""
    from keras import ops

    # The package exports a function of the module's name: import the module itself.
    module = importlib.import_module("keras_topk.losses.topk_calibrated_hinge")
    config = module.LongTailHingeConfig(
        class_counts=kwargs["class_counts"],
        k=kwargs["k"],
        max_margin=kwargs["max_margin"],
        scale=kwargs["scale"],
        epsilon=kwargs["epsilon"],
        n_samples=kwargs["n_samples"],
        seed=None,
    )
    object.__setattr__(config, "_margins", np.asarray(margins, dtype=np.float64))
    config = config.with_noise(("given", kwargs["noise"]))
    return ops.convert_to_tensor(module.per_sample_losses(y, v, config))


@pytest.mark.parametrize("i", range(len(LAPIN_META["cases"])), ids=lapin_id)
def test_lapin_reference_case(i):
    case, ref = LAPIN_META["cases"][i], LAPIN[i]
    x, y, k = ref["x"], ref["y"], case["k"]
    fn = {
        "alpha": lambda v: losses.topk_hinge_alpha(y, v, k=k),
        "beta": lambda v: losses.topk_hinge_beta(y, v, k=k),
        "entropy": lambda v: losses.truncated_topk_entropy(y, v, k=k),
    }[case["kind"]]
    value, grad = autodiff.value_and_grad(fn, x)
    np.testing.assert_allclose(value, ref["value"], rtol=1e-12, atol=1e-14)
    scale = max(np.abs(ref["grad"]).max(), 1e-300)
    np.testing.assert_allclose(grad, ref["grad"], rtol=0, atol=1e-12 * scale)
