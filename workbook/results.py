"""Results files: the notebooks' tables (figures/[fast-mode/]<name>.json) and the recorded
results of real runs (docs/results/<name>.json). Nothing here loses a row:

    write_results(name, rows)        figures/<mode>/<name>.json, written atomically
    read_results(name)               {run: row} of that file; {} when there is none
    load_recorded(name, folder=None) docs/results/<name>.json as {"data", "rows", "path"} or None
    record_row(name, row, data_name, key="seed", folder=None, overwrite=False)
                                     add one finished run's row, under a lock
    check_complete(row)              ValueError unless the row is of a finished run

Every write goes through workbook.files (a unique temporary file, fsync, rename), so a failed
write leaves the old file and no temporary file; record_row reads, changes and writes under a
file lock, so concurrent recorders keep every row. A damaged file raises ValueError naming the
file and the problem; a bad argument raises ValueError naming it, before anything is read.
"""
from __future__ import annotations

import re
from pathlib import Path

from workbook import config
from workbook.files import locked, read_json, write_json

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _checked_name(name) -> str:
    """``name`` when it is a plain file name stem (letters, digits, _ . -), else ValueError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"name must be a plain file name like '03_architectures' (letters, "
                         f"digits, '_', '-', '.'; no folders); got {name!r}")
    return name[:-5] if name.endswith(".json") else name


def results_path(name: str) -> Path:
    """Where write_results(name, ...) writes in this mode: <config.fig_dir()>/<name>.json."""
    return config.fig_dir() / f"{_checked_name(name)}.json"


def recorded_path(name: str, folder=None) -> Path:
    """docs/results/<name>.json (or <folder>/<name>.json)."""
    return Path(folder or (config.DOCS_DIR / "results")) / f"{_checked_name(name)}.json"


def _checked_rows(rows, need: str | None, what: str) -> list:
    """rows as a list of dicts (each with the key ``need``), else ValueError naming ``what``."""
    if not isinstance(rows, (list, tuple)):
        raise ValueError(f"{what} must be a list of dicts; got {type(rows).__name__}")
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise ValueError(f"{what}[{i}] must be a dict; got {type(r).__name__}")
        if need is not None and need not in r:
            raise ValueError(f"{what}[{i}] has no {need!r} field; got keys {sorted(r)}")
    return list(rows)


def write_results(name: str, rows: list) -> Path:
    """Write ``rows`` (dicts with a "run" field, e.g. from result_row) to
    <config.fig_dir()>/<name>.json as {"fast_mode": bool, "rows": rows}, atomically; returns
    the path. Fast mode writes to figures/fast-mode/, so tests never replace real results.
    Rows of runs that did not finish are written as they are: mark them (status /
    interrupted) before writing, so that the table says so."""
    path = results_path(name)
    rows = _checked_rows(rows, "run", "rows")
    return write_json(path, {"fast_mode": config.is_fast(), "rows": rows})


def read_results(name: str) -> dict:
    """The rows that write_results(name, ...) wrote in this mode, as {run: row}; {} when the
    file does not exist. A damaged file (not JSON, no "rows" list, a row without "run")
    raises ValueError naming the file and the problem."""
    path = results_path(name)
    d = read_json(path, default=None)
    if d is None:
        return {}
    if not isinstance(d, dict) or not isinstance(d.get("rows"), list):
        raise ValueError(f"{path} must hold {{'fast_mode': bool, 'rows': [...]}}; it holds "
                         f"{type(d).__name__}{' without a rows list' if isinstance(d, dict) else ''}"
                         f". Move it away or write it again with write_results")
    try:
        rows = _checked_rows(d["rows"], "run", "rows")
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}. Move it away or write it again") from None
    return {r["run"]: r for r in rows}


def _checked_recorded(d, path: Path) -> dict:
    if not isinstance(d, dict) or not isinstance(d.get("rows"), list):
        raise ValueError(f"{path} must hold {{'data': label, 'rows': [...]}}; it does not "
                         f"(damaged, or another kind of file): restore it or move it away")
    try:
        _checked_rows(d["rows"], None, "rows")
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}; restore it or move it away") from None
    return d


def load_recorded(name: str, folder=None):
    """Read docs/results/<name>.json ({"data": label, "rows": [...]}) -> that dict with
    "path" added (and "data" defaulting to ""), or None when the file does not exist. A file
    that exists but cannot be read, is not JSON or lacks the rows list raises ValueError
    naming the file and the problem."""
    path = recorded_path(name, folder)
    d = read_json(path, default=None)
    if d is None:
        return None
    d = _checked_recorded(d, path)
    d.setdefault("data", "")
    d["path"] = str(path)
    return d


def check_complete(row, what: str = "row") -> None:
    """ValueError unless ``row`` is the row of a finished run: its "status" (when present) is
    "complete", and it is not marked "interrupted" or "failed". Rows without a "status" field
    (older ones) count as finished unless so marked."""
    if not isinstance(row, dict):
        raise ValueError(f"{what} must be a dict; got {type(row).__name__}")
    status = row.get("status", "complete")
    flags = [k for k in ("interrupted", "failed") if row.get(k)]
    if status != "complete" or flags:
        why = f"status {status!r}" if status != "complete" else f"{flags[0]}=True"
        at = f" at update {row['updates']}" if "updates" in row else ""
        raise ValueError(f"{what} is of a run that did not finish ({why}{at}); only complete "
                         f"runs are recorded. Run it again to the end.")


def refuse_to_record(recorded, path, value, data_name: str, key: str = "seed",
                     overwrite: bool = False) -> None:
    """ValueError when a row with ``key`` = ``value`` on ``data_name`` may not be added to the
    recorded file ``recorded`` (load_recorded's dict, or None when there is none): the file holds
    another data set, or already a row with that value (unless ``overwrite``). record_row checks
    this under its lock; call it before a long run to refuse before training."""
    if recorded is None:
        return
    if recorded.get("data") != data_name:
        raise ValueError(f"{path} holds results on {recorded.get('data')!r}, not {data_name!r}; "
                         f"move it away (or record into another name) to record these")
    if not overwrite and any(r.get(key) == value for r in recorded["rows"]):
        raise ValueError(f"{path} already holds a row with {key}={value!r} (it already has a "
                         f"row for {key} {value!r}); pass overwrite=True to replace it "
                         f"(nothing was written)")


def record_row(name: str, row: dict, data_name: str, key: str = "seed", folder=None,
               overwrite: bool = False) -> Path:
    """Add ``row`` to docs/results/<name>.json ({"data": data_name, "rows": [...]}, rows
    sorted by str(row[key])); return the path.

    Refused with ValueError, and nothing written: a row of a run that did not finish (see
    check_complete); a row without ``key``; a file that holds results on another data set
    (``data`` differs from ``data_name``); and a file that already holds a row with the same
    ``key`` value, unless ``overwrite=True`` (then that row is replaced). A damaged file
    raises ValueError naming it. The read, check and write happen under files.locked, and
    the write uses a unique temporary file, so two processes recording at once keep all
    their rows.
    """
    path = recorded_path(name, folder)
    check_complete(row)
    for field, v in (("data_name", data_name), ("key", key)):
        if not isinstance(v, str) or not v:
            raise ValueError(f"{field} must be a non-empty string; got {v!r}")
    if not isinstance(overwrite, bool):
        raise ValueError(f"overwrite must be True or False; got {overwrite!r}")
    if row.get(key) is None:
        raise ValueError(f"the row has no {key!r} value (the field that identifies it in "
                         f"{path}); add it, or pass key= the identifying field")
    with locked(path):
        old = read_json(path, default=None)
        old = ({"data": data_name, "rows": []} if old is None
               else _checked_recorded(old, path))
        refuse_to_record(old, path, row[key], data_name, key, overwrite)
        rows = [r for r in old["rows"] if r.get(key) != row[key]] + [row]
        return write_json(path, {**old, "data": data_name,
                                 "rows": sorted(rows, key=lambda r: str(r.get(key)))})
