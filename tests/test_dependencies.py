"""Every third-party import of the repository is declared in pyproject.toml.

A module imported by ``keras_topk/``, ``examples/``, ``tests/``, ``benchmarks/``
or its fixture scripts that no declared requirement provides works on the
developer's machine (where it happens to be installed) and fails on a user's.
This test walks the imports with ``ast`` and maps each third-party top-level
module to the distributions that provide it in the running environment
(``importlib.metadata.packages_distributions()``); one of them must be a
requirement of an install that the folder's code runs under.
"""

import ast
import importlib.metadata
import pathlib
import sys
import textwrap

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# The standard library reads pyproject.toml from Python 3.11 (CI's version) on.
tomllib = pytest.importorskip("tomllib")

ROOT = pathlib.Path(__file__).resolve().parents[1]
# "." is the files at the top of the repository (conftest.py, setup.py if any).
FOLDERS = ("keras_topk", "examples", "tests", "benchmarks", ".")

# The installs each folder's code runs under ("core" is install_requires).
# The package itself may import only its core requirements and the backends
# Keras can run on (imported lazily, for the backend in use).
INSTALLS = {
    "keras_topk": ("core", "tensorflow", "jax", "torch"),
    "examples": ("core", "tensorflow", "examples"),
    # Tests and benchmarks may use any extra (the docs build test needs `docs`).
    "tests": None,
    "benchmarks": None,
    ".": None,
}

# Imports that no extra can declare, each with why. They must sit in a
# try/except ImportError, a function only the optional path calls, or behind
# pytest.importorskip; the code that uses them says how to install them.
OPTIONAL_UNDECLARED = {
    # The PyTorch reference implementation (Petersen et al.) for parity checks:
    # tests/references/difftopk_reference.py, tests/references/make_reference_cases.py,
    # benchmarks/reference.py. Installed by hand with `pip install --no-deps
    # difftopk==0.2.0 diffsort==0.2.0` (CONTRIBUTING.md, "Reference cases"): its sparse
    # dependency torch-sparse has no wheel, so a declared extra would not install.
    "difftopk": "reference implementation, installed with --no-deps",
    "diffsort": "reference implementation, installed with --no-deps",
    # The noised top-k hinge's reference (Garcin et al.), only for its case generator.
    "pytopk": "reference implementation, only for tests/references/make_hinge_reference_cases.py",
    # difftopk's sparse networks: no wheel for torch 2.13; benchmarks/build_torch_sparse.sh
    # builds it from source, and benchmarks/reference.py falls back to the dense executor.
    "torch_sparse": "built from source by benchmarks/build_torch_sparse.sh",
    "torch_scatter": "built from source by benchmarks/build_torch_sparse.sh",
    # smooth-topk (Berrada et al.) is not on PyPI: make_reference_cases.py imports it
    # from a checkout given on its command line.
    "topk": "smooth-topk checkout, only for tests/references/make_reference_cases.py",
    # smooth-topk imports `range` from the Python 2 compatibility package; the
    # generator uses the real one if installed, else the built-in.
    "future": "only for smooth-topk, in tests/references/make_reference_cases.py",
}

# Distributions that install the same import package as a declared one.
ALIASES = {
    "tensorflow-cpu": "tensorflow",
    "tensorflow-intel": "tensorflow",
    "tensorflow-macos": "tensorflow",
    "tf-nightly": "tensorflow",
    "jaxlib": "jax",
}


# For a module that is not installed where the test runs (the docs extra in CI's
# test step), the declared requirement that provides it, where the names differ.
UNINSTALLED_PROVIDERS = {
    "mkdocstrings_handlers": "mkdocstrings",  # mkdocstrings[python] -> mkdocstrings-python
}


def declared_requirements(pyproject=ROOT / "pyproject.toml"):
    """{install name: {canonical distribution name}}; "core" is the dependencies."""
    project = tomllib.loads(pathlib.Path(pyproject).read_text(encoding="utf-8"))["project"]

    def names(lines):
        out = set()
        for line in lines:
            req = Requirement(line)
            out.add(canonicalize_name(req.name))
            out |= extra_requirements(req)
        return out

    installs = {"core": names(project.get("dependencies", []))}
    for extra, lines in project.get("optional-dependencies", {}).items():
        installs[extra] = names(lines)
    return installs


def extra_requirements(req):
    """What ``name[extra]`` brings in besides ``name`` (e.g. mkdocstrings[python]
    brings mkdocstrings-python), read from the installed distribution's metadata."""
    if not req.extras:
        return set()
    try:
        requires = importlib.metadata.requires(req.name) or []
    except importlib.metadata.PackageNotFoundError:
        return set()
    out = set()
    for line in requires:
        dep = Requirement(line)
        if dep.marker is not None and any(dep.marker.evaluate({"extra": e}) for e in req.extras):
            out.add(canonicalize_name(dep.name))
    return out


def local_modules(root=ROOT):
    """Top-level modules and packages of the repository itself."""
    names = {p.stem for p in root.glob("*.py")}
    names |= {p.name for p in root.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    return names


def imports_of(path):
    """[(top-level module, line)] of the absolute imports in one Python file."""
    tree = ast.parse(pathlib.Path(path).read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], node.lineno))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "importorskip"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.args[0].value.split(".")[0], node.lineno))
    return found


def providers(module, dist_map):
    """Canonical names of the distributions that provide ``module`` here."""
    names = {canonicalize_name(d) for d in dist_map.get(module, ())}
    return names | {ALIASES[n] for n in names if n in ALIASES}


def undeclared_imports(root=ROOT, folders=FOLDERS, pyproject=None, dist_map=None):
    """Lines '<file>:<line>: <module> ...' for each import no allowed install provides."""
    root = pathlib.Path(root)
    installs = declared_requirements(pyproject or root / "pyproject.toml")
    dist_map = importlib.metadata.packages_distributions() if dist_map is None else dist_map
    skip = set(sys.stdlib_module_names) | local_modules(root) | {"__future__"}
    problems = []
    for folder in folders:
        allowed = set()
        for name in INSTALLS.get(folder) or tuple(installs):
            allowed |= installs.get(name, set())
        paths = root.glob("*.py") if folder == "." else (root / folder).rglob("*.py")
        for path in sorted(paths):
            for module, line in imports_of(path):
                if module in skip or module in OPTIONAL_UNDECLARED:
                    continue
                have = providers(module, dist_map)
                if have & allowed:
                    continue
                # Not installed here (e.g. torch in a TensorFlow-only CI step):
                # accepted only if the module's own name is a declared distribution.
                if (
                    not have
                    and canonicalize_name(UNINSTALLED_PROVIDERS.get(module, module)) in allowed
                ):
                    continue
                where = path.relative_to(root)
                if have:
                    why = f"provided by {sorted(have)}, none declared for {folder}/"
                else:
                    why = "not installed here and not a declared distribution"
                problems.append(f"{where}:{line}: {module} ({why})")
    return problems


def test_every_import_is_declared():
    problems = undeclared_imports()
    assert not problems, (
        "Imports that no requirement in pyproject.toml provides (declare them in the extra "
        "of the install that runs the code):\n" + "\n".join(problems)
    )


def test_declared_names_are_real_distributions():
    # A typo in pyproject.toml would make the check above pass for nothing.
    installed = {canonicalize_name(d.metadata["Name"]) for d in importlib.metadata.distributions()}
    installs = declared_requirements()
    needed = installs["core"] | installs["tensorflow"] | installs["examples"] | installs["test"]
    aliased = {ALIASES.get(n, n) for n in installed}
    assert needed <= installed | aliased, sorted(needed - installed - aliased)


@pytest.fixture
def fake_repo(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [project]
            name = "fake"
            dependencies = ["numpy>=1.26"]  # a comment
            [project.optional-dependencies]
            test = ["pytest>=7"]
            """
        )
    )
    pkg = tmp_path / "keras_topk"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import os\nimport numpy as np\nfrom . import mod\n")
    return tmp_path


DIST_MAP = {"numpy": ["numpy"], "pytest": ["pytest"], "yaml": ["PyYAML"], "_pytest": ["pytest"]}


def test_checker_passes_a_declared_import(fake_repo):
    assert undeclared_imports(fake_repo, ("keras_topk",), dist_map=DIST_MAP) == []


@pytest.mark.parametrize(
    "source, module",
    [
        ("import yaml\n", "yaml"),  # installed, by an undeclared distribution
        ("from yaml.loader import Loader\n", "yaml"),
        ("def f():\n    import pytest\n", "pytest"),  # declared, but not for this folder
        ("import notinstalledanywhere\n", "notinstalledanywhere"),
        ("import os\npytest = os\npytest.importorskip('yaml')\n", "yaml"),
    ],
)
def test_checker_fails_an_undeclared_import(fake_repo, source, module):
    (fake_repo / "keras_topk" / "extra.py").write_text(source)
    problems = undeclared_imports(fake_repo, ("keras_topk",), dist_map=DIST_MAP)
    assert len(problems) == 1 and f": {module} (" in problems[0], problems
    assert problems[0].startswith("keras_topk/extra.py:")


def test_checker_reads_folder_installs(fake_repo):
    # tests/ may use the test extra; the same import passes there.
    tests = fake_repo / "tests"
    tests.mkdir()
    (tests / "test_x.py").write_text("import pytest\nimport difftopk\n")
    assert undeclared_imports(fake_repo, ("tests",), dist_map=DIST_MAP) == []
