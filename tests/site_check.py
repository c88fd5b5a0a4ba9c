"""The built docs site, as a reader's browser shows it: headless Chromium, no network.

    python -m tests.site_check SITE_DIR [--browser chromium]

For every page of the site (every ``.html`` file but the 404 page) this opens
the file in headless Chromium with the network switched off
(``--dump-dom`` after the page's scripts have run), and checks that

- the page renders: the DOM has the page's article with a title;
- the formulas render offline: every ``arithmatex`` element of the page holds
  MathJax's output (``mjx-container``), and no raw TeX delimiter ``\\(`` or
  ``\\[`` is left in the text outside code;
- no internal link is broken: every relative ``href``/``src`` names a file of
  the site, and an ``#anchor`` on a page names an ``id`` of that page.

``tests/test_docs.py`` runs it on a fresh build (slow; skipped where no browser
is installed); CI runs it as its own step, after installing Debian's
``chromium`` if absent. Uses the standard library only.
"""

import argparse
import concurrent.futures
import html.parser
import os
import pathlib
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser(name=None):
    """The path of a Chromium-like browser, or None."""
    for candidate in (name,) if name else BROWSERS:
        path = shutil.which(candidate) if candidate else None
        if path:
            return path
    return None


class _Page(html.parser.HTMLParser):
    """Ids, links, arithmatex elements and the text outside code of one HTML document."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids = set()
        self.links = []
        self.arithmatex = 0
        self.mathjax = 0
        self.titles = 0
        self.article = False
        self.text = []
        self._skip = 0  # depth inside code, pre, script and style

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if attrs.get("name") and tag == "a":
            self.ids.add(attrs["name"])
        for key in ("href", "src"):
            if attrs.get(key) and tag in ("a", "img", "script", "link"):
                self.links.append(attrs[key])
        classes = (attrs.get("class") or "").split()
        if "arithmatex" in classes:
            self.arithmatex += 1
        if tag == "mjx-container":
            self.mathjax += 1
        if tag == "article":
            self.article = True
        if tag == "h1":
            self.titles += 1
        if tag in ("code", "pre", "script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("code", "pre", "script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def parse(text):
    page = _Page()
    page.feed(text)
    page.close()
    return page


def dump_dom(browser, path, timeout=120):
    """The DOM of the file at ``path`` after its scripts ran, offline."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",  # CI runs as root
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                f"--user-data-dir={profile}",
                # No network: a formula that needs a CDN stays raw TeX.
                "--proxy-server=http://127.0.0.1:9",
                "--proxy-bypass-list=<-loopback>",
                "--host-resolver-rules=MAP * ~NOTFOUND",
                # Let MathJax typeset before the DOM is written.
                "--virtual-time-budget=20000",
                "--dump-dom",
                pathlib.Path(path).resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    if result.returncode != 0 or "<html" not in result.stdout:
        raise RuntimeError(
            f"{browser} could not render {path} (exit {result.returncode}): {result.stderr[-2000:]}"
        )
    return result.stdout


def pages(site):
    site = pathlib.Path(site)
    return sorted(
        p.relative_to(site).as_posix()
        for p in site.rglob("*.html")
        if p.name != "404.html" and "vendor" not in p.parts
    )


def _link_problems(site, page, parsed, ids_of):
    problems = []
    page_dir = posixpath.dirname(page)
    for link in parsed.links:
        url = urllib.parse.urlsplit(link)
        if url.scheme or url.netloc or link.startswith(("mailto:", "data:", "javascript:")):
            continue
        target = page if not url.path else posixpath.normpath(posixpath.join(page_dir, url.path))
        if target.startswith(".."):
            problems.append(f"{page}: link {link!r} leaves the site")
            continue
        path = pathlib.Path(site) / urllib.parse.unquote(target)
        if path.is_dir():
            path = path / "index.html"
            target = posixpath.join(target, "index.html")
        if not path.is_file():
            problems.append(f"{page}: link {link!r} names no file of the site")
            continue
        if url.fragment and target.endswith(".html"):
            ids = ids_of(target)
            if urllib.parse.unquote(url.fragment) not in ids:
                problems.append(f"{page}: link {link!r}: no id {url.fragment!r} on {target}")
    return problems


def check_page(site, page, browser, ids_of):
    """The problems of one page, as sentences (none: it passes)."""
    static = parse((pathlib.Path(site) / page).read_text(encoding="utf-8"))
    dom = parse(dump_dom(browser, pathlib.Path(site) / page))
    problems = []
    if not dom.article or dom.titles < 1:
        problems.append(f"{page}: no rendered article with a title")
    if static.arithmatex and dom.mathjax < static.arithmatex:
        problems.append(
            f"{page}: {static.arithmatex} formulas, {dom.mathjax} rendered by MathJax (offline)"
        )
    text = " ".join(dom.text)
    raw = re.findall(r".{0,40}\\[(\[].{0,40}", text)
    if raw:
        problems.append(f"{page}: raw TeX left in the text, e.g. {raw[0]!r}")
    problems += _link_problems(site, page, static, ids_of)
    return problems, static.arithmatex, dom.mathjax


def check_site(site, browser, workers=None):
    """``(problems, report)`` for every page of ``site``."""
    site = pathlib.Path(site)
    cache = {}

    def ids_of(target):
        if target not in cache:
            cache[target] = parse((site / target).read_text(encoding="utf-8")).ids
        return cache[target]

    names = pages(site)
    for name in names:  # fill the cache before the threads read it
        ids_of(name)
    problems, report = [], []
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda p: check_page(site, p, browser, ids_of), names)
        for name, (found, formulas, rendered) in zip(names, results):
            problems += found
            report.append(f"{name}: {formulas} formulas, {rendered} rendered")
    return problems, report


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.site_check", description=__doc__)
    parser.add_argument("site", help="the folder `mkdocs build` wrote")
    parser.add_argument("--browser", default=None, help="a Chromium binary (default: found)")
    args = parser.parse_args(argv)
    browser = find_browser(args.browser)
    if browser is None:
        raise SystemExit(f"no browser found ({', '.join(BROWSERS)}); apt-get install chromium")
    problems, report = check_site(args.site, browser)
    print("\n".join(report))
    if problems:
        print("\n".join(["", "problems:"] + problems))
        raise SystemExit(1)
    print(f"{len(report)} pages render in {os.path.basename(browser)}, offline: no problem")


if __name__ == "__main__":
    sys.exit(main())
