"""Checkpoints: a trained network with its config and history in one .npz, written atomically
and never over another file by accident.

* ``save_checkpoint`` refuses to replace an existing file unless ``overwrite=True``, and never
  replaces anything with a run that did not finish (history.status other than 'complete').
* ``load_checkpoint`` reads arrays only (no pickles: no code runs from a data file) and checks
  every array, the config and the history before returning them.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from helpers import History
from workbook.checks import check_like
from workbook.engine import EngineConfig, check_params
from workbook.files import atomic_write

FORMAT = 2


def checkpoint_path(path) -> Path:
    """'arch5.seed0' -> 'arch5.seed0.npz' (a dot in the name is kept, never replaced)."""
    path = Path(path)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def history_from_dict(d: dict, strict: bool = False) -> History:
    """A History from its dict (History.to_dict, a checkpoint, or a recorded results row that
    holds only some fields). Unknown keys are ignored unless ``strict``; an old 'interrupted'
    flag becomes status 'interrupted'. Wrong types raise ValueError naming the field."""
    if not isinstance(d, dict):
        raise ValueError(f"a history must be a dict; got {type(d).__name__}")
    d = dict(d)
    if "interrupted" in d:
        flag = d.pop("interrupted")
        d.setdefault("status", "interrupted" if flag else "complete")
    names = {f.name: f for f in dataclasses.fields(History)}
    unknown = set(d) - set(names)
    if strict and unknown:
        raise ValueError(f"history has unknown fields {sorted(unknown)}")
    out = {}
    for k, v in d.items():
        if k not in names:
            continue
        want = str(names[k].type)
        ok = {"list": isinstance(v, list) and all(isinstance(x, (int, float)) for x in v),
              "float": isinstance(v, (int, float)) and not isinstance(v, bool),
              "int": isinstance(v, int) and not isinstance(v, bool) and v >= 0,
              "str": isinstance(v, str), "dict": isinstance(v, dict)}.get(want, True)
        if not ok:
            raise ValueError(f"history field {k!r} must be a {want}; got {type(v).__name__}")
        out[k] = v
    return History(**out)


def save_checkpoint(path, params: dict, cfg=None, history: History | None = None, *,
                    overwrite: bool = False) -> Path:
    """Write params (+ config + history) to ``path`` (.npz added), atomically; returns the path.

    An existing file is replaced only with ``overwrite=True``, only if it is a checkpoint
    itself, and never by a run that did not finish: a history whose status is not
    'complete' is saved only under a new name."""
    check_params(params)
    path = checkpoint_path(path)
    if history is not None and not isinstance(history, History):
        raise ValueError(f"history must be a helpers.History; got {type(history).__name__}")
    complete = history is None or history.complete
    if path.exists():
        if not complete:
            raise FileExistsError(f"{path} exists and this run did not finish (status "
                                  f"{history.status!r}, {history.updates_done} updates): it never "
                                  "replaces a checkpoint; save it under another name")
        if not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it, or choose "
                                  "another name")
        try:
            load_checkpoint(path)
        except (ValueError, OSError) as e:
            raise FileExistsError(f"{path} exists and is not a checkpoint; it is not overwritten. "
                                  "Choose another name or move that file") from e
    meta = {"config": cfg.to_dict() if cfg is not None else None,
            "history": history.to_dict() if history is not None else None, "format": FORMAT}
    arrays = {"meta": np.array(json.dumps(meta))}
    arrays.update({"param_" + k: np.ascontiguousarray(v) for k, v in params.items()})
    atomic_write(path, lambda fh: np.savez(fh, **arrays), suffix=".npz.tmp")
    return path


def load_checkpoint(path, like: dict | None = None):
    """Read a checkpoint of save_checkpoint -> (params, cfg or None, history or None).

    ``path`` with or without .npz (the .npz file is preferred over a folder of the bare name).
    Keys, shapes, dtypes, the config and the history are checked; with ``like`` (e.g.
    init_params(...) of the architecture you expect) every array must match its shape and
    dtype. Raises ValueError saying which."""
    path = Path(path)
    if not path.is_file() and checkpoint_path(path).is_file():
        path = checkpoint_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path} (nor {checkpoint_path(path)})")
    try:
        with np.load(path, allow_pickle=False) as z:
            params = {k[6:]: z[k] for k in z.files if k.startswith("param_")}
            meta = json.loads(str(z["meta"])) if "meta" in z.files else None
    except Exception as e:
        raise ValueError(f"{path} is not a readable checkpoint ({e}); was it written by "
                         "save_checkpoint?") from e
    if not isinstance(meta, dict) or not params:
        raise ValueError(f"{path} is not a checkpoint written by save_checkpoint (no meta/params)")
    try:
        check_params(params)
    except ValueError as e:
        raise ValueError(f"checkpoint {path} has inconsistent parameters: {e}") from e
    if like is not None:
        check_like(path, params, like)
    try:
        cfg = EngineConfig.from_dict(meta["config"]) if meta.get("config") else None
        hist = history_from_dict(meta["history"], strict=True) if meta.get("history") else None
    except (TypeError, ValueError) as e:
        raise ValueError(f"checkpoint {path} has an unreadable config/history: {e}") from e
    return params, cfg, hist
