"""Showing the code a chapter teaches: the source of a public function of helpers.py (the lesson),
syntax highlighted, in the notebook. The engine's code is never shown: the chapters teach the
plain code and check the engine against it."""
from __future__ import annotations

import inspect
import textwrap


def source_of(fn, contains: str | None = None, context: int = 0) -> str:
    """The source of ``fn`` (a function or method) as a string, dedented.

    With ``contains``, only the lines that contain that text (plus ``context`` lines either side),
    each run of skipped lines shown as ``...``; a ValueError if no line contains it.
    """
    try:
        src = textwrap.dedent(inspect.getsource(fn))
    except (TypeError, OSError) as e:
        raise ValueError(f"cannot show the source of {fn!r}: {e}") from e
    if contains is None:
        return src.rstrip("\n") + "\n"
    lines = src.splitlines()
    hits = [i for i, ln in enumerate(lines) if contains in ln]
    if not hits:
        raise ValueError(f"no line of {getattr(fn, '__name__', fn)} contains {contains!r}")
    keep = sorted({j for i in hits for j in range(max(0, i - context), min(len(lines), i + context + 1))})
    out, last = [], -1
    for j in keep:
        if j > last + 1:
            out.append("    ...")
        out.append(lines[j])
        last = j
    return "\n".join(out) + "\n"


def show_source(*fns, contains: str | None = None, context: int = 0):
    """Display the source of each function in ``fns``, syntax highlighted in a notebook (plain
    text elsewhere). See :func:`source_of`. Returns None, so a cell shows it once."""
    from IPython.display import Code, display
    for fn in fns:
        name, module = getattr(fn, "__name__", ""), getattr(fn, "__module__", "")
        if module != "helpers" or name.startswith("_"):
            raise ValueError(f"show_source shows the lesson, the public functions of helpers.py; "
                             f"{module}.{name} is not one")
    text = "\n\n".join(source_of(fn, contains, context) for fn in fns)
    display(Code(text, language="python"))
