"""Paths and the fast mode: where data and figures go, and whether this is a quick test run."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "data"
FIG_DIR = ROOT / "figures"
DOCS_DIR = ROOT / "docs"


FAST_VALUES = {"": False, "0": False, "1": True}     # WORKBOOK_FAST's only allowed values


def is_fast() -> bool:
    """True when WORKBOOK_FAST=1 (CI and the tests set it): small data, few updates; False when
    it is unset, empty or 0. Any other value ("2", "yes", "true", ...) raises ValueError saying
    the allowed values, so a typo never silently means a full-length run."""
    raw = os.environ.get("WORKBOOK_FAST")
    value = "" if raw is None else raw.strip()
    if value not in FAST_VALUES:
        raise ValueError(f"WORKBOOK_FAST={raw!r} is not allowed: set WORKBOOK_FAST=1 for fast "
                         f"mode (small data, few updates), or 0 or unset it for full mode")
    return FAST_VALUES[value]


def fig_dir() -> Path:
    """Where figures and results JSON go: figures/, or figures/fast-mode/ in fast mode, so that
    running the tests never overwrites the figures of a real (full-mode) run."""
    return FIG_DIR / "fast-mode" if is_fast() else FIG_DIR
