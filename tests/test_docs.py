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


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    """The site as ``mkdocs build --strict`` writes it (built once for this module)."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path_factory.mktemp("docs") / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return site


@pytest.mark.slow  # ~20 s: imports the package and renders every page
def test_site_builds_strictly_and_renders_every_name(built_site):
    site = built_site
    hooks = _hooks()
    for module_name, page in _markers().items():
        html = (site / page).with_suffix(".html").read_text()
        for name, path in hooks.directive_paths(module_name).items():
            # The heading of the object and, below it, its rendered docstring.
            assert f'id="{path}"' in html, f"{module_name}.{name} is not rendered on {page}"
    # The site opens from a folder: pages link to .html files, not directories.
    index = (site / "index.html").read_text()
    assert 'href="api/losses.html"' in index
    # MathJax is served by the site itself, not by a CDN.
    assert (site / "javascripts" / "vendor" / "mathjax" / "tex-svg.js").stat().st_size > 1e6
    assert "cdn." not in index and "mathjax@" not in index


@pytest.mark.slow  # ~20 s build + ~45 s of headless Chromium over ~20 pages on 2 cores
def test_the_site_renders_offline_in_a_browser(built_site):
    """Each page renders, its formulas are typeset by MathJax offline, no internal link breaks."""
    from tests import site_check

    browser = site_check.find_browser()
    if browser is None:
        pytest.skip("no Chromium installed (apt-get install chromium); CI installs it")
    problems, report = site_check.check_site(built_site, browser)
    assert not problems, "\n".join(problems)
    # The pages that hold formulas are the API pages; each has them rendered.
    rendered = dict(re.findall(r"^(\S+): (\d+) formulas", line)[0] for line in report)
    assert int(rendered["api/conformal.html"]) > 0 and int(rendered["api/metrics.html"]) > 0


def test_module_docstrings_are_rendered():
    # The rules the names share (the metrics' tie rule, the conformal rank rule,
    # quantile and scores) live in module docstrings: each API page shows them.
    hooks = _hooks()
    for module_name in PUBLIC_MODULES:
        markdown = hooks.api_markdown(module_name)
        module = importlib.import_module(module_name)
        if module.__doc__:
            assert markdown.startswith(f"::: {module_name}\n    options:\n      members: false")
    metrics = hooks.api_markdown("keras_topk.metrics")
    assert "::: keras_topk.metrics.topk_accuracy\n    options:" in metrics


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


# --- README: the door ------------------------------------------------------------------


def _ci_commands():
    """The two commands `.ci/run` runs as README's: install + main job, then the tests."""
    text = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    found = dict(re.findall(r"^(README_INSTALL|README_TEST)='([^']*)'$", text, re.M))
    assert set(found) == {"README_INSTALL", "README_TEST"}, found
    return [found["README_INSTALL"], found["README_TEST"]]


def test_readme_shows_exactly_the_two_commands_ci_runs():
    # The one check that reads README (no other code reads or writes it); README
    # stays a door to the docs pages.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"^```bash\n(.*?)^```", readme, re.S | re.M).group(1)
    shown = [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines() if line.strip()]
    assert shown == _ci_commands()
    lines = readme.count("\n")
    assert lines < 200, f"README.md has {lines} lines: move the detail to docs/"


def test_no_code_reads_or_writes_readme():
    # Scripts and tests work on the docs pages; README only shows what they hold.
    allowed = {pathlib.Path(__file__).resolve()}
    offenders = []
    for folder in ("keras_topk", "tests", "benchmarks", "examples", "docs", ".ci"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".py", "") or not path.is_file() or path.resolve() in allowed:
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            if re.search(r"""["'/]README\.md["']""", text):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"these files open README.md: {offenders}"


def test_citation_file_names_this_version():
    import keras_topk

    text = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    # The top-level keys of the YAML file (no YAML parser among the test requirements).
    fields = dict(re.findall(r'^([a-z-]+): "?([^"\n]*)"?$', text, re.M))
    assert fields["cff-version"] == "1.2.0" and fields["type"] == "software"
    assert fields["version"] == keras_topk.__version__
    assert fields["title"].startswith("keras-topk") and fields["license"] == "MIT"
    assert re.search(r"^authors:\n  - name: ", text, re.M)
