"""MkDocs hooks: API pages from ``__all__``; README sections and benchmark results as they are now.

A page line ``<!-- api: keras_topk.losses -->`` becomes one mkdocstrings
directive (``::: path``) per name in that module's ``__all__``, read by
importing the module at build time, so a name added to ``__all__`` appears in
the reference without editing a page (``tests/test_docs.py`` checks that every
exported name is rendered). A name whose public path is also a submodule's
(``keras_topk.losses.smooth_topk_svm`` is a function and a module) is rendered
from the module that defines it.

A page line ``<!-- include README.md: Heading -->`` is replaced by that section of
README.md (down to the next heading of the same or a higher level), and
``<!-- include benchmarks/results/results.md -->`` by the whole file, so that the
site never repeats (and drifts from) what README and the benchmark script write.
Links of the included text are rewritten for the page: files under docs/ and
the benchmark images link into the site, other repository files become code.
"""

import importlib
import inspect
import pathlib
import pkgutil
import posixpath
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
ASSETS = ("benchmarks/results",)  # folders whose images the site carries
_INCLUDE = re.compile(r"^<!-- include (?P<path>[^:>]+?)(?:: (?P<heading>.+?))? -->$", re.M)
_API = re.compile(r"^<!-- api: (?P<module>[\w.]+) -->$", re.M)
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def on_files(files, config):
    # Imported here: tests read this module's API-page helpers without the `docs` extra installed.
    from mkdocs.structure.files import File

    for folder in ASSETS:
        for path in sorted((ROOT / folder).glob("*.png")):
            src = path.relative_to(ROOT).as_posix()
            files.append(File(src, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files


def _section(text, heading):
    lines = text.split("\n")
    for i, line in enumerate(lines):
        m = re.match(r"^(#+) (.*)$", line)
        if m and m.group(2).strip() == heading:
            level = len(m.group(1))
            end = len(lines)
            for j in range(i + 1, len(lines)):
                n = re.match(r"^(#+) ", lines[j])
                if n and len(n.group(1)) <= level and not _in_fence(lines, j):
                    end = j
                    break
            return "\n".join(lines[i + 1 : end]).strip("\n")
    raise ValueError(f"README.md has no heading {heading!r} (docs/hooks.py include)")


def _in_fence(lines, index):
    return sum(1 for line in lines[:index] if line.startswith("```")) % 2 == 1


def _rewrite_links(text, source_dir, page_dir):
    def fix(m):
        bang, label, target = m.groups()
        if re.match(r"^[a-z]+:|^/", target):
            return m.group(0)
        if target.startswith("#"):
            # An anchor of the included file (README), not of this page.
            return f"{label} (README)" if not bang else m.group(0)
        path, _, anchor = target.partition("#")
        repo_path = posixpath.normpath(posixpath.join(source_dir, path))
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


def api_markdown(module_name):
    return "\n\n".join(f"::: {path}" for path in directive_paths(module_name).values())


def on_page_markdown(markdown, page, config, files):
    markdown = _API.sub(lambda m: api_markdown(m.group("module")), markdown)
    page_dir = posixpath.dirname(page.file.src_uri)

    def include(m):
        path, heading = m.group("path").strip(), m.group("heading")
        text = (ROOT / path).read_text(encoding="utf-8")
        if heading:
            text = _section(text, heading.strip())
        # Included headings sit one level below the page's title.
        text = (
            re.sub(r"^(#+) ", lambda h: "#" + h.group(1) + " ", text, flags=re.M)
            if not heading
            else text
        )
        return _rewrite_links(text, posixpath.dirname(path), page_dir)

    return _INCLUDE.sub(include, markdown)
