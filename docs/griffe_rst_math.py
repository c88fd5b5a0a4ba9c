"""Griffe extension for the API reference: reStructuredText maths and doctests as Markdown.

The docstrings follow Keras's style (Google sections) with formulas written as
``.. math::`` blocks and ``:math:`...``` roles, which Markdown would show as a
literal paragraph and code. This turns them into ``$$ ... $$`` and
``$...$``, which ``pymdownx.arithmatex`` marks for MathJax (the copy that
docs/hooks.py takes from the ``django-static-mathjax`` package: no network), and each doctest (``>>>`` lines and their output, up to a
blank line) into a fenced ``pycon`` block, which Markdown would otherwise read
as paragraphs (and ``[a][b]`` outputs as links). The docstrings themselves stay
as they are for ``help()`` and doctest.
"""

import re

import griffe

_ROLE = re.compile(r":math:`([^`]+)`")


def _convert(text):
    # A role may wrap onto the next line of the docstring: join it first, so that
    # the line-by-line pass below sees it whole.
    text = _ROLE.sub(lambda m: ":math:`" + " ".join(m.group(1).split()) + "`", text)
    lines = text.split("\n")
    out = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped == ".. math::":
            indent = line[: len(line) - len(line.lstrip())]
            body = []
            i += 1
            # The block: the indented lines (and blank lines) after the directive.
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(indent + " ")):
                body.append(lines[i].strip())
                i += 1
            while body and not body[-1]:
                body.pop()
            while body and not body[0]:
                body.pop(0)
            # Blank lines split a block into separate displayed equations.
            groups, current = [], []
            for b in body:
                if b:
                    current.append(b)
                elif current:
                    groups.append(current)
                    current = []
            if current:
                groups.append(current)
            for group in groups:
                out += ["", f"{indent}$$", *(indent + g for g in group), f"{indent}$$", ""]
            continue
        if stripped.startswith(">>>"):
            indent = line[: len(line) - len(line.lstrip())]
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
                i += 1
            out += [f"{indent}```pycon", *(indent + b for b in block), f"{indent}```"]
            continue
        out.append(_ROLE.sub(lambda m: f"${m.group(1)}$", line))
        i += 1
    return "\n".join(out)


class RstMath(griffe.Extension):
    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = _convert(obj.docstring.value)
