"""The public API: what the modules export (``__all__``) is what is documented, nothing more.

``DOCUMENTED`` is the API as the docs pages and the docstrings present it; a name
added to a module's ``__all__`` must be added here (and documented), and a
name that looks public (no leading underscore) but is not exported fails.
"""

import importlib
import inspect
import pathlib
import re
import subprocess
import sys

import pytest

import keras_topk

ROOT = pathlib.Path(__file__).resolve().parents[1]

DOCUMENTED = {
    "keras_topk": {
        "__version__",
        "callbacks",
        "conformal",
        "export",
        "layers",
        "losses",
        "metrics",
        "ops",
    },
    "keras_topk.layers": {"NormalizedDense"},
    "keras_topk.losses": {
        "LongTailTopKHinge",
        "NoiseState",
        "NoisedTopKHinge",
        "TopKCalibratedHinge",
        "TopKHingeAlpha",
        "TopKHingeBeta",
        "TruncatedTopKEntropy",
        "ldam_margins",
        "long_tail_topk_hinge",
        "noised_topk_hinge",
        "topk_calibrated_hinge",
        "topk_hinge_alpha",
        "topk_hinge_beta",
        "truncated_topk_entropy",
        "SmoothTopKSVM",
        "TopKCrossEntropy",
        "TopKSVM",
        "TopKTransitionLoss",
        "TransitionState",
        "grouped_cross_entropy",
        "smooth_topk_svm",
        "topk_cross_entropy",
        "topk_svm",
        "topk_transition_loss",
    },
    "keras_topk.callbacks": {"NoiseCallback", "TransitionCallback"},
    "keras_topk.conformal": {
        "ConformalSets",
        "calibrate",
        "candidates_for_coverage",
        "evaluate_sets",
        "label_ranks",
        "min_calibration_size",
        "predict_sets",
    },
    "keras_topk.export": {"export_with_loss"},
    "keras_topk.metrics": {
        "CandidatesForCoverage",
        "MultiTopKAccuracy",
        "PerClassTopKAccuracy",
        "PrecisionRecallAtK",
        "TopKAccuracy",
        "candidates_from_histogram",
        "label_rank",
        "multilabel_topk_hits",
        "rank_histogram",
        "topk_hits",
    },
    "keras_topk.ops": {
        "DISTRIBUTIONS",
        "METHODS",
        "NETWORKS",
        "build_network",
        "comparator_weight",
        "lapsum_topk",
        "log_elementary_symmetric",
        "log_lapsum_topk",
        "soft_topk",
    },
}
# Names the guides (docs/*.md, outside the API reference) must mention, as `name` or
# `module.name`, for a user to find them.
IN_GUIDES = {
    "keras_topk.losses": DOCUMENTED["keras_topk.losses"],
    "keras_topk.callbacks": {"NoiseCallback", "TransitionCallback"},
    "keras_topk.export": {"export_with_loss"},
    "keras_topk.ops": {"soft_topk", "log_elementary_symmetric", "lapsum_topk", "log_lapsum_topk"},
}


@pytest.mark.parametrize("module_name", sorted(DOCUMENTED))
def test_exported_names_are_the_documented_ones(module_name):
    module = importlib.import_module(module_name)
    assert set(module.__all__) == DOCUMENTED[module_name]
    assert len(module.__all__) == len(set(module.__all__))


@pytest.mark.parametrize("module_name", sorted(DOCUMENTED))
def test_no_name_looks_public_without_being_exported(module_name):
    module = importlib.import_module(module_name)
    looks_public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        # Imported helpers (keras, numpy, ...) are not the module's own names.
        and getattr(value, "__module__", module_name).startswith("keras_topk")
    }
    assert looks_public <= set(module.__all__), sorted(looks_public - set(module.__all__))


def test_import_keras_topk_reaches_every_submodule():
    # In a fresh interpreter: here other tests have imported the submodules already.
    names = sorted(DOCUMENTED["keras_topk"])
    code = f"import keras_topk; print([n for n in {names!r} if not hasattr(keras_topk, n)])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


@pytest.mark.parametrize("module_name", sorted(IN_GUIDES))
def test_the_guides_mention_the_api(module_name):
    guides = "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md")))
    missing = [
        name
        for name in IN_GUIDES[module_name]
        if not re.search(r"\b" + re.escape(name) + r"\b", guides)
    ]
    assert not missing, f"no page docs/*.md mentions {missing} ({module_name})"


def test_the_0_1_callback_alias_warns_and_is_the_callback():
    # keras_topk.losses.TransitionCallback (0.1 code) still works, with a DeprecationWarning.
    with pytest.warns(DeprecationWarning, match="keras_topk.callbacks.TransitionCallback"):
        alias = keras_topk.losses.TransitionCallback
    assert alias is keras_topk.callbacks.TransitionCallback
    assert "TransitionCallback" not in keras_topk.losses.__all__
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        keras_topk.losses.Nope  # noqa: B018


def test_submodule_names_resolve_to_one_object():
    for module_name, names in DOCUMENTED.items():
        module = importlib.import_module(module_name)
        for name in names:
            value = getattr(module, name)
            home = getattr(value, "__module__", None)
            if inspect.isclass(value) or inspect.isfunction(value):
                assert home.startswith("keras_topk."), (module_name, name, home)
                assert getattr(importlib.import_module(home), value.__name__) is value
