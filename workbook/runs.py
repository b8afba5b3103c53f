"""The runs of Exercises 3 and 4: the chapters' configurations (full and fast mode), training
several architectures in a row, their result rows, and the label-smoothing comparison.
Every run trains with workbook.engine.train (tested equal to helpers.train)."""
from __future__ import annotations

import dataclasses

import numpy as np

from helpers import History
from workbook.config import is_fast
from workbook.engine import EngineConfig, as_engine_config, branches, init_params, train
from workbook.plots import data_label


def for_mode(cfg, shrink: int = 20) -> EngineConfig:
    """The config to run now: unchanged normally; in fast mode (WORKBOOK_FAST=1) the step is
    divided by ``shrink`` (at least 10 updates), evaluation uses at most 1000 training images and
    BLAS one thread (tiny matrices on a shared machine), so a notebook cell finishes in seconds.
    Fast-mode results are not real results."""
    cfg = as_engine_config(cfg)
    if not is_fast():
        return cfg
    return dataclasses.replace(cfg, step=max(10, cfg.step // shrink),
                               eval_every=None, eval_train_n=min(cfg.eval_train_n, 1000),
                               progress=False, threads=1)


def result_row(label: str, params: dict, cfg, hist: History) -> dict:
    """One results-table row: architecture, settings, final metrics, times, the data, and the
    run's status ('complete' or why it ended early: such a row is never recorded)."""
    br = branches(params)
    return {"run": label, "f": [f for f, _, _ in br] if len(br) > 1 else br[0][0],
            "nf": [params[k].shape[3] for _, k, _ in br] if len(br) > 1 else params[br[0][1]].shape[3],
            "nh": params["W1"].shape[0], "updates": hist.updates_done,
            "n_cycles": cfg.n_cycles, "step": cfg.step, "increasing": cfg.increasing,
            "lam": cfg.lam, "eps": cfg.eps,
            "train_acc": hist.train_acc[-1] if hist.train_acc else None,
            "test_acc": hist.test_acc[-1] if hist.test_acc else None,
            "test_loss": hist.test_loss[-1] if hist.test_loss else None,
            "time_train_s": round(hist.time_train, 3), "time_eval_s": round(hist.time_eval, 3),
            "data": data_label(hist.data), "fast_mode": is_fast(), "status": hist.status}


# Exercise 3's four architectures: n_p * nf is (about) the same for each, so the conv layer's
# output width stays near 640-768 while f grows.
EX3_ARCHS = {
    "arch1": {"f": 2, "nf": 3, "nh": 50},
    "arch2": {"f": 4, "nf": 10, "nh": 50},
    "arch3": {"f": 8, "nf": 40, "nh": 50},
    "arch4": {"f": 16, "nf": 160, "nh": 50},
}


DATA_KEYS = ("X_train", "y_train", "X_test", "y_test")


def check_data(data) -> None:
    """A load_dataset() dict, or a ValueError that says what it must hold."""
    if not isinstance(data, dict) or any(k not in data for k in DATA_KEYS):
        have = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"data must be a dict with keys {list(DATA_KEYS)} (and 'name'), as "
                         f"returned by load_dataset(); got {have}")


def arch_args(label: str, spec) -> tuple:
    """(f, nf, nh) of an architecture dict, or a ValueError naming the run."""
    if not isinstance(spec, dict) or any(k not in spec for k in ("f", "nf", "nh")):
        raise ValueError(f"architecture {label!r} must be a dict with keys 'f', 'nf' and 'nh', "
                         f"e.g. {{'f': 4, 'nf': 10, 'nh': 50}}; got {spec!r}")
    return spec["f"], spec["nf"], spec["nh"]


def same_protocol(hist: History, cfg) -> bool:
    """Whether ``hist`` was trained with ``cfg`` (the progress bar aside)."""
    a, b = dict(hist.config), as_engine_config(cfg).to_dict()
    for d in (a, b):
        for k in ("progress", "threads"):
            d.pop(k, None)
    return all(a.get(k) == v for k, v in b.items())


def run_architectures(archs: dict, cfg, data: dict, seed: int = 0,
                      reuse: dict | None = None, verbose: bool = True,
                      params_out: dict | None = None):
    """Train every architecture in ``archs`` with the same config on the same data.

    archs: {label: {"f": int, "nf": int, "nh": int}} in the order wanted (e.g. EX3_ARCHS);
        f and nf may be equal-length tuples (multi-size filters, see init_params).
    cfg: the TrainConfig / EngineConfig for every run, used as given (wrap it in for_mode yourself).
    data: dict from load_dataset(): X_train (3072, n) float32 normalised, y_train (n,) int64,
        X_test (3072, m) float32, y_test (m,) int64, name str (the data label on every row).
    seed: the He-initialisation seed of every network (cfg.seed drives the batch order).
    reuse: {label: (row, History)} of runs already trained with this same cfg (e.g. arch2 from
        an earlier cell); they are taken as they are instead of being retrained.
    params_out: a dict that receives {label: trained params} of the runs trained here.
    Returns (rows, histories): rows a list of result_row dicts in the order of ``archs``
    (JSON-ready), histories {label: History}. With ``verbose`` one line per run is printed.
    A run that does not finish (Ctrl-C) ends the loop: its row (status 'interrupted') is the
    last one returned, and the runs after it are not trained; a line says what finished.
    """
    check_data(data)
    if not archs:
        raise ValueError("archs is empty: pass {label: {'f': .., 'nf': .., 'nh': ..}, ...}")
    reuse = dict(reuse or {})
    unknown = set(reuse) - set(archs)
    if unknown:
        raise ValueError(f"reuse has runs {sorted(unknown)} that are not in archs {list(archs)}")
    cfg = as_engine_config(cfg)
    rows, hists = [], {}
    for label, spec in archs.items():
        f, nf, nh = arch_args(label, spec)
        if label in reuse:
            row, hist = reuse[label]
            if not same_protocol(hist, cfg):
                raise ValueError(f"reuse[{label!r}] was trained with another config; retrain it "
                                 "or pass the config it was trained with")
            how = "reused"
        else:
            params = init_params(f, nf, nh, K=int(data.get("K", 10)), seed=seed)
            params, hist = train(params, data["X_train"], data["y_train"], cfg,
                                 data["X_test"], data["y_test"], data_name=data.get("name", ""))
            row = result_row(label, params, cfg, hist)
            how = "trained"
            if params_out is not None:
                params_out[label] = params
        rows.append(row)
        hists[label] = hist
        if not hist.complete:
            done = [r for r in rows[:-1]]
            print(f"{label} did not finish ({hist.status} at update {hist.updates_done} of "
                  f"{len(hist.eta)}): stopping here. Finished: "
                  f"{', '.join(r['run'] for r in done) or 'none'}; not trained: "
                  f"{', '.join(list(archs)[len(rows):]) or 'none'}", flush=True)
            break
        if verbose:
            print(f"{label} (f={f}, nf={nf}, nh={nh}) {how}: {hist.updates_done} updates, "
                  f"final test acc {100 * hist.final_test_acc:.2f}%, train {hist.time_train:.1f} s, "
                  f"eval {hist.time_eval:.1f} s - {data_label(hist.data)}", flush=True)
    return rows, hists


def ls_summary(hist_a: History, hist_b: History, labels=("no LS", "LS")) -> dict:
    """Numbers that compare two runs (e.g. without and with label smoothing) on the HARD loss.

    For each run (a dict under its label): final train_loss, test_loss and their gap
    (test - train), the minimum test loss and the update t where it occurred, the rise of the
    test loss from that minimum to the end (loss overfitting), and final train/test accuracy.
    Differences, second run minus first: d_gap, d_rise, d_test_loss, d_test_acc.
    All values are Python floats/ints; 'labels' holds the two labels.
    """
    out = {"labels": tuple(labels)}
    if len(labels) != 2:
        raise ValueError("labels must be two names, one per history")
    for lab, h in zip(labels, (hist_a, hist_b)):
        if not isinstance(h, History):
            raise ValueError(f"{lab!r}: expected a History (the second value returned by train)")
        if not h.train_loss or not h.test_loss:
            raise ValueError(f"{lab!r}: the History has no train/test losses; train with "
                             "X_test and y_test so the test curves are recorded")
        te = np.asarray(h.test_loss, dtype=np.float64)
        i = int(np.argmin(te))
        out[lab] = {"train_loss": float(h.train_loss[-1]), "test_loss": float(te[-1]),
                    "gap": float(te[-1] - h.train_loss[-1]),
                    "test_loss_min": float(te[i]), "t_min": int(h.t[i]),
                    "rise": float(te[-1] - te[i]),
                    "train_acc": float(h.train_acc[-1]), "test_acc": float(h.test_acc[-1]),
                    "eps": float(h.config.get("eps", float("nan"))) if h.config else float("nan")}
    a, b = out[labels[0]], out[labels[1]]
    out["d_gap"] = b["gap"] - a["gap"]
    out["d_rise"] = b["rise"] - a["rise"]
    out["d_test_loss"] = b["test_loss"] - a["test_loss"]
    out["d_test_acc"] = b["test_acc"] - a["test_acc"]
    return out


