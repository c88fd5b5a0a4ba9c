"""Doctests: every docstring example of keras_topk runs with the default test command.

``testpaths`` (pyproject.toml) includes ``keras_topk``; this hook collects the
docstring examples of its modules (and of no other folder: the helpers under
tests/ and examples/ are not doctested). Examples that need TensorFlow itself
(SavedModel export) are skipped on the other backends.
"""

import os
import pathlib

# 3, not 2: the full `tensorflow` wheel logs "E0000 ... cuInit" on a CPU machine at ERROR level.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402
from _pytest.doctest import DoctestModule  # noqa: E402

PACKAGE = pathlib.Path(__file__).resolve().parent / "keras_topk"


def pytest_collect_file(file_path, parent):
    if parent.config.option.doctestmodules:
        return None  # pytest's own doctest plugin collects them
    if file_path.suffix == ".py" and PACKAGE in file_path.parents:
        return DoctestModule.from_parent(parent, path=file_path)
    return None


def _needs_tensorflow(item):
    return any(
        "tensorflow" in example.source or "tf." in example.source for example in item.dtest.examples
    )


def pytest_collection_modifyitems(config, items):
    import keras

    if keras.backend.backend() == "tensorflow":
        return
    skip = pytest.mark.skip(reason="a TensorFlow-only example: run with KERAS_BACKEND=tensorflow")
    for item in items:
        if isinstance(item, pytest.DoctestItem) and _needs_tensorflow(item):
            item.add_marker(skip)
