"""Strip notebook outputs before committing, keeping only cells marked ``# NBVAL_CHECK_OUTPUT``.

Usage: python tools/strip_outputs.py notebooks/*.ipynb

Marked cells keep their outputs and execution count (nbval skips cells without one); every
other cell loses both, and widget state in the notebook metadata is dropped.
"""
import sys

import nbformat

MARK = "# NBVAL_CHECK_OUTPUT"


def strip(path: str) -> bool:
    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if MARK in cell.source:
            for out in cell.get("outputs", []):
                if out.get("output_type") == "execute_result":
                    out["metadata"] = {}
            continue
        if cell.get("outputs") or cell.get("execution_count") is not None:
            changed = True
        cell["outputs"] = []
        cell["execution_count"] = None
        cell.get("metadata", {}).pop("execution", None)
    for key in ("widgets", "execution"):
        if key in nb.metadata:
            nb.metadata.pop(key)
            changed = True
    nbformat.write(nb, path)
    return changed


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(("stripped " if strip(p) else "clean    ") + p)
