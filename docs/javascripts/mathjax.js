// MathJax settings for pymdownx.arithmatex (generic mode): \( \) inline, \[ \] display.
// The script itself is MathJax 3's SVG build, served from the site (docs/hooks.py copies it
// from the django-static-mathjax package): no network needed.
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true },
  options: { ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex" },
  svg: { fontCache: "global" },
};
