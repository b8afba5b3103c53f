"""Re-execute notebooks in fast mode and store the outputs of their ``# NBVAL_CHECK_OUTPUT``
cells (the verdicts nbval compares); every other output is stripped.

Usage: python tools/refresh_checks.py notebooks/*.ipynb   (run after editing a verdict cell)
"""
import os
import sys

import nbformat
from nbconvert.preprocessors import ExecutePreprocessor

sys.path.insert(0, os.path.dirname(__file__))
from strip_outputs import MARK, strip  # noqa: E402


def refresh(path: str) -> None:
    os.environ.update(WORKBOOK_FAST="1", MPLBACKEND="Agg")
    nb = nbformat.read(path, as_version=4)
    run = nbformat.read(path, as_version=4)
    ExecutePreprocessor(timeout=600, kernel_name="python3").preprocess(
        run, {"metadata": {"path": os.path.dirname(os.path.abspath(path))}})
    for cell, done in zip(nb.cells, run.cells):
        if cell.cell_type == "code" and MARK in cell.source:
            cell.outputs, cell.execution_count = done.outputs, done.execution_count
    nbformat.write(nb, path)
    strip(path)


if __name__ == "__main__":
    for p in sys.argv[1:]:
        refresh(p)
        print("refreshed", p)
