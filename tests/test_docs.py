"""The API reference covers every exported name of the package, and the site builds strictly.

The reference pages (docs/api/*.md) hold ``<!-- api: MODULE -->`` markers that
docs/hooks.py expands from the module's ``__all__`` at build time. These tests
check that each public module (every submodule of keras_topk whose name does
not start with ``_``) has ``__all__`` and a marker on a page of the site's
navigation, and, where MkDocs is installed (``pip install -e ".[docs]"``),
build the site with ``--strict`` (any warning, e.g. a broken link or
reference, fails) and find the rendered heading of every exported name.
"""

import importlib
import inspect
import pathlib
import pkgutil
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _public_modules():
    """Every public submodule of keras_topk (a new one needs a reference page)."""
    import keras_topk

    return tuple(
        f"keras_topk.{m.name}"
        for m in pkgutil.iter_modules(keras_topk.__path__)
        if not m.name.startswith("_")
    )


PUBLIC_MODULES = _public_modules()
_MARKER = re.compile(r"^<!-- api: (?P<module>[\w.]+) -->$", re.M)


def _hooks():
    sys.path.insert(0, str(ROOT))
    try:
        return importlib.import_module("docs.hooks")
    finally:
        sys.path.remove(str(ROOT))


def _nav_pages():
    text = (ROOT / "mkdocs.yml").read_text()
    nav = text.split("\nnav:", 1)[1].split("\n\n", 1)[0]
    return re.findall(r":\s*([\w/.-]+\.md)\s*$", nav, re.M)


def _markers():
    """{module: page} of the API markers on the pages of the navigation."""
    found = {}
    for page in _nav_pages():
        for m in _MARKER.finditer((ROOT / "docs" / page).read_text()):
            found[m.group("module")] = page
    return found


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_module_declares_all(module_name):
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    assert names is not None, f"{module_name} has no __all__: its API is not declared"
    assert len(set(names)) == len(names), f"{module_name}.__all__ repeats a name"
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing, f"{module_name}.__all__ names what it does not define: {missing}"


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_module_has_a_reference_page(module_name):
    markers = _markers()
    assert module_name in markers, (
        f"no page of mkdocs.yml's nav has '<!-- api: {module_name} -->'; pages: {_nav_pages()}"
    )


def test_every_exported_name_gets_a_directive():
    hooks = _hooks()
    for module_name in PUBLIC_MODULES:
        names = hooks.exported_names(module_name)
        paths = hooks.directive_paths(module_name)
        assert set(paths) == set(names), module_name
        for name, path in paths.items():
            # The directive names the very object the module exports.
            module_path, _, attr = path.rpartition(".")
            obj = getattr(importlib.import_module(module_path), attr, None)
            if obj is None:  # a class attribute path (Outer.name)
                owner_path, _, owner = module_path.rpartition(".")
                obj = getattr(getattr(importlib.import_module(owner_path), owner), attr)
            assert obj is getattr(importlib.import_module(module_name), name), path


@pytest.mark.slow  # ~20 s: imports the package and renders every page
def test_site_builds_strictly_and_renders_every_name(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    hooks = _hooks()
    for module_name, page in _markers().items():
        html = (site / page).with_suffix(".html").read_text()
        for name, path in hooks.directive_paths(module_name).items():
            # The heading of the object and, below it, its rendered docstring.
            assert f'id="{path}"' in html, f"{module_name}.{name} is not rendered on {page}"
    # The site opens from a folder: pages link to .html files, not directories.
    index = (site / "index.html").read_text()
    assert 'href="api/losses.html"' in index


def _examples(obj):
    import doctest

    doc = inspect.getdoc(obj) or ""
    return [e for e in doctest.DocTestParser().parse(doc) if isinstance(e, doctest.Example)]


_ZERO_CHECK = re.compile(r"[<>]=?\s*0(\.0*)?\b|!=\s*0(\.0*)?\b")


def test_every_public_class_and_function_has_an_example_that_shows_a_value():
    """Each exported class or function has a doctest, and it shows a value.

    A value: some example prints an output other than a bare True/False of a
    comparison with zero (``loss > 0`` says nothing about the loss).
    """
    problems = []
    seen = set()
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or id(obj) in seen:
                continue
            seen.add(id(obj))
            examples = _examples(obj)
            shown = [e for e in examples if e.want.strip()]
            if not examples:
                problems.append(f"{module_name}.{name}: no example")
            elif not shown:
                problems.append(f"{module_name}.{name}: its example shows no value")
            elif all(
                e.want.strip() in ("True", "False") and _ZERO_CHECK.search(e.source) for e in shown
            ):
                problems.append(f"{module_name}.{name}: its example only compares with 0")
    assert not problems, "\n".join(problems)
