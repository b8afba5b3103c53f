"""Experiments of Exercises 3 and 4: architectures, previews, label smoothing comparisons, results files."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from helpers import History, TrainConfig, _branches, init_params, train
from workbook.checks import _check_eps
from workbook.config import fig_dir, is_fast
from workbook.plots import (data_label)


def for_mode(cfg: TrainConfig, shrink: int = 20) -> TrainConfig:
    """The config to run now: unchanged normally; in fast mode (WORKBOOK_FAST=1) the step is
    divided by ``shrink`` (at least 10 updates) and evaluation uses at most 1000 training
    images, so a notebook cell finishes in seconds. Fast-mode results are not real results."""
    if not is_fast():
        return cfg
    return dataclasses.replace(cfg, step=max(10, cfg.step // shrink),
                               eval_every=None, eval_train_n=min(cfg.eval_train_n, 1000),
                               progress=False)


def result_row(label: str, params: dict, cfg: TrainConfig, hist: History) -> dict:
    """One results-table row: architecture, settings, final metrics, times, and the data."""
    br = _branches(params)
    return {"run": label, "f": [f for f, _, _ in br] if len(br) > 1 else br[0][0],
            "nf": [params[k].shape[3] for _, k, _ in br] if len(br) > 1 else params[br[0][1]].shape[3],
            "nh": params["W1"].shape[0], "updates": hist.updates_done,
            "n_cycles": cfg.n_cycles, "step": cfg.step, "increasing": cfg.increasing,
            "lam": cfg.lam, "eps": cfg.eps,
            "train_acc": hist.train_acc[-1] if hist.train_acc else None,
            "test_acc": hist.test_acc[-1] if hist.test_acc else None,
            "test_loss": hist.test_loss[-1] if hist.test_loss else None,
            "time_train_s": round(hist.time_train, 3), "time_eval_s": round(hist.time_eval, 3),
            "data": data_label(hist.data), "fast_mode": is_fast()}


def write_results(name: str, rows: list) -> Path:
    """Write rows (dicts, e.g. from result_row) to <fig_dir()>/<name>.json (atomically); return
    the path. The README's results tables are made from these files."""
    d = fig_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"fast_mode": is_fast(), "rows": rows}, indent=1))
    os.replace(tmp, path)
    return path


def results_markdown(rows: list, cols=("run", "f", "nf", "nh", "updates", "lam", "eps",
                                       "test_acc", "time_train_s", "data")) -> str:
    """A markdown table of result rows (accuracies shown in %)."""
    def fmt(k, v):
        if k.endswith("acc") and isinstance(v, float):
            return f"{100 * v:.2f}%"
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(k, r.get(k, "")) for k in cols) + " |" for r in rows]
    return "\n".join(lines)


# Exercise 3's four architectures: n_p * nf is (about) the same for each, so the conv layer's
# output width stays near 640-768 while f grows.
EX3_ARCHS = {
    "arch1": {"f": 2, "nf": 3, "nh": 50},
    "arch2": {"f": 4, "nf": 10, "nh": 50},
    "arch3": {"f": 8, "nf": 40, "nh": 50},
    "arch4": {"f": 16, "nf": 160, "nh": 50},
}


_DATA_KEYS = ("X_train", "y_train", "X_test", "y_test")


def _check_data(data) -> None:
    if not isinstance(data, dict) or any(k not in data for k in _DATA_KEYS):
        have = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"data must be a dict with keys {list(_DATA_KEYS)} (and 'name'), as "
                         f"returned by load_dataset(); got {have}")


def _arch_args(label: str, spec) -> tuple:
    if not isinstance(spec, dict) or any(k not in spec for k in ("f", "nf", "nh")):
        raise ValueError(f"architecture {label!r} must be a dict with keys 'f', 'nf' and 'nh', "
                         f"e.g. {{'f': 4, 'nf': 10, 'nh': 50}}; got {spec!r}")
    return spec["f"], spec["nf"], spec["nh"]


def _same_protocol(hist: History, cfg: TrainConfig) -> bool:
    a, b = dict(hist.config), cfg.to_dict()
    a.pop("progress", None)
    b.pop("progress", None)
    return a == b


def run_architectures(archs: dict, cfg: TrainConfig, data: dict, seed: int = 0,
                      reuse: dict | None = None, verbose: bool = True):
    """Train every architecture in ``archs`` with the same config on the same data.

    archs: {label: {"f": int, "nf": int, "nh": int}} in the order wanted (e.g. EX3_ARCHS);
        f and nf may be equal-length tuples (multi-size filters, see init_params).
    cfg: the TrainConfig for every run, used as given (wrap it in for_mode yourself).
    data: dict from load_dataset(): X_train (3072, n) float32 normalised, y_train (n,) int64,
        X_test (3072, m) float32, y_test (m,) int64, name str (the data label on every row).
    seed: the He-initialisation seed of every network (cfg.seed drives the batch order).
    reuse: {label: (row, History)} of runs already trained with this same cfg (e.g. arch2 from
        an earlier cell); they are taken as they are instead of being retrained.
    Returns (rows, histories): rows a list of result_row dicts in the order of ``archs``
    (JSON-ready), histories {label: History}. With ``verbose`` one line per run is printed.
    """
    _check_data(data)
    if not archs:
        raise ValueError("archs is empty: pass {label: {'f': .., 'nf': .., 'nh': ..}, ...}")
    reuse = dict(reuse or {})
    unknown = set(reuse) - set(archs)
    if unknown:
        raise ValueError(f"reuse has runs {sorted(unknown)} that are not in archs {list(archs)}")
    cfg = cfg.validate()
    rows, hists = [], {}
    for label, spec in archs.items():
        f, nf, nh = _arch_args(label, spec)
        if label in reuse:
            row, hist = reuse[label]
            if not _same_protocol(hist, cfg):
                raise ValueError(f"reuse[{label!r}] was trained with another config; retrain it "
                                 "or pass the config it was trained with")
            how = "reused"
        else:
            params = init_params(f, nf, nh, seed=seed)
            params, hist = train(params, data["X_train"], data["y_train"], cfg,
                                 data["X_test"], data["y_test"], data_name=data.get("name", ""))
            row = result_row(label, params, cfg, hist)
            how = "trained"
        rows.append(row)
        hists[label] = hist
        if verbose:
            print(f"{label} (f={f}, nf={nf}, nh={nh}) {how}: {hist.updates_done} updates, "
                  f"final test acc {100 * hist.final_test_acc:.2f}%, train {hist.time_train:.1f} s, "
                  f"eval {hist.time_eval:.1f} s - {data_label(hist.data)}", flush=True)
    return rows, hists


def train_preview(data: dict, f: int = 4, nf: int = 10, nh: int = 50, eta_min: float = 1e-5,
                  eta_max: float = 1e-1, step: int = 100, n_cycles: int = 1,
                  lam: float = 0.003, batch_size: int = 100, n_train: int = 2000,
                  n_test: int = 1000, increasing: bool = False, seed: int = 0, callback=None):
    """A quick training run on a subset of ``data`` (seconds), for the widget panel.

    data: dict from load_dataset() (X_train (3072, n) float32, y_train (n,) int64, X_test
    (3072, m) float32, y_test (m,) int64, name str). The first ``n_train`` training and first
    ``n_test`` test images are used; metrics every step//2 updates on min(n_train, 1000)
    training images and on those test images. ``callback(history)`` runs after each
    evaluation (e.g. to redraw a plot). Returns (params, history) as train() does: params in
    the spec layout (float32), history a History whose ``data`` says which data (and that it is
    a subset). Bad settings (e.g. batch_size > n_train, eta_min > eta_max, f not dividing 32)
    raise ValueError; a diverging run raises TrainingDiverged.
    """
    _check_data(data)
    n_all, m_all = data["X_train"].shape[1], data["X_test"].shape[1]
    if not 1 <= n_train or not 0 <= n_test:
        raise ValueError(f"n_train must be >= 1 and n_test >= 0; got {n_train}, {n_test}")
    n_train, n_test = min(int(n_train), n_all), min(int(n_test), m_all)
    if batch_size > n_train:
        raise ValueError(f"batch_size {batch_size} is larger than the {n_train} training images "
                         "of the preview; lower batch_size or raise n_train")
    cfg = TrainConfig(n_cycles=int(n_cycles), step=int(step), eta_min=float(eta_min),
                      eta_max=float(eta_max), batch_size=int(batch_size), lam=float(lam),
                      increasing=bool(increasing), seed=seed,
                      eval_train_n=min(n_train, 1000), progress=False).validate()
    params = init_params(int(f), int(nf), int(nh), seed=seed)
    name = f"{data.get('name', '')} - subset {n_train} train / {n_test} test".strip(" -")
    X_te = data["X_test"][:, :n_test] if n_test else None
    y_te = data["y_test"][:n_test] if n_test else None
    return train(params, data["X_train"][:, :n_train], data["y_train"][:n_train], cfg,
                 X_te, y_te, data_name=name, callback=callback)


def compare_longer_runs(a_short: float, b_short: float, a_long: float, b_long: float,
                        a_wide_long: float, a: str = "arch2", b: str = "arch3",
                        wide: str = "arch2 with nf=40") -> list:
    """Sentences comparing test accuracies (fractions in [0, 1]) of the longer-training study.

    a_short/b_short: final test accuracy of architectures a and b with the short protocol;
    a_long/b_long: the same with the longer (doubling-cycle) protocol; a_wide_long: a made as
    wide as b, longer protocol. Returns a list of str, every number computed from the inputs:
    the gain from longer training for each, b's lead over a, and how much of that lead the
    extra width recovers.
    """
    vals = np.array([a_short, b_short, a_long, b_long, a_wide_long], dtype=float)
    if not np.all(np.isfinite(vals)):
        raise ValueError(f"accuracies must be finite numbers; got {vals.tolist()}")
    pts = lambda x: f"{100 * x:+.2f} points"  # noqa: E731
    ga, gb = a_long - a_short, b_long - b_short
    who = b if gb > ga else a if ga > gb else "neither (equal gains)"
    lines = [f"longer training: {a} {pts(ga)}, {b} {pts(gb)}; bigger gain: {who}"]
    lead = b_long - a_long
    lines.append(f"after longer training {b} vs {a}: {pts(lead)}")
    width = a_wide_long - a_long
    if lead > 0:
        share = width / lead
        how = ("all of it (or more)" if share >= 1 else "most of it" if share >= 0.75
               else "part of it" if share >= 0.25 else "little or none of it")
        lines.append(f"{wide}: {pts(width)} vs {a}, i.e. {100 * share:.0f}% of {b}'s lead: "
                     f"width explains {how}")
    else:
        lines.append(f"{wide}: {pts(width)} vs {a}; {b} has no lead over {a} here, so there "
                     "is no gap for width to explain")
    rest = a_wide_long - b_long
    lines.append(f"at equal width ({wide} vs {b}): {pts(rest)} for the smaller filters")
    return lines


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


def ls_summary_text(summary: dict) -> str:
    """Sentences describing an ls_summary dict, generated from its numbers (nothing assumed)."""
    la, lb = summary["labels"]
    a, b = summary[la], summary[lb]

    def cmp(x, y, tol, smaller, larger):
        return "about the same as" if abs(x - y) <= tol else (smaller if x < y else larger)
    s = [f"Final train/test gap in the hard loss: {a['gap']:.3f} ({la}) vs {b['gap']:.3f} ({lb}); "
         f"{lb}'s gap is {cmp(b['gap'], a['gap'], 0.01, 'smaller than', 'larger than')} {la}'s.",
         f"The test loss rose {a['rise']:.3f} from its minimum (at update {a['t_min']}) to the end "
         f"for {la} and {b['rise']:.3f} (minimum at update {b['t_min']}) for {lb}: "
         + ("neither run overfits in the loss." if max(a['rise'], b['rise']) <= 0.01 else
            f"{lb} overfits the loss {cmp(b['rise'], a['rise'], 0.01, 'less than', 'more than')} "
            f"{la}."),
         f"Final test accuracy: {100 * a['test_acc']:.2f}% ({la}) vs {100 * b['test_acc']:.2f}% "
         f"({lb}), a difference of {100 * summary['d_test_acc']:+.2f} percentage points."]
    return "\n".join(s)


def ls_compare(data: dict, eps: float = 0.1, lam: float = 0.0025, n_train: int = 1000,
               n_test: int = 1000, arch=(4, 10, 50), n_cycles: int = 2, step: int = 50,
               seed: int = 0, callback=None) -> dict:
    """Train one small network twice, without and with label smoothing, from the same
    initialisation and mini-batch order (the widget and the tests call this).

    data: a load_dataset() dict (X_train (3072, N) float32, y_train (N,), X_test, y_test).
    Uses the first n_train training and n_test test images, arch = (f, nf, nh), a cyclic
    schedule of n_cycles cycles with the given step, batch size min(100, n_train), and
    evaluation every step//5 updates on all n_train training images.
    Returns {"eps=0": History, f"eps={eps:g}": History} (a single entry when eps == 0).
    """
    eps = _check_eps(eps)
    _check_data(data)
    N, Nt = data["X_train"].shape[1], data["X_test"].shape[1]
    if not 1 <= n_train <= N or not 1 <= n_test <= Nt:
        raise ValueError(f"need 1 <= n_train <= {N} and 1 <= n_test <= {Nt}; got "
                         f"n_train={n_train}, n_test={n_test}")
    f, nf, nh = arch
    base = TrainConfig(n_cycles=n_cycles, step=step, lam=lam, batch_size=min(100, n_train),
                       eval_every=max(1, step // 5), eval_train_n=n_train, seed=seed,
                       progress=False)
    name = data.get("name", "")
    out = {}
    for e in ((0.0,) if eps == 0 else (0.0, eps)):
        params0 = init_params(f, nf, nh, seed=seed, dtype=data["X_train"].dtype)
        _, hist = train(params0, data["X_train"][:, :n_train], data["y_train"][:n_train],
                        dataclasses.replace(base, eps=e), data["X_test"][:, :n_test],
                        data["y_test"][:n_test], data_name=name, callback=callback)
        out[f"eps={e:g}"] = hist
    return out
