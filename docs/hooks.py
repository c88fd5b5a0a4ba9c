"""MkDocs hooks: API pages from ``__all__``; benchmark results as they are now.

A page line ``<!-- api: keras_topk.losses -->`` becomes one mkdocstrings
directive (``::: path``) per name in that module's ``__all__``, read by
importing the module at build time, so a name added to ``__all__`` appears in
the reference without editing a page (``tests/test_docs.py`` checks that every
exported name is rendered). A name whose public path is also a submodule's
(``keras_topk.losses.smooth_topk_svm`` is a function and a module) is rendered
from the module that defines it.

``<!-- include benchmarks/results/results.md -->`` is replaced by that file, as
the benchmark script wrote it. The pages are the source: they link repository
files outside docs/ with ``../`` paths, which work where the Markdown is read
(GitHub, an editor); on the site the benchmark images become site links and
other files become code names, as the site does not carry them.
"""

import importlib
import importlib.util
import inspect
import pathlib
import pkgutil
import posixpath
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
ASSETS = ("benchmarks/results",)  # folders whose images the site carries
_INCLUDE = re.compile(r"^<!-- include (?P<path>[^:>]+?) -->$", re.M)
_API = re.compile(r"^<!-- api: (?P<module>[\w.]+) -->$", re.M)
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


# MathJax 3 (Apache-2.0) as the `django-static-mathjax` package ships it (the `docs`
# extra): its SVG build is one self-contained file (about 2 MB, fonts included), so
# the site renders formulas without a network.
MATHJAX_FILES = {"tex-svg.js": "es5/tex-svg.js", "LICENSE": "LICENSE"}
MATHJAX_SITE_DIR = "javascripts/vendor/mathjax"


def mathjax_dir():
    """The folder of the MathJax distribution installed by ``django-static-mathjax``."""
    spec = importlib.util.find_spec("mathjax")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        folder = pathlib.Path(location) / "static" / "mathjax"
        if all((folder / f).is_file() for f in MATHJAX_FILES.values()):
            return folder
    raise RuntimeError(
        "MathJax is missing: the site renders its formulas with the copy of the "
        '`django-static-mathjax` package. Install the docs extra: pip install -e ".[docs]"'
    )


def on_files(files, config):
    # Imported here: tests read this module's API-page helpers without the `docs` extra installed.
    from mkdocs.structure.files import File

    for folder in ASSETS:
        for path in sorted((ROOT / folder).glob("*.png")):
            src = path.relative_to(ROOT).as_posix()
            files.append(File(src, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    source = mathjax_dir()
    for name, path in MATHJAX_FILES.items():
        files.append(
            File.generated(config, f"{MATHJAX_SITE_DIR}/{name}", abs_src_path=str(source / path))
        )
    return files


def _rewrite_links(text, source_dir, page_dir, outside_only=False):
    def fix(m):
        bang, label, target = m.groups()
        if re.match(r"^[a-z]+:|^/", target):
            return m.group(0)
        if target.startswith("#"):
            return m.group(0)
        path, _, anchor = target.partition("#")
        repo_path = posixpath.normpath(posixpath.join(source_dir, path))
        if outside_only and repo_path.startswith("docs/"):
            return m.group(0)  # a link between pages: MkDocs checks it
        if repo_path.startswith("docs/") or any(
            repo_path.startswith(a + "/") and repo_path.endswith(".png") for a in ASSETS
        ):
            site_path = repo_path[len("docs/") :] if repo_path.startswith("docs/") else repo_path
            if (ROOT / repo_path).exists():
                rel = posixpath.relpath(site_path, page_dir or ".")
                return f"{bang}[{label}]({rel}{'#' + anchor if anchor else ''})"
        # A file the site does not carry: name it.
        return f"{label} (`{repo_path}`)" if label and label != repo_path else f"`{repo_path}`"

    return _LINK.sub(fix, text)


def exported_names(module_name):
    """``__all__`` of the module (its public names if it has none)."""
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            n for n, v in vars(module).items() if not n.startswith("_") and not inspect.ismodule(v)
        ]
    return list(names)


def directive_paths(module_name):
    """``{name: dotted path for mkdocstrings}`` for every exported name of the module."""
    module = importlib.import_module(module_name)
    submodules = set()
    if hasattr(module, "__path__"):
        submodules = {m.name for m in pkgutil.iter_modules(module.__path__)}
    paths = {}
    for name in exported_names(module_name):
        obj = getattr(module, name)
        if name not in submodules:
            paths[name] = f"{module_name}.{name}"
            continue
        # The public name is shadowed by a submodule of the same name for the
        # static loader: point at the defining module.
        defining = getattr(obj, "__module__", None) or f"{module_name}.{name}"
        paths[name] = f"{defining}.{getattr(obj, '__qualname__', name)}"
    return paths


def _module_directive(module_name, heading):
    """A directive that renders a module's docstring and none of its members."""
    options = [
        "members: false",
        f"show_root_heading: {'true' if heading else 'false'}",
        "show_root_full_path: true",
    ]
    return f"::: {module_name}\n    options:\n" + "\n".join(f"      {o}" for o in options)


def api_markdown(module_name):
    """The module's docstring, then, per defining submodule, its docstring and its names.

    Module docstrings hold what the names share (the metrics' tie rule, the
    conformal rank rule, quantile and scores, references), so they are shown.
    """
    module = importlib.import_module(module_name)
    blocks = [_module_directive(module_name, heading=False)] if module.__doc__ else []
    groups = {}
    for name, path in directive_paths(module_name).items():
        defining = getattr(getattr(module, name), "__module__", None) or module_name
        if not defining.startswith(module_name + "."):
            defining = module_name  # defined here, or an alias of another public module's name
        groups.setdefault(defining, []).append(path)
    for defining, paths in groups.items():
        if defining != module_name and importlib.import_module(defining).__doc__:
            # A private submodule's docstring reads as part of the page; a public one is titled.
            public = not any(part.startswith("_") for part in defining.split("."))
            blocks.append(_module_directive(defining, heading=public))
        blocks += [f"::: {path}" for path in paths]
    return "\n\n".join(blocks)


def on_page_markdown(markdown, page, config, files):
    markdown = _API.sub(lambda m: api_markdown(m.group("module")), markdown)
    page_dir = posixpath.dirname(page.file.src_uri)

    def include(m):
        path = m.group("path").strip()
        text = (ROOT / path).read_text(encoding="utf-8")
        # Included headings sit one level below the page's title.
        text = re.sub(r"^(#+) ", lambda h: "#" + h.group(1) + " ", text, flags=re.M)
        return _rewrite_links(text, posixpath.dirname(path), page_dir)

    markdown = _INCLUDE.sub(include, markdown)
    # The page's own links that leave docs/ (``../examples/x.py``).
    return _rewrite_links(markdown, posixpath.join("docs", page_dir), page_dir, outside_only=True)
