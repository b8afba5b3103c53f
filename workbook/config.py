"""Paths and the fast mode: where data and figures go, and whether this is a quick test run."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "data"
FIG_DIR = ROOT / "figures"
DOCS_DIR = ROOT / "docs"


def is_fast() -> bool:
    """True when WORKBOOK_FAST is set to 1/true/yes (CI sets it): small data, few updates."""
    return os.environ.get("WORKBOOK_FAST", "").strip().lower() in {"1", "true", "yes", "on"}


def fig_dir() -> Path:
    """Where figures and results JSON go: figures/, or figures/fast-mode/ in fast mode, so that
    running the tests never overwrites the figures of a real (full-mode) run."""
    return FIG_DIR / "fast-mode" if is_fast() else FIG_DIR
