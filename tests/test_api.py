"""The public API: what the modules export (``__all__``) is what is documented, nothing more.

``DOCUMENTED`` is the API as README.md and the docstrings present it; a name
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
    "keras_topk": {"__version__", "callbacks", "conformal", "export", "losses", "metrics", "ops"},
    "keras_topk.losses": {
        "SmoothTopKSVM",
        "TopKCrossEntropy",
        "TopKSVM",
        "TopKTransitionLoss",
        "TransitionCallback",
        "TransitionState",
        "grouped_cross_entropy",
        "smooth_topk_svm",
        "topk_cross_entropy",
        "topk_svm",
        "topk_transition_loss",
    },
    "keras_topk.callbacks": {"TransitionCallback"},
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
        "log_elementary_symmetric",
        "soft_topk",
    },
}
# Names README.md must mention, as `name` or `module.name`, for a user to find them.
IN_README = {
    "keras_topk.losses": DOCUMENTED["keras_topk.losses"],
    "keras_topk.callbacks": {"TransitionCallback"},
    "keras_topk.export": {"export_with_loss"},
    "keras_topk.ops": {"soft_topk", "log_elementary_symmetric"},
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


@pytest.mark.parametrize("module_name", sorted(IN_README))
def test_readme_mentions_the_api(module_name):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [
        name
        for name in IN_README[module_name]
        if not re.search(r"\b" + re.escape(name) + r"\b", readme)
    ]
    assert not missing, f"README.md does not mention {missing} ({module_name})"


def test_submodule_names_resolve_to_one_object():
    # The same class under its two public names, e.g. keras_topk.losses.TransitionCallback
    # (kept for 0.1 code) and keras_topk.callbacks.TransitionCallback (its home).
    assert keras_topk.losses.TransitionCallback is keras_topk.callbacks.TransitionCallback
    for module_name, names in DOCUMENTED.items():
        module = importlib.import_module(module_name)
        for name in names:
            value = getattr(module, name)
            home = getattr(value, "__module__", None)
            if inspect.isclass(value) or inspect.isfunction(value):
                assert home.startswith("keras_topk."), (module_name, name, home)
                assert getattr(importlib.import_module(home), value.__name__) is value
