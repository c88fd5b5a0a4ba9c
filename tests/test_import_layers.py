"""The package's modules import downwards only: no module imports one of a higher layer.

Layers, lowest first: the private helpers (validation, inputs, the backend
room), the differentiable primitives (`ops`), the Keras objects (`losses`,
`metrics`, `layers`), then what builds on them (`callbacks`, `conformal`,
`export`) and the package itself. A function-local import counts like any
other: it is how an upward import hides.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_topk"

LAYERS = {
    "keras_topk._config": 0,
    "keras_topk._backend": 0,
    "keras_topk._inputs": 0,
    "keras_topk._typing": 0,
    "keras_topk.ops": 1,
    "keras_topk.losses": 2,
    "keras_topk.metrics": 2,
    "keras_topk.layers": 2,
    "keras_topk.callbacks": 3,
    "keras_topk.conformal": 3,
    "keras_topk.export": 3,
    "keras_topk": 4,
}


def layer_of(module):
    """The layer of ``keras_topk.a.b``: that of its longest listed prefix."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise KeyError(f"{module} has no layer: add it to LAYERS")


def module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path):
    """Every keras_topk module ``path`` imports, at any depth of its code."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from keras_topk import ops` imports the submodule `ops`; `from
            # keras_topk.losses import TopKSVM` the module `keras_topk.losses`.
            found.update(_resolvable(f"{node.module}.{alias.name}") for alias in node.names)
    return {m for m in found if m == "keras_topk" or m.startswith("keras_topk.")}


def _resolvable(module):
    # `from keras_topk.losses import TopKSVM` adds "keras_topk.losses.TopKSVM": keep the module.
    parts = module.split(".")
    while parts:
        candidate = PACKAGE.parent.joinpath(*parts)
        if candidate.with_suffix(".py").exists() or (candidate / "__init__.py").exists():
            return ".".join(parts)
        parts.pop()
    return module


MODULES = sorted(PACKAGE.rglob("*.py"))

# The one sanctioned exception, with its reason.
ALLOWED = {
    ("keras_topk.losses", "keras_topk.callbacks"): (
        "the deprecated 0.1 alias keras_topk.losses.TransitionCallback, imported by the "
        "module's __getattr__ on first use only"
    ),
}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_run_downwards_only(path):
    own = module_name(path)
    upward = sorted(
        target
        for target in imported_modules(path)
        if layer_of(target) > layer_of(own) and (own, target) not in ALLOWED
    )
    assert not upward, f"{own} (layer {layer_of(own)}) imports a higher layer: {upward}"


def test_the_check_catches_an_upward_import(tmp_path):
    # The check itself can fail: a loss that imports the callbacks is caught.
    fake = PACKAGE / "losses" / "x.py"
    source = "def f():\n    from keras_topk.callbacks import TransitionCallback\n"
    path = tmp_path / "x.py"
    path.write_text(source)
    targets = imported_modules(path)
    assert "keras_topk.callbacks" in targets
    assert layer_of("keras_topk.callbacks") > layer_of(module_name(fake))
